"""What the engine hands to reports: a located, redacted, fingerprinted finding.

A ``Finding`` never holds the raw token. It is born redacted (``redacted``) and
identified by ``secret_sha256``, so no report, log line or database row written
downstream can leak what it describes. It is frozen: a later step that knows more (the
commit that introduced it, a line number counted in parallel) derives a new finding
with :func:`dataclasses.replace`, so a finding shared between threads never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scanner.scrub import scrub
from scanner.token import Confidence

__all__ = ["CONFIDENCE_RANK", "Confidence", "Finding", "SourceKind"]

CONFIDENCE_RANK = {Confidence.POSSIBLE: 1, Confidence.CONFIRMED: 2}


class SourceKind(StrEnum):
    """Where the scanned bytes came from (string-valued: JSON shows the value)."""

    FILE = "file"
    STDIN = "stdin"
    GIT = "git"


#: Free text that reaches reports: scrubbed when a finding is made.
_SCRUBBED = ("path", "fingerprint_path", "variable", "note", "author_name", "author_email",
             "date", "location")

#: Fields only git findings fill; present (as null) in every JSON finding, so the shape
#: is the same whatever the source.
GIT_FIELDS = ("commit", "author_name", "author_email", "date", "location", "occurrences")


@dataclass(frozen=True, slots=True)
class Finding:
    """One token found: where (path, line, column, byte offset, or the commit that
    introduced it), how sure (``confidence``), and who it is (``secret_sha256``), but
    only ever its redacted form."""

    rule_id: str
    confidence: Confidence
    path: str | None
    line: int | None  # 1-based; None inside binary files
    column: int | None  # 1-based, in Unicode code points
    offset: int  # byte offset of the match (or of the encoded run) in the scanned text
    encoding: str  # plain | base64 | utf-16 | gzip | gzip+base64 | ...
    redacted: str
    secret_sha256: str
    source: SourceKind = SourceKind.FILE
    variable: str | None = None
    note: str | None = None
    # The path the fingerprint names: relative to the git work tree or the scan root.
    fingerprint_path: str | None = field(default=None, repr=False)
    # Git fields (set only for git findings).
    commit: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    date: str | None = None
    location: str | None = None  # "file" | "commit-message" for git findings
    occurrences: int | None = None
    # Inside a container image: (the image's reference, the layer's ``sha256:<12>`` or
    # None for the config), for SARIF's properties: the path alone cannot say where the
    # reference starts when the image tarball is itself a member (``a.zip!i.tar!ref!…``)
    # or its reference holds a ``!``. Not part of the JSON shape (the path says it).
    image: tuple[str, str | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Redacted at birth: every free-text field (a path, a git identity, a variable
        name) may hold a token or bytes that are not text, so each goes through
        :func:`~scanner.scrub.scrub` here, once, and every report, log line and
        fingerprint built from a finding is safe and valid UTF-8. Idempotent, so
        :func:`dataclasses.replace` may run it again."""
        for name in _SCRUBBED:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, scrub(value))

    @property
    def fingerprint(self) -> str:
        """Stable when lines move: path, rule and secret hash, never the line number.

        The readable form ``path:rule:hash16`` can be pasted into an ignore file;
        git findings are additionally keyed on the commit that introduced them.
        """
        base = self.fingerprint_base
        return f"{self.commit}:{base}" if self.commit else base

    @property
    def fingerprint_base(self) -> str:
        """The fingerprint without the commit: what an ignore entry written for a file
        or a staged change matches once the same token is committed."""
        where = self.fingerprint_path if self.fingerprint_path is not None else self.path
        return f"{where or '-'}:{self.rule_id}:{self.secret_sha256[:16]}"

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return (self.path or "", self.line or 0, self.column or 0, self.offset,
                self.commit or "", self.secret_sha256)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (version 1): every field but ``fingerprint_path`` and
        ``image``, plus the fingerprint; enums as their string values."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name not in ("fingerprint_path", "image"):
                value = getattr(self, name)
                data[name] = value.value if isinstance(value, StrEnum) else value
        data["fingerprint"] = self.fingerprint
        return data
