"""Where a rendered report goes: stdout, or a file replaced atomically.

The renderers (one module per format) turn a result into text; this module writes that
text, so every format reaches a file the same way: never half a report, the mode a
shell's ``>`` would give, and a device (``/dev/null``, a FIFO) written in place.
"""

from __future__ import annotations

import os
import sys

from scanner.errors import UsageError


class StdoutFailed(UsageError):
    """stdout itself failed (a full disk, a closed descriptor): the caller stops writing
    to it (the CLI points it at the null device before it exits)."""


def write_report(text: str, output: str | None) -> None:
    """To stdout, or to ``output``: a regular file (or a new one) is replaced
    atomically, so a failed or interrupted run never leaves half a report; through a
    symlink, its target is replaced and the link kept. Anything else (``/dev/null``, a
    FIFO, a terminal) is opened and written in place: replacing a device by a regular
    file, as root, would break the machine."""
    if output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutFailed(f"cannot write the report to stdout: {exc.strerror or exc}") \
                from None
        return
    import stat

    try:
        try:
            st: os.stat_result | None = os.stat(output)  # through any symlinks
        except FileNotFoundError:  # nothing there, or a dangling link: create its target
            st = None
        if st is not None and _is_stdout(st):  # -o /dev/stdout: appended as `>>` asked
            write_report(text, None)
            return
        target = os.path.realpath(output)
        # Not a regular file, a name of this process's own (/dev/stdout, /proc/self/fd/N)
        # or one whose resolved path is another file: written in place, never renamed over.
        if st is not None and (not stat.S_ISREG(st.st_mode)
                               or os.path.abspath(output).startswith(("/dev/", "/proc/"))
                               or not os.path.exists(target)
                               or not os.path.samestat(st, os.stat(target))):
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
            return
        from scanner.atomic import write_atomic

        write_atomic(target, text, mode=None if st is None else st.st_mode)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def _is_stdout(st: os.stat_result) -> bool:
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False
