"""The server backend: PostgreSQL through psycopg 3 and a psycopg-pool connection pool.

Several receivers, revokers and sweeps on several hosts share one database. Every
statement of this backend is here (the schema is in :mod:`.postgres_schema`); callers
see the same :class:`~scanner.incidents.store.Store` protocol as on SQLite.

- Credentials follow libpq: the URL or conninfo goes to psycopg unchanged, so
  ``PGPASSWORD``, ``PGPASSFILE``, ``service=`` and ``sslmode=`` work as everywhere. The
  URL is only ever shown through :func:`~.common.mask_url`.
- Every connection sets ``statement_timeout``: no query waits forever on a lock or a
  sick server. Taking a pooled connection waits at most ``busy_timeout``.
- The pool checks a connection before lending it when it sat idle for more than
  ``CHECK_IDLE`` seconds (:class:`_IdleCheck`), so connections a restart or an
  administrator killed are replaced: the store recovers by itself when the server
  returns. A connection in use moments ago is lent without that extra round trip (a
  third of a small group commit's); if the server went away in between, that one call
  fails (a 503 the partner retries) and the pool replaces the broken connection.
- Every call is a fixed number of round trips, not one per row: set-based statements
  over arrays, in pipeline mode, the commit in the last (:mod:`.postgres_record`,
  :mod:`.postgres_queue`); psycopg prepares a statement from its fifth use.
- The queue is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` plus the same lease
  as SQLite; a dead process's claims (same host, pid gone) are free at once.
- A batch first takes a transaction advisory lock per token in one global order (the
  hash's), then is recorded in its own order (incident ids follow it, as on SQLite): two
  concurrent batches naming the same tokens in any orders never deadlock. A
  deadlock or serialization failure that still happens (another statement's order),
  which PostgreSQL breaks by rolling one back, is retried whole.
- Every bound text passes the scrub (:func:`~.common.scrubbed`), as on SQLite.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg_pool
from psycopg.rows import dict_row

from scanner.incidents.models import (
    Recorded,
    Router,
    Sighting,
    Status,
    TokenRef,
    utcnow,
)
from scanner.incidents.store import postgres_schema
from scanner.incidents.store.common import (
    TABLES,
    DatabaseUnavailable,
    first_line,
    incident_list_query,
    iso,
    libpq_url,
    mask_url,
    scrubbed,
)
from scanner.incidents.store.postgres_queue import PostgresQueue
from scanner.incidents.store.postgres_record import record_batch
from scanner.incidents.store.postgres_triage import PostgresTriage

STATEMENT_TIMEOUT = 15.0  # seconds any one statement may run
CONNECT_TIMEOUT = 10  # seconds to reach the server (libpq's connect_timeout)
POOL_SIZE = 4
CHECK_IDLE = 2.0  # seconds: a pooled connection idle longer is checked before use
_ORDER = {"incidents": "id", "sightings": "id", "events": "id", "revoke_queue": "seq",
          "partner_keys": "partner", "deliveries": "received_at, partner, delivery_id",
          "outbox": "id"}
_RETRIES = 3  # a transaction rolled back as a deadlock or serialization failure
T = TypeVar("T")


def conninfo_for(url: str, statement_timeout: float) -> str:
    """The caller's URL or conninfo, unchanged but for the statement timeout added to
    its ``options`` (a search_path or other options it names are kept)."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    options = str(params.get("options") or "")
    timeout = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return psycopg.conninfo.make_conninfo(
        url, options=f"{options} {timeout}".strip(),
        connect_timeout=params.get("connect_timeout") or CONNECT_TIMEOUT)


class _IdleCheck:
    """The pool's check before lending a connection: a round trip (an empty query) only
    for a connection idle longer than ``CHECK_IDLE`` seconds, or never used."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._last: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def used(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._last[conn] = self._monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            last = self._last.get(conn)
        if last is None or self._monotonic() - last > CHECK_IDLE:
            psycopg_pool.ConnectionPool.check_connection(conn)


class _Console:
    """``store.db.execute(sql, params)`` with qmark parameters, autocommitted: what the
    tests use to look inside either backend alike. Not used by the library."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        with self._store._conn() as conn:
            cur = conn.cursor()
            cur.execute(sql.replace("?", "%s"), scrubbed(list(params)))
            return cur


class PostgresStore(PostgresQueue, PostgresTriage):
    """One pool of connections to a PostgreSQL database. Thread-safe (the pool is)."""

    backend = "postgresql"

    def __init__(self, pool: psycopg_pool.ConnectionPool, now: Callable[[], datetime],
                 url: str, busy_timeout: float, idle: _IdleCheck | None = None,
                 router: Router | None = None) -> None:
        self._pool = pool
        self.router = router  # which channels hear of an event; None: no outbox rows
        self._idle = idle or _IdleCheck()
        self._now = now
        self.url = url
        self.busy_timeout = busy_timeout
        self.db = _Console(self)
        self._closed = threading.Event()

    # -- opening, schema and migrations ------------------------------------------------

    @classmethod
    def connect(cls, target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
                busy_timeout: float = 30.0, migrate: bool = True,
                statement_timeout: float = STATEMENT_TIMEOUT,
                pool_size: int = POOL_SIZE, router: Router | None = None) -> PostgresStore:
        """Reach the server once (a failure is one line naming the masked URL), then
        open the pool and migrate (or only check the schema, ``migrate`` False)."""
        raw = os.fspath(target)
        url = libpq_url(raw)
        shown = mask_url(raw)
        try:
            conninfo = conninfo_for(url, statement_timeout)
            with psycopg.connect(conninfo) as probe:
                postgres_schema.migrate(probe, iso(now()), allowed=migrate)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"incident database {shown}: {first_line(exc, raw)}") from None
        idle = _IdleCheck()
        pool = psycopg_pool.ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, open=False, name="cendis-store",
            timeout=max(busy_timeout, 0.001), check=idle.check, reconnect_timeout=0)
        pool.open(wait=False)
        return cls(pool, now, shown, busy_timeout, idle, router)

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
             busy_timeout: float = 30.0, migrate: bool = True,
             router: Router | None = None) -> PostgresStore:
        """The protocol's ``Store.open``, for this backend: :meth:`connect`."""
        return cls.connect(target, now=now, busy_timeout=busy_timeout, migrate=migrate,
                           router=router)

    def migrate(self, *, allowed: bool = True) -> int:
        with self._conn() as conn:
            return postgres_schema.migrate(conn, iso(self._now()), allowed=allowed)

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for one transaction (committed at the end of the block,
        rolled back on an exception)."""
        with self._pool.connection(timeout=max(self.busy_timeout, 0.001)) as conn:
            yield conn
            self._idle.used(conn)

    @contextmanager
    def _pipeline(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction in pipeline mode: statements go out without waiting for each
        other's answers, a fetch waits for what was sent (one round trip), and the
        caller's ``conn.commit()`` travels with the last statements."""
        with self._conn() as conn, conn.pipeline():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Callable[..., psycopg.Cursor[Any]]]:
        """One transaction; yields ``x(sql, params)`` binding scrubbed parameters."""
        with self._conn() as conn, conn.cursor() as cur:
            def x(sql: str, params: Any = None) -> psycopg.Cursor[Any]:
                return cur.execute(sql, scrubbed(params) if params else params)
            yield x

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """One statement in its own transaction: one round trip (statement and commit
        pipelined); its first row, if it returns rows."""
        with self._pipeline() as conn, conn.cursor() as cur:
            cur.execute(sql, scrubbed(list(params)))
            conn.commit()
            row: tuple[Any, ...] | None = cur.fetchone() if cur.description else None
            return row

    def _retrying(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(conn)`` in one pipelined transaction, run again whole if PostgreSQL
        rolled it back as a deadlock or a serialization failure."""
        for attempt in range(_RETRIES):
            try:
                with self._pipeline() as conn:
                    return work(conn)
            except (psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def schema_version(self) -> int:
        with self._conn() as conn, conn.cursor() as cur:
            return postgres_schema.schema_version(cur)

    # -- recording ------------------------------------------------------------------

    def record(self, items: Sequence[tuple[TokenRef, Sighting]], *, revoke: bool,
               false_positive: Collection[str] = (),
               possible: Collection[str] = ()) -> list[Recorded]:
        """Record a batch in ONE transaction, committed before this returns: a fixed
        number of round trips whatever its size (the batch's advisory locks, then
        :func:`.postgres_record.record_batch`'s two)."""
        if not items:
            return []
        now = iso(self._now())

        # The batch's tokens are locked first, in one global order (advisory locks keyed
        # by the hash), then written in the batch's order (ids follow it): two receivers
        # writing overlapping batches in any orders never wait on each other in a cycle.
        keys = sorted({int(ref.sha256[:15], 16) for ref, _ in items})

        def work(conn: Any) -> list[Recorded]:
            if len(keys) > 1:
                conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM "
                             "unnest(%s::bigint[]) AS k ORDER BY k) AS ordered", [keys])
            return record_batch(conn, items, now, revoke=revoke,
                                false_positive=false_positive, possible=possible,
                                router=self.router)

        recorded: list[Recorded] = self._retrying(work)
        return recorded

    def writable(self) -> bool:
        """A cheap write probe for /readyz: one tiny committed write."""
        try:
            self._one("INSERT INTO probe(id, at) VALUES (1, %s) ON CONFLICT (id) DO UPDATE "
                      "SET at = excluded.at", [iso(self._now())])
        except (psycopg.Error, psycopg_pool.PoolTimeout):
            return False
        return True

    # -- reading incidents ------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._pipeline() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, scrubbed(list(params)))
            conn.commit()
            return list(cur.fetchall())

    @staticmethod
    def _incident_dict(row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row["scopes"] = json.loads(row["scopes"]) if row.get("scopes") else []
        return row

    def get_incident(self, ident: int | str) -> dict[str, Any] | None:
        """By id, or by a unique prefix (4+ hex digits) of the token's SHA-256."""
        text = str(ident).strip().lower()
        by_id = "SELECT * FROM incidents WHERE id = %s"
        if isinstance(ident, int) or text.isdigit() and len(text) < 4:
            rows = self._rows(by_id, [int(text)]) if int(text) < 1 << 63 else []
        else:
            if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
                return None
            rows = self._rows("SELECT * FROM incidents WHERE sha256 >= %s AND sha256 < %s "
                              "ORDER BY sha256 LIMIT 2", [text, text + "g"])
            if not rows and text.isdigit() and int(text) < 1 << 63:
                rows = self._rows(by_id, [int(text)])
        if len(rows) != 1:
            return None
        incident = self._incident_dict(rows[0])
        incident["sightings"] = self._rows(
            "SELECT source, partner, repository, url, \"commit\", path, line, author, "
            "record_type, record_source, delivery_id, received_at FROM sightings "
            "WHERE incident_id = %s ORDER BY id", [incident["id"]])
        incident["events"] = self._rows(
            "SELECT at, kind, detail, actor FROM events WHERE incident_id = %s ORDER BY id",
            [incident["id"]])
        return incident

    def list_incidents(self, *, status: str | None = None, severity: str | None = None,
                       since: datetime | date | str | None = None,
                       limit: int | None = None, triage: str | None = None,
                       before: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """Newest first (by last sighting), with the number of sightings; ``before``
        a row's ``(last_seen, id)``: the page after it."""
        sql, params = incident_list_query('%s', status=status, severity=severity,
                                          since=since, limit=limit, triage=triage,
                                          before=before)
        return [self._incident_dict(row) for row in self._rows(sql, params)]

    def status_of(self, sha256: str) -> Status | None:
        row = self._one("SELECT status FROM incidents WHERE sha256 = %s", [sha256])
        return Status(row[0]) if row else None

    # -- the receiver's partner keys and delivery ids ---------------------------------

    def save_partner_keys(self, partner: str, keys: list[dict[str, Any]],
                          etag: str | None) -> None:
        self._one("INSERT INTO partner_keys(partner, keys, etag, fetched_at) "
                  "VALUES (%s, %s, %s, %s) ON CONFLICT (partner) DO UPDATE SET "
                  "keys = excluded.keys, etag = excluded.etag, fetched_at = excluded.fetched_at",
                  [partner, json.dumps(keys), etag, iso(self._now())])

    def load_partner_keys(self, partner: str) -> tuple[list[dict[str, Any]], str | None,
                                                       datetime | None] | None:
        row = self._one("SELECT keys, etag, fetched_at FROM partner_keys WHERE partner = %s",
                        [partner])
        if row is None:
            return None
        fetched = datetime.fromisoformat(row[2]) if row[2] else None
        return json.loads(row[0]), row[1], fetched

    def remember_delivery(self, partner: str, delivery_id: str) -> bool:
        """True the first time a delivery id is seen, False for a redelivery."""
        row = self._one("INSERT INTO deliveries(partner, delivery_id, received_at) VALUES "
                        "(%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                        [partner, delivery_id, iso(self._now())])
        return row is not None

    # -- the whole trail, for ``db copy`` ------------------------------------------------

    def dump(self, table: str) -> list[dict[str, Any]]:
        """Every row of one of :data:`TABLES`, in insertion order."""
        if table not in TABLES:
            raise ValueError(table)
        return self._rows(f"SELECT * FROM {table} ORDER BY {_ORDER[table]}")

    @contextmanager
    def copy_transaction(self) -> Iterator[Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]]:
        """One transaction for a copy: yields ``run(sql, params)`` (qmark style)."""
        with self._write() as x:
            def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                cur = x(sql.replace("?", "%s"), list(params))
                return list(cur.fetchall()) if cur.description else []
            yield run

