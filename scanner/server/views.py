"""The aiohttp handlers: thin. Verification is :mod:`.verify` / :mod:`.keys`, the record
logic :mod:`.reports`, the commit :mod:`.writer`; a view only wires them and turns a
:class:`ReportError` into its status, a short JSON error and a metric reason."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web

from scanner.server.errors import Rejected, ReportError, SignatureError, Unavailable
from scanner.server.reports import feedback, parse_records
from scanner.server.state import (
    CONFIG,
    DELIVERIES,
    KEY_CACHES,
    METRICS,
    NOW,
    REVOKER,
    STORE,
    WRITER,
)
from scanner.server.verify import verify_ecdsa, verify_hmac

log = logging.getLogger("scanner.server")
_JSON_TYPES = {"application/json"}


def _error(exc: ReportError) -> web.Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


async def read_body(request: web.Request) -> bytes:
    """The raw bytes, after the cheap checks: content type, then size (413)."""
    if request.content_type not in _JSON_TYPES:
        raise Rejected("wrong_content_type", "Content-Type must be application/json",
                       status=415)
    limit = request.app[CONFIG].body_limit
    if request.content_length is not None and request.content_length > limit:
        raise Rejected("body_too_large", f"body over {limit} bytes", status=413)
    timeout = request.app[CONFIG].body_timeout
    try:
        # A body that trickles in (slowloris) is cut off: the connection is not held.
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise Rejected("body_timeout", f"the body took over {timeout:g} s",
                       status=408) from None
    except web.HTTPRequestEntityTooLarge:
        raise Rejected("body_too_large", f"body over {limit} bytes", status=413) from None


async def _accept(request: web.Request, partner: str, source: str, body: bytes,
                  delivery_id: str | None) -> web.Response:
    """Parse, commit (the 200 waits for it), wake the revoker, answer the feedback."""
    app = request.app
    metrics = app[METRICS]
    report = parse_records(body, partner=partner, source=source, delivery_id=delivery_id,
                           received_at=app[NOW]())
    try:
        recorded = await app[WRITER].record(report.items,
                                            false_positive=report.false_positive)
    except Exception as exc:  # noqa: BLE001 - any store failure is our outage
        log.error("could not record a delivery", extra={"partner": partner,
                                                        "reason": "database",
                                                        "error": type(exc).__name__})
        raise Unavailable("database", "the incident store is unavailable",
                          retry_after=5) from None
    new = 0
    for (ref, _), result in zip(report.items, recorded, strict=True):
        if result.new_incident:
            new += 1
            log.info("new incident", extra={"incident_id": result.incident_id,
                                            "redacted": ref.redacted, "partner": partner,
                                            "status": str(result.status)})
    fps = sum(1 for ref, _ in report.items if ref.sha256 in report.false_positive)
    metrics.child(metrics.reports, partner, "accepted").inc()
    metrics.child(metrics.records, partner, "accepted").inc(len(report.items) - fps)
    if fps:
        metrics.child(metrics.records, partner, "false_positive").inc(fps)
    if report.malformed:
        metrics.child(metrics.records, partner, "malformed").inc(report.malformed)
        log.warning("malformed records skipped", extra={"partner": partner,
                                                        "malformed": report.malformed})
    revoker = app[REVOKER]
    if revoker is not None and len(report.items) > fps:
        revoker.wake()
    return web.json_response(feedback(report, recorded))


async def _guard(request: web.Request, partner: str,
                 handle: Callable[[], Awaitable[web.Response]]) -> web.Response:
    try:
        return await handle()
    except ReportError as exc:
        request.app[METRICS].rejected.labels(partner, exc.reason).inc()
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        log.log(level, "delivery refused", extra={"partner": partner, "reason": exc.reason,
                                                  "status": exc.status})
        return _error(exc)


async def keyed_report(request: web.Request, name: str) -> web.Response:
    """GitHub's and GitLab's protocol: ECDSA P-256 over the raw body."""
    cache = request.app[KEY_CACHES].get(name)
    if cache is None:
        raise web.HTTPNotFound()
    prefix = name.capitalize()

    async def handle() -> web.Response:
        body = await read_body(request)
        key_id = request.headers.get(f"{prefix}-Public-Key-Identifier", "").strip()
        signature = request.headers.get(f"{prefix}-Public-Key-Signature", "").strip()
        if not key_id or not signature:
            raise SignatureError("missing_signature_headers", status=400)
        key = await cache.get(key_id)
        verify_ecdsa(key.key, signature, body)
        return await _accept(request, name, name, body,
                             request.headers.get("X-GitHub-Delivery") if name == "github"
                             else None)

    return await _guard(request, name, handle)


async def github(request: web.Request) -> web.Response:
    return await keyed_report(request, "github")


async def gitlab(request: web.Request) -> web.Response:
    return await keyed_report(request, "gitlab")


async def webhook_report(request: web.Request) -> web.Response:
    """``POST /partners/{name}``: a partner configured with Standard Webhooks secrets."""
    name = request.match_info["name"]
    partner = request.app[CONFIG].webhooks.get(name)
    if partner is None:
        raise web.HTTPNotFound()

    async def handle() -> web.Response:
        body = await read_body(request)
        h = request.headers
        msg_id = h.get("webhook-id")
        verify_hmac(partner.secrets, msg_id, h.get("webhook-timestamp"),
                    h.get("webhook-signature"), body,
                    now=request.app[NOW]().timestamp())
        assert msg_id is not None  # checked by verify_hmac
        delivery = msg_id[:200]
        seen = request.app[DELIVERIES]
        if (name, delivery) in seen:  # an exact redelivery: dropped, nothing written
            request.app[METRICS].reports.labels(name, "redelivery").inc()
            return web.json_response([])
        # Recorded first, remembered after: a crash between the two makes the sender's
        # redelivery record again, which adds nothing (same delivery id, same sightings),
        # whereas remembering first could drop a delivery that was never committed.
        answer = await _accept(request, name, f"partner:{name}", body, delivery)
        fresh = await request.app[WRITER].call(lambda s: s.remember_delivery(name, delivery))
        seen[(name, delivery)] = None
        if len(seen) > 50_000:
            seen.pop(next(iter(seen)))
        if not fresh:  # redelivered across a restart: the record above added nothing
            request.app[METRICS].reports.labels(name, "redelivery").inc()
        return answer

    return await _guard(request, name, handle)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store takes a write, every partner's keys are loaded, and the
    revoker is not blocked on a refused credential; else 503 with the reasons."""
    app = request.app
    reasons = []
    try:
        if not await app[WRITER].call(lambda s: s.writable()):
            reasons.append("database_not_writable")
    except Exception:  # noqa: BLE001
        reasons.append("database_not_writable")
    for name, cache in app[KEY_CACHES].items():
        if not cache.loaded:
            reasons.append(f"{name}_keys_not_loaded")
    revoker = app[REVOKER]
    if revoker is not None and not revoker.healthy:
        reasons.append(f"revoker_{revoker.unhealthy_reason or 'unhealthy'}")
    if reasons:
        return web.json_response({"ready": False, "reasons": reasons}, status=503)
    return web.json_response({"ready": True})


async def metrics(request: web.Request) -> web.Response:
    from scanner.server.metrics import CONTENT_TYPE

    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE})


def _reader(request: web.Request) -> None:
    """Bearer token check in constant time; no configured token means no reader."""
    expected = request.app[CONFIG].reader_token
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    ok = expected is not None and scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode())
    if not ok:
        raise web.HTTPUnauthorized(text=json.dumps({"error": "unauthorized"}),
                                   content_type="application/json",
                                   headers={"WWW-Authenticate": "Bearer"})


def _dumps(value: object) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime)
                      else str(v))


async def incidents(request: web.Request) -> web.Response:
    _reader(request)
    q = request.query
    try:
        limit = int(q["limit"]) if "limit" in q else 100
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "bad_limit"}',
                                 content_type="application/json") from None
    try:
        rows = request.app[STORE].list_incidents(status=q.get("status"),
                                                 severity=q.get("severity"),
                                                 since=q.get("since"), limit=limit)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "bad_query"}',
                                 content_type="application/json") from None
    return web.json_response(rows, dumps=_dumps)


async def incident(request: web.Request) -> web.Response:
    _reader(request)
    found = request.app[STORE].get_incident(request.match_info["ident"])
    if found is None:
        raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")
    return web.json_response(found, dumps=_dumps)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/partners/github", github)
    app.router.add_post("/partners/gitlab", gitlab)
    app.router.add_post("/partners/{name}", webhook_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/incidents", incidents)
    app.router.add_get("/incidents/{ident}", incident)

