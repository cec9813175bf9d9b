"""What the incident trail is made of: statuses, severities, token references, sightings.

Nothing here holds a raw token. A token is turned into a :class:`TokenRef` (its SHA-256
and redacted form) the moment it arrives, so the store, the revoker and every log line
downstream can only ever see those two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from scanner.errors import UsageError
from scanner.token import redact, secret_sha256


def utcnow() -> datetime:
    """The default clock of the store (a parameter everywhere, so tests can pin it)."""
    return datetime.now(UTC)


class Status(StrEnum):
    """An incident's status; the first three come from the revoke API's answer."""

    PENDING = "pending"  # queued, revoke not yet answered
    REVOKED = "revoked"
    ALREADY_REVOKED = "already_revoked"
    NOT_FOUND = "not_found"
    FALSE_POSITIVE = "false_positive"  # not a Cendis token by format: never sent to the API
    RECORDED = "recorded"  # recorded without auto-revoke
    ERROR = "error"  # a 400 from the API: recorded, not retried unchanged


#: Statuses after which a token is never sent to the API again.
CLOSED = frozenset({Status.REVOKED, Status.ALREADY_REVOKED, Status.NOT_FOUND,
                    Status.FALSE_POSITIVE, Status.ERROR})


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    UNKNOWN = "unknown"


def severity_of(scopes: Iterable[str] | None) -> Severity:
    """cendis-api.md: admin:org critical; approve/write high; read medium; else unknown."""
    have = set(scopes or ())
    if "admin:org" in have:
        return Severity.CRITICAL
    if have & {"approve:assets", "write:assets"}:
        return Severity.HIGH
    if have & {"read:audit", "read:assets"}:
        return Severity.MEDIUM
    return Severity.UNKNOWN


@dataclass(frozen=True, slots=True)
class TokenRef:
    """What the store gets instead of a token: never the raw token."""

    sha256: str  # lowercase hex SHA-256 of the token's ASCII bytes
    redacted: str  # scanner.token.redact(token)

    @classmethod
    def from_token(cls, token: str | bytes) -> TokenRef:
        """Hash and redact on arrival; the caller drops the token right after."""
        raw = token.encode("ascii", "replace") if isinstance(token, str) else token
        return cls(sha256=secret_sha256(raw), redacted=redact(raw))

    @classmethod
    def from_finding(cls, finding: Any) -> TokenRef:
        return cls(sha256=finding.secret_sha256, redacted=finding.redacted)


@dataclass(frozen=True, slots=True)
class Sighting:
    """One place and time a token was seen; the same token seen again adds one."""

    source: str  # "github" | "gitlab" | "partner:<name>" | "scan:<path|repo>" | "manual"
    received_at: datetime  # tz-aware UTC
    partner: str | None = None
    repository: str | None = None
    url: str | None = None
    commit: str | None = None
    path: str | None = None
    line: int | None = None
    author: str | None = None
    record_type: str | None = None  # the partner record's "type", as given
    record_source: str | None = None  # the partner record's "source", as given
    delivery_id: str | None = None

    @classmethod
    def from_finding(cls, finding: Any, source: str, received_at: datetime) -> Sighting:
        """Where a scan found it: path, line, and for git findings commit and author."""
        name = getattr(finding, "author_name", None)
        email = getattr(finding, "author_email", None)
        author = f"{name} <{email}>" if name and email else (name or email or None)
        return cls(source=source, received_at=received_at, path=finding.path,
                   line=finding.line, commit=getattr(finding, "commit", None), author=author)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One per recorded item, in the order of the input."""

    incident_id: int
    sha256: str
    status: Status  # the incident's status after recording
    new_incident: bool
    new_sighting: bool  # False when an identical sighting was already stored


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A token waiting for its revoke call (by hash only)."""

    sha256: str
    incident_id: int
    source: str
    url: str
    attempts: int  # calls already made (or started) for it; >0 after a lost answer


@dataclass(frozen=True, slots=True)
class RevokeOutcome:
    """What the API said about one token, ready to be written to its incident."""

    sha256: str
    status: Status
    owner: str | None = None
    token_name: str | None = None
    org: str | None = None
    scopes: tuple[str, ...] = ()


class Triage(StrEnum):
    """An incident's triage state: what people decided, beside the revoke status."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"
    IGNORED = "ignored"


#: Triage states after which nobody needs to look at the incident again.
TRIAGE_CLOSED = frozenset({Triage.RESOLVED, Triage.FALSE_POSITIVE, Triage.IGNORED})


class TriageError(UsageError):
    """A triage action the store refuses: ``reason`` is ``not_found`` (no such
    incident), ``transition`` (not allowed from the current state), ``missing`` (a
    reason, assignee or note the action needs) or ``action`` (no such action)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """What a router decides on: an event the store writes that people may want to hear
    of, with what routing rules look at."""

    kind: str  # opened | possible | revoked | revoke_failing | reopened | triage
    severity: str  # the incident's severity at that time
    source: str  # the sighting's source ("partner:github", "scan:...", "sweep:...")


class Router(Protocol):
    """Which channels hear of an event; the store is given one (or none: no outbox).
    Called inside the store's write transaction, so it must be pure and quick."""

    revoke_failing_after: float | None  # seconds since enqueue; None = never

    def channels(self, event: NotifyEvent) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message to send: one (event, channel). The notifier builds its content from
    the incident as it stands at send time, so it always shows the latest status."""

    id: int
    event_id: int
    incident_id: int
    kind: str  # the NotifyEvent kind
    channel: str
    idem_key: str  # "evt_<event_id>_<channel>": the same for every retry
    attempts: int  # failed sends so far
    created_at: datetime
