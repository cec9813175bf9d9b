"""A local stand-in for the Cendis API (shared/spec/cendis-api.md), for tests and demos.

It speaks exactly the contract's HTTP: ``GET /v1/whoami`` and ``POST /v1/tokens/revoke``,
with the ``revoke:tokens`` scope check, idempotent revokes and ``notify_owner`` recorded.
Tokens (leaked ones and service credentials alike) are held as SHA-256 hashes only.

Faults are injected over HTTP, so a test drives the real client through a real outage:
``POST /_faults`` with ``{"fail_next": N, "status": 503}``, ``{"rate_limit_next": N,
"retry_after": 2}`` (a number, or any string sent as is: ``"inf"``, an HTTP-date,
``"garbage"``; null sends no header), ``{"answer_next": N, "answer": {...}}`` (a 200
with that JSON instead of the real answer, nothing revoked; ``"answer_text"`` sends raw
text), ``{"redirect_next": N, "location": URL, "redirect_status": 307}``, ``{"delay":
0.5}``, ``{"reject_credential": true}``, ``{"open": true}`` (answer every revoke call
"revoked" without checking any credential: an impostor host to redirect to) or
``{"reset": true}``; ``GET /_calls`` lists the revoke calls received (with whether they
carried a credential, and when they arrived on the stand-in's clock, epoch seconds),
``GET /_notifications`` the owner e-mails that Cendis would have sent, and
``GET /_requests`` every API request as it arrived (method, path, query, headers, body),
so a test can prove that nothing it sent carried a token. The one header the contract
fills with a secret, ``Authorization``, is journalled as the hash of its
credential.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from scanner.cendis.client import REVOKE_SCOPE
from scanner.token import secret_sha256

__all__ = ["REVOKE_SCOPE", "STATE", "ServiceCredential", "StandIn", "StandInToken",
           "create_app"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _hash(token: str) -> str:
    return secret_sha256(token.encode("ascii", "replace"))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StandInToken:
    """A token the stand-in knows, by hash, with what the revoke API returns about it."""

    sha256: str
    owner: str = "dev-user"
    name: str = "laptop"
    org: str = "acme"
    scopes: tuple[str, ...] = ("read:assets",)
    id: str = ""
    created_at: str = "2026-01-05T09:00:00Z"
    expires_at: str = "2027-01-05T09:00:00Z"
    last_used_at: str | None = None

    @classmethod
    def from_token(cls, token: str, **meta: Any) -> StandInToken:
        """Hash on arrival; the stand-in never keeps the token itself."""
        return cls(sha256=_hash(token), **meta)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id or "tok_" + self.sha256[:12], "name": self.name,
                "owner": self.owner, "org": self.org, "scopes": list(self.scopes),
                "created_at": self.created_at, "expires_at": self.expires_at,
                "last_used_at": self.last_used_at}


@dataclass(slots=True)
class ServiceCredential:
    scopes: list[str]
    username: str = "cendis-scan-bot"
    org: str = "acme"
    name: str = "cendis-scan service"
    expires_at: datetime | None = None


@dataclass(slots=True)
class Faults:
    fail_next: int = 0
    fail_status: int = 503
    rate_limit_next: int = 0
    retry_after: float | str | None = 1.0  # a string is sent as is; None: no header
    answer_next: int = 0
    answer: str = "{}"  # the raw 200 body of the next answer_next answers
    redirect_next: int = 0
    redirect_status: int = 307
    location: str = ""
    delay: float = 0.0
    reject_credential: bool = False
    open: bool = False


@dataclass(slots=True)
class StandIn:
    """Everything the stand-in knows; one per app (no module state)."""

    tokens: dict[str, StandInToken]
    credentials: dict[str, ServiceCredential]  # by sha256 of the credential
    now: Callable[[], datetime]
    revoked: set[str] = field(default_factory=set)
    faults: Faults = field(default_factory=Faults)
    calls: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # the journal


STATE = web.AppKey("standin", StandIn)


def _journalled_headers(request: web.Request) -> dict[str, str]:
    """The headers as received, the credential replaced by its hash."""
    headers = {}
    for name, value in request.headers.items():
        if name.lower() == "authorization":
            scheme, _, secret = value.partition(" ")
            value = f"{scheme} sha256:{_hash(secret.strip())}"
        headers[name] = value
    return headers


@web.middleware
async def _journal(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every API request (not the ``/_`` control routes) into ``requests``, whole."""
    if not request.path.startswith("/_"):
        body = await request.read()  # cached: the handler reads it again
        request.app[STATE].requests.append({
            "method": request.method, "path": request.path, "query": request.query_string,
            "headers": _journalled_headers(request),
            "body": body.decode("utf-8", "replace")})
    response: web.StreamResponse = await handler(request)
    return response


def _error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


async def _late(state: StandIn, response: web.Response) -> web.Response:
    """The ``delay`` fault: the work is done, the answer comes late (or, if the caller
    gives up first, never: a revoke whose answer is lost)."""
    if state.faults.delay:
        await asyncio.sleep(state.faults.delay)
    return response


def _faulted(state: StandIn) -> web.Response | None:
    """The injected refusals, in a fixed order: bad credential, failures, 429."""
    faults = state.faults
    if faults.reject_credential:
        return _error(401, "unauthorized", detail="credential rejected (injected)")
    if faults.fail_next > 0:
        faults.fail_next -= 1
        return _error(faults.fail_status, "injected failure")
    if faults.rate_limit_next > 0:
        faults.rate_limit_next -= 1
        response = _error(429, "rate_limited")
        value = faults.retry_after
        if value is not None:
            response.headers["Retry-After"] = value if isinstance(value, str) else f"{value:g}"
        return response
    if faults.redirect_next > 0:
        faults.redirect_next -= 1
        return web.Response(status=faults.redirect_status,
                            headers={"Location": faults.location})
    if faults.answer_next > 0:
        faults.answer_next -= 1
        return web.Response(status=200, text=faults.answer, content_type="application/json")
    return None


def _credential(request: web.Request, state: StandIn) -> ServiceCredential | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return state.credentials.get(_hash(value.strip()))


async def whoami(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if (fault := _faulted(state)) is not None:
        return await _late(state, fault)
    cred = _credential(request, state)
    if cred is None:
        return _error(401, "unauthorized", detail="missing, wrong, expired or revoked")
    expires = cred.expires_at or state.now() + timedelta(days=90)
    return await _late(state, web.json_response({"username": cred.username, "org": cred.org,
                              "scopes": cred.scopes,
                              "token": {"name": cred.name,
                                        "expires_at": _stamp(expires)}}))


def _validate(body: Any) -> str | None:
    """What is malformed about a revoke request (the contract's 400), or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not 1 <= len(tokens) <= 100:
        return "tokens must be a list of 1 to 100 objects"
    for item in tokens:
        if not isinstance(item, dict) or not _SHA256.fullmatch(str(item.get("sha256", ""))):
            return "each token needs a lowercase hex sha256"
    if not isinstance(body.get("source"), str) or not body["source"]:
        return "source must be a non-empty string"
    if not isinstance(body.get("reason", "leaked"), str):
        return "reason must be a string"
    if not isinstance(body.get("url", ""), str):
        return "url must be a string"
    if not isinstance(body.get("notify_owner", True), bool):
        return "notify_owner must be a boolean"
    return None


async def revoke(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    hashes = [str(t.get("sha256")) for t in body.get("tokens", []) if isinstance(t, dict)] \
        if isinstance(body, dict) and isinstance(body.get("tokens"), list) else []
    call: dict[str, Any] = {
        "hashes": hashes,
        "source": body.get("source") if isinstance(body, dict) else None,
        "url": body.get("url") if isinstance(body, dict) else None,
        "notify_owner": body.get("notify_owner") if isinstance(body, dict) else None,
        "authorized": bool(request.headers.get("Authorization")), "status": 0, "results": [],
        "received_at": state.now().timestamp()}  # when it arrived (for latency benches)
    state.calls.append(call)
    response = _revoke_answer(request, state, body, call)
    call["status"] = response.status
    return await _late(state, response)


def _revoke_answer(request: web.Request, state: StandIn, body: Any,
                   call: dict[str, Any]) -> web.Response:
    """Synchronous on purpose: a revoke, once started, completes even if the caller
    disconnects (as a real server's would)."""
    if (fault := _faulted(state)) is not None:
        return fault
    if state.faults.open:  # an impostor: "revoked", whoever asks, and nothing done
        hashes = [str(t.get("sha256")) for t in body.get("tokens", []) if isinstance(t, dict)] \
            if isinstance(body, dict) and isinstance(body.get("tokens"), list) else []
        call["results"] = ["revoked"] * len(hashes)
        return web.json_response({"results": [
            {"sha256": h, "status": "revoked", "token": StandInToken(sha256=h).as_json()}
            for h in hashes]})
    cred = _credential(request, state)
    if cred is None:
        return _error(401, "unauthorized", detail="missing, wrong, expired or revoked")
    if REVOKE_SCOPE not in cred.scopes:
        return _error(403, "forbidden", missing_scope=REVOKE_SCOPE)
    if (problem := _validate(body)) is not None:
        return _error(400, "bad_request", detail=problem)
    results = []
    for item in body["tokens"]:
        sha = item["sha256"]
        known = state.tokens.get(sha)
        if known is None:
            results.append({"sha256": sha, "status": "not_found"})
            continue
        if sha in state.revoked:
            status = "already_revoked"
        else:
            status = "revoked"
            state.revoked.add(sha)
            if body.get("notify_owner", True):
                state.notifications.append({"sha256": sha, "owner": known.owner,
                                            "source": body["source"],
                                            "url": body.get("url", "")})
        results.append({"sha256": sha, "status": status, "token": known.as_json()})
    call["results"] = [r["status"] for r in results]
    return web.json_response({"results": results})


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        return _error(400, "bad_request", detail="a JSON object")
    faults = state.faults
    if body.get("reset"):
        state.faults = faults = Faults()
    if "fail_next" in body:
        faults.fail_next = int(body["fail_next"])
        faults.fail_status = int(body.get("status", 503))
    if "rate_limit_next" in body:
        faults.rate_limit_next = int(body["rate_limit_next"])
        value = body.get("retry_after", 1)
        if isinstance(value, str) and not value.isprintable():
            return _error(400, "bad_request", detail="retry_after: printable text")
        faults.retry_after = value if value is None or isinstance(value, str) \
            else float(value)
    if "answer_next" in body:
        faults.answer_next = int(body["answer_next"])
        text = body.get("answer_text")
        faults.answer = text if isinstance(text, str) else json.dumps(body.get("answer"))
    if "redirect_next" in body:
        faults.redirect_next = int(body["redirect_next"])
        faults.redirect_status = int(body.get("redirect_status", 307))
        faults.location = str(body.get("location", ""))
    if "open" in body:
        faults.open = bool(body["open"])
    if "delay" in body:
        faults.delay = float(body["delay"])
    if "reject_credential" in body:
        faults.reject_credential = bool(body["reject_credential"])
    return web.json_response({"fail_next": faults.fail_next, "status": faults.fail_status,
                              "rate_limit_next": faults.rate_limit_next,
                              "retry_after": faults.retry_after, "delay": faults.delay,
                              "answer_next": faults.answer_next,
                              "redirect_next": faults.redirect_next, "open": faults.open,
                              "reject_credential": faults.reject_credential})


async def get_calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].calls)


async def get_notifications(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].notifications)


async def get_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].requests)


def create_app(*, tokens: Iterable[StandInToken],
               service_credentials: Mapping[str, list[str] | ServiceCredential],
               now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> web.Application:
    """The stand-in app. ``service_credentials`` maps each credential the stand-in accepts
    (hashed here, at once) to its scopes, or to a :class:`ServiceCredential`."""
    creds = {}
    for secret, value in service_credentials.items():
        cred = value if isinstance(value, ServiceCredential) else ServiceCredential(
            scopes=list(value))
        creds[_hash(secret)] = cred
    app = web.Application(middlewares=[_journal])
    app[STATE] = StandIn(tokens={t.sha256: t for t in tokens}, credentials=creds, now=now)
    app.router.add_get("/v1/whoami", whoami)
    app.router.add_post("/v1/tokens/revoke", revoke)
    app.router.add_post("/_faults", set_faults)
    app.router.add_get("/_calls", get_calls)
    app.router.add_get("/_notifications", get_notifications)
    app.router.add_get("/_requests", get_requests)
    return app

