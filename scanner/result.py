"""What a caller asks of a scan (:class:`ScanOptions`) and what it gets back
(:class:`ScanResult`): plain data, the same for files, streams and git.

``ScanResult`` counts what a sweep summary or a service metric needs, and carries
errors as objects with the ``reason`` of the exception behind them, so a caller can
count them without parsing messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scanner.finding import Finding
from scanner.scrub import scrub
from scanner.token import Confidence

__all__ = ["DECODE_WINDOW", "EVERYWHERE", "GZIP_LIMIT", "Progress", "ScanIssue", "ScanOptions",
           "ScanResult"]

#: Decompressed bytes allowed per gzip input before it counts as a bomb.
GZIP_LIMIT = 1 << 30
#: Below this many bytes of input a scan stays in one process: starting workers would
#: cost more than it saves.
PARALLEL_BYTES = 8 << 20
#: Every encoded form is looked for in this many first bytes of each input; past it the
#: token, its base64 and base64 of gzip (the figures behind it are at
#: :data:`scanner.engine.limits.DEEP_LIMIT`).
DECODE_WINDOW = 8 << 20
#: ``decode_window`` for everywhere (``--decode-window all``).
EVERYWHERE = 1 << 62

#: Called now and then during a scan with (inputs done, bytes done).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """How to scan. Immutable, so one options object can serve many concurrent scans."""

    min_confidence: Confidence = Confidence.POSSIBLE
    excludes: tuple[str, ...] = ()
    respect_gitignore: bool = False
    baseline: str | None = None  # a JSON report: skip what it already has
    jobs: int = 0  # worker processes; 0: one per core
    max_decompressed: int = GZIP_LIMIT  # per gzip input; past it the input is an error
    parallel_bytes: int = PARALLEL_BYTES  # less work than this stays in one process
    #: Bytes of each input searched for every encoded form (:data:`DECODE_WINDOW`);
    #: :data:`EVERYWHERE` for all of it. Workers get it with their task, as the rest.
    decode_window: int = DECODE_WINDOW

    def __post_init__(self) -> None:
        """Wrong types fail here, loudly: a bare string for ``excludes`` would be read as
        one pattern per character, and silently exclude everything."""
        from scanner.errors import UsageError

        try:
            object.__setattr__(self, "min_confidence", Confidence(self.min_confidence))
        except ValueError:
            raise UsageError(f"min_confidence must be one of "
                             f"{', '.join(c.value for c in Confidence)}") from None
        if isinstance(self.excludes, str | bytes):
            raise UsageError("excludes must be a sequence of patterns, not one string")
        object.__setattr__(self, "excludes", tuple(self.excludes))
        for name in ("jobs", "max_decompressed", "parallel_bytes", "decode_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{name} must be a whole number, 0 or more")


@dataclass(frozen=True, slots=True)
class ScanIssue:
    """One input (a file, a git object, stdin) that could not be read or decoded."""

    reason: str  # the ``reason`` of the error behind it: source, git, io, internal
    message: str  # one line for people, naming the input
    path: str | None = None

    def __post_init__(self) -> None:
        """Messages quote paths, revisions and git's words: scrubbed at birth, so JSON
        ``errors`` and SARIF notifications are as safe as stderr."""
        object.__setattr__(self, "message", scrub(self.message))
        if self.path is not None:
            object.__setattr__(self, "path", scrub(self.path))

    def __str__(self) -> str:
        return self.message


def issue(name: str, exc: BaseException) -> ScanIssue:
    """A ScanIssue from an exception, with its ``reason`` (``internal`` for a bug).
    Here, beside the type, so every reader of inputs (files, zips, git objects) makes
    them the same way without importing another."""
    if isinstance(exc, OSError):
        return ScanIssue("io", f"{name}: {exc.strerror or exc}", name)
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return ScanIssue(reason, f"{name}: {exc}", name)
    return ScanIssue("internal", f"{name}: internal error: {type(exc).__name__}: {exc}", name)


@dataclass(slots=True)
class ScanResult:
    findings: list[Finding]
    suppressed: int  # inline-marked (cendis-scan:allow)
    files: int  # files, or git objects (blobs and commits) read
    bytes: int
    seconds: float
    errors: list[ScanIssue] = field(default_factory=list)
    ignored: int = 0  # skipped through a baseline or an ignore file
    commits: int = 0  # git: commits whose changes were looked at
    skipped: int = 0  # FIFOs, devices and sockets met inside directories: not read

    @property
    def complete(self) -> bool:
        """False when some input could not be read (the CLI exits 2)."""
        return not self.errors

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "files": self.files, "bytes": self.bytes, "findings": len(self.findings),
            "suppressed": self.suppressed, "seconds": round(self.seconds, 3)}
        if self.commits:
            out["commits"] = self.commits
        if self.skipped:
            out["skipped"] = self.skipped
        return out
