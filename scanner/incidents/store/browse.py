"""The dashboard's reads, for both backends: the incident list with every filter and
keyset pagination, and the overview's numbers (counts, incidents per day, the time from
first report to revoke).

The SQL is portable (row values, ``substr``, ``count``) and written once; ``mark`` is
the backend's placeholder (``?`` or ``%s``). :class:`Browse` is a mixin both stores
inherit: it needs only their ``_rows(sql, params)``.

Why keyset pagination and not ``OFFSET``: a page is "the next N after (last_seen, id)",
answered from the ``(last_seen, id)`` order however deep the page, and a new incident
arriving meanwhile never shifts a row onto the next page twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

from scanner.incidents.store.common import iso

#: The list's columns: the incident's own and, from its sightings, how many there are and
#: where it was first seen (source and repository), for the table without a second query.
_COLUMNS = (
    "i.id, i.sha256, i.redacted, i.first_seen, i.last_seen, i.status, i.severity, "
    "i.owner, i.token_name, i.org, i.updated_at, i.triage, i.assignee, i.confidence, "
    "(SELECT count(*) FROM sightings s WHERE s.incident_id = i.id) AS sightings, "
    "(SELECT s.source FROM sightings s WHERE s.incident_id = i.id ORDER BY s.id LIMIT 1) "
    "AS source, "
    "(SELECT s.repository FROM sightings s WHERE s.incident_id = i.id ORDER BY s.id "
    "LIMIT 1) AS repository")


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What the list is narrowed to; None is "any". Values are checked by the caller
    (the dashboard's form parser): here they are only bound, never spliced into SQL."""

    triage: str | None = None        # the triage state (models.Triage)
    status: str | None = None        # the revoke status (models.Status)
    severity: str | None = None      # models.Severity
    source: str | None = None        # a sighting's source starts with it, or its partner is it
    repository: str | None = None    # a sighting's repository starts with it
    seen_from: datetime | None = None  # last_seen >= (UTC)
    seen_to: datetime | None = None    # last_seen <  (UTC)
    sha256_prefix: str | None = None   # lowercase hex
    redacted: str | None = None        # the redacted form starts with it

    def active(self) -> dict[str, Any]:
        """The filters that are set, by name (for the page's "filtered by" line)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after the row with this (last_seen, id), newest first."""

    last_seen: str
    id: int


def _prefix(column: str, mark: str) -> str:
    """``column`` starts with a bound value: ``substr`` is the same on both backends (a
    ``LIKE`` would need its ``%``/``_`` escaped and differs in case rules)."""
    return f"substr({column}, 1, length({mark})) = {mark}"


def browse_query(mark: str, where: IncidentFilter, *, after: Cursor | None, limit: int
                 ) -> tuple[str, list[Any]]:
    """One page of the list, newest first (last sighting, then id), and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("i.triage", where.triage), ("i.status", where.status),
                          ("i.severity", where.severity)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    if where.source is not None:
        clauses.append("EXISTS (SELECT 1 FROM sightings s WHERE s.incident_id = i.id AND "
                       f"({_prefix('s.source', mark)} OR s.partner = {mark}))")
        params += [where.source, where.source, where.source]
    if where.repository is not None:
        clauses.append("EXISTS (SELECT 1 FROM sightings s WHERE s.incident_id = i.id AND "
                       f"{_prefix('s.repository', mark)})")
        params += [where.repository, where.repository]
    if where.seen_from is not None:
        clauses.append(f"i.last_seen >= {mark}")
        params.append(iso(where.seen_from))
    if where.seen_to is not None:
        clauses.append(f"i.last_seen < {mark}")
        params.append(iso(where.seen_to))
    if where.sha256_prefix is not None:  # a range, so the unique index answers it
        clauses.append(f"i.sha256 >= {mark} AND i.sha256 < {mark}")
        params += [where.sha256_prefix, where.sha256_prefix + "g"]
    if where.redacted is not None:
        clauses.append(_prefix("i.redacted", mark))
        params += [where.redacted, where.redacted]
    if after is not None:
        clauses.append(f"(i.last_seen, i.id) < ({mark}, {mark})")
        params += [after.last_seen, after.id]
    sql = f"SELECT {_COLUMNS} FROM incidents i"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY i.last_seen DESC, i.id DESC LIMIT {mark}"
    params.append(int(limit))
    return sql, params


class Browse:
    """The dashboard's reads, mixed into both stores (each gives ``_rows`` and ``_mark``)."""

    _mark: ClassVar[str]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def browse_incidents(self, where: IncidentFilter, *, after: Cursor | None = None,
                         limit: int = 50) -> list[dict[str, Any]]:
        """One page of incidents matching ``where``, newest first, after ``after``."""
        sql, params = browse_query(self._mark, where, after=after, limit=limit)
        return self._rows(sql, params)

    def incident_counts(self) -> list[dict[str, Any]]:
        """How many incidents per (triage, severity): the overview's table, from the
        ``incidents(triage, severity)`` index alone (no scan of the rows)."""
        return self._rows("SELECT triage, severity, count(*) AS n FROM incidents "
                          "GROUP BY triage, severity ORDER BY triage, severity")

    def status_counts(self) -> list[dict[str, Any]]:
        """How many incidents per revoke status (the ``incidents(status, ...)`` index)."""
        return self._rows("SELECT status, count(*) AS n FROM incidents GROUP BY status "
                          "ORDER BY status")

    def incident_notifications(self, incident_id: int) -> list[dict[str, Any]]:
        """The outbox rows of one incident (one per event and channel): what was sent
        where, when, and what is still waiting or failing."""
        m = self._mark
        return self._rows("SELECT id, event_id, kind, channel, created_at, attempts, sent_at, "
                          f"last_error, answer FROM outbox WHERE incident_id = {m} "
                          "ORDER BY id", [int(incident_id)])

    def incidents_per_day(self, since: datetime) -> list[dict[str, Any]]:
        """Incidents first seen per UTC day since ``since`` (days without one absent).
        ``last_seen >= since`` too (never earlier than first_seen): the list's index
        narrows the scan to the recent incidents."""
        m = self._mark
        return self._rows(f"SELECT substr(first_seen, 1, 10) AS day, count(*) AS n "
                          f"FROM incidents WHERE last_seen >= {m} AND first_seen >= {m} "
                          "GROUP BY substr(first_seen, 1, 10) ORDER BY day",
                          [iso(since), iso(since)])

    def revoke_times(self, since: datetime, *, limit: int = 100_000) -> list[dict[str, Any]]:
        """(first_seen, revoked_at) of the incidents we revoked since ``since``: the first
        ``revoked`` event of each (an ``already_revoked`` is someone else's revoke)."""
        m = self._mark
        return self._rows(
            "SELECT i.first_seen AS first_seen, min(e.at) AS revoked_at FROM events e "
            f"JOIN incidents i ON i.id = e.incident_id WHERE e.kind = 'revoked' AND e.at >= {m} "
            f"GROUP BY i.id, i.first_seen ORDER BY min(e.at) DESC LIMIT {m}",
            [iso(since), int(limit)])
