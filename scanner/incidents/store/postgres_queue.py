"""The durable revoke queue on PostgreSQL (claims, leases, outcomes), mixed into
:class:`~scanner.incidents.store.postgres.PostgresStore`.

The same rules as :mod:`.sqlite_queue`, written for a server that is a network round
trip away: every call is a fixed number of round trips whatever the batch size
(set-based statements over ``unnest`` of arrays, sent in pipeline mode, the commit in
the last one), never one per token.

- A claim is one statement: the head's source, the rows of that source, all locked
  with ``FOR UPDATE SKIP LOCKED`` (a revoker never waits on another's claim nor picks
  the rows another is claiming), their attempt, the incidents' attempt counts and the
  events, in data-modifying CTEs. Before it, one read of the processes holding claims,
  so a dead process's claims (same host, pid gone) are free at once.
- The claim walks the primary key (``seq``) from the head until the batch is full. Its
  source test is written ``coalesce(source = ..., false)`` so the planner cannot take
  it for a rare value: on a queue not yet analysed (a fresh backfill of 10,000) it
  estimates any equality at 0.5 % of the rows, and then sorts the whole queue instead
  (measured: 9 ms against 0.3 ms per claim of 100 from 10,000).
- ``revoke_queue_claimed`` (a partial index on the rows under a claim, see
  :mod:`.postgres_schema`) makes the read of the live claims a few rows, not the queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import psycopg

from scanner.incidents.models import NotifyEvent, QueueEntry, RevokeOutcome, Router, Status
from scanner.incidents.store.common import (
    DUE_SLACK,
    after,
    claim_alive,
    iso,
    scrubbed,
    seconds_until,
)
from scanner.incidents.store.sqlite_queue import outcome_rows
from scanner.incidents.store.triage import channels, failing_for

_FREE = ("(claimed_by IS NULL OR claimed_until < %(now)s OR claimed_by = %(owner)s "
         "OR claimed_by = ANY(%(dead)s::text[]))")
_DUE = "(next_attempt_at IS NULL OR next_attempt_at <= %(due)s)"
_CLAIMED = ("UPDATE revoke_queue q SET attempts = q.attempts + 1, "
            "lost = greatest(q.lost, q.uncertain), uncertain = 1, claimed_by = %(owner)s, "
            "claimed_until = %(until)s WHERE q.seq = ANY(ARRAY(SELECT seq FROM picked)) "
            "RETURNING q.seq, q.sha256, q.incident_id, q.source, q.url, q.attempts")
_ATTEMPTED = (", counted AS (UPDATE incidents SET revoke_attempts = revoke_attempts + 1 "
              "WHERE id = ANY(ARRAY(SELECT incident_id FROM claimed))), "
              "logged AS (INSERT INTO events(incident_id, at, kind) "
              "SELECT incident_id, %(now)s, 'revoke_attempted' FROM claimed ORDER BY seq) "
              "SELECT seq, sha256, incident_id, source, url, attempts FROM claimed")
#: The head's source, then up to ``limit`` free, due rows of that source, oldest first.
CLAIM = (f"WITH head AS (SELECT source FROM revoke_queue WHERE {_FREE} AND {_DUE} "
         "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED), "
         "picked AS (SELECT seq FROM revoke_queue WHERE coalesce(source = (SELECT source FROM "
         "head), false) "
         f"AND {_FREE} AND {_DUE} ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
         f"claimed AS ({_CLAIMED}){_ATTEMPTED}")
#: One given token (a refused batch, token by token).
CLAIM_ONE = (f"WITH picked AS (SELECT seq FROM revoke_queue WHERE sha256 = %(only)s AND "
             f"{_FREE} AND {_DUE} FOR UPDATE SKIP LOCKED), claimed AS ({_CLAIMED})"
             f"{_ATTEMPTED}")


def rows_of(*columns: str) -> str:
    """SQL for the rows of one :func:`json_rows` parameter, as a subquery: each column
    ``"name type"`` from its position in a row, and ``n`` the row's position (a
    statement orders by it, so generated ids follow the given order)."""
    select = ", ".join(f"(r->>{index})::{kind} AS {name}"
                       for index, (name, kind) in enumerate(c.split() for c in columns))
    return (f"(SELECT {select}, n FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY "
            "AS e(r, n))")


def json_rows(rows: Sequence[Sequence[Any]], width: int) -> str:
    """Rows as one parameter: a JSON array of arrays, read back by :func:`rows_of`. One
    text for the whole batch (psycopg dumps arrays element by element in Python, and a
    batch may hold 10,000 rows; ``json.dumps`` is C). Every text is scrubbed, as every
    bound text is: one check per column, since a column is nearly always clean (a
    redacted form, with the prefix in it, is checked value by value)."""
    columns = [scrubbed([row[column] for row in rows]) for column in range(width)]
    return json.dumps(list(zip(*columns, strict=True)), ensure_ascii=False,
                      separators=(",", ":"))


def json_list(values: Sequence[Any]) -> str:
    """A list as one JSON parameter (``IN (SELECT jsonb_array_elements_text(...))``)."""
    return json.dumps(list(scrubbed(list(values))), ensure_ascii=False)


#: Events (incident, at, kind, detail, actor) in their given order (ids follow it).
EVENTS = ("INSERT INTO events(incident_id, at, kind, detail, actor) SELECT i, a, k, d, w FROM "
          + rows_of("i bigint", "a text", "k text", "d text", "w text") + " u ORDER BY n")
#: The same, and the outbox rows of those events the router named channels for: rows
#: of (1-based position of the event in the batch, notify kind, channel).
EVENTS_NOTIFY = (
    "WITH ev AS (" + EVENTS + " RETURNING id, incident_id), "
    "numbered AS (SELECT id, incident_id, row_number() OVER (ORDER BY id) AS pos FROM ev), "
    "boxed AS (INSERT INTO outbox(event_id, incident_id, kind, channel, idem_key, "
    "created_at, next_attempt_at) SELECT v.id, v.incident_id, c.nk, c.ch, "
    "'evt_' || v.id || '_' || c.ch, %s, %s FROM numbered v JOIN "
    + rows_of("p bigint", "nk text", "ch text") + " c ON c.p = v.pos ORDER BY v.id, c.n "
    "RETURNING 1) SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM boxed)")
#: The API's answers written to their incidents (one row each).
OUTCOMES = (
    "UPDATE incidents i SET status = u.status, owner = coalesce(u.owner, i.owner), "
    "token_name = coalesce(u.token_name, i.token_name), org = coalesce(u.org, i.org), "
    "scopes = coalesce(u.scopes, i.scopes), severity = u.severity, last_error = NULL, "
    "updated_at = u.at, revoked_at = coalesce(i.revoked_at, u.revoked_at) FROM " + rows_of(
        "status text", "owner text", "token_name text", "org text", "scopes text",
        "severity text", "at text", "revoked_at text", "id bigint") + " u WHERE i.id = u.id")
#: What :meth:`PostgresQueue._failing` decides on: each token's wait and whether its
#: incident already had its ``revoke_failing`` event.
FAILING = ("SELECT q.sha256, q.enqueued_at, i.severity, EXISTS (SELECT 1 FROM events e WHERE "
           "e.incident_id = i.id AND e.kind = 'revoke_failing') FROM revoke_queue q "
           "JOIN incidents i ON i.id = q.incident_id WHERE q.sha256 = ANY(%s)")


def log_events(cur: psycopg.Cursor[Any], events: Sequence[Sequence[Any]],
               notify: dict[int, NotifyEvent], router: Router | None, now: str) -> None:
    """Insert ``events`` (``(incident, at, kind, detail[, actor])``) in order, and one
    outbox row per channel the router names for each event ``notify`` maps (by
    index) to what it routes on: one statement, in the cursor's transaction."""
    if not events:
        return
    rows = [(*event, None) if len(event) == 4 else tuple(event) for event in events]
    boxed = [(index + 1, event.kind, channel) for index, event in sorted(notify.items())
             for channel in channels(router, event)]
    if boxed:
        cur.execute(EVENTS_NOTIFY, [json_rows(rows, 5), now, now, json_rows(boxed, 3)])
    else:
        cur.execute(EVENTS, [json_rows(rows, 5)])


class PostgresQueue:
    router: Router | None
    _now: Callable[[], datetime]
    _pipeline: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _one: Callable[..., tuple[Any, ...] | None]

    def queue_depth(self) -> int:
        row = self._one("SELECT count(*) FROM revoke_queue")
        return int(row[0]) if row else 0

    def next_attempt_in(self) -> float | None:
        """Seconds until the earliest queued token is due (see the SQLite store)."""
        row = self._one("SELECT count(*), min(coalesce(next_attempt_at, '')) "
                        "FROM revoke_queue")
        if not row or not row[0]:
            return None
        return seconds_until(row[1], self._now())

    def oldest_pending_age(self) -> float | None:
        row = self._one("SELECT min(enqueued_at) FROM revoke_queue")
        if not row or row[0] is None:
            return None
        return max(0.0, (self._now() - datetime.fromisoformat(row[0])).total_seconds())

    def claim_batch(self, limit: int, *, owner: str, lease: float,
                    only: str | None = None) -> list[QueueEntry]:
        """As on SQLite (see :meth:`SqliteQueue.claim_batch`): two round trips, the
        holders of live claims (whose processes may be gone), then the claim with its
        attempt written, committed before this returns."""
        now = self._now()
        stamp = iso(now)
        params: dict[str, Any] = {"now": stamp, "owner": owner, "until": after(now, lease),
                                  "due": after(now, DUE_SLACK), "limit": limit, "only": only}
        with self._pipeline() as conn, conn.cursor() as cur:
            cur.execute("SELECT DISTINCT claimed_by FROM revoke_queue WHERE claimed_by IS "
                        "NOT NULL AND claimed_until >= %s AND claimed_by <> %s",
                        [stamp, owner])
            params["dead"] = [h[0] for h in cur.fetchall() if not claim_alive(h[0])]
            cur.execute(CLAIM if only is None else CLAIM_ONE, scrubbed(params))
            conn.commit()
            rows = sorted(cur.fetchall())
        return [QueueEntry(sha256=r[1], incident_id=r[2], source=r[3], url=r[4] or "",
                           attempts=r[5]) for r in rows]

    def attempt_failed(self, entries: Sequence[QueueEntry], reason: str, *,
                       answered: bool, retry_in: float | None = None) -> None:
        """A call failed; the tokens stay queued and their claim is released."""
        if not entries:
            return
        now = self._now()
        sql = "UPDATE revoke_queue SET last_error = %s, claimed_by = NULL, claimed_until = NULL"
        params: list[Any] = [reason]
        if answered:
            sql += ", uncertain = 0"
        if retry_in is not None:
            sql += ", next_attempt_at = %s"
            params.append(after(now, retry_in))
        ids = [e.incident_id for e in entries]
        with self._pipeline() as conn, conn.cursor() as cur:
            events, notify = self._failing(cur, entries, reason)
            cur.execute(sql + " WHERE sha256 = ANY(%s)",
                        scrubbed([*params, [e.sha256 for e in entries]]))
            cur.execute("UPDATE incidents SET last_error = %s, updated_at = %s "
                        "WHERE id = ANY(%s)", scrubbed([reason, iso(now), ids]))
            events += [(i, iso(now), "revoke_failed", reason) for i in ids]
            log_events(cur, events, notify, self.router, iso(now))
            conn.commit()

    def _failing(self, cur: psycopg.Cursor[Any], entries: Sequence[QueueEntry], reason: str
                 ) -> tuple[list[tuple[Any, ...]], dict[int, NotifyEvent]]:
        """The ``revoke_failing`` events due (see :meth:`SqliteQueue._failing`) and what
        they notify; one round trip, only when the router asks for them."""
        router = self.router
        if router is None or router.revoke_failing_after is None or not entries:
            return [], {}
        now = self._now()
        cur.execute(FAILING, [[e.sha256 for e in entries]])
        found = {row[0]: row[1:] for row in cur.fetchall()}
        events: list[tuple[Any, ...]] = []
        notify: dict[int, NotifyEvent] = {}
        for entry in entries:
            enqueued_at, severity, done = found.get(entry.sha256, (None, None, True))
            waited = None if done else failing_for(router, enqueued_at, now)
            if waited is not None:
                notify[len(events)] = NotifyEvent("revoke_failing", severity, entry.source)
                events.append((entry.incident_id, iso(now), "revoke_failing",
                               f"{waited:.0f} s since queued: {reason}"))
        return events, notify

    def reject(self, entry: QueueEntry, reason: str, detail: str) -> None:
        """A 400 for this token alone: close it as ERROR, never resent unchanged."""
        now = iso(self._now())
        with self._pipeline() as conn, conn.cursor() as cur:
            events, notify = self._failing(cur, [entry], reason)
            cur.execute("DELETE FROM revoke_queue WHERE sha256 = %s", [entry.sha256])
            cur.execute("UPDATE incidents SET status = %s, last_error = %s, updated_at = %s "
                        "WHERE id = %s", scrubbed([Status.ERROR.value, reason, now,
                                                   entry.incident_id]))
            events.append((entry.incident_id, now, "error", f"{reason}: {detail}"))
            log_events(cur, events, notify, self.router, now)
            conn.commit()

    def apply_outcomes(self, entries: Sequence[QueueEntry], outcomes: Sequence[RevokeOutcome],
                       *, notify_owner: bool) -> list[Status]:
        """Close the queue entries with the API's answers; one transaction, two round
        trips (which answers were lost, then every write and the commit)."""
        now = iso(self._now())
        shas = [o.sha256 for o in outcomes]
        with self._pipeline() as conn, conn.cursor() as cur:
            seen = conn.cursor()
            cur.execute("SELECT sha256 FROM revoke_queue WHERE lost <> 0 AND "
                        "sha256 = ANY(%s)", [shas])
            seen.execute("SELECT id, first_seen FROM incidents WHERE id = ANY(%s)",
                         [sorted({e.incident_id for e in entries})])
            lost = {row[0] for row in cur.fetchall()}
            statuses, updates, events, notify = outcome_rows(
                entries, outcomes, lost, now, notify_owner=notify_owner,
                first_seen=dict(seen.fetchall()))
            last = {row[-1]: row for row in updates}  # one row per incident: the last wins
            cur.execute(OUTCOMES, [json_rows(list(last.values()), 9)])
            cur.execute("DELETE FROM revoke_queue WHERE sha256 = ANY(%s)", [shas])
            log_events(cur, events, notify, self.router, now)
            conn.commit()
        return statuses
