"""Triage, the event export and the notification outbox on PostgreSQL, mixed into
:class:`~scanner.incidents.store.postgres.PostgresStore`. The same rules as
:mod:`.sqlite_triage`, in a fixed number of round trips:

- Events and their outbox rows go in ONE statement (:func:`.postgres_queue.log_events`),
  so a batch's notifications cost no extra round trip and commit with their events.
- The outbox is claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease, as the revoke
  queue is: two dispatchers never wait on each other nor take the same row; a dead
  process's claims (same host, pid gone) are free at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any

import psycopg

from scanner.incidents.models import NotifyEvent, OutboxEntry, Router, TriageError
from scanner.incidents.store.common import (
    DUE_SLACK,
    TRIAGE_COUNTS,
    after,
    claim_alive,
    event_list_query,
    exported,
    iso,
    scrubbed,
)
from scanner.incidents.store.postgres_queue import log_events
from scanner.incidents.store.triage import clean, plan_triage

_COLUMNS = "id, event_id, incident_id, kind, channel, idem_key, attempts, created_at"
CLAIM = ("WITH picked AS (SELECT id FROM outbox WHERE sent_at IS NULL AND "
         "(next_attempt_at IS NULL OR next_attempt_at <= %(due)s) AND (claimed_by IS NULL "
         "OR claimed_until < %(now)s OR claimed_by = ANY(%(dead)s::text[])) {channel}"
         "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
         "UPDATE outbox o SET claimed_by = %(owner)s, claimed_until = %(until)s "
         f"WHERE o.id = ANY(ARRAY(SELECT id FROM picked)) RETURNING {_COLUMNS}")


class PostgresTriage:
    router: Router | None
    _now: Callable[[], datetime]
    _conn: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _pipeline: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _one: Callable[..., tuple[Any, ...] | None]
    _rows: Callable[..., list[dict[str, Any]]]
    get_incident: Callable[[int | str], dict[str, Any] | None]

    def triage(self, ident: int | str, action: str, *, actor: str, reason: str | None = None,
               assignee: str | None = None, note: str | None = None,
               force: bool = False) -> dict[str, Any]:
        """As on SQLite (:meth:`.SqliteTriage.triage`): the incident row locked
        (``FOR UPDATE``) while the action is planned and written with its events."""
        found = self.get_incident(ident)
        if found is None:
            raise TriageError("not_found", f"no incident {clean('actor', str(ident))}")
        incident_id = int(found["id"])
        now = iso(self._now())
        who = clean("actor", actor)
        with self._conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT triage, assignee, severity, coalesce((SELECT source FROM "
                        "sightings WHERE incident_id = i.id ORDER BY id LIMIT 1), 'manual') "
                        "FROM incidents i WHERE id = %s FOR UPDATE", [incident_id])
            row = cur.fetchone()
            assert row is not None  # incidents are never deleted
            current, assigned, severity, source = row
            plan = plan_triage(action, current, assigned, reason=reason, assignee=assignee,
                               note=note, force=force, now=now)
            if plan.updates:
                columns = ", ".join(f"{name} = %s" for name in plan.updates)
                cur.execute(f"UPDATE incidents SET {columns}, updated_at = %s WHERE id = %s",
                            scrubbed([*plan.updates.values(), now, incident_id]))
            events = [(incident_id, now, kind, detail, who) for kind, detail, _ in plan.events]
            notify = {index: NotifyEvent("triage", severity, source)
                      for index, (_, _, notified) in enumerate(plan.events) if notified}
            log_events(cur, events, notify, self.router, now)
        incident = self.get_incident(incident_id)
        assert incident is not None
        return incident

    def triage_counts(self) -> list[tuple[str, str, int]]:
        return [(str(r["severity"]), str(r["triage"]), int(r["count"]))
                for r in self._rows(TRIAGE_COUNTS)]

    def list_events(self, *, since: datetime | date | str | None = None, after_id: int = 0,
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Events in id order after ``after_id`` (``incidents export``), as on SQLite."""
        sql, params = event_list_query("%s", since=since, after_id=after_id, limit=limit)
        return exported(self._rows(sql, params))

    def claim_outbox(self, limit: int, *, owner: str, lease: float,
                     channel: str | None = None) -> list[OutboxEntry]:
        """As on SQLite (:meth:`.SqliteTriage.claim_outbox`); two round trips: the
        holders of live claims (whose processes may be gone), then the claim."""
        now = self._now()
        stamp = iso(now)
        params: dict[str, Any] = {"now": stamp, "due": after(now, DUE_SLACK), "owner": owner,
                                  "until": after(now, lease), "limit": max(0, int(limit)),
                                  "channel": channel}
        sql = CLAIM.format(channel="AND channel = %(channel)s " if channel is not None
                           else "")
        with self._pipeline() as conn, conn.cursor() as cur:
            cur.execute("SELECT DISTINCT claimed_by FROM outbox WHERE sent_at IS NULL AND "
                        "claimed_by IS NOT NULL AND claimed_until >= %s", [stamp])
            params["dead"] = [h[0] for h in cur.fetchall() if not claim_alive(h[0])]
            cur.execute(sql, scrubbed(params))
            conn.commit()
            rows = sorted(cur.fetchall())
        return [OutboxEntry(id=r[0], event_id=r[1], incident_id=r[2], kind=r[3], channel=r[4],
                            idem_key=r[5], attempts=r[6],
                            created_at=datetime.fromisoformat(r[7])) for r in rows]

    def outbox_sent(self, ids: Sequence[int], *, answer: str) -> None:
        """Delivered: never sent again; ``answer`` is what the channel said."""
        self._one("UPDATE outbox SET sent_at = %s, answer = %s, last_error = NULL, "
                  "claimed_by = NULL, claimed_until = NULL WHERE id = ANY(%s)",
                  [iso(self._now()), clean("reason", answer), [int(i) for i in ids]])

    def outbox_failed(self, ids: Sequence[int], *, error: str, retry_in: float) -> None:
        """Not delivered: claim released, due again in ``retry_in`` seconds."""
        self._one("UPDATE outbox SET attempts = attempts + 1, last_error = %s, "
                  "next_attempt_at = %s, claimed_by = NULL, claimed_until = NULL "
                  "WHERE id = ANY(%s) AND sent_at IS NULL",
                  [clean("reason", error), after(self._now(), retry_in),
                   [int(i) for i in ids]])

    def outbox_depth(self) -> int:
        row = self._one("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return int(row[0]) if row else 0

    def outbox_oldest_age(self) -> float | None:
        row = self._one("SELECT min(created_at) FROM outbox WHERE sent_at IS NULL")
        if not row or row[0] is None:
            return None
        return max(0.0, (self._now() - datetime.fromisoformat(row[0])).total_seconds())
