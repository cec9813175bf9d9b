"""One notification's content, built from an incident as the store returns it.

Every string is scrubbed here, once, before any channel sees it: a partner's record
``url`` or ``source``, a path, a commit author, an owner name are text from outside and
may hold a token (whole, base64, percent-escaped...) or control characters (a CR/LF for
an e-mail header). Each channel then escapes the scrubbed text for its own markup
(Slack's ``<>&``, JSON's ``<>&`` as ``\\u`` escapes); none of them ever sees the raw row.

The message is built at send time from :meth:`Store.get_incident`, so it shows the
incident's latest status, plus the event kind that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from scanner.scrub import scrub

#: Sightings listed in one message; the rest are counted ("and 37 more places").
MAX_PLACES = 5
#: Git sources: a sighting from these names a commit whose author may be mailed.
GIT_SOURCES = ("scan:", "sweep:")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")

TITLES = {
    "opened": "Leaked Cendis token found",
    "possible": "Possible Cendis token found: a person must act",
    "revoked": "Leaked Cendis token revoked",
    "revoke_failing": "Revoking a leaked Cendis token keeps failing",
    "reopened": "Resolved incident reopened: the token was seen again",
    "triage": "Incident triage changed",
    "test": "Test notification from cendis-scan",
}


@dataclass(frozen=True, slots=True)
class Place:
    """One sighting, scrubbed: where the token was seen."""

    source: str
    url: str | None = None
    repository: str | None = None
    path: str | None = None
    line: int | None = None
    commit: str | None = None
    author: str | None = None
    seen_at: str | None = None

    @property
    def location(self) -> str | None:
        """``path:line``, or the path alone."""
        if not self.path:
            return None
        return f"{self.path}:{self.line}" if self.line else self.path

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "url": self.url, "repository": self.repository,
                "path": self.path, "line": self.line, "commit": self.commit,
                "author": self.author, "seen_at": self.seen_at}


@dataclass(frozen=True, slots=True)
class Message:
    """What every channel says about one event of one incident (all text scrubbed)."""

    kind: str                       # the event: opened | possible | revoked | ... | test
    title: str
    incident_id: int | None
    redacted: str                   # cendis_pat_WEKi…Xv: never more of the token
    sha256: str | None
    severity: str
    status: str
    triage: str | None = None
    assignee: str | None = None
    owner: str | None = None
    token_name: str | None = None
    org: str | None = None
    scopes: tuple[str, ...] = ()
    first_seen: str | None = None
    revoke_seconds: float | None = None  # first report → revoked
    places: tuple[Place, ...] = ()
    more_places: int = 0
    actions: tuple[str, ...] = ()
    link: str | None = None
    detail: str | None = None       # the event's own detail (a triage change, an error)
    author_addresses: tuple[str, ...] = ()  # git commit authors' plain addresses

    @property
    def summary(self) -> str:
        """One line: what happened to which token, how bad."""
        ident = f"incident {self.incident_id}: " if self.incident_id is not None else ""
        return f"{self.title}: {ident}{self.redacted} ({self.severity}, {self.status})"

    def facts(self) -> list[tuple[str, str]]:
        """(label, value) pairs every channel shows, in order; empty values left out."""
        out = [("Token", self.redacted), ("Severity", self.severity),
               ("Status", self.status)]
        if self.triage:
            out.append(("Triage", self.triage + (f" (assignee: {self.assignee})"
                                                 if self.assignee else "")))
        owner = ", ".join(x for x in (self.owner, self.token_name and
                                      f"token {self.token_name!r}", self.org) if x)
        if owner:
            out.append(("Owner", owner))
        if self.scopes:
            out.append(("Scopes", ", ".join(self.scopes)))
        if self.first_seen:
            out.append(("First seen", self.first_seen))
        if self.revoke_seconds is not None:
            out.append(("Time to revoke", duration(self.revoke_seconds)))
        if self.detail:
            out.append(("Detail", self.detail))
        return out

    def place_lines(self) -> list[str]:
        """One line per place: source, url, repository, path:line, commit, author."""
        lines = []
        for place in self.places:
            bits = [place.source, place.url, place.repository, place.location,
                    place.commit and f"commit {place.commit}",
                    place.author and f"by {place.author}"]
            lines.append(" · ".join(b for b in bits if b))
        if self.more_places:
            lines.append(f"and {self.more_places} more places")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The webhook's ``data``: plain text fields, no markup."""
        return {"incident_id": self.incident_id, "event": self.kind, "title": self.title,
                "redacted": self.redacted, "sha256": self.sha256, "severity": self.severity,
                "status": self.status, "triage": self.triage, "assignee": self.assignee,
                "owner": self.owner, "token_name": self.token_name, "org": self.org,
                "scopes": list(self.scopes), "first_seen": self.first_seen,
                "revoke_seconds": self.revoke_seconds,
                "places": [p.to_json() for p in self.places], "more_places": self.more_places,
                "actions": list(self.actions), "link": self.link, "detail": self.detail}


def build_message(incident: Mapping[str, Any], kind: str, base_url: str | None, *,
                  detail: str | None = None) -> Message:
    """The message for event ``kind`` of ``incident`` (a ``get_incident`` dict)."""
    ident = incident.get("id")
    sightings = list(incident.get("sightings") or ())
    places = tuple(_place(s) for s in sightings[:MAX_PLACES])
    first_seen = _text(incident.get("first_seen"), 40)
    if detail is None:
        detail = _event_detail(incident, kind)
    return Message(
        kind=kind, title=TITLES.get(kind) or f"Incident {_text(kind, 40)}",
        incident_id=ident if isinstance(ident, int) else None,
        redacted=_text(incident.get("redacted"), 40) or "cendis_pat_…",
        sha256=_hex(incident.get("sha256")),
        severity=_text(incident.get("severity"), 20) or "unknown",
        status=_text(incident.get("status"), 30) or "unknown",
        triage=_text(incident.get("triage"), 30), assignee=_text(incident.get("assignee"), 100),
        owner=_text(incident.get("owner"), 100), token_name=_text(incident.get("token_name"), 100),
        org=_text(incident.get("org"), 100),
        scopes=tuple(_text(s, 60) or "" for s in (incident.get("scopes") or ())[:20]),
        first_seen=first_seen, revoke_seconds=revoke_seconds(incident),
        places=places, more_places=max(0, len(sightings) - MAX_PLACES),
        actions=actions(kind, first_seen, incident.get("last_error")),
        link=f"{base_url.rstrip('/')}/incidents/{ident}" if base_url and isinstance(ident, int)
        else None,
        detail=_text(detail, 500), author_addresses=author_addresses(sightings))


def actions(kind: str, first_seen: str | None, last_error: Any = None) -> tuple[str, ...]:
    """What to do, from Cendis's guide for a leaked token, first the event's own step."""
    since = f" since {first_seen}" if first_seen else ""
    guide = ("Regenerate the token in Cendis and hand the new one to whoever used it.",
             "Replace it in CI secret stores and .env files.",
             f"Check the Cendis audit trail for its use{since}.")
    if kind == "test":
        return ("Nothing to do: this is a test of the channel.",)
    if kind == "possible":
        return ("This is a possible token (truncated or mistyped): it cannot be revoked by "
                "its hash. Find the whole token and revoke it (cendis-scan revoke), or mark "
                "the incident a false positive.", *guide)
    if kind == "revoke_failing":
        error = _text(last_error, 200)
        return ("Revoke it by hand in Cendis or with cendis-scan revoke"
                + (f" (last error: {error})." if error else "."), *guide)
    return guide


def revoke_seconds(incident: Mapping[str, Any]) -> float | None:
    """First report → revoked: from ``revoked_at`` (schema 3), else a ``revoked`` event's
    detail (seconds)."""
    start, end = _when(incident.get("first_seen")), _when(incident.get("revoked_at"))
    if start is not None and end is not None:
        return max(0.0, (end - start).total_seconds())
    for event in reversed(list(incident.get("events") or ())):
        if event.get("kind") == "revoked":
            try:
                return max(0.0, float(str(event.get("detail")).split()[0]))
            except (ValueError, IndexError):
                return None
    return None


def duration(seconds: float) -> str:
    """``42 s``, ``4 min 12 s``, ``3 h 5 min``, ``2 d 4 h``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def author_addresses(sightings: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The plain addresses of git commit authors (``Name <a@b.c>``), for the e-mail
    channel's ``author_domains``. An author holding a line break, a comma, a quote or an
    escape is nobody's address: skipped, never repaired."""
    out: dict[str, None] = {}
    for sighting in sightings:
        source, raw = sighting.get("source"), sighting.get("author")
        if not (isinstance(source, str) and source.startswith(GIT_SOURCES)
                and sighting.get("commit") and isinstance(raw, str)):
            continue
        if any(c in raw for c in "\r\n,;\\\"") or scrub(raw) != raw:
            continue
        _, address = parseaddr(raw)
        if _PLAIN_ADDRESS.fullmatch(address):
            out.setdefault(address, None)
    return tuple(out)[:10]


def _place(sighting: Mapping[str, Any]) -> Place:
    line = sighting.get("line")
    return Place(source=_text(sighting.get("source"), 120) or "unknown",
                 url=_text(sighting.get("url"), 300),
                 repository=_text(sighting.get("repository"), 200),
                 path=_text(sighting.get("path"), 300),
                 line=line if isinstance(line, int) and not isinstance(line, bool) else None,
                 commit=_text(sighting.get("commit"), 64),
                 author=_text(sighting.get("author"), 200),
                 seen_at=_text(sighting.get("received_at"), 40))


def _event_detail(incident: Mapping[str, Any], kind: str) -> str | None:
    """The latest event of this kind's detail (a triage change says who and why)."""
    if kind not in ("triage", "reopened", "revoke_failing"):
        return None
    for event in reversed(list(incident.get("events") or ())):
        if event.get("kind") == kind:
            actor = event.get("actor")
            text = str(event.get("detail") or "")
            return f"{text} (by {actor})" if actor else text or None
    return None


def _text(value: Any, limit: int) -> str | None:
    """Scrubbed (tokens redacted, control characters escaped) and cut; None for empty."""
    if value is None:
        return None
    text = scrub(str(value).strip(), limit)
    return text or None


def _hex(value: Any) -> str | None:
    text = str(value or "").lower()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
