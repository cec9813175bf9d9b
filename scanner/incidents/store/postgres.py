"""The server backend: PostgreSQL through psycopg 3 and a psycopg-pool connection pool.

Several receivers, revokers and sweeps on several hosts share one database. Every
statement of this backend is here (the schema is in :mod:`.postgres_schema`); callers
see the same :class:`~scanner.incidents.store.Store` protocol as on SQLite.

- Credentials follow libpq: the URL or conninfo goes to psycopg unchanged, so
  ``PGPASSWORD``, ``PGPASSFILE``, ``service=`` and ``sslmode=`` work as everywhere. The
  URL is only ever shown through :func:`~.common.mask_url`.
- Every connection sets ``statement_timeout``: no query waits forever on a lock or a
  sick server. Taking a pooled connection waits at most ``busy_timeout``.
- The pool checks a connection before lending it, so connections a restart or an
  administrator killed are replaced: the store recovers by itself when the server
  returns.
- The queue is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` plus the same lease
  as SQLite; a dead process's claims (same host, pid gone) are free at once.
- A batch is recorded in its own order (incident ids follow it, as on SQLite); two
  concurrent batches naming the same tokens in opposite orders may deadlock, which
  PostgreSQL breaks by rolling one back: that transaction is retried whole.
- Every bound text passes the scrub (:func:`~.common.scrubbed`), as on SQLite.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg_pool
from psycopg.rows import dict_row

from scanner.incidents.models import (
    CLOSED,
    Recorded,
    Sighting,
    Status,
    TokenRef,
    utcnow,
)
from scanner.incidents.store import postgres_schema
from scanner.incidents.store.common import (
    TABLES,
    DatabaseUnavailable,
    iso,
    mask_url,
    scrubbed,
    since_text,
)
from scanner.incidents.store.postgres_queue import EVENTS, PostgresQueue, columns

STATEMENT_TIMEOUT = 15.0  # seconds any one statement may run
CONNECT_TIMEOUT = 10  # seconds to reach the server (libpq's connect_timeout)
POOL_SIZE = 4
_ORDER = {"incidents": "id", "sightings": "id", "events": "id", "revoke_queue": "seq",
          "partner_keys": "partner", "deliveries": "received_at, partner, delivery_id"}
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


class PostgresStore(PostgresQueue):
    """One pool of connections to a PostgreSQL database. Thread-safe (the pool is)."""

    backend = "postgresql"

    def __init__(self, pool: psycopg_pool.ConnectionPool, now: Callable[[], datetime],
                 url: str, busy_timeout: float) -> None:
        self._pool = pool
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
                pool_size: int = POOL_SIZE) -> PostgresStore:
        """Reach the server once (a failure is one line naming the masked URL), then
        open the pool and migrate (or only check the schema, ``migrate`` False)."""
        url = os.fspath(target)
        shown = mask_url(url)
        try:
            conninfo = conninfo_for(url, statement_timeout)
            with psycopg.connect(conninfo) as probe:
                postgres_schema.migrate(probe, iso(now()), allowed=migrate)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseUnavailable(f"incident database {shown}: {first}") from None
        pool = psycopg_pool.ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, open=False, name="cendis-store",
            timeout=max(busy_timeout, 0.001), check=psycopg_pool.ConnectionPool.check_connection,
            reconnect_timeout=0)
        pool.open(wait=False)
        return cls(pool, now, shown, busy_timeout)

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
             busy_timeout: float = 30.0, migrate: bool = True) -> PostgresStore:
        """The protocol's ``Store.open``, for this backend: :meth:`connect`."""
        return cls.connect(target, now=now, busy_timeout=busy_timeout, migrate=migrate)

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
               false_positive: Collection[str] = ()) -> list[Recorded]:
        """Record a batch in ONE transaction, committed before this returns: three round
        trips whatever its size (see :func:`_record`)."""
        if not items:
            return []
        now = iso(self._now())
        return self._retrying(lambda conn: _record(conn, items, now, revoke=revoke,
                                                   false_positive=false_positive))

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
            "SELECT at, kind, detail FROM events WHERE incident_id = %s ORDER BY id",
            [incident["id"]])
        return incident

    def list_incidents(self, *, status: str | None = None, severity: str | None = None,
                       since: datetime | date | str | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first (by last sighting), with the number of sightings."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(str(value))
        if since is not None:
            where.append("last_seen >= %s")
            params.append(since_text(since))
        sql = ("SELECT i.*, (SELECT count(*) FROM sightings s WHERE s.incident_id = i.id) "
               "AS sightings FROM incidents i")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY last_seen DESC, id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
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


_UPSERT = (
    "INSERT INTO incidents(sha256, redacted, first_seen, last_seen, status, severity, "
    "revoke_attempts, updated_at) SELECT sha, red, f, l, st, 'unknown', 0, %s FROM "
    "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY "
    "AS u(sha, red, f, l, st, n) ORDER BY n ON CONFLICT (sha256) DO UPDATE SET "
    "last_seen = greatest(incidents.last_seen, excluded.last_seen), "
    "first_seen = least(incidents.first_seen, excluded.first_seen) "
    "RETURNING sha256, id, status, xmax = 0")
_SIGHTINGS = (
    "INSERT INTO sightings(incident_id, source, partner, repository, url, \"commit\", path, "
    "line, author, record_type, record_source, delivery_id, received_at) SELECT i, so, pa, "
    "re, ur, co, pt, li, au, rt, rs, de, ra FROM "
    "unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS u(i, so, pa, re, ur, co, pt, li, au, rt, rs, de, ra, n) ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING incident_id, source, coalesce(url, ''), "
    "coalesce(delivery_id, ''), coalesce(\"commit\", ''), coalesce(path, '')")
_QUEUE = (
    "INSERT INTO revoke_queue(sha256, incident_id, source, url, enqueued_at, "
    "next_attempt_at) SELECT sha, i, so, ur, %s, %s FROM unnest(%s::text[], %s::bigint[], "
    "%s::text[], %s::text[]) WITH ORDINALITY AS u(sha, i, so, ur, n) ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING sha256")


def _record(conn: psycopg.Connection[Any], items: Sequence[tuple[TokenRef, Sighting]],
            now: str, *, revoke: bool, false_positive: Collection[str]) -> list[Recorded]:
    """The batch as set-based statements, with the same result as SQLite's item-by-item
    loop (the rows, their order, the events and their order, what each item returns).

    Round trip 1: one upsert of the distinct tokens (first appearance order, so incident
    ids follow the batch; ``xmax = 0`` tells a row inserted from one that existed),
    giving each token's id and status. What happens to a token (queued, closed as a
    false positive, nothing) is decided by that status at its first item: later items
    of the same token find it done. Round trip 2: the distinct sightings and the queue
    rows (``RETURNING`` says which were new). Round trip 3: the events in item order,
    the status changes, the commit."""
    seen = [iso(sighting.received_at) for _, sighting in items]
    first: dict[str, int] = {}  # token -> index of its first item
    span: dict[str, list[str]] = {}  # token -> [first_seen, last_seen] in this batch
    for index, (ref, _) in enumerate(items):
        if ref.sha256 not in first:
            first[ref.sha256], span[ref.sha256] = index, [seen[index], seen[index]]
        else:
            when = span[ref.sha256]
            when[0], when[1] = min(when[0], seen[index]), max(when[1], seen[index])

    def initial(sha: str) -> str:
        if sha in false_positive:
            return Status.FALSE_POSITIVE.value
        return (Status.PENDING if revoke else Status.RECORDED).value

    cur, queue_cur = conn.cursor(), conn.cursor()
    cur.execute(_UPSERT, [now, *columns([(sha, items[i][0].redacted, *span[sha], initial(sha))
                                         for sha, i in first.items()], 5)])
    state = {sha: [ident, Status(status), inserted]
             for sha, ident, status, inserted in cur.fetchall()}

    action: dict[str, str] = {}  # token -> "false_positive" | "queued"
    closed_ids: list[int] = []
    pending_ids: list[int] = []
    queue_rows: list[tuple[Any, ...]] = []
    for sha, index in first.items():
        token = state[sha]
        if token[1] in CLOSED:
            continue
        if sha in false_positive:
            action[sha], token[1] = "false_positive", Status.FALSE_POSITIVE
            closed_ids.append(token[0])
        elif revoke:
            sighting = items[index][1]
            action[sha] = "queued"
            queue_rows.append((sha, token[0], sighting.source, sighting.url or ""))
            if token[1] is not Status.PENDING:
                token[1] = Status.PENDING
                pending_ids.append(token[0])

    rows = [(state[ref.sha256][0], s.source, s.partner, s.repository, s.url, s.commit,
             s.path, s.line, s.author, s.record_type, s.record_source, s.delivery_id,
             seen[index]) for index, (ref, s) in enumerate(items)]
    values = columns(rows, 13)  # scrubbed: a sighting's identity is what is stored
    keys = [(i, so, ur or "", de or "", co or "", pt or "") for i, so, ur, de, co, pt in zip(
        values[0], values[1], values[4], values[11], values[5], values[6], strict=True)]
    key_first: dict[tuple[Any, ...], int] = {}
    for index, key in enumerate(keys):
        key_first.setdefault(key, index)
    distinct = list(key_first.values())
    cur.execute(_SIGHTINGS, [[column[i] for i in distinct] for column in values])
    if queue_rows:
        queue_cur.execute(_QUEUE, [now, now, *columns(queue_rows, 4)])
    new_sightings = {tuple(row) for row in cur.fetchall()}
    queued = {row[0] for row in queue_cur.fetchall()} if queue_rows else set()

    events: list[tuple[Any, ...]] = []
    results: list[Recorded] = []
    for index, (ref, _) in enumerate(items):
        ident, status, inserted = state[ref.sha256]
        is_first = first[ref.sha256] == index
        new_sighting = key_first[keys[index]] == index and keys[index] in new_sightings
        if new_sighting:
            events.append((ident, now, "received", values[1][index]))
        kind = action.get(ref.sha256) if is_first else None
        if kind == "false_positive":
            events.append((ident, now, "false_positive", "not a Cendis token by format"))
        elif kind == "queued" and ref.sha256 in queued:
            events.append((ident, now, "queued", values[1][index]))
        results.append(Recorded(incident_id=ident, sha256=ref.sha256, status=status,
                                new_incident=bool(inserted) and is_first,
                                new_sighting=new_sighting))
    if events:
        cur.execute(EVENTS, columns(events, 4))
    for status, ids in ((Status.PENDING, pending_ids), (Status.FALSE_POSITIVE, closed_ids)):
        if ids:
            cur.execute("UPDATE incidents SET status = %s, updated_at = %s WHERE id = ANY(%s)",
                        [status.value, now, ids])
    if closed_ids:
        cur.execute("DELETE FROM revoke_queue WHERE sha256 = ANY(%s)",
                    [[sha for sha, kind in action.items() if kind == "false_positive"]])
    conn.commit()
    return results
