"""The incident trail behind one facade: the store, and the revoker that drains its queue.

Every writer of the trail opens it here: a one-off scan's ``--record``/``--revoke``
(:mod:`scanner.incidents.pipeline`), the CLI's ``revoke``, a sweep's local sink and the
receiver. So the backend is chosen in one place (:func:`open_store` is the only caller
of ``Store.open``), and so is the set-up of a revoker (a client session, a
:class:`~scanner.cendis.client.CendisClient` on it, a
:class:`~scanner.incidents.revoker.Revoker` on the store), which each of them used to
build for itself.

Opening the store imports SQLite only; aiohttp and the revoker are imported when a
revoker is asked for, so recording without revoking stays light.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scanner.incidents.findings import record_findings
from scanner.incidents.models import Recorded, Router, Status, utcnow
from scanner.incidents.store import Store

if TYPE_CHECKING:
    import aiohttp

    from scanner.incidents.revoker import Revoker

#: A one-off drain (a scan's ``--revoke``, the CLI's ``revoke``) waits short backoffs:
#: its patience is seconds, not the service's minutes.
ONE_OFF_BACKOFF: dict[str, Any] = {"base_delay": 0.5, "max_delay": 5.0}


def open_store(db: str | os.PathLike[str], *, now: Callable[[], datetime] | None = None,
               busy_timeout: float | None = None, migrate: bool = True,
               router: Router | None = None) -> Store:
    """Open (creating, or migrating unless ``migrate`` is False) the incident database at
    ``db``, an SQLite path or a PostgreSQL URL: the one place that opens a trail's store.
    ``router`` (kept on the store) names the channels that hear of its events."""
    options: dict[str, Any] = {"migrate": migrate, "router": router}
    if now is not None:
        options["now"] = now
    if busy_timeout is not None:
        options["busy_timeout"] = busy_timeout
    return Store.open(db, **options)


class IncidentTrail:
    """One open trail: record findings, and revoke what is queued once :meth:`revoking`
    attached a revoker. Thread-safe as the store is (a sweep records from many threads
    while its revoker drains in another)."""

    def __init__(self, store: Store, *, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.revoker: Revoker | None = None
        self._now = now

    @classmethod
    def open(cls, db: str | os.PathLike[str], *,
             now: Callable[[], datetime] | None = None, migrate: bool = True,
             router: Router | None = None) -> IncidentTrail:
        return cls(open_store(db, now=now, migrate=migrate, router=router),
                   now=now or utcnow)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> IncidentTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, findings: Iterable[object], source: str, *, revoke: bool,
               repository: str | None = None, url: str | None = None) -> list[Recorded]:
        """Record each finding as a sighting at ``source`` (``scan:<path or repo>``);
        with ``revoke``, queue the revocable ones. Results in the order of ``findings``;
        nothing is sent until :meth:`drain` (or a running revoker) takes the queue."""
        return record_findings(self.store, findings, source, revoke=revoke, now=self._now,
                               repository=repository, url=url)

    def status_of(self, sha256: str) -> Status | None:
        return self.store.status_of(sha256)

    @asynccontextmanager
    async def revoking(self, cendis_url: str, credential: str, *,
                       session: aiohttp.ClientSession | None = None,
                       timeout: float | None = None,
                       clock: Callable[[], datetime] | None = None,
                       **options: Any) -> AsyncIterator[Revoker]:
        """A revoker on this trail's queue for the time of the block (as
        :attr:`revoker`). ``session`` is the caller's (a server shares its own), else one
        is opened and closed here; ``timeout`` and ``clock`` go to the Cendis client,
        ``options`` to :class:`~scanner.incidents.revoker.Revoker`."""
        import aiohttp

        from scanner.cendis.client import CendisClient
        from scanner.incidents.revoker import Revoker

        client_options: dict[str, Any] = {}
        if timeout is not None:
            client_options["timeout"] = timeout
        if clock is not None:
            client_options["now"] = clock
        async with AsyncExitStack() as stack:
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            client = CendisClient(session, cendis_url, credential, **client_options)
            self.revoker = Revoker(self.store, client, **options)
            try:
                yield self.revoker
            finally:
                self.revoker = None

    async def drain(self, patience: float) -> None:
        """Revoke what is queued (the whole queue, an earlier run's leftovers too) until
        it is empty, blocked on our credential, or out of ``patience`` seconds; what is
        left stays queued. Without a revoker, nothing is sent."""
        if self.revoker is not None and self.store.queue_depth():
            await self.revoker.drain(patience=patience)


@asynccontextmanager
async def open_trail(db: str | os.PathLike[str], *, cendis_url: str | None = None,
                     credential: str | None = None,
                     now: Callable[[], datetime] | None = None,
                     revoker_options: dict[str, Any] | None = None,
                     router: Router | None = None,
                     ) -> AsyncIterator[IncidentTrail]:
    """The trail at ``db``, with a revoker when both ``cendis_url`` and ``credential``
    are given (``revoker_options`` go to it; by default the one-off backoff). Closed on
    the way out; a token still queued stays queued for the next run. ``router``: which
    channels hear of the trail's events (none: no outbox rows)."""
    trail = IncidentTrail.open(db, now=now, router=router)
    try:
        if cendis_url is None or credential is None:
            yield trail
        else:
            options = ONE_OFF_BACKOFF if revoker_options is None else revoker_options
            async with trail.revoking(cendis_url, credential, **options):
                yield trail
    finally:
        trail.close()
