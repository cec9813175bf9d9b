"""The incident store: one typed protocol, two backends, all SQL in this package.

:func:`open_store` picks the backend from what ``--db`` / ``CENDIS_SCAN_DB`` names: a
``postgresql://`` (or ``postgres://``) URL is PostgreSQL (:mod:`.postgres`, several
receivers and revokers on several hosts), anything else is an SQLite file
(:mod:`.sqlite`, the embedded default). Callers (receiver, revoker, sweeps, CLI) see
:class:`Store` only; ``Store.open(...)`` is :func:`open_store`, as before.

Both backends give the same guarantees: one incident per token hash, an identical
sighting stored once, a revoke queue claimed under a lease that a crashed process's
claims outlive by at most that lease, ``next_attempt_at`` honoured by every process,
delivery ids and partner keys unique, every write of a delivery in one transaction
committed before the call returns. Both are safe to call from worker threads, so the
event loop never waits on the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from scanner.incidents.models import (
    OutboxEntry,
    QueueEntry,
    Recorded,
    RevokeOutcome,
    Router,
    Sighting,
    Status,
    utcnow,
)
from scanner.incidents.models import TokenRef as TokenRef
from scanner.incidents.store.browse import Cursor, IncidentFilter
from scanner.incidents.store.common import (
    SCHEMA_VERSION,
    DatabaseUnavailable,
    SchemaError,
    claim_owner,
    database_failure,
    is_postgres,
    mask_url,
)
from scanner.incidents.store.presence import Presence, Target

__all__ = ["SCHEMA_VERSION", "DatabaseUnavailable", "SchemaError", "Store", "claim_owner",
           "open_reader",
           "database_failure", "is_postgres", "mask_url", "open_store"]

#: The default wait for a lock (SQLite) or a pooled connection (PostgreSQL), seconds.
BUSY_TIMEOUT = 30.0


@runtime_checkable
class Store(Protocol):
    """One open incident database (either backend)."""

    backend: str  # "sqlite" or "postgresql"
    url: str  # where it is, password masked: safe to show
    router: Router | None  # which channels hear of an event; None: no outbox rows

    @staticmethod
    def open(target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
             busy_timeout: float = BUSY_TIMEOUT, migrate: bool = True,
             router: Router | None = None) -> Store:
        """:func:`open_store` (kept so ``Store.open(path)`` works as it always did)."""
        return open_store(target, now=now, busy_timeout=busy_timeout, migrate=migrate,
                          router=router)

    def close(self) -> None: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...
    def schema_version(self) -> int: ...
    def migrate(self, *, allowed: bool = True) -> int: ...

    def record(self, items: Sequence[tuple[TokenRef, Sighting]], *, revoke: bool,
               false_positive: Collection[str] = (),
               possible: Collection[str] = ()) -> list[Recorded]: ...
    def writable(self) -> bool: ...

    def get_incident(self, ident: int | str) -> dict[str, Any] | None: ...
    def list_incidents(self, *, status: str | None = None, severity: str | None = None,
                       since: datetime | date | str | None = None,
                       limit: int | None = None, triage: str | None = None,
                       before: tuple[str, int] | None = None) -> list[dict[str, Any]]: ...
    def status_of(self, sha256: str) -> Status | None: ...

    # the dashboard's reads (:mod:`.browse`)
    def browse_incidents(self, where: IncidentFilter, *, after: Cursor | None = None,
                         limit: int = 50) -> list[dict[str, Any]]: ...
    def incident_counts(self) -> list[dict[str, Any]]: ...
    def status_counts(self) -> list[dict[str, Any]]: ...
    def incident_notifications(self, incident_id: int) -> list[dict[str, Any]]: ...
    def incidents_per_day(self, since: datetime) -> list[dict[str, Any]]: ...
    def revoke_times(self, since: datetime, *, limit: int = 100_000
                     ) -> list[dict[str, Any]]: ...

    def queue_depth(self) -> int: ...
    def next_attempt_in(self) -> float | None: ...
    def oldest_pending_age(self) -> float | None: ...
    def claim_batch(self, limit: int, *, owner: str, lease: float,
                    only: str | None = None) -> list[QueueEntry]: ...
    def attempt_failed(self, entries: Sequence[QueueEntry], reason: str, *,
                       answered: bool, retry_in: float | None = None) -> None: ...
    def reject(self, entry: QueueEntry, reason: str, detail: str) -> None: ...
    def apply_outcomes(self, entries: Sequence[QueueEntry],
                       outcomes: Sequence[RevokeOutcome], *,
                       notify_owner: bool) -> list[Status]: ...

    def triage(self, ident: int | str, action: str, *, actor: str,
               reason: str | None = None, assignee: str | None = None,
               note: str | None = None, force: bool = False) -> dict[str, Any]: ...
    def triage_counts(self) -> list[tuple[str, str, int]]: ...
    def list_events(self, *, since: datetime | date | str | None = None, after_id: int = 0,
                    limit: int = 1000) -> list[dict[str, Any]]: ...

    def claim_outbox(self, limit: int, *, owner: str, lease: float,
                     channel: str | None = None) -> list[OutboxEntry]: ...
    def outbox_sent(self, ids: Sequence[int], *, answer: str) -> None: ...
    def outbox_failed(self, ids: Sequence[int], *, error: str, retry_in: float) -> None: ...
    def outbox_depth(self) -> int: ...
    def outbox_oldest_age(self) -> float | None: ...

    def save_partner_keys(self, partner: str, keys: list[dict[str, Any]],
                          etag: str | None) -> None: ...
    def load_partner_keys(self, partner: str) -> tuple[list[dict[str, Any]], str | None,
                                                       datetime | None] | None: ...
    def remember_delivery(self, partner: str, delivery_id: str) -> bool: ...

    def presence_targets(self, repository: str) -> list[Target]: ...
    def set_presence(self, incident_id: int, presence: Presence) -> bool: ...
    def presence_of(self, incident_id: int, *, present_only: bool = False
                    ) -> list[dict[str, Any]]: ...

    def dump(self, table: str) -> list[dict[str, Any]]: ...
    def copy_transaction(self) -> AbstractContextManager[
        Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]]: ...


def open_store(target: str | os.PathLike[str], *, now: Callable[[], datetime] = utcnow,
               busy_timeout: float = BUSY_TIMEOUT, migrate: bool = True,
               router: Router | None = None) -> Store:
    """Open the incident database ``target`` names: a PostgreSQL URL or an SQLite path.

    ``migrate`` True brings an older schema up to date (SQLite under its write lock,
    PostgreSQL under an advisory lock, so replicas starting at once migrate once); False
    refuses any schema but the current one with one line naming ``db migrate``.
    ``busy_timeout``: how long a call waits for a lock or a pooled connection.
    ``router``: which channels hear of an event (kept on the store; None: no outbox)."""
    if is_postgres(target):
        from scanner.incidents.store.postgres import PostgresStore

        return PostgresStore.connect(target, now=now, busy_timeout=busy_timeout,
                                     migrate=migrate, router=router)
    from scanner.incidents.store.sqlite import SqliteStore

    return SqliteStore.connect(target, now=now, busy_timeout=busy_timeout, migrate=migrate,
                               router=router)


def open_reader(target: str | os.PathLike[str], *,
                now: Callable[[], datetime] = utcnow, router: Router | None = None) -> Store:
    """Open the incident database ``target`` names for reading only: an SQLite file
    read-only (nothing created, not even a journal; a read-only mount works), a
    PostgreSQL database without migrating. A schema that is not this version's is an
    error naming ``db migrate``."""
    if is_postgres(target):
        from scanner.incidents.store.postgres import PostgresStore

        return PostgresStore.connect(target, now=now, migrate=False, router=router)
    from scanner.incidents.store.sqlite import SqliteStore

    return SqliteStore.open_readonly(target, now=now, router=router)


