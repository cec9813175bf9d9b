"""A small error hierarchy: each error has a short ``reason`` and an exit status.

The CLI turns any of these into one line on stderr and the status below, never a
traceback. ``reason`` is short and machine-readable so that services can count it.
"""

from __future__ import annotations

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


class ScanError(Exception):
    """Base class: something the user can fix, reported in one line.

    Its message is scrubbed when the error is made (tokens redacted, control characters
    escaped), so a caller that logs ``str(error)`` cannot leak what a path, URL or
    argument held."""

    reason = "error"
    exit_status = EXIT_ERROR

    def __init__(self, message: object = "", *args: object) -> None:
        from scanner.scrub import scrub

        super().__init__(scrub(str(message)), *args)


class UsageError(ScanError):
    """The command line or the call asks for something that cannot be done."""

    reason = "usage"


class ConfigError(ScanError):
    """A rule file, baseline, ignore file or configuration file is invalid."""

    reason = "config"


class SourceError(ScanError):
    """One input could not be read; the scan goes on without it and exits 2."""

    reason = "source"


class GitError(ScanError):
    """git failed, or the repository cannot be read; carries git's own message."""

    reason = "git"


def short(text: str, limit: int = 120) -> str:
    """Untrusted text in messages: tokens redacted, control characters escaped, cut
    short."""
    from scanner.scrub import scrub

    return scrub(text.strip(), limit)
