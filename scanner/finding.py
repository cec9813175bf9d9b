"""What the engine hands to reports: a located, redacted, fingerprinted finding.

A ``Finding`` never holds the raw token. It is born redacted (``redacted``) and
identified by ``secret_sha256``, so no report, log line or database row written
downstream can leak what it describes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CONFIDENCE_RANK = {"possible": 1, "confirmed": 2}


@dataclass(slots=True)
class Finding:
    rule_id: str
    confidence: str  # "confirmed" | "possible"
    path: str | None
    line: int | None  # 1-based; None inside binary files and commit messages without lines
    column: int | None  # 1-based, in Unicode code points
    offset: int  # byte offset of the match (or of the encoded run) in the scanned text
    encoding: str  # plain | base64 | utf-16 | gzip | gzip+base64 | ...
    redacted: str
    secret_sha256: str
    variable: str | None = None
    note: str | None = None
    # Where the fingerprint's path comes from: the path relative to the scan root.
    fingerprint_path: str | None = field(default=None, repr=False)
    # Git fields (set only by the git source).
    commit: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    date: str | None = None
    location: str | None = None  # "file" | "commit-message" for git findings
    occurrences: int | None = None

    @property
    def fingerprint(self) -> str:
        """Stable when lines move: path, rule and secret hash, never the line number.

        The readable form ``path:rule:hash16`` can be pasted into an ignore file;
        git findings are additionally keyed on the commit that introduced them.
        """
        where = self.fingerprint_path if self.fingerprint_path is not None else self.path
        base = f"{where or '-'}:{self.rule_id}:{self.secret_sha256[:16]}"
        return f"{self.commit}:{base}" if self.commit else base

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return (self.path or "", self.line or 0, self.column or 0, self.offset, self.commit or "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("fingerprint_path")
        data["fingerprint"] = self.fingerprint
        if self.commit is None and self.location is None:
            for key in ("commit", "author_name", "author_email", "date", "location",
                        "occurrences"):
                data.pop(key)
        return data
