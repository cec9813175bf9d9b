"""The aiohttp handlers: thin. Verification is :mod:`.verify` / :mod:`.keys`, the record
logic :mod:`.reports`, the commit :mod:`.writer`; a view only wires them and turns a
:class:`ReportError` into its status, a short JSON error and a metric reason."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from scanner.incidents.models import Severity, Status
from scanner.scrub import scrub_json
from scanner.server.auth import Role, require
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
    STORE_GAUGES,
    WRITER,
)
from scanner.server.verify import (
    check_webhook_headers,
    decode_signature,
    verify_ecdsa,
    verify_hmac,
)
from scanner.server.writer import StoreBusy, Unstorable

log = logging.getLogger(__name__)
_JSON_TYPES = {"application/json"}
MAX_LIMIT = 1000  # incidents per /incidents page
_QUERY_PARAMS = frozenset({"limit", "since", "status", "severity"})
_STATUSES = tuple(s.value for s in Status)  # the model's enums, never a copy
_SEVERITIES = tuple(s.value for s in Severity)
_SINCE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?",
                    re.ASCII)


def _error(exc: ReportError) -> web.Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


def check_request(request: web.Request) -> None:
    """What the headers alone tell, before a byte of the body is read (an unauthenticated
    client must not make us buffer 30 MB): the content type, then the declared size."""
    if request.content_type not in _JSON_TYPES:
        raise Rejected("wrong_content_type", "Content-Type must be application/json",
                       status=415)
    limit = request.app[CONFIG].body_limit
    if request.content_length is not None and request.content_length > limit:
        raise Rejected("body_too_large", f"body over {limit} bytes", status=413)


async def read_body(request: web.Request) -> bytes:
    """The raw bytes, after the cheap checks (:func:`check_request`): 415, 413, 408."""
    check_request(request)
    limit = request.app[CONFIG].body_limit
    timeout = request.app[CONFIG].body_timeout
    try:
        # A body that trickles in (slowloris) is cut off: the connection is not held.
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise Rejected("body_timeout", f"the body took over {timeout:g} s",
                       status=408) from None
    except web.HTTPRequestEntityTooLarge:
        raise Rejected("body_too_large", f"body over {limit} bytes", status=413) from None


def delivery_key(delivery_id: str) -> str:
    """What de-duplicates a webhook delivery: a hash of the whole id (never a prefix, so
    two ids sharing their first 200 characters stay two deliveries)."""
    return "sha256:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()


async def _accept(request: web.Request, partner: str, source: str, body: bytes,
                  delivery_id: str | None) -> web.Response:
    """Parse, commit (the 200 waits for it), wake the revoker, answer the feedback."""
    app = request.app
    metrics = app[METRICS]
    report = parse_records(body, partner=partner, source=source, delivery_id=delivery_id,
                           received_at=app[NOW](), max_records=app[CONFIG].max_records)
    for reason, count in report.malformed_reasons.items():
        metrics.child(metrics.malformed, partner, reason).inc(count)
    try:
        recorded = await app[WRITER].record(report.items,
                                            false_positive=report.false_positive)
    except StoreBusy as exc:  # the database's failure: our outage, the sender retries
        raise Unavailable(exc.reason, "the incident store is unavailable",
                          retry_after=5) from None
    except Unstorable as exc:  # this delivery's data, not the database's fault
        log.warning("a delivery's records could not be stored",
                    extra={"partner": partner, "reason": exc.reason, "error": exc.error})
        raise Rejected(exc.reason, "a record could not be stored", status=422) from None
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
                                                        "malformed": report.malformed,
                                                        "reason": ",".join(sorted(
                                                            report.malformed_reasons))})
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


def _key_headers(request: web.Request, prefix: str) -> tuple[str, str]:
    """The key id and signature headers, present and plausible (an opaque id, but short
    printable ASCII; a signature that decodes to DER), or a 4xx before the body is read."""
    key_id = request.headers.get(f"{prefix}-Public-Key-Identifier", "").strip()
    signature = request.headers.get(f"{prefix}-Public-Key-Signature", "").strip()
    if not key_id or not signature:
        raise SignatureError("missing_signature_headers", status=400)
    if len(key_id) > 256 or not (key_id.isascii() and key_id.isprintable()):
        raise SignatureError("bad_key_identifier", status=400)
    if len(signature) > 256:
        raise SignatureError("signature_not_der")
    decode_signature(signature)
    return key_id, signature


async def keyed_report(request: web.Request, name: str) -> web.Response:
    """GitHub's and GitLab's protocol: ECDSA P-256 over the raw body. Every header check
    (type, size, signature headers, the key itself) comes before the body is read."""
    cache = request.app[KEY_CACHES].get(name)
    if cache is None:
        raise web.HTTPNotFound()
    prefix = name.capitalize()

    async def handle() -> web.Response:
        check_request(request)
        key_id, signature = _key_headers(request, prefix)
        key = await cache.get(key_id)
        body = await read_body(request)
        verify_ecdsa(key.key, signature, body)
        # No delivery id: X-GitHub-Delivery is not signed, so a replay of one body under
        # new ids must add no sighting; a sighting is its content (token, url, source).
        return await _accept(request, name, name, body, None)

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
        check_request(request)
        h = request.headers
        msg_id = h.get("webhook-id")
        now = request.app[NOW]().timestamp()
        check_webhook_headers(msg_id, h.get("webhook-timestamp"), h.get("webhook-signature"),
                              now=now)
        body = await read_body(request)
        verify_hmac(partner.secrets, msg_id, h.get("webhook-timestamp"),
                    h.get("webhook-signature"), body, now=now)
        assert msg_id is not None  # checked by check_webhook_headers
        delivery = delivery_key(msg_id)
        seen = request.app[DELIVERIES]
        if (name, delivery) in seen:  # an exact redelivery: dropped, nothing written
            request.app[METRICS].reports.labels(name, "redelivery").inc()
            return web.json_response([])
        # Recorded first, remembered after: a crash between the two makes the sender's
        # redelivery record again, which adds nothing (same delivery id, same sightings),
        # whereas remembering first could drop a delivery that was never committed.
        shown = msg_id if len(msg_id) <= 200 and msg_id.isprintable() else delivery
        answer = await _accept(request, name, f"partner:{name}", body, shown)
        try:
            fresh = await request.app[WRITER].call(
                lambda s: s.remember_delivery(name, delivery))
        except Exception as exc:  # noqa: BLE001 - recorded already; a redelivery adds nothing
            log.warning("delivery id not remembered", extra={"partner": name,
                                                             "reason": "database",
                                                             "error": type(exc).__name__})
            fresh = True
        seen[(name, delivery)] = None
        if len(seen) > 50_000:
            seen.pop(next(iter(seen)))
        if not fresh:  # redelivered across a restart: the record above added nothing
            request.app[METRICS].reports.labels(name, "redelivery").inc()
        return answer

    return await _guard(request, name, handle)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the loop answers. Never the database (a lock held elsewhere is not a
    reason to restart us)."""
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the last commit did not fail on the database (the writer's own flag:
    readiness never writes), the store answers a read within a second (off the loop),
    every partner's keys are loaded, and the revoker is not blocked on a refused
    credential; else 503 with the reasons."""
    reasons = await ready_reasons(request.app)
    if reasons:
        return web.json_response({"ready": False, "reasons": reasons}, status=503)
    return web.json_response({"ready": True})


async def ready_reasons(app: web.Application) -> list[str]:
    """Why the receiver is not ready (empty: ready); /readyz and ``cendis_ready``."""
    reasons = []
    if not app[WRITER].healthy:
        reasons.append("database_not_writable")
    else:
        try:
            await asyncio.wait_for(asyncio.to_thread(app[STORE].schema_version), 1.0)
        except Exception:  # noqa: BLE001 - any failure to read is "not ready"
            reasons.append("database_not_readable")
    for name, cache in app[KEY_CACHES].items():
        if not cache.loaded:
            reasons.append(f"{name}_keys_not_loaded")
    revoker = app[REVOKER]
    if revoker is not None and not revoker.healthy:
        reasons.append(f"revoker_{revoker.unhealthy_reason or 'unhealthy'}")
    return reasons


#: How long a scrape waits for fresh queue gauges before showing the last ones.
GAUGE_WAIT = 1.0


async def refresh_store_gauges(app: web.Application, wait: float = GAUGE_WAIT) -> None:
    """Read the queue gauges off the loop, waiting at most ``wait``: with the database
    gone a scrape answers at once with the last values (stale is better than a 30 s
    scrape), and at most one read is under way however often it is scraped."""
    store, cache = app.get(STORE), app[STORE_GAUGES]
    if store is None or cache.get("reading"):
        return
    cache["reading"] = True

    def read() -> None:
        try:
            cache["revoke_queue_depth"] = store.queue_depth()
            cache["revoke_oldest_pending_seconds"] = store.oldest_pending_age()
            cache["outbox_depth"] = store.outbox_depth()
            cache["outbox_oldest_pending_seconds"] = store.outbox_oldest_age()
            cache["open_incidents"] = store.triage_counts()
        except Exception:  # noqa: BLE001 - a scrape must not fail on a busy database
            pass
        finally:
            cache["reading"] = False

    task = asyncio.ensure_future(asyncio.to_thread(read))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), wait)


async def metrics(request: web.Request) -> web.Response:
    from scanner.server.metrics import CONTENT_TYPE

    await refresh_store_gauges(request.app)  # bounded: stale gauges, never a long wait
    request.app[STORE_GAUGES]["ready"] = 0 if await ready_reasons(request.app) else 1
    body = request.app[METRICS].render()  # from memory: the store was read above
    return web.Response(body=body,
                        headers={"Content-Type": CONTENT_TYPE})


#: Authenticated answers: no cache (a browser's or a proxy's) keeps the incident trail.
NO_STORE = {"Cache-Control": "no-store"}


def _dumps(value: object) -> str:
    """JSON of stored rows, every string scrubbed once more on the way out (a database
    written before the store scrubbed, or by hand, never serves a whole token)."""
    return json.dumps(scrub_json(value), default=lambda v: v.isoformat() if isinstance(v, datetime)
                      else str(v))


def _bad_query(error: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": error}),
                              content_type="application/json")


def _limit(text: str | None) -> int:
    """1..1000 in ASCII digits, else a 400: ``str.isdigit`` says yes to ``²`` (which
    ``int()`` refuses) and ``int()`` reads ``١`` as 1, twenty digits overflow SQLite, and
    a negative limit means "every row" to SQLite."""
    if text is None:
        return 100
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 4 or not \
            1 <= int(text) <= MAX_LIMIT:
        raise _bad_query("bad_limit")
    return int(text)


def _since(text: str | None) -> datetime | None:
    """The documented forms only: ``YYYY-MM-DD``, or that with ``THH:MM[:SS[.ffffff]]``
    and an optional ``Z``/``±HH:MM`` (naive means UTC). ``fromisoformat`` alone also takes
    ``2026-W05``, ``20260101``, a trailing space; years and offsets that cannot be turned
    into UTC (``0001-01-01T00:00:00+14:00``) are a 400, not an overflow."""
    if text is None:
        return None
    if not _SINCE.fullmatch(text):
        raise _bad_query("bad_since")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _bad_query("bad_since") from None


def _one(query: MultiMapping[str], name: str, allowed: tuple[str, ...] = ()) -> str | None:
    """A filter's value, or None; one of ``allowed`` when given (the model's enums)."""
    value = query.get(name)
    if value is not None and allowed and value not in allowed:
        raise _bad_query(f"bad_{name}")
    return value


#: How long a reader's query may wait on the database (a pooled connection included)
#: before the answer is 503 ``database``: a reader is never held for the pool's 30 s.
READ_WAIT = 2.0


async def _read(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` off the loop, bounded by READ_WAIT; the database's failure (gone, busy,
    a pool timeout) is 503 ``{"error": "database"}``."""
    from scanner.incidents.store import database_failure

    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args, **kwargs), READ_WAIT)
    except Exception as exc:
        if not isinstance(exc, TimeoutError) and database_failure(exc) is None:
            raise
        raise web.HTTPServiceUnavailable(text='{"error": "database"}',
                                         content_type="application/json",
                                         headers={"Retry-After": "5"}) from None


async def incidents(request: web.Request) -> web.Response:
    require(request, Role.READER)  # a reader or a triager
    q = request.query
    for name in q:  # a typo or a repeat is a 400, never a filter silently dropped
        if name not in _QUERY_PARAMS:
            raise _bad_query("unknown_param")
        if len(q.getall(name)) > 1:
            raise _bad_query("repeated_param")
    limit, since = _limit(q.get("limit")), _since(q.get("since"))
    status, severity = _one(q, "status", _STATUSES), _one(q, "severity", _SEVERITIES)
    store = request.app[STORE]
    try:
        rows = await _read(store.list_incidents, status=status, severity=severity,
                           since=since, limit=limit)
    except (ValueError, OverflowError):
        raise _bad_query("bad_query") from None
    return web.json_response(rows, dumps=_dumps, headers=NO_STORE)


async def incident(request: web.Request) -> web.Response:
    ident = request.match_info["ident"].strip()
    if "Authorization" not in request.headers and ident.isascii() and ident.isdigit() and \
            "text/html" in request.headers.get("Accept", ""):
        # a person following a notification's link: the dashboard's page of it
        raise web.HTTPSeeOther(f"/dashboard/incidents/{int(ident)}")
    require(request, Role.READER)  # a reader or a triager
    found = None
    # an id (ASCII digits) or a hash prefix (ASCII hex): "²" or "١" is nothing of ours
    if ident.isascii() and ident.isalnum() and len(ident) <= 64:
        found = await _read(request.app[STORE].get_incident, ident)
    if found is None:
        raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")
    return web.json_response(found, dumps=_dumps, headers=NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/partners/github", github)
    app.router.add_post("/partners/gitlab", gitlab)
    app.router.add_post("/partners/{name}", webhook_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/incidents", incidents)
    app.router.add_get("/incidents/{ident}", incident)

