"""``POST /incidents/{id}/actions``: a triager acknowledges, assigns, resolves, ignores,
reopens or annotates an incident (``{"action": "ack", "by": "alice", ...}``).

The bearer token must be the triager's (a reader's is 403, none 401: :mod:`.auth`). The
body is small (:data:`BODY_LIMIT`), JSON, checked whole by
:func:`scanner.incidents.actions.action_from_json` (every text scrubbed and cut before it
is stored) before the store is touched; the change itself runs on the group-commit
writer's thread (never in the loop) and the answer is the incident as it now stands.
Every request is counted by action and outcome (``ok`` or the refusal's reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from scanner.incidents.actions import ACTIONS, Action, ActionError, action_from_json
from scanner.incidents.models import TriageError
from scanner.incidents.store import Store, database_failure
from scanner.scrub import scrub_json
from scanner.server.auth import Denied, Role, authorize
from scanner.server.errors import Rejected, ReportError, Unavailable
from scanner.server.state import CONFIG, METRICS, WRITER
from scanner.server.views import NO_STORE

log = logging.getLogger(__name__)
PATH = "/incidents/{ident}/actions"
#: Bytes of a request body: the longest note and reason fit with room to spare.
BODY_LIMIT = 16 * 1024
#: The HTTP status of each of the store's refusals.
TRIAGE_STATUS = {"not_found": 404, "transition": 409, "missing": 400, "still_present": 409}


def add_triage_route(app: web.Application) -> None:
    app.router.add_post(PATH, act)


async def small_body(request: web.Request, limit: int = BODY_LIMIT) -> bytes:
    """A JSON body of at most ``limit`` bytes, arriving within the receiver's
    ``body_timeout``: 415, 413 (declared or streamed past the limit), 408."""
    if request.content_type != "application/json":
        raise Rejected("wrong_content_type", "Content-Type must be application/json",
                       status=415)
    if request.content_length is not None and request.content_length > limit:
        raise Rejected("body_too_large", f"body over {limit} bytes", status=413)

    async def read() -> bytes:
        data = bytearray()
        async for chunk in request.content.iter_any():
            data += chunk
            if len(data) > limit:
                raise Rejected("body_too_large", f"body over {limit} bytes", status=413)
        return bytes(data)

    timeout = request.app[CONFIG].body_timeout
    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise Rejected("body_timeout", f"the body took over {timeout:g} s",
                       status=408) from None


def _ident(text: str) -> str:
    """As ``GET /incidents/{id}``: an id or a hash prefix, ASCII letters and digits."""
    ident = text.strip()
    if not (ident.isascii() and ident.isalnum() and len(ident) <= 64):
        raise ReportError("not_found", "no such incident", status=404)
    return ident


def _parse(body: bytes) -> Action:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested too deep
        raise Rejected("bad_json", "the body is not JSON") from None
    try:
        return action_from_json(data)
    except ActionError as exc:
        raise Rejected(exc.reason, str(exc)) from None


def _triage(ident: str, action: Action) -> Any:
    """What the writer's thread runs: the incident found as GET finds it, then changed."""

    def run(store: Store) -> dict[str, Any]:
        found = store.get_incident(ident)
        if found is None:
            raise TriageError("not_found", "no such incident")
        return store.triage(found["id"], **action.store_kwargs())

    return run


def _dumps(value: object) -> str:
    return json.dumps(scrub_json(value), default=lambda v: v.isoformat() if hasattr(v, "isoformat")
                      else str(v))


async def act(request: web.Request) -> web.Response:
    """Check the role, the incident id and the body; change the incident on the
    writer's thread; answer it as it now stands (200), or a JSON error."""
    app = request.app
    metrics = app[METRICS]
    label = "unknown"  # the metric's action: one of ACTIONS, never what was sent
    try:
        authorize(request, Role.TRIAGER)
        ident = _ident(request.match_info["ident"])
        action = _parse(await small_body(request))
        label = action.action
        try:
            incident = await app[WRITER].call(_triage(ident, action))
        except TriageError as exc:
            raise ReportError(exc.reason, str(exc),
                              status=TRIAGE_STATUS.get(exc.reason, 400)) from None
        except Exception as exc:
            if database_failure(exc) is None:
                raise
            raise Unavailable("database", "the incident store is unavailable",
                              retry_after=5) from None
    except ReportError as exc:
        metrics.child(metrics.triage_actions, label, exc.reason).inc()
        headers = {"Retry-After": "5"} if exc.status == 503 else {}
        if isinstance(exc, Denied) and exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return web.json_response(exc.to_json(), status=exc.status, headers=headers)
    metrics.child(metrics.triage_actions, label, "ok").inc()
    log.info("triage: %s by %s, now %s", label, action.by, incident.get("triage"),
             extra={"incident_id": incident.get("id")})
    return web.json_response(incident, dumps=_dumps, headers=NO_STORE)


__all__ = ["ACTIONS", "BODY_LIMIT", "PATH", "act", "add_triage_route", "small_body"]
