"""Who a request is: the receiver's bearer roles, checked in one place.

Each role has its own token in the receiver's TOML (inline, or better by the name of an
environment variable): ``reader`` reads the incident trail (``GET /incidents``),
``triager`` reads it and acts on it (``POST /incidents/{id}/actions``), ``reporter``
posts a sweep's findings (``POST /v1/findings``). A role without a configured token is
off: nobody gets it. The triager's token must differ from the others' (else a reader
could act); the reader's and the reporter's may be one, as they could before.

Every configured role's token is compared, every time, in constant time: both sides are
hashed to SHA-256 first (so the comparison is of 32 bytes whatever the lengths given)
and compared with :func:`hmac.compare_digest`, without an early exit, so how long a check
takes says neither which role matched nor how much of a token was right. The views
(and the dashboard's sign-in) call :func:`authorize`/:func:`require` or
:func:`roles_for_token`; nothing else compares a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from enum import StrEnum

from aiohttp import web

from scanner.server.config import ServerConfig
from scanner.server.errors import ReportError
from scanner.server.state import CONFIG


class Role(StrEnum):
    READER = "reader"
    TRIAGER = "triager"
    REPORTER = "reporter"


#: For each role a route needs, the roles that have it: a triager may also read.
GRANTED_BY: Mapping[Role, frozenset[Role]] = {
    Role.READER: frozenset({Role.READER, Role.TRIAGER}),
    Role.TRIAGER: frozenset({Role.TRIAGER}),
    Role.REPORTER: frozenset({Role.REPORTER}),
}


class Denied(ReportError):
    """No role (401 ``unauthorized``), or a role without the right (403 ``forbidden``)."""

    status = 401
    reason = "unauthorized"


def role_tokens(config: ServerConfig) -> dict[Role, str | None]:
    """Each role's configured token (None: the role is off)."""
    return {Role.READER: config.reader_token, Role.TRIAGER: config.triager_token,
            Role.REPORTER: config.report_token}


def _digest(text: str) -> bytes:
    # surrogatepass: a header aiohttp decoded with lone surrogates still hashes (to
    # something no configured token hashes to), never raises
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def same_token(given: str, expected: str | None) -> bool:
    """``given`` is ``expected``, compared in constant time over fixed-length digests;
    no expected token (None or empty) matches nothing."""
    return hmac.compare_digest(_digest(given), _digest(expected or "")) and bool(expected)


def roles_for_token(given: str, tokens: Mapping[Role, str | None]) -> frozenset[Role]:
    """The roles whose token ``given`` is: every configured role compared, no early
    exit. (The triager's token differs from the others, which the config checks; the
    reader's and the reporter's may be one token, as before there was a triager.)"""
    found = {role for role, expected in tokens.items() if same_token(given, expected)}
    return frozenset(found) if given else frozenset()


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case),
    else None."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


def bearer_matches(authorization: str, expected: str | None) -> bool:
    """An ``Authorization`` header carries ``expected`` as its bearer token (constant
    time); no configured token matches nothing, so a route without one refuses everyone."""
    given = bearer(authorization)
    return same_token(given or "", expected) and given is not None


def roles_of(request: web.Request) -> frozenset[Role]:
    """The roles the request's bearer token gives (none without one)."""
    given = bearer(request.headers.get("Authorization", ""))
    return roles_for_token(given or "", role_tokens(request.app[CONFIG]))


def authorize(request: web.Request, needed: Role) -> frozenset[Role]:
    """The request's roles, when one grants ``needed``; else :class:`Denied`: 401
    without a role, 403 with roles that lack the right (a reader asking to act)."""
    roles = roles_of(request)
    if not roles:
        raise Denied("unauthorized", "a valid bearer token is required")
    if not roles & GRANTED_BY[needed]:
        shown = ", ".join(sorted(roles))
        raise Denied("forbidden", f"the {shown} role may not do this", status=403)
    return roles


def http_error(exc: Denied) -> web.HTTPException:
    """:class:`Denied` as aiohttp's exception, with a JSON body (and, for a 401, the
    ``WWW-Authenticate`` challenge)."""
    body = json.dumps({"error": exc.reason})
    if exc.status == 401:
        return web.HTTPUnauthorized(text=body, content_type="application/json",
                                    headers={"WWW-Authenticate": "Bearer"})
    return web.HTTPForbidden(text=body, content_type="application/json")


def require(request: web.Request, needed: Role) -> frozenset[Role]:
    """:func:`authorize` for a view that answers aiohttp's exceptions."""
    try:
        return authorize(request, needed)
    except Denied as exc:
        raise http_error(exc) from None


__all__ = ["Denied", "GRANTED_BY", "Role", "authorize", "bearer", "bearer_matches",
           "http_error", "require", "roles_for_token", "roles_of", "role_tokens", "same_token"]
