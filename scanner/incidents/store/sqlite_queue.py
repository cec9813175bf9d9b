"""The durable revoke queue on SQLite (claims, leases, outcomes), mixed into
:class:`~scanner.incidents.store.sqlite.SqliteStore`.

SQLite has one writer at a time, so ``BEGIN IMMEDIATE`` is its ``FOR UPDATE SKIP
LOCKED``: a claim is a select and an update in one write transaction, and no two
processes can pick the same row. A claim ends with the answer, a release, its lease, or
at once when its process is gone (``claim_alive``, registered on the connection).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlite_utils

from scanner.incidents.models import (
    NotifyEvent,
    QueueEntry,
    RevokeOutcome,
    Router,
    Status,
    severity_of,
)
from scanner.incidents.store.common import DUE_SLACK, after, iso, seconds_until
from scanner.incidents.store.triage import failing_for, seconds_between

#: The statuses that say the token is dead: the incident's ``revoked_at`` is set, and a
#: ``revoked`` notification goes out.
REVOKED = frozenset({Status.REVOKED, Status.ALREADY_REVOKED})


class SqliteQueue:
    db: sqlite_utils.Database
    _lock: threading.RLock
    _now: Callable[[], datetime]
    _write: Callable[[], AbstractContextManager[sqlite_utils.Database]]
    _event: Callable[..., None]
    _log: Callable[..., int]
    router: Router | None

    def queue_depth(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM revoke_queue").fetchone()[0])

    def next_attempt_in(self) -> float | None:
        """Seconds until the earliest queued token is due (0 when one is due now, if
        claimed), None when the queue is empty: a revoker waits this long instead of
        polling while a backoff (its own or another process's) runs."""
        with self._lock:
            row = self.db.execute("SELECT count(*), min(coalesce(next_attempt_at, '')) "
                                  "FROM revoke_queue").fetchone()
        if not row[0]:
            return None
        return seconds_until(row[1], self._now())

    def oldest_pending_age(self) -> float | None:
        with self._lock:
            row = self.db.execute("SELECT min(enqueued_at) FROM revoke_queue").fetchone()
        if not row or row[0] is None:
            return None
        return max(0.0, (self._now() - datetime.fromisoformat(row[0])).total_seconds())

    def claim_batch(self, limit: int, *, owner: str, lease: float,
                    only: str | None = None) -> list[QueueEntry]:
        """Claim the oldest unclaimed queued tokens that share the oldest one's source (one
        API call names one source), and record the attempt, in one transaction.

        The claim keeps two processes sharing the database (a receiver, a sweep, a CLI
        ``--revoke``) from sending the same token twice. It ends with the answer, or
        when released after a failure, or after ``lease`` seconds, or at once when the
        process that holds it is gone (a crash: ``owner`` is ``host:pid:...``).

        The attempt is written (and fsynced) BEFORE the call. ``uncertain`` stays set
        until Cendis answers; still set at the next attempt, it means that call's answer
        was lost (timeout, crash) and is kept in ``lost``: an ``already_revoked`` then is
        our own earlier revoke. A token whose ``next_attempt_at`` is still ahead (a
        backoff or Retry-After, from any process) is not claimed."""
        now = self._now()
        stamp = iso(now)
        until = after(now, lease)
        free = ("(claimed_by IS NULL OR claimed_until < ? OR claimed_by = ? "
                "OR NOT claim_alive(claimed_by))")
        # A backoff or a Retry-After holds across processes: nobody sends before it ends.
        due = "(next_attempt_at IS NULL OR next_attempt_at <= ?)"
        due_by = after(now, DUE_SLACK)
        columns = "sha256, incident_id, source, url, attempts"
        with self._write() as db:
            if only is not None:  # one given token (a refused batch, token by token)
                rows = db.execute(f"SELECT {columns} FROM revoke_queue WHERE sha256 = ? "
                                  f"AND {free} AND {due}",
                                  [only, stamp, owner, due_by]).fetchall()
            else:
                head = db.execute(f"SELECT source FROM revoke_queue WHERE {free} AND {due} "
                                  "ORDER BY seq LIMIT 1", [stamp, owner, due_by]).fetchone()
                if head is None:
                    return []
                rows = db.execute(
                    f"SELECT {columns} FROM revoke_queue WHERE source = ? AND {free} "
                    f"AND {due} ORDER BY seq LIMIT ?",
                    [head[0], stamp, owner, due_by, limit]).fetchall()
            entries = [QueueEntry(sha256=r[0], incident_id=r[1], source=r[2], url=r[3] or "",
                                  attempts=r[4] + 1) for r in rows]
            conn = db.conn  # executemany: a batch is 100 rows of each statement
            conn.executemany("UPDATE revoke_queue SET attempts = attempts + 1, "
                             "lost = max(lost, uncertain), uncertain = 1, claimed_by = ?, "
                             "claimed_until = ? WHERE sha256 = ?",
                             [(owner, until, e.sha256) for e in entries])
            conn.executemany("UPDATE incidents SET revoke_attempts = revoke_attempts + 1 "
                             "WHERE id = ?", [(e.incident_id,) for e in entries])
            conn.executemany("INSERT INTO events(incident_id, at, kind) VALUES (?, ?, ?)",
                             [(e.incident_id, stamp, "revoke_attempted") for e in entries])
        return entries

    def attempt_failed(self, entries: Sequence[QueueEntry], reason: str, *,
                       answered: bool, retry_in: float | None = None) -> None:
        """A call failed; the tokens stay queued and their claim is released.
        ``answered``: Cendis said no (nothing was done), so the attempt is no longer
        uncertain."""
        now = self._now()
        with self._write() as db:
            self._failing(db, entries, reason)
            for entry in entries:
                params: list[Any] = [reason]
                sql = ("UPDATE revoke_queue SET last_error = ?, claimed_by = NULL, "
                       "claimed_until = NULL")
                if answered:
                    sql += ", uncertain = 0"
                if retry_in is not None:
                    sql += ", next_attempt_at = ?"
                    params.append(after(now, retry_in))
                db.execute(sql + " WHERE sha256 = ?", [*params, entry.sha256])
                db.execute("UPDATE incidents SET last_error = ?, updated_at = ? WHERE id = ?",
                           [reason, iso(now), entry.incident_id])
                self._event(db, entry.incident_id, iso(now), "revoke_failed", reason)

    def reject(self, entry: QueueEntry, reason: str, detail: str) -> None:
        """A 400 for this token alone: close it as ERROR, never resent unchanged."""
        now = iso(self._now())
        with self._write() as db:
            self._failing(db, [entry], reason)
            db.execute("DELETE FROM revoke_queue WHERE sha256 = ?", [entry.sha256])
            db.execute("UPDATE incidents SET status = ?, last_error = ?, updated_at = ? "
                       "WHERE id = ?", [Status.ERROR.value, reason, now, entry.incident_id])
            self._event(db, entry.incident_id, now, "error", f"{reason}: {detail}")

    def _failing(self, db: sqlite_utils.Database, entries: Sequence[QueueEntry],
                 reason: str) -> None:
        """A ``revoke_failing`` event (notified) for each token that has waited at
        least the router's ``revoke_failing_after`` since it was queued: once per
        incident, ever."""
        router = self.router
        if router is None or router.revoke_failing_after is None:
            return
        now = self._now()
        for entry in entries:
            row = db.execute(
                "SELECT q.enqueued_at, i.severity, EXISTS (SELECT 1 FROM events e WHERE "
                "e.incident_id = i.id AND e.kind = 'revoke_failing') FROM revoke_queue q "
                "JOIN incidents i ON i.id = q.incident_id WHERE q.sha256 = ?",
                [entry.sha256]).fetchone()
            waited = failing_for(router, row[0], now) if row and not row[2] else None
            if waited is not None:
                self._log(db, entry.incident_id, iso(now), "revoke_failing",
                          f"{waited:.0f} s since queued: {reason}",
                          notify=NotifyEvent("revoke_failing", row[1], entry.source))

    def apply_outcomes(self, entries: Sequence[QueueEntry], outcomes: Sequence[RevokeOutcome],
                       *, notify_owner: bool) -> list[Status]:
        """Close the queue entries with the API's answers; one transaction. A revoked
        (or already revoked) token's incident gets its ``revoked_at`` and a ``revoked``
        event (notified) whose detail is the leak-to-revoke time in seconds."""
        now = iso(self._now())
        with self._write() as db:
            marks = ",".join("?" * len(outcomes))
            lost = {row[0] for row in db.execute(
                f"SELECT sha256 FROM revoke_queue WHERE lost AND sha256 IN ({marks})",
                [o.sha256 for o in outcomes])}
            ids = sorted({e.incident_id for e in entries})
            first_seen = dict(db.execute(
                f"SELECT id, first_seen FROM incidents WHERE id IN "
                f"({','.join('?' * len(ids))})", ids).fetchall())
            statuses, updates, events, notified = outcome_rows(
                entries, outcomes, lost, now, notify_owner=notify_owner,
                first_seen=first_seen)
            conn = db.conn
            conn.executemany(
                "UPDATE incidents SET status = ?, owner = coalesce(?, owner), "
                "token_name = coalesce(?, token_name), org = coalesce(?, org), "
                "scopes = coalesce(?, scopes), severity = ?, last_error = NULL, "
                "updated_at = ?, revoked_at = coalesce(revoked_at, ?) WHERE id = ?", updates)
            conn.executemany("DELETE FROM revoke_queue WHERE sha256 = ?",
                             [(o.sha256,) for o in outcomes])
            for index, event in enumerate(events):
                self._log(db, *event, notify=notified.get(index))
        return statuses


def outcome_rows(entries: Sequence[QueueEntry], outcomes: Sequence[RevokeOutcome],
                 lost: set[str], now: str, *, notify_owner: bool,
                 first_seen: dict[int, str] | None = None
                 ) -> tuple[list[Status], list[tuple[Any, ...]], list[tuple[Any, ...]],
                            dict[int, NotifyEvent]]:
    """What the API's answers change, backend-neutral: the final statuses, the incident
    updates, the events, and which of those events (by index) are notified with what.
    An ``already_revoked`` for a token whose earlier call had no answer (``lost``:
    timeout or crash) is our own revoke. A revoke's detail starts with the seconds from
    the token's first report (``first_seen``) to now."""
    by_sha = {entry.sha256: entry for entry in entries}
    statuses: list[Status] = []
    updates: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    notified: dict[int, NotifyEvent] = {}
    for outcome in outcomes:
        entry = by_sha[outcome.sha256]
        incident_id = entry.incident_id
        status = outcome.status
        detail = None
        if status is Status.ALREADY_REVOKED and outcome.sha256 in lost:
            status = Status.REVOKED
            detail = "by an earlier call whose answer was lost"
        severity = severity_of(outcome.scopes).value
        scopes = (json.dumps(list(outcome.scopes))
                  if outcome.token_name is not None or outcome.scopes else None)
        updates.append((status.value, outcome.owner, outcome.token_name, outcome.org,
                        scopes, severity, now, now if status in REVOKED else None,
                        incident_id))
        if status in REVOKED and incident_id not in {e[0] for i, e in enumerate(events)
                                                     if i in notified}:
            took = seconds_between((first_seen or {}).get(incident_id), now)
            if took is not None:
                detail = f"{took:.3f}" + (f" ({detail})" if detail else "")
            notified[len(events)] = NotifyEvent("revoked", severity, entry.source)
        events.append((incident_id, now, status.value, detail))
        if outcome.status is Status.REVOKED and notify_owner:
            events.append((incident_id, now, "notified", "Cendis emails the owner"))
        statuses.append(status)
    return statuses, updates, events, notified


