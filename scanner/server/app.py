"""The receiver's app factory: everything with a lifetime opens and closes in
``cleanup_ctx`` (the client session, the store and its group-commit writer, the partner
key caches, the Cendis client and the revoker task), in that order and back."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from scanner.incidents.trail import IncidentTrail, open_store
from scanner.server.config import ServerConfig
from scanner.server.dashboard import create_dashboard
from scanner.server.findings import add_findings_route
from scanner.server.keys import KeyCache, http_fetcher
from scanner.server.logs import MalformedRequestFilter, watch_malformed_requests
from scanner.server.metrics import Metrics
from scanner.server.state import (
    CONFIG,
    DELIVERIES,
    KEY_CACHES,
    METRICS,
    NOW,
    REVOKER,
    SESSION,
    STORE,
    STORE_GAUGES,
    TRAIL,
    WRITER,
)
from scanner.server.triage import add_triage_route
from scanner.server.views import add_routes
from scanner.server.writer import BatchWriter

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@web.middleware
async def _timing(request: web.Request, handler: Any) -> web.StreamResponse:
    start = time.perf_counter()
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        metrics = request.app[METRICS]
        metrics.child(metrics.latency, name).observe(time.perf_counter() - start)


@dataclass(frozen=True, slots=True)
class Wiring:
    """What :func:`create_app` was given for the contexts below to open things with."""

    db_path: str | os.PathLike[str]
    cendis_api_url: str
    credential: str | None
    monotonic: Callable[[], float]
    cendis_timeout: float
    revoker_options: dict[str, Any]
    restart_sleep: Callable[[float], Awaitable[None]]
    migrate: bool = True


WIRING = web.AppKey("wiring", Wiring)


def create_app(config: ServerConfig, *, db_path: str | os.PathLike[str],
               cendis_api_url: str, credential: str | None,
               now: Callable[[], datetime] = _utcnow,
               monotonic: Callable[[], float] = time.monotonic,
               cendis_timeout: float = 10.0,
               revoker_options: dict[str, Any] | None = None,
               restart_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
               migrate: bool = True,
               randbytes: Callable[[int], bytes] = secrets.token_bytes,
               ) -> web.Application:
    """The receiver. ``credential`` None runs without a revoker (reports are recorded
    and queued; a later ``revoke``/``serve`` drains the queue). ``revoker_options`` are
    passed to :class:`Revoker` (tests inject ``sleep`` and ``rng``); ``restart_sleep``
    is the supervisor's wait before restarting a crashed revoker; ``randbytes`` makes the
    dashboard's session ids and CSRF tokens. ``db_path`` is an
    SQLite path or a PostgreSQL URL; ``migrate`` brings its schema up to date at start-up
    (under the backend's lock), else an old schema stops the start-up."""
    # +64 KiB: the limit is ours to answer (413 as JSON), not aiohttp's plain-text one
    app = web.Application(client_max_size=config.body_limit + 65536, middlewares=[_timing])
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[NOW] = now
    app[KEY_CACHES] = {}
    app[REVOKER] = None
    app[DELIVERIES] = {}
    app[STORE_GAUGES] = {}
    app[WIRING] = Wiring(db_path, cendis_api_url, credential, monotonic, cendis_timeout,
                         dict(revoker_options or {}), restart_sleep, migrate)
    # In this order, closed in reverse (aiohttp's cleanup_ctx).
    app.cleanup_ctx.extend([_lifecycle_ctx, _session_ctx, _store_ctx, _keys_ctx,
                            _revoker_ctx])
    app.on_shutdown.append(_stopping)
    app[METRICS].watch(lambda: _gauges(app))
    add_routes(app)
    add_findings_route(app)
    add_triage_route(app)
    app.add_subapp("/dashboard", create_dashboard(
        app[METRICS], monotonic=monotonic, randbytes=randbytes,
        secure_cookie=config.dashboard_secure_cookie,
        session_ttl=config.dashboard_session_ttl))
    for path in ("/", "/dashboard"):
        app.router.add_get(path, _to_dashboard)
    return app


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


async def _lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    """First in, last out: malformed requests counted, not logged at ERROR each; one
    line when everything has stopped."""
    metrics = app[METRICS]
    detach = watch_malformed_requests(MalformedRequestFilter(
        lambda reason: metrics.child(metrics.http_errors, reason).inc(),
        monotonic=app[WIRING].monotonic))
    try:
        yield
    finally:
        detach()
        log.info("stopped", extra={"reason": "shutdown"})


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[SESSION] = session
        yield


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """The trail (its store answers the views) and the group-commit writer, which opens
    its own connections to the same database on its thread."""
    config, wiring = app[CONFIG], app[WIRING]
    trail = IncidentTrail.open(wiring.db_path, migrate=wiring.migrate)
    writer = BatchWriter(lambda wait: open_store(wiring.db_path, busy_timeout=wait,
                                                 migrate=False),
                         revoke=config.auto_revoke, busy_timeout=config.db_busy_timeout,
                         monotonic=wiring.monotonic)
    try:
        await writer.start()
        app[TRAIL], app[STORE], app[WRITER] = trail, trail.store, writer
        yield
    finally:
        await writer.close()
        trail.close()


async def _keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Each keyed partner's key cache (saved keys loaded first), fetched at once and
    refreshed on a timer until shutdown."""
    config = app[CONFIG]
    for name, partner in config.keyed.items():
        saved = await asyncio.to_thread(app[STORE].load_partner_keys, name)
        fetch = http_fetcher(app[SESSION], partner.keys_url,
                             github_token=partner.fetch_token,
                             timeout=config.key_fetch_timeout)
        app[KEY_CACHES][name] = KeyCache(
            name, fetch, persist=_key_saver(app, name),
            initial=saved[0] if saved else None, etag=saved[1] if saved else None,
            refetch_interval=config.key_refetch_interval, miss_ttl=config.key_miss_ttl,
            refresh_interval=config.key_refresh_interval, now=app[WIRING].monotonic)
    caches = list(app[KEY_CACHES].values())
    # Saved keys too: trusted only until this first fetch says what is current.
    tasks = [asyncio.create_task(_first_fetch(cache)) for cache in caches]
    tasks += [asyncio.create_task(_refresh_timer(cache)) for cache in caches]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for cache in caches:
        await cache.close()


def _key_saver(app: web.Application, name: str
               ) -> Callable[[list[dict[str, Any]], str | None], Awaitable[None]]:
    """What a key cache calls with fetched keys: saved on the writer's thread (a held
    lock must not stop the loop); a failure is logged, the keys in memory stay in use."""

    async def persist(keys: list[dict[str, Any]], etag: str | None) -> None:
        app[METRICS].key_fetches.labels(name, "updated").inc()
        try:
            await app[WRITER].call(lambda s: s.save_partner_keys(name, keys, etag))
        except Exception as exc:  # noqa: BLE001 - the keys in memory are in use
            log.warning("partner keys not saved", extra={
                "partner": name, "reason": "database", "error": type(exc).__name__})

    return persist


async def _revoker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The supervised revoker on the app's session, when a credential was given: a
    crash is logged, counted and restarted; /readyz says so meanwhile."""
    wiring = app[WIRING]
    if wiring.credential is None:
        yield
        return
    from scanner.incidents.revoker import supervise

    async with app[TRAIL].revoking(wiring.cendis_api_url, wiring.credential,
                                   session=app[SESSION], timeout=wiring.cendis_timeout,
                                   clock=app[NOW], **wiring.revoker_options) as revoker:
        await _whoami(revoker.client, app[NOW]())
        app[REVOKER] = revoker
        task = asyncio.create_task(supervise(revoker, sleep=wiring.restart_sleep))
        yield
        revoker.stop()  # between batches: a call in flight finishes and is recorded
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - shutdown goes on (exit 0), said once
            log.error("revoker failed at shutdown", extra={"reason": type(exc).__name__})


async def _first_fetch(cache: KeyCache) -> None:
    """Fetch once at start-up: nothing saved (a failure only delays readiness), or saved
    keys to confirm (a failure keeps them)."""
    from scanner.server.errors import Unavailable

    try:
        await cache.refresh()
        log.info("partner keys fetched", extra={"partner": cache.partner})
    except Unavailable as exc:
        log.warning("partner keys not fetched", extra={"partner": cache.partner,
                                                       "reason": exc.reason})


async def _stopping(app: web.Application) -> None:
    log.info("shutting down: finishing the deliveries and the revoke call in flight",
             extra={"reason": "shutdown"})


async def _refresh_timer(cache: KeyCache) -> None:
    """Refresh on schedule even when no delivery comes (a :meth:`KeyCache.get` would)."""
    while True:
        await asyncio.sleep(min(cache.refresh_interval, 60.0))
        cache.refresh_if_due()


async def _whoami(client: Any, now: datetime) -> None:
    """Log who we revoke as (never the credential); warn on ``admin:org``."""
    from scanner.cendis.client import CendisError

    try:
        who = await client.whoami()
    except CendisError as exc:
        level = logging.ERROR if exc.reason in ("unauthorized", "forbidden") else \
            logging.WARNING
        log.log(level, "whoami failed: revokes wait until the Cendis API accepts the "
                "credential", extra={"reason": exc.reason})
        return
    except (ValueError, OSError) as exc:  # a URL or header aiohttp refuses: say so, go on
        log.error("whoami failed", extra={"reason": "client", "error": type(exc).__name__})
        return
    days = (who.expires_at - now).days if who.expires_at else None
    log.info("revoking as %s (%s)", who.username, who.org,
             extra={"username": who.username, "org": who.org, "days_left": days})
    if "admin:org" in who.scopes:
        log.warning("the service credential carries admin:org; Cendis advises granting it "
                    "to humans only: use a token with revoke:tokens alone",
                    extra={"reason": "admin_org"})


def _gauges(app: web.Application) -> dict[str, Any]:
    cache = app[STORE_GAUGES]
    values: dict[str, Any] = {key: cache[key] for key in
                              ("revoke_queue_depth", "revoke_oldest_pending_seconds")
                              if key in cache}
    revoker = app[REVOKER]
    if revoker is not None:
        values["revoker_healthy"] = 1 if revoker.healthy else 0
        values["revoker_crashes"] = dict(revoker.crashes)
        values["tokens_revoked"] = revoker.revoked
        values["revoke_errors"] = dict(revoker.errors)
    return values
