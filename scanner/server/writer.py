"""Group commit for the receiver: concurrent deliveries share one database transaction.

With ``synchronous=FULL`` every commit is an fsync (~0.1 ms here, ~9,800/s), and a
partner may only get its 200 after its records are committed. Committing each delivery
alone would cap the receiver near that rate. So deliveries queue their items here, and
one flush commits everything that arrived while the previous commit ran, in one
``Store.record`` call, then wakes each waiting request with its own slice of the results.
Under light load a batch is one delivery (no added latency); under heavy load it grows.

The database is never waited on in the event loop. A group commit is first tried in
the loop on a connection whose busy timeout is 0: when the write lock is free (the usual
case) that costs the inserts and one fsync and no thread hop; when another process holds
the lock (a sweep, a CLI ``--revoke``, an operator's ``sqlite3``) SQLite says so at once
and the commit moves to the writer's own thread, whose connection waits at most
``busy_timeout`` seconds: past that the deliveries of that moment fail with
:class:`StoreBusy` (a 503 the partner retries), while ``/healthz`` and every other route
keep answering. Every other call (:meth:`call`) always runs on that thread.

On PostgreSQL every commit is a network round trip, so it always runs on the writer's
thread (the sync store, whose pooled connection is waited for at most ``busy_timeout``
and whose statements are bounded by the server-side ``statement_timeout``); the group
commit is the same. A server gone away fails the group as :class:`StoreBusy` (503, the
partner retries) and the pool reconnects by itself when it returns.

Why not always the thread on SQLite: measured with ``bench/webhook_load.py`` in one sitting, a
thread per commit costs throughput and p99 (its Python work between SQLite steps fights
the loop for the GIL); ``inline=False`` keeps that variant for a slow disk, where the
fsync itself would be worth moving off the loop.

One delivery must never fail another: the views validate every record before it joins a
group, and if a group's commit still fails for a reason that is not the database's (a
value SQLite refuses), each delivery of the group is retried alone, so only the bad one
fails (:class:`Unstorable`). A database failure (locked, I/O, closed) fails the group at
once: retrying it delivery by delivery would only multiply the wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from scanner.incidents.models import Recorded, Sighting, TokenRef
from scanner.incidents.store import Store, database_failure

_database_failure = database_failure  # the name this module's readers know

T = TypeVar("T")
_Items = Sequence[tuple[TokenRef, Sighting]]
_Pending = tuple[_Items, Collection[str], "asyncio.Future[list[Recorded]]"]

#: Seconds the writer waits for another process's write lock before a delivery gets 503.
BUSY_TIMEOUT = 5.0
#: After a failed commit, /readyz says not ready for this long (or until a commit works).
FAILURE_WINDOW = 5.0


class StoreBusy(Exception):
    """The database itself failed (locked past the busy timeout, I/O, closed): our outage.
    ``reason`` is a metric label."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Unstorable(Exception):
    """This delivery's own items were refused by SQLite (a value validation missed): the
    sender's data, not our outage. Other deliveries of its group were committed."""

    def __init__(self, error: str) -> None:
        self.reason = "unstorable_record"
        self.error = error
        super().__init__(error)


class BatchWriter:
    def __init__(self, open_store: Callable[[float], Store], *, revoke: bool,
                 max_items: int = 20_000, busy_timeout: float = BUSY_TIMEOUT,
                 inline: bool = True, monotonic: Callable[[], float] = time.monotonic,
                 failure_window: float = FAILURE_WINDOW) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._open = open_store
        self.busy_timeout = busy_timeout
        self._store: Store | None = None  # the thread's: waits up to busy_timeout
        self.inline = inline
        self._inline: Store | None = None  # the loop's: never waits (busy timeout 0)
        self.revoke = revoke
        self.max_items = max_items
        self._pending: list[_Pending] = []
        self._flushing: asyncio.Task[None] | None = None
        self._now = monotonic
        self.failure_window = failure_window
        self.failed_at: float | None = None  # last database failure, cleared by a commit
        self.failure_reason: str | None = None
        self.commits = 0
        self.inline_commits = 0
        self.on_commit: Callable[[], None] | None = None

    @property
    def healthy(self) -> bool:
        """False while the last commit failed on the database, for ``failure_window``
        seconds (readiness must recover even if no delivery arrives to prove it)."""
        return self.failed_at is None or self._now() - self.failed_at > self.failure_window

    async def start(self) -> None:
        backend = await self.call(lambda s: s.backend)
        # PostgreSQL's commits are network round trips: always on the thread.
        self.inline = self.inline and backend == "sqlite"
        if self.inline:
            self._inline = await self.call(lambda _: self._open(0.0))

    def _run(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = self._open(self.busy_timeout)
        return fn(self._store)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the writer's thread and connection (never in the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn)

    async def record(self, items: Sequence[tuple[TokenRef, Sighting]], *,
                     false_positive: Collection[str] = ()) -> list[Recorded]:
        """Return once ``items`` are committed; :class:`StoreBusy` or :class:`Unstorable`
        if they could not be."""
        if not items:
            return []
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, false_positive, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        return await future

    async def _commit(self, batch: list[_Pending]) -> list[Recorded]:
        items = [item for entry in batch for item in entry[0]]
        fps = {sha for entry in batch for sha in entry[1]}
        try:
            if self._inline is not None:
                try:  # the lock free (the usual case): commit here, no thread hop
                    results = self._inline.record(items, revoke=self.revoke,
                                                  false_positive=fps)
                    self.inline_commits += 1
                    return self._committed(results)
                except Exception as exc:  # noqa: BLE001 - only a held lock moves on
                    if _database_failure(exc) != "database_locked":
                        raise
            results = await self.call(
                lambda s: s.record(items, revoke=self.revoke, false_positive=fps))
        except Exception as exc:  # noqa: BLE001 - classified: ours or the data's
            reason = _database_failure(exc)
            if reason is not None:
                self.failed_at, self.failure_reason = self._now(), reason
                raise StoreBusy(reason) from exc
            raise Unstorable(type(exc).__name__) from exc
        return self._committed(results)

    def _committed(self, results: list[Recorded]) -> list[Recorded]:
        self.failed_at = self.failure_reason = None
        self.commits += 1
        return results

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the deliveries already read join this commit
        while self._pending:
            batch: list[_Pending] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <=
                                     self.max_items):
                batch.append(self._pending.pop(0))
                size += len(batch[-1][0])
            try:
                results = await self._commit(batch)
            except StoreBusy as exc:  # every waiter gets the outage
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except Unstorable:
                await self._one_by_one(batch)
                continue
            start = 0
            for entry_items, _, future in batch:
                if not future.done():
                    future.set_result(results[start:start + len(entry_items)])
                start += len(entry_items)
            if self.on_commit is not None:
                self.on_commit()

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        """A group refused for its data: each delivery alone, so only the bad one fails."""
        for entry in batch:
            future = entry[2]
            try:
                result = await self._commit([entry])
            except (StoreBusy, Unstorable) as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(result)
        if self.on_commit is not None:
            self.on_commit()

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._store is not None:
            await self.call(lambda s: s.close())
        self._pool.shutdown(wait=True)
