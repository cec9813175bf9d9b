"""Files replaced whole or not at all: a report (``-o``), a git hook, a sweep's state.

Written beside the target under a fresh name, flushed to disk, then renamed over it: a
crash, Ctrl-C or a full disk leaves the old file or the new one, never half of either,
and no temporary file behind. Standard library only (the hook installer imports it).
"""

from __future__ import annotations

import contextlib
import os


def _umask() -> int:
    """This process's umask: read from Linux's /proc where it says it (no other thread
    can see a changed umask), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` (UTF-8). ``mode`` sets the permission bits (an
    existing file's, to keep them; 0o755 for a hook); without it the file gets what any
    new file gets (0666 & ~umask, as a shell's ``>`` gives it), not mkstemp's 0600."""
    import tempfile

    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=".cendis-scan-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (mode & 0o7777) if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:  # an error, Ctrl-C or SIGTERM: no temporary file left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
