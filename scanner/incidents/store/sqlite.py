"""The embedded backend: SQLite through sqlite-utils, one file, no server.

WAL mode with ``synchronous=FULL`` (an acknowledged report or a queued revoke survives a
power cut) and a busy timeout (a receiver and a sweep may share one file). Write
transactions start with ``BEGIN IMMEDIATE`` and stay short, so two processes queue for
the write lock instead of failing half-way.

One connection per store, opened with ``check_same_thread=False`` and guarded by one
lock: a store may be used from the event loop's worker threads (the revoker and the
receiver call it through ``asyncio.to_thread``).

No raw token ever reaches this module: it takes :class:`TokenRef` (hash and redacted
form) only. And since the texts beside it (a partner's URL, a Cendis owner name, an
error detail) come from outside, every text bound to a statement passes
:func:`~scanner.scrub.scrub` in the connection itself (:class:`_ScrubbedConnection`):
no method, present or future, can store a token or a control character.

The queue and the receiver's tables are in :mod:`.sqlite_queue` and
:mod:`.sqlite_receiver`; the schema and its migrations in :mod:`.schema`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import sqlite_utils

from scanner.incidents.models import (
    CLOSED,
    NotifyEvent,
    Recorded,
    Router,
    Sighting,
    Status,
    TokenRef,
    Triage,
    utcnow,
)
from scanner.incidents.store import schema
from scanner.incidents.store.browse import Browse
from scanner.incidents.store.common import (
    TABLES,
    DatabaseUnavailable,
    claim_alive,
    foreign_tables,
    incident_list_query,
    iso,
    mask_url,
    schema_problem,
    scrubbed,
)
from scanner.incidents.store.sqlite_queue import SqliteQueue
from scanner.incidents.store.sqlite_receiver import SqliteReceiver
from scanner.incidents.store.sqlite_triage import SqliteTriage

BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction


class _ScrubbedConnection(sqlite3.Connection):
    """The store's one boundary: every ``execute`` and ``executemany`` (sqlite-utils
    goes through these too) binds scrubbed text only."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, scrubbed(parameters))

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        return super().executemany(sql, (scrubbed(p) for p in seq_of_parameters))


def _text(raw: bytes) -> str:
    """A TEXT column's bytes as text. Invalid UTF-8 (a byte another writer stored) is
    read as ``\\xNN``, as the scrub shows a path's undecodable bytes, in the CLI and in
    the API alike: one bad byte must not break every read of the database."""
    return raw.decode("utf-8", "backslashreplace")


class SqliteStore(SqliteQueue, SqliteReceiver, SqliteTriage, Browse):
    """One open incident database file. Safe to share between threads (one lock)."""

    backend = "sqlite"
    _mark = "?"

    def __init__(self, db: sqlite_utils.Database, now: Callable[[], datetime],
                 url: str = "", router: Router | None = None) -> None:
        self.db = db
        self._now = now
        self._lock = threading.RLock()
        self.url = url
        self.router = router  # which channels hear of an event; None: no outbox rows

    # -- opening, schema and migrations ------------------------------------------------

    @classmethod
    def connect(cls, path: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
                busy_timeout: float = BUSY_TIMEOUT, migrate: bool = True,
                router: Router | None = None) -> SqliteStore:
        """Open (creating or migrating, unless ``migrate`` is False) the file at ``path``."""
        try:
            conn = sqlite3.connect(os.fspath(path), timeout=busy_timeout,
                                   check_same_thread=False, factory=_ScrubbedConnection)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"incident database {mask_url(path)}: {exc}") from None
        conn.create_function("claim_alive", 1, claim_alive)
        conn.text_factory = _text
        store = cls(sqlite_utils.Database(conn, execute_plugins=False), now,
                    mask_url(path), router)
        try:
            store.migrate(allowed=migrate)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str], *,
                      now: Callable[[], datetime] = utcnow,
                      router: Router | None = None) -> SqliteStore:
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
            conn = sqlite3.connect(uri + extra, uri=True, check_same_thread=False,
                                   factory=_ScrubbedConnection)
            try:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                break
            except sqlite3.OperationalError:
                conn.close()
                if index == len(queries) - 1:
                    raise
        conn.create_function("claim_alive", 1, claim_alive)
        conn.text_factory = _text
        store = cls(sqlite_utils.Database(conn, execute_plugins=False), now, mask_url(path),
                    router)
        version = store.schema_version()
        problem = schema_problem(version, migrate=False) if version else foreign_tables(
            store.db.table_names()) or ConfigError(
            f"{short(name, 80)}: not a readable incident database: it holds no incident "
            "tables")
        if problem is not None:
            store.close()
            raise problem
        return store

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
             busy_timeout: float = BUSY_TIMEOUT, migrate: bool = True,
             router: Router | None = None) -> SqliteStore:
        """The protocol's ``Store.open``, for this backend: :meth:`connect`."""
        return cls.connect(target, now=now, busy_timeout=busy_timeout, migrate=migrate,
                           router=router)

    def migrate(self, *, allowed: bool = True) -> int:
        """Bring the schema up to date under the write lock (one process migrates, the
        others wait, then see the new version); returns the version found."""
        with self._write() as db:
            return schema.migrate(db, iso(self._now()), allowed=allowed)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> SqliteStore:
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
        with self._lock:
            return schema.schema_version(self.db)

    # -- recording ------------------------------------------------------------------

    def record(self, items: Sequence[tuple[TokenRef, Sighting]], *, revoke: bool,
               false_positive: Collection[str] = (),
               possible: Collection[str] = ()) -> list[Recorded]:
        """Record a batch in ONE transaction, committed before this returns. A new
        incident is ``opened`` (or ``possible``, for a hash in ``possible``: a truncated or
        mistyped token a person must look at); a new sighting of a resolved incident
        reopens it. Each of those events gets its outbox rows in the same transaction."""
        now = iso(self._now())
        results: list[Recorded] = []
        with self._write() as db:
            for ref, sighting in items:
                results.append(self._record_one(db, ref, sighting, now, revoke=revoke,
                                                false_positive=ref.sha256 in false_positive,
                                                possible=ref.sha256 in possible))
        return results

    def _record_one(self, db: sqlite_utils.Database, ref: TokenRef, sighting: Sighting,
                    now: str, *, revoke: bool, false_positive: bool,
                    possible: bool = False) -> Recorded:
        seen = iso(sighting.received_at)
        if false_positive:
            initial = Status.FALSE_POSITIVE
        else:
            initial = Status.PENDING if revoke else Status.RECORDED
        cursor = db.execute(
            "INSERT OR IGNORE INTO incidents(sha256, redacted, first_seen, last_seen, status, "
            "severity, revoke_attempts, updated_at, confidence) "
            "VALUES (?, ?, ?, ?, ?, 'unknown', 0, ?, ?)",
            [ref.sha256, ref.redacted, seen, seen, initial.value, now,
             "possible" if possible else "confirmed"])
        new_incident = cursor.rowcount == 1
        incident_id, status_text, triage, severity = db.execute(
            "SELECT id, status, triage, severity FROM incidents WHERE sha256 = ?",
            [ref.sha256]).fetchone()
        status = Status(status_text)
        if new_incident:  # not a Cendis token by format (false_positive): nobody is told
            kind = "possible" if possible else "opened"
            self._log(db, incident_id, now, kind, sighting.source,
                      notify=None if false_positive else
                      NotifyEvent(kind, severity, sighting.source))
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
            if triage == Triage.RESOLVED:  # a regression: the token is out there again
                db.execute("UPDATE incidents SET triage = 'open', triaged_at = ?, "
                           "updated_at = ? WHERE id = ?", [now, now, incident_id])
                self._log(db, incident_id, now, "reopened", f"new sighting: "
                          f"{sighting.source}",
                          notify=NotifyEvent("reopened", severity, sighting.source))
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
                           [iso(self._now())])
        except sqlite3.Error:
            return False
        return True

    # -- reading incidents ------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, list(params)))

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
                "SELECT at, kind, detail, actor FROM events WHERE incident_id = ? ORDER BY id",
                [incident["id"]]))
            return incident

    def list_incidents(self, *, status: str | None = None, severity: str | None = None,
                       since: datetime | date | str | None = None,
                       limit: int | None = None, triage: str | None = None,
                       before: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """Newest first (by last sighting), with the number of sightings; ``before``
        a row's ``(last_seen, id)``: the page after it."""
        sql, params = incident_list_query('?', status=status, severity=severity,
                                          since=since, limit=limit, triage=triage,
                                          before=before)
        with self._lock:
            return [self._incident_dict(row) for row in self.db.query(sql, params)]

    def status_of(self, sha256: str) -> Status | None:
        with self._lock:
            row = self.db.execute("SELECT status FROM incidents WHERE sha256 = ?",
                                  [sha256]).fetchone()
        return Status(row[0]) if row else None

    # -- the whole trail, for ``db copy`` ------------------------------------------------

    def dump(self, table: str) -> list[dict[str, Any]]:
        """Every row of one of :data:`TABLES`, in insertion order."""
        if table not in TABLES:
            raise ValueError(table)
        with self._lock:
            return list(self.db.query(f"SELECT * FROM {table} ORDER BY rowid"))

    @contextmanager
    def copy_transaction(self) -> Iterator[Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]]:
        """One write transaction for a copy: yields ``run(sql, params)`` (qmark style,
        portable SQL) returning the rows."""
        with self._write() as db:
            yield lambda sql, params: db.execute(sql, list(params)).fetchall()
