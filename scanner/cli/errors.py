"""The one error wrapper: how any exception out of a command becomes one line on stderr
and an exit status, for the argparse commands and the typer commands alike.

The library raises; the CLI says. A :class:`~scanner.errors.ScanError` is the user's to
fix (its message, its status); a database error is the incident database's; Ctrl-C and
SIGTERM are 130 and 143; a closed pipe is 2, silently; any other I/O error is one line;
anything else is a bug: one ``internal error`` line, the traceback behind ``--debug``.
"""

from __future__ import annotations

import sys

from scanner.cli.console import drop_stdout
from scanner.errors import EXIT_ERROR, EXIT_FINDINGS, ScanError
from scanner.scrub import scrub

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so that everything that stops
    cleanly on Ctrl-C (worker pools, temporary report files) does so on SIGTERM too."""


def on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


class NotFound(ScanError):
    """What a command looked up is not there (``incidents show 99``): exit 1, like a
    search that found nothing, not 2."""

    reason = "not_found"
    exit_status = EXIT_FINDINGS


def error_line(message: str) -> None:
    sys.stderr.write(f"cendis-scan: error: {scrub(message, 500)}\n")


def exit_status(exc: BaseException, debug: bool) -> int:
    """Say ``exc`` in one line on stderr and return the exit status it means."""
    if isinstance(exc, ScanError):
        error_line(str(exc))
        return exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        terminated = isinstance(exc, Terminated)
        sys.stderr.write(f"cendis-scan: {'terminated' if terminated else 'interrupted'}\n")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # the reader went away: nothing more to say
        drop_stdout()
        return EXIT_ERROR
    if _database_failure(exc):
        import os

        from scanner.incidents.store.common import first_line

        first = first_line(exc, os.environ.get("CENDIS_SCAN_DB"))  # its password masked
        error_line(f"incident database: {scrub(first.strip(), 100)}")
        return EXIT_ERROR
    if isinstance(exc, OSError):  # stdin or stdout failing under a command (EIO, ENOSPC)
        drop_stdout()
        error_line(f"I/O error: {exc.strerror or exc}")
        return EXIT_ERROR
    return internal_error(exc, debug)


def _database_failure(exc: BaseException) -> bool:
    """The incident database's own failure (either backend; not a value it refuses)?
    Asked only when a database driver is loaded: the hot path never imports one."""
    if "sqlite3" not in sys.modules and "psycopg" not in sys.modules:
        return False
    from scanner.incidents.store import database_failure

    return database_failure(exc) is not None


def internal_error(exc: BaseException, debug: bool) -> int:
    """A bug: one line, the traceback only when asked for."""
    if debug:
        import traceback

        traceback.print_exception(exc)
    sys.stderr.write(f"cendis-scan: internal error: {type(exc).__name__}: "
                     f"{scrub(str(exc), 300)}"
                     f"{'' if debug else ' (run with --debug for the traceback)'}\n")
    return EXIT_ERROR
