"""Triage, the event export and the notification outbox on SQLite, mixed into
:class:`~scanner.incidents.store.sqlite.SqliteStore`.

The outbox is claimed as the revoke queue is: a select and an update in one
``BEGIN IMMEDIATE`` transaction (SQLite's ``FOR UPDATE SKIP LOCKED``), under a lease
that a crashed process's claims outlive by at most that lease (or not at all when its
pid is gone on this host). Unlike the queue, an owner does not re-claim its own rows
under a live lease: a dispatcher sending one batch while claiming the next must not
take the first batch twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any

import sqlite_utils

from scanner.incidents.models import NotifyEvent, OutboxEntry, Router, TriageError
from scanner.incidents.store.common import (
    DUE_SLACK,
    TRIAGE_COUNTS,
    after,
    event_list_query,
    exported,
    iso,
)
from scanner.incidents.store.triage import clean, outbox_rows, plan_triage

OUTBOX_INSERT = ("INSERT INTO outbox(event_id, incident_id, kind, channel, idem_key, "
                 "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
#: An outbox row another process may take: not sent, due, and not under a live claim.
_FREE = ("sent_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND "
         "(claimed_by IS NULL OR claimed_until < ? OR NOT claim_alive(claimed_by))")


class SqliteTriage:
    db: sqlite_utils.Database
    router: Router | None
    _lock: threading.RLock
    _now: Callable[[], datetime]
    _write: Callable[[], AbstractContextManager[sqlite_utils.Database]]
    get_incident: Callable[[int | str], dict[str, Any] | None]

    def _log(self, db: sqlite_utils.Database, incident_id: int, at: str, kind: str,
             detail: str | None = None, *, notify: NotifyEvent | None = None,
             actor: str | None = None) -> int:
        """One event, and its outbox rows when ``notify`` names what to route (in the
        caller's transaction); returns the event's id."""
        cursor = db.execute("INSERT INTO events(incident_id, at, kind, detail, actor) "
                            "VALUES (?, ?, ?, ?, ?)", [incident_id, at, kind, detail, actor])
        event_id = int(cursor.lastrowid or 0)
        if notify is not None:
            rows = outbox_rows(self.router, notify, event_id, incident_id, at)
            if rows:
                db.conn.executemany(OUTBOX_INSERT, rows)
        return event_id

    @staticmethod
    def _source_of(db: sqlite_utils.Database, incident_id: int) -> str:
        row = db.execute("SELECT source FROM sightings WHERE incident_id = ? ORDER BY id "
                         "LIMIT 1", [incident_id]).fetchone()
        return str(row[0]) if row else "manual"

    # -- triage ---------------------------------------------------------------------

    def triage(self, ident: int | str, action: str, *, actor: str, reason: str | None = None,
               assignee: str | None = None, note: str | None = None,
               force: bool = False) -> dict[str, Any]:
        """One triage action by ``actor``, its events (and outbox rows) in one
        transaction; the incident as it then stands. Raises :class:`TriageError`."""
        found = self.get_incident(ident)
        if found is None:
            raise TriageError("not_found", f"no incident {clean('actor', str(ident))}")
        incident_id = int(found["id"])
        now = iso(self._now())
        who = clean("actor", actor)
        with self._write() as db:
            current, assigned, severity = db.execute(
                "SELECT triage, assignee, severity FROM incidents WHERE id = ?",
                [incident_id]).fetchone()
            plan = plan_triage(action, current, assigned, reason=reason, assignee=assignee,
                               note=note, force=force, now=now)
            if plan.updates:
                columns = ", ".join(f"{name} = ?" for name in plan.updates)
                db.execute(f"UPDATE incidents SET {columns}, updated_at = ? WHERE id = ?",
                           [*plan.updates.values(), now, incident_id])
            source = self._source_of(db, incident_id) if plan.events else ""
            for kind, detail, notified in plan.events:
                event = NotifyEvent("triage", severity, source) if notified else None
                self._log(db, incident_id, now, kind, detail, notify=event, actor=who)
        incident = self.get_incident(incident_id)
        assert incident is not None
        return incident

    def triage_counts(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return [(str(s), str(t), int(n)) for s, t, n in self.db.execute(TRIAGE_COUNTS)]

    # -- the event export -------------------------------------------------------------

    def list_events(self, *, since: datetime | date | str | None = None, after_id: int = 0,
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Events in id order after ``after_id`` (``incidents export``): each with its
        token's hash and redacted form only, texts scrubbed."""
        sql, params = event_list_query("?", since=since, after_id=after_id, limit=limit)
        with self._lock:
            rows = list(self.db.query(sql, params))
        return exported(rows)

    # -- the outbox -------------------------------------------------------------------

    def claim_outbox(self, limit: int, *, owner: str, lease: float,
                     channel: str | None = None) -> list[OutboxEntry]:
        """Claim the oldest due, unsent, unclaimed rows (of one channel if given) for
        ``lease`` seconds, in one write transaction: no other owner gets them until the
        lease ends, they are sent, or they failed."""
        now = self._now()
        stamp = iso(now)
        params: list[Any] = [after(now, DUE_SLACK), stamp]
        sql = ("SELECT id, event_id, incident_id, kind, channel, idem_key, attempts, "
               f"created_at FROM outbox WHERE {_FREE}")
        if channel is not None:
            sql += " AND channel = ?"
            params.append(channel)
        with self._write() as db:
            rows = db.execute(sql + " ORDER BY id LIMIT ?",
                              [*params, max(0, int(limit))]).fetchall()
            db.conn.executemany("UPDATE outbox SET claimed_by = ?, claimed_until = ? "
                                "WHERE id = ?",
                                [(owner, after(now, lease), row[0]) for row in rows])
        return [OutboxEntry(id=r[0], event_id=r[1], incident_id=r[2], kind=r[3],
                            channel=r[4], idem_key=r[5], attempts=r[6],
                            created_at=datetime.fromisoformat(r[7])) for r in rows]

    def outbox_sent(self, ids: Sequence[int], *, answer: str) -> None:
        """Delivered: never sent again; ``answer`` is what the channel said."""
        now = iso(self._now())
        with self._write() as db:
            db.conn.executemany(
                "UPDATE outbox SET sent_at = ?, answer = ?, last_error = NULL, "
                "claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                [(now, clean("reason", answer), int(i)) for i in ids])

    def outbox_failed(self, ids: Sequence[int], *, error: str, retry_in: float) -> None:
        """Not delivered: the claim is released and the row is due again in
        ``retry_in`` seconds (the dispatcher's backoff and jitter)."""
        now = self._now()
        with self._write() as db:
            db.conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, claimed_by = NULL, claimed_until = NULL "
                "WHERE id = ? AND sent_at IS NULL",
                [(clean("reason", error), after(now, retry_in), int(i)) for i in ids])

    def outbox_depth(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                       .fetchone()[0])

    def outbox_oldest_age(self) -> float | None:
        with self._lock:
            row = self.db.execute("SELECT min(created_at) FROM outbox WHERE sent_at IS NULL"
                                  ).fetchone()
        if not row or row[0] is None:
            return None
        return max(0.0, (self._now() - datetime.fromisoformat(row[0])).total_seconds())
