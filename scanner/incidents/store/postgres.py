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
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg_pool
from psycopg.rows import dict_row

from scanner.incidents.models import (
    CLOSED,
    QueueEntry,
    Recorded,
    RevokeOutcome,
    Sighting,
    Status,
    TokenRef,
    utcnow,
)
from scanner.incidents.store import postgres_schema
from scanner.incidents.store.common import (
    DUE_SLACK,
    TABLES,
    DatabaseUnavailable,
    after,
    claim_alive,
    first_line,
    iso,
    libpq_url,
    mask_url,
    scrubbed,
    seconds_until,
    since_text,
)
from scanner.incidents.store.sqlite_queue import outcome_rows

STATEMENT_TIMEOUT = 15.0  # seconds any one statement may run
CONNECT_TIMEOUT = 10  # seconds to reach the server (libpq's connect_timeout)
POOL_SIZE = 4
_ORDER = {"incidents": "id", "sightings": "id", "events": "id", "revoke_queue": "seq",
          "partner_keys": "partner", "deliveries": "received_at, partner, delivery_id"}
_RETRIES = 3  # a transaction rolled back as a deadlock or serialization failure


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


class PostgresStore:
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
    def _write(self) -> Iterator[Callable[..., psycopg.Cursor[Any]]]:
        """One transaction; yields ``x(sql, params)`` binding scrubbed parameters."""
        with self._conn() as conn, conn.cursor() as cur:
            def x(sql: str, params: Any = None) -> psycopg.Cursor[Any]:
                return cur.execute(sql, scrubbed(params) if params else params)
            yield x

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._write() as x:
            cur = x(sql, list(params))
            row: tuple[Any, ...] | None = cur.fetchone() if cur.description else None
            return row

    def _retrying(self, work: Callable[[Callable[..., psycopg.Cursor[Any]]], Any]) -> Any:
        for attempt in range(_RETRIES):
            try:
                with self._write() as x:
                    return work(x)
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
        """Record a batch in ONE transaction, committed before this returns."""
        now = iso(self._now())

        # The batch's tokens are locked first, in one global order (advisory locks keyed
        # by the hash), then written in the batch's order (ids follow it): two receivers
        # writing overlapping batches in any orders never wait on each other in a cycle.
        keys = sorted({int(ref.sha256[:15], 16) for ref, _ in items})

        def work(x: Callable[..., psycopg.Cursor[Any]]) -> list[Recorded]:
            if len(keys) > 1:
                x("SELECT count(pg_advisory_xact_lock(k)) FROM "
                  "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS ordered", [keys])
            return [self._record_one(x, ref, sighting, now, revoke=revoke,
                                     false_positive=ref.sha256 in false_positive)
                    for ref, sighting in items]

        recorded: list[Recorded] = self._retrying(work)
        return recorded

    @staticmethod
    def _record_one(x: Callable[..., psycopg.Cursor[Any]], ref: TokenRef, sighting: Sighting,
                    now: str, *, revoke: bool, false_positive: bool) -> Recorded:
        seen = iso(sighting.received_at)
        if false_positive:
            initial = Status.FALSE_POSITIVE
        else:
            initial = Status.PENDING if revoke else Status.RECORDED
        row = x("INSERT INTO incidents(sha256, redacted, first_seen, last_seen, status, "
                "severity, revoke_attempts, updated_at) VALUES (%s, %s, %s, %s, %s, "
                "'unknown', 0, %s) ON CONFLICT (sha256) DO NOTHING RETURNING id, status",
                [ref.sha256, ref.redacted, seen, seen, initial.value, now]).fetchone()
        new_incident = row is not None
        if row is None:
            row = x("UPDATE incidents SET last_seen = greatest(last_seen, %s), "
                    "first_seen = least(first_seen, %s) WHERE sha256 = %s "
                    "RETURNING id, status", [seen, seen, ref.sha256]).fetchone()
        assert row is not None, "an incident that conflicted exists"
        incident_id, status = row[0], Status(row[1])
        new_sighting = x(
            "INSERT INTO sightings(incident_id, source, partner, repository, url, "
            "\"commit\", path, line, author, record_type, record_source, delivery_id, "
            "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [incident_id, sighting.source, sighting.partner, sighting.repository, sighting.url,
             sighting.commit, sighting.path, sighting.line, sighting.author,
             sighting.record_type, sighting.record_source, sighting.delivery_id,
             seen]).rowcount == 1
        event = ("INSERT INTO events(incident_id, at, kind, detail) VALUES (%s, %s, %s, %s)")
        if new_sighting:
            x(event, [incident_id, now, "received", sighting.source])
        if false_positive and status not in CLOSED:
            status = Status.FALSE_POSITIVE
            x("UPDATE incidents SET status = %s, updated_at = %s WHERE id = %s",
              [status.value, now, incident_id])
            x("DELETE FROM revoke_queue WHERE sha256 = %s", [ref.sha256])
            x(event, [incident_id, now, "false_positive", "not a Cendis token by format"])
        elif revoke and status not in CLOSED:
            queued = x("INSERT INTO revoke_queue(sha256, incident_id, source, url, "
                       "enqueued_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s) "
                       "ON CONFLICT DO NOTHING",
                       [ref.sha256, incident_id, sighting.source, sighting.url or "", now,
                        now])
            if queued.rowcount == 1:
                x(event, [incident_id, now, "queued", sighting.source])
            if status is not Status.PENDING:
                status = Status.PENDING
                x("UPDATE incidents SET status = %s, updated_at = %s WHERE id = %s",
                  [status.value, now, incident_id])
        return Recorded(incident_id=incident_id, sha256=ref.sha256, status=status,
                        new_incident=new_incident, new_sighting=new_sighting)

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
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(sql, scrubbed(list(params))).fetchall())

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

    # -- the revoke queue ---------------------------------------------------------------

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
        """As on SQLite (see :meth:`SqliteQueue.claim_batch`), with the rows locked by
        ``FOR UPDATE SKIP LOCKED``: a revoker never waits on another's claim, and never
        picks the rows another is claiming at this moment."""
        now = self._now()
        stamp, until, due_by = iso(now), after(now, lease), after(now, DUE_SLACK)
        free = ("(claimed_by IS NULL OR claimed_until < %(now)s OR claimed_by = %(owner)s "
                "OR claimed_by = ANY(%(dead)s))")
        due = "(next_attempt_at IS NULL OR next_attempt_at <= %(due)s)"
        columns = "sha256, incident_id, source, url, attempts"
        with self._write() as x:
            held = x("SELECT DISTINCT claimed_by FROM revoke_queue WHERE claimed_by IS NOT "
                     "NULL AND claimed_until >= %s AND claimed_by <> %s",
                     [stamp, owner]).fetchall()
            params: dict[str, Any] = {"now": stamp, "owner": owner, "due": due_by,
                                      "dead": [h[0] for h in held if not claim_alive(h[0])],
                                      "limit": limit, "only": only}
            if only is not None:  # one given token (a refused batch, token by token)
                rows = x(f"SELECT {columns} FROM revoke_queue WHERE sha256 = %(only)s AND "
                         f"{free} AND {due} FOR UPDATE SKIP LOCKED", params).fetchall()
            else:
                head = x(f"SELECT source FROM revoke_queue WHERE {free} AND {due} "
                         "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED", params).fetchone()
                if head is None:
                    return []
                params["source"] = head[0]
                rows = x(f"SELECT {columns} FROM revoke_queue WHERE source = %(source)s AND "
                         f"{free} AND {due} ORDER BY seq LIMIT %(limit)s "
                         "FOR UPDATE SKIP LOCKED", params).fetchall()
            entries = [QueueEntry(sha256=r[0], incident_id=r[1], source=r[2], url=r[3] or "",
                                  attempts=r[4] + 1) for r in rows]
            if entries:
                shas = [e.sha256 for e in entries]
                ids = [e.incident_id for e in entries]
                x("UPDATE revoke_queue SET attempts = attempts + 1, lost = greatest(lost, "
                  "uncertain), uncertain = 1, claimed_by = %s, claimed_until = %s "
                  "WHERE sha256 = ANY(%s)", [owner, until, shas])
                x("UPDATE incidents SET revoke_attempts = revoke_attempts + 1 "
                  "WHERE id = ANY(%s)", [ids])
                x("INSERT INTO events(incident_id, at, kind) SELECT i, %s, 'revoke_attempted' "
                  "FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(i, n) ORDER BY n",
                  [stamp, ids])
        return entries

    def attempt_failed(self, entries: Sequence[QueueEntry], reason: str, *,
                       answered: bool, retry_in: float | None = None) -> None:
        """A call failed; the tokens stay queued and their claim is released."""
        now = self._now()
        sql = "UPDATE revoke_queue SET last_error = %s, claimed_by = NULL, claimed_until = NULL"
        params: list[Any] = [reason]
        if answered:
            sql += ", uncertain = 0"
        if retry_in is not None:
            sql += ", next_attempt_at = %s"
            params.append(after(now, retry_in))
        with self._write() as x:
            for entry in entries:
                x(sql + " WHERE sha256 = %s", [*params, entry.sha256])
                x("UPDATE incidents SET last_error = %s, updated_at = %s WHERE id = %s",
                  [reason, iso(now), entry.incident_id])
                x("INSERT INTO events(incident_id, at, kind, detail) VALUES (%s, %s, %s, %s)",
                  [entry.incident_id, iso(now), "revoke_failed", reason])

    def reject(self, entry: QueueEntry, reason: str, detail: str) -> None:
        """A 400 for this token alone: close it as ERROR, never resent unchanged."""
        now = iso(self._now())
        with self._write() as x:
            x("DELETE FROM revoke_queue WHERE sha256 = %s", [entry.sha256])
            x("UPDATE incidents SET status = %s, last_error = %s, updated_at = %s "
              "WHERE id = %s", [Status.ERROR.value, reason, now, entry.incident_id])
            x("INSERT INTO events(incident_id, at, kind, detail) VALUES (%s, %s, %s, %s)",
              [entry.incident_id, now, "error", f"{reason}: {detail}"])

    def apply_outcomes(self, entries: Sequence[QueueEntry], outcomes: Sequence[RevokeOutcome],
                       *, notify_owner: bool) -> list[Status]:
        """Close the queue entries with the API's answers; one transaction."""
        now = iso(self._now())
        with self._conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT sha256 FROM revoke_queue WHERE lost <> 0 AND "
                        "sha256 = ANY(%s)", [[o.sha256 for o in outcomes]])
            lost = {row[0] for row in cur.fetchall()}
            statuses, updates, events = outcome_rows(entries, outcomes, lost, now,
                                                     notify_owner=notify_owner)
            cur.executemany(
                "UPDATE incidents SET status = %s, owner = coalesce(%s, owner), "
                "token_name = coalesce(%s, token_name), org = coalesce(%s, org), "
                "scopes = coalesce(%s, scopes), severity = %s, last_error = NULL, "
                "updated_at = %s WHERE id = %s", [scrubbed(list(u)) for u in updates])
            cur.execute("DELETE FROM revoke_queue WHERE sha256 = ANY(%s)",
                        [[o.sha256 for o in outcomes]])
            cur.executemany("INSERT INTO events(incident_id, at, kind, detail) "
                            "VALUES (%s, %s, %s, %s)", [scrubbed(list(e)) for e in events])
        return statuses

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
        with self._write() as x:
            return x("INSERT INTO deliveries(partner, delivery_id, received_at) VALUES "
                     "(%s, %s, %s) ON CONFLICT DO NOTHING",
                     [partner, delivery_id, iso(self._now())]).rowcount == 1

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
