"""The process's own stdout and stderr: what every command path (the dispatcher, the
argparse commands, the typer commands) shares about them.

A leaf module (standard library only): :mod:`scanner.cli` imports it on every run,
the hook's quick answer included, and every other module of the CLI may import it
without making a cycle back to the package.
"""

from __future__ import annotations

import errno
import io
import os
import sys

TYPE_CHECKING = False  # not typing's: the hook's quick answer imports this module
if TYPE_CHECKING:
    from collections.abc import Iterable


def debug_wanted() -> bool:
    """``--debug`` (the dispatcher sets the variable) or ``CENDIS_SCAN_DEBUG=1``."""
    return os.environ.get("CENDIS_SCAN_DEBUG", "") not in ("", "0")


class ClosedStdout(io.TextIOBase):
    """``sys.stdout`` when the shell closed it (``>&-``): Python makes it None, and a
    write to None is an AttributeError; here it is the I/O error the user sees."""

    def write(self, text: str) -> int:  # bytes too, through .buffer
        raise OSError(errno.EBADF, "stdout is closed")

    @property
    def buffer(self) -> ClosedStdout:
        return self


def drop_stdout() -> None:
    """After stdout failed (closed pipe, full disk), point it at the null device, so
    that Python's final flush of what is still buffered cannot fail a second time with
    an "Exception ignored" message (the recipe of Python's signal docs)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def suggest(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'scan'?`` for a mistyped name, else nothing."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
