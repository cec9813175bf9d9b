"""The incident store: every SQL statement of the project lives in this one module.

SQLite through sqlite-utils, in WAL mode with ``synchronous=FULL`` (an acknowledged
report or a queued revoke survives a power cut) and a busy timeout (a receiver and a
sweep may share one file). Write transactions start with ``BEGIN IMMEDIATE`` and stay
short, so two processes queue for the write lock instead of failing half-way. Callers
never see SQL, so a server database could be added behind the same methods later.

No raw token ever reaches this module: it takes :class:`TokenRef` (hash and redacted
form) only. And since the texts beside it (a partner's URL, a Cendis owner name, an
error detail) come from outside, every text bound to a statement passes
:func:`~scanner.scrub.scrub` in the connection itself (:class:`_ScrubbedConnection`):
no method, present or future, can store a token or a control character.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlite_utils

from scanner.incidents.models import (
    CLOSED,
    QueueEntry,
    Recorded,
    RevokeOutcome,
    Sighting,
    Status,
    TokenRef,
    severity_of,
    utcnow,
)
from scanner.scrub import is_clean, scrub

SCHEMA_VERSION = 2
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction
#: The furthest ahead a queue timestamp is set (a lease, a backoff, a Retry-After):
#: any delay, even 1e12 or inf, becomes a date that exists.
MAX_AHEAD = 366 * 86400.0
#: A queued token this close to its next_attempt_at is due (a timer may fire a tick early).
DUE_SLACK = 0.001

# Version 1 (the first release) had only these two tables and a version row:
#   incidents(id, sha256 UNIQUE, redacted, first_seen, last_seen, status)
#   sightings(id, incident_id, source, url, "commit", path, line, received_at)
# Version 2 adds the API's answer to incidents, richer sightings (deduplicated), the
# event log, the durable revoke queue, and the receiver's key cache and delivery ids.

_INCIDENT_V2_COLUMNS = {
    "severity": str, "owner": str, "token_name": str, "org": str, "scopes": str,
    "revoke_attempts": int, "last_error": str, "updated_at": str,
}
_SIGHTING_V2_COLUMNS = {
    "partner": str, "repository": str, "author": str, "record_type": str,
    "record_source": str, "delivery_id": str,
}
_SIGHTING_KEY = ("incident_id, source, coalesce(url, ''), coalesce(delivery_id, ''), "
                 "coalesce(\"commit\", ''), coalesce(path, '')")


def _scrubbed(parameters: Any) -> Any:
    """Statement parameters with every text scrubbed (tokens in any form redacted,
    control characters escaped). Idempotent, so a stored value looked up again matches."""
    values = parameters.values() if isinstance(parameters, dict) else parameters
    texts = [v for v in values if isinstance(v, str)]
    joined = "\n".join(texts)  # one check for the whole statement: nearly always clean
    if joined.count("\n") == len(texts) - 1 and is_clean(joined) or not texts:
        return parameters
    if isinstance(parameters, dict):
        return {k: scrub(v) if isinstance(v, str) else v for k, v in parameters.items()}
    return [scrub(v) if isinstance(v, str) else v for v in parameters]


class _ScrubbedConnection(sqlite3.Connection):
    """The store's one boundary: every ``execute`` and ``executemany`` (sqlite-utils
    goes through these too) binds scrubbed text only."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, _scrubbed(parameters))

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        return super().executemany(sql, (_scrubbed(p) for p in seq_of_parameters))


def _iso(moment: datetime) -> str:
    """One textual form, so timestamps compare as strings."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _after(moment: datetime, seconds: float) -> str:
    """``moment`` plus a delay, as stored text. The delay is bounded first (nan and
    negatives are 0, the rest at most MAX_AHEAD): no delay can overflow a datetime."""
    bounded = min(seconds, MAX_AHEAD) if seconds > 0 else 0.0  # nan > 0 is False
    return _iso(moment + timedelta(seconds=bounded))


def claim_owner(tag: str) -> str:
    """A revoker's name in the queue's claims: this host and process, and a tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}"


def _claim_alive(owner: str | None) -> bool:
    """False when the claim's process is known to be gone (same host, no such pid)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's: trust its lease
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _since_text(since: datetime | date | str) -> str:
    if isinstance(since, datetime):
        return _iso(since)
    if isinstance(since, date):
        return _iso(datetime(since.year, since.month, since.day, tzinfo=UTC))
    return _since_text(datetime.fromisoformat(since))


class Store:
    """One open incident database. Safe to share between threads (one lock)."""

    def __init__(self, db: sqlite_utils.Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self._now = now
        self._lock = threading.RLock()

    # -- opening, schema and migrations ------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
             busy_timeout: float = BUSY_TIMEOUT) -> Store:
        """Open (creating or migrating) the database at ``path``."""
        conn = sqlite3.connect(os.fspath(path), timeout=busy_timeout, check_same_thread=False,
                               factory=_ScrubbedConnection)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("claim_alive", 1, _claim_alive)
        store = cls(sqlite_utils.Database(conn, execute_plugins=False), now)
        store._migrate()
        return store

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str], *,
                      now: Callable[[], datetime] = utcnow) -> Store:
        """Open an existing database for reading only (``incidents list``/``show``): it
        works on a read-only file or mount and never creates anything beside the file.

        SQLite's ``mode=ro`` still creates the ``-wal`` and ``-shm`` files of a WAL
        database when it may (as root, or in a writable folder). So when no ``-wal``
        file is there (no writer has the database open, everything is in the main file),
        the file is opened ``immutable``, which creates nothing; with a ``-wal`` (a
        receiver running), plain ``mode=ro`` reads the writer's latest commits too, and
        if the folder refuses it the ``immutable`` read is the fallback. Never migrates:
        a database that is not at this version is an error that says so."""
        from urllib.parse import quote

        from scanner.errors import ConfigError, short

        name = os.fspath(path)
        uri = "file:" + quote(os.path.abspath(name)) + "?mode=ro"
        queries = ([""] if os.path.exists(name + "-wal") else []) + ["&immutable=1"]
        for index, extra in enumerate(queries):
            conn = sqlite3.connect(uri + extra, uri=True, check_same_thread=False)
            try:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                break
            except sqlite3.OperationalError:
                conn.close()
                if index == len(queries) - 1:
                    raise
        conn.create_function("claim_alive", 1, _claim_alive)
        store = cls(sqlite_utils.Database(conn, execute_plugins=False), now)
        version = store.schema_version()
        if version != SCHEMA_VERSION:
            store.close()
            what = ("holds no incident tables" if version == 0 else
                    f"is at schema {version}, this cendis-scan reads {SCHEMA_VERSION} "
                    "(a writing command such as 'serve' or 'scan --record' upgrades it)"
                    if version < SCHEMA_VERSION else
                    f"is at schema {version}, newer than this cendis-scan: upgrade it")
            raise ConfigError(f"{short(name, 80)}: not a readable incident database: it {what}")
        return store

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite_utils.Database]:
        """One short write transaction, holding the write lock from its first statement."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.conn.rollback()
                raise
            self.db.conn.commit()

    def schema_version(self) -> int:
        if not self.db["schema_version"].exists():
            return 0
        row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self._write() as db:  # one process migrates; the others wait, then see v2
            version = self.schema_version()
            if version == 0:
                self._create_v1(db)
                version = 1
            if version == 1:
                self._migrate_v1_to_v2(db)
                version = 2
            if version != SCHEMA_VERSION:
                from scanner.errors import ConfigError

                raise ConfigError(f"incident database schema {version} is newer than this "
                                  f"cendis-scan ({SCHEMA_VERSION}): upgrade cendis-scan")

    def _create_v1(self, db: sqlite_utils.Database) -> None:
        db.table("schema_version").create({"version": int}, not_null={"version"})
        db.table("incidents").create(
            {"id": int, "sha256": str, "redacted": str, "first_seen": str, "last_seen": str,
             "status": str}, pk="id", not_null={"sha256", "redacted", "status"})
        db.execute("CREATE UNIQUE INDEX incidents_sha256 ON incidents(sha256)")
        db.table("sightings").create(
            {"id": int, "incident_id": int, "source": str, "url": str, "commit": str,
             "path": str, "line": int, "received_at": str},
            pk="id", foreign_keys=[("incident_id", "incidents", "id")])
        db.execute("INSERT INTO schema_version(version) VALUES (1)")

    def _migrate_v1_to_v2(self, db: sqlite_utils.Database) -> None:
        for name, kind in _INCIDENT_V2_COLUMNS.items():
            db.table("incidents").add_column(name, kind)
        db.execute("UPDATE incidents SET severity = 'unknown', revoke_attempts = 0, "
                   "updated_at = last_seen")
        for name, kind in _SIGHTING_V2_COLUMNS.items():
            db.table("sightings").add_column(name, kind)
        # v1 stored repeated sightings; v2 keeps one of each (they were identical).
        db.execute(f"DELETE FROM sightings WHERE id NOT IN "
                   f"(SELECT min(id) FROM sightings GROUP BY {_SIGHTING_KEY})")
        db.execute(f"CREATE UNIQUE INDEX sightings_identity ON sightings({_SIGHTING_KEY})")
        db.execute("CREATE INDEX sightings_incident ON sightings(incident_id)")
        db.table("events").create(
            {"id": int, "incident_id": int, "at": str, "kind": str, "detail": str},
            pk="id", not_null={"incident_id", "at", "kind"},
            foreign_keys=[("incident_id", "incidents", "id")])
        db.execute("CREATE INDEX events_incident ON events(incident_id)")
        db.table("revoke_queue").create(
            {"seq": int, "sha256": str, "incident_id": int, "source": str, "url": str,
             "enqueued_at": str, "next_attempt_at": str, "attempts": int, "uncertain": int,
             "lost": int, "last_error": str, "claimed_by": str, "claimed_until": str},
            pk="seq", not_null={"sha256", "incident_id", "source", "enqueued_at"},
            defaults={"attempts": 0, "uncertain": 0, "lost": 0, "url": ""})
        db.execute("CREATE UNIQUE INDEX revoke_queue_sha256 ON revoke_queue(sha256)")
        db.table("partner_keys").create({"partner": str, "keys": str, "etag": str,
                                   "fetched_at": str}, pk="partner")
        db.table("deliveries").create({"partner": str, "delivery_id": str, "received_at": str},
                                pk=("partner", "delivery_id"))
        db.table("probe").create({"id": int, "at": str}, pk="id")
        now = _iso(self._now())
        # Incidents a v1 database left pending were never revoked: queue them now.
        db.execute(
            "INSERT INTO revoke_queue(sha256, incident_id, source, url, enqueued_at, "
            "next_attempt_at) SELECT i.sha256, i.id, coalesce((SELECT s.source FROM sightings "
            "s WHERE s.incident_id = i.id ORDER BY s.id LIMIT 1), 'migrated'), '', ?, ? "
            "FROM incidents i WHERE i.status = 'pending'", [now, now])
        db.execute("INSERT INTO events(incident_id, at, kind, detail) SELECT id, ?, "
                   "'migrated', 'schema 1 to 2' FROM incidents", [now])
        db.execute("UPDATE schema_version SET version = 2")

    # -- recording ------------------------------------------------------------------

    def record(self, items: Sequence[tuple[TokenRef, Sighting]], *, revoke: bool,
               false_positive: Collection[str] = ()) -> list[Recorded]:
        """Record a batch in ONE transaction, committed before this returns."""
        now = _iso(self._now())
        results: list[Recorded] = []
        with self._write() as db:
            for ref, sighting in items:
                results.append(self._record_one(db, ref, sighting, now, revoke=revoke,
                                                false_positive=ref.sha256 in false_positive))
        return results

    def _record_one(self, db: sqlite_utils.Database, ref: TokenRef, sighting: Sighting,
                    now: str, *, revoke: bool, false_positive: bool) -> Recorded:
        seen = _iso(sighting.received_at)
        if false_positive:
            initial = Status.FALSE_POSITIVE
        else:
            initial = Status.PENDING if revoke else Status.RECORDED
        cursor = db.execute(
            "INSERT OR IGNORE INTO incidents(sha256, redacted, first_seen, last_seen, status, "
            "severity, revoke_attempts, updated_at) VALUES (?, ?, ?, ?, ?, 'unknown', 0, ?)",
            [ref.sha256, ref.redacted, seen, seen, initial.value, now])
        new_incident = cursor.rowcount == 1
        incident_id, status_text = db.execute(
            "SELECT id, status FROM incidents WHERE sha256 = ?", [ref.sha256]).fetchone()
        status = Status(status_text)
        if not new_incident:
            db.execute("UPDATE incidents SET last_seen = max(last_seen, ?), "
                       "first_seen = min(first_seen, ?) WHERE id = ?", [seen, seen, incident_id])
        cursor = db.execute(
            "INSERT OR IGNORE INTO sightings(incident_id, source, partner, repository, url, "
            "\"commit\", path, line, author, record_type, record_source, delivery_id, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [incident_id, sighting.source, sighting.partner, sighting.repository, sighting.url,
             sighting.commit, sighting.path, sighting.line, sighting.author,
             sighting.record_type, sighting.record_source, sighting.delivery_id, seen])
        new_sighting = cursor.rowcount == 1
        if new_sighting:
            self._event(db, incident_id, now, "received", sighting.source)
        if false_positive and status not in CLOSED:
            status = Status.FALSE_POSITIVE
            db.execute("UPDATE incidents SET status = ?, updated_at = ? WHERE id = ?",
                       [status.value, now, incident_id])
            db.execute("DELETE FROM revoke_queue WHERE sha256 = ?", [ref.sha256])
            self._event(db, incident_id, now, "false_positive", "not a Cendis token by format")
        elif revoke and status not in CLOSED:
            queued = db.execute(
                "INSERT OR IGNORE INTO revoke_queue(sha256, incident_id, source, url, "
                "enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
                [ref.sha256, incident_id, sighting.source, sighting.url or "", now, now])
            if queued.rowcount == 1:
                self._event(db, incident_id, now, "queued", sighting.source)
            if status is not Status.PENDING:
                status = Status.PENDING
                db.execute("UPDATE incidents SET status = ?, updated_at = ? WHERE id = ?",
                           [status.value, now, incident_id])
        return Recorded(incident_id=incident_id, sha256=ref.sha256, status=status,
                        new_incident=new_incident, new_sighting=new_sighting)

    @staticmethod
    def _event(db: sqlite_utils.Database, incident_id: int, at: str, kind: str,
               detail: str | None = None) -> None:
        db.execute("INSERT INTO events(incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                   [incident_id, at, kind, detail])

    def writable(self) -> bool:
        """A cheap write probe for /readyz: one tiny committed write."""
        try:
            with self._write() as db:
                db.execute("INSERT OR REPLACE INTO probe(id, at) VALUES (1, ?)",
                           [_iso(self._now())])
        except sqlite3.Error:
            return False
        return True

    # -- reading incidents ------------------------------------------------------------

    @staticmethod
    def _incident_dict(row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row["scopes"] = json.loads(row["scopes"]) if row.get("scopes") else []
        return row

    def get_incident(self, ident: int | str) -> dict[str, Any] | None:
        """By id, or by a unique prefix (4+ hex digits) of the token's SHA-256."""
        with self._lock:
            text = str(ident).strip().lower()
            if isinstance(ident, int) or text.isdigit() and len(text) < 4:
                rows = list(self.db.query("SELECT * FROM incidents WHERE id = ?", [int(text)]))
            else:
                if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
                    return None
                rows = list(self.db.query(
                    "SELECT * FROM incidents WHERE sha256 >= ? AND sha256 < ? LIMIT 2",
                    [text, text + "g"]))
                if not rows and text.isdigit() and int(text) < 1 << 63:
                    rows = list(self.db.query("SELECT * FROM incidents WHERE id = ?",
                                              [int(text)]))
            if len(rows) != 1:
                return None
            incident = self._incident_dict(rows[0])
            incident["sightings"] = list(self.db.query(
                "SELECT source, partner, repository, url, \"commit\", path, line, author, "
                "record_type, record_source, delivery_id, received_at FROM sightings "
                "WHERE incident_id = ? ORDER BY id", [incident["id"]]))
            incident["events"] = list(self.db.query(
                "SELECT at, kind, detail FROM events WHERE incident_id = ? ORDER BY id",
                [incident["id"]]))
            return incident

    def list_incidents(self, *, status: str | None = None, severity: str | None = None,
                       since: datetime | date | str | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first (by last sighting), with the number of sightings."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
        if severity is not None:
            where.append("severity = ?")
            params.append(str(severity))
        if since is not None:
            where.append("last_seen >= ?")
            params.append(_since_text(since))
        sql = ("SELECT i.*, (SELECT count(*) FROM sightings s WHERE s.incident_id = i.id) "
               "AS sightings FROM incidents i")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY last_seen DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            return [self._incident_dict(row) for row in self.db.query(sql, params)]

    def status_of(self, sha256: str) -> Status | None:
        with self._lock:
            row = self.db.execute("SELECT status FROM incidents WHERE sha256 = ?",
                                  [sha256]).fetchone()
        return Status(row[0]) if row else None

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
        if not row[1]:
            return 0.0
        due = datetime.fromisoformat(row[1])
        return max(0.0, (due - self._now()).total_seconds())

    def oldest_pending_age(self) -> float | None:
        with self._lock:
            row = self.db.execute("SELECT min(enqueued_at) FROM revoke_queue").fetchone()
        if not row or row[0] is None:
            return None
        return max(0.0, (self._now() - datetime.fromisoformat(row[0])).total_seconds())

    # -- the revoke queue (used by the revoker) ----------------------------------------

    def claim_batch(self, limit: int, *, owner: str, lease: float,
                    only: str | None = None) -> list[QueueEntry]:
        """Claim the oldest unclaimed queued tokens that share the oldest one's source (one
        API call names one source), and record the attempt, in one transaction.

        The claim keeps two processes sharing the file (a receiver, a sweep, a CLI
        ``--revoke``) from sending the same token twice. It ends with the answer, or
        when released after a failure, or after ``lease`` seconds, or at once when the
        process that holds it is gone (a crash: ``owner`` is ``host:pid:...``).

        The attempt is written (and fsynced) BEFORE the call. ``uncertain`` stays set
        until Cendis answers; still set at the next attempt, it means that call's answer
        was lost (timeout, crash) and is kept in ``lost``: an ``already_revoked`` then is
        our own earlier revoke. A token whose ``next_attempt_at`` is still ahead (a
        backoff or Retry-After, from any process) is not claimed."""
        now = self._now()
        stamp = _iso(now)
        until = _after(now, lease)
        free = ("(claimed_by IS NULL OR claimed_until < ? OR claimed_by = ? "
                "OR NOT claim_alive(claimed_by))")
        # A backoff or a Retry-After holds across processes: nobody sends before it ends.
        due = "(next_attempt_at IS NULL OR next_attempt_at <= ?)"
        due_by = _after(now, DUE_SLACK)
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
            for entry in entries:
                params: list[Any] = [reason]
                sql = ("UPDATE revoke_queue SET last_error = ?, claimed_by = NULL, "
                       "claimed_until = NULL")
                if answered:
                    sql += ", uncertain = 0"
                if retry_in is not None:
                    sql += ", next_attempt_at = ?"
                    params.append(_after(now, retry_in))
                db.execute(sql + " WHERE sha256 = ?", [*params, entry.sha256])
                db.execute("UPDATE incidents SET last_error = ?, updated_at = ? WHERE id = ?",
                           [reason, _iso(now), entry.incident_id])
                self._event(db, entry.incident_id, _iso(now), "revoke_failed", reason)

    def reject(self, entry: QueueEntry, reason: str, detail: str) -> None:
        """A 400 for this token alone: close it as ERROR, never resent unchanged."""
        now = _iso(self._now())
        with self._write() as db:
            db.execute("DELETE FROM revoke_queue WHERE sha256 = ?", [entry.sha256])
            db.execute("UPDATE incidents SET status = ?, last_error = ?, updated_at = ? "
                       "WHERE id = ?", [Status.ERROR.value, reason, now, entry.incident_id])
            self._event(db, entry.incident_id, now, "error", f"{reason}: {detail}")

    def apply_outcomes(self, entries: Sequence[QueueEntry], outcomes: Sequence[RevokeOutcome],
                       *, notify_owner: bool) -> list[Status]:
        """Close the queue entries with the API's answers; one transaction."""
        now = _iso(self._now())
        by_sha = {entry.sha256: entry for entry in entries}
        statuses: list[Status] = []
        updates: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        with self._write() as db:
            marks = ",".join("?" * len(outcomes))
            lost = {row[0] for row in db.execute(
                f"SELECT sha256 FROM revoke_queue WHERE lost AND sha256 IN ({marks})",
                [o.sha256 for o in outcomes])}
            for outcome in outcomes:
                incident_id = by_sha[outcome.sha256].incident_id
                status = outcome.status
                detail = None
                if status is Status.ALREADY_REVOKED and outcome.sha256 in lost:
                    # An earlier call of ours had no answer (timeout or crash): that call
                    # is what revoked it.
                    status = Status.REVOKED
                    detail = "by an earlier call whose answer was lost"
                scopes = (json.dumps(list(outcome.scopes))
                          if outcome.token_name is not None or outcome.scopes else None)
                updates.append((status.value, outcome.owner, outcome.token_name, outcome.org,
                                scopes, severity_of(outcome.scopes).value, now, incident_id))
                events.append((incident_id, now, status.value, detail))
                if outcome.status is Status.REVOKED and notify_owner:
                    events.append((incident_id, now, "notified", "Cendis emails the owner"))
                statuses.append(status)
            conn = db.conn
            conn.executemany(
                "UPDATE incidents SET status = ?, owner = coalesce(?, owner), "
                "token_name = coalesce(?, token_name), org = coalesce(?, org), "
                "scopes = coalesce(?, scopes), severity = ?, last_error = NULL, "
                "updated_at = ? WHERE id = ?", updates)
            conn.executemany("DELETE FROM revoke_queue WHERE sha256 = ?",
                             [(o.sha256,) for o in outcomes])
            conn.executemany("INSERT INTO events(incident_id, at, kind, detail) "
                             "VALUES (?, ?, ?, ?)", events)
        return statuses

    # -- the receiver's partner keys and delivery ids ---------------------------------

    def save_partner_keys(self, partner: str, keys: list[dict[str, Any]],
                          etag: str | None) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO partner_keys(partner, keys, etag, fetched_at) "
                       "VALUES (?, ?, ?, ?)",
                       [partner, json.dumps(keys), etag, _iso(self._now())])

    def load_partner_keys(self, partner: str) -> tuple[list[dict[str, Any]], str | None,
                                                       datetime | None] | None:
        with self._lock:
            row = self.db.execute("SELECT keys, etag, fetched_at FROM partner_keys "
                                  "WHERE partner = ?", [partner]).fetchone()
        if row is None:
            return None
        fetched = datetime.fromisoformat(row[2]) if row[2] else None
        return json.loads(row[0]), row[1], fetched

    def remember_delivery(self, partner: str, delivery_id: str) -> bool:
        """True the first time a delivery id is seen, False for a redelivery."""
        with self._write() as db:
            cursor = db.execute("INSERT OR IGNORE INTO deliveries(partner, delivery_id, "
                                "received_at) VALUES (?, ?, ?)",
                                [partner, delivery_id, _iso(self._now())])
            return cursor.rowcount == 1
