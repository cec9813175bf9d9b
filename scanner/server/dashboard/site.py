"""What every dashboard view shares: the headers every response carries, the page
renderer, the template environment and the session cookie helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from scanner.incidents.store import database_failure
from scanner.server.auth import Role, role_tokens, roles_for_token
from scanner.server.config import ServerConfig
from scanner.server.dashboard import present
from scanner.server.dashboard.csrf import FIELD
from scanner.server.dashboard.session import Session
from scanner.server.dashboard.state import COOKIE, DASHBOARD, PREFIX

HERE = Path(__file__).resolve().parent
#: No inline script or style anywhere: the stylesheet and any script are files of ours.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def templates() -> jinja2.Environment:
    """The template environment: autoescape on for every template, undefined names an
    error (a typo never renders as blank), every printed value through
    :func:`present.shown` (scrubbed once more)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, finalize=present.shown,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=present.when, duration=present.duration,
                       link_url=present.link_url)
    env.globals.update(prefix=PREFIX, csrf_field=FIELD)
    return env


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every dashboard response: the security headers; pages are never cached (they
    show incidents, and a shared cache must not keep them)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"


def session_of(request: web.Request) -> Session | None:
    return request.app[DASHBOARD].sessions.get(request.cookies.get(COOKIE))


def signed_in(request: web.Request, role: str | None = None) -> Session:
    """The signed-in session, else a redirect to the sign-in page (for a GET) or a 403
    (a POST); with ``role`` "triager", a reader's session is a 403 too."""
    session = session_of(request)
    if session is None or session.role is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/signin")
        raise web.HTTPForbidden(text="refused: not signed in\n")
    if role == "triager" and session.role != "triager":
        raise web.HTTPForbidden(text="refused: the reader role may not act\n")
    return session


def secure(request: web.Request) -> bool:
    return request.secure or request.app[DASHBOARD].secure_cookie


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over https (or behind a
    configured TLS proxy), expiring with the session, for the dashboard's path only."""
    dash = request.app[DASHBOARD]
    max_age = max(1, int(session.expires - dash.monotonic()))
    response.set_cookie(COOKIE, session.id, max_age=max_age, path=PREFIX, httponly=True,
                        samesite="Strict", secure=secure(request))


def clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Strict",
                        secure=secure(request))


def render(request: web.Request, page: str, *, status: int = 200,
           session: Session | None = None, **context: Any) -> web.Response:
    """A page from ``templates/page`` (autoescaped) as ``text/html``."""
    template = request.app[DASHBOARD].templates.get_template(page)
    body = template.render(session=session, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def role_for(config: ServerConfig, token: str) -> str | None:
    """The dashboard role a sign-in token grants (triager over reader), compared by
    :mod:`scanner.server.auth` as every bearer token is (constant time, every role)."""
    roles = roles_for_token(token, role_tokens(config))
    for role in (Role.TRIAGER, Role.READER):
        if role in roles:
            return role.value
    return None


#: How long a page's read may wait on the database (a pooled connection included).
READ_WAIT = 2.0


async def read(call: Callable[..., Any], *args: Any, wait: float = READ_WAIT,
               **kwargs: Any) -> Any:
    """``call`` on a worker thread, bounded by ``wait``: the database's failure (gone,
    busy, a pool timeout) or a read past ``wait`` is a 503 page, never a held loop."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args, **kwargs), wait)
    except Exception as exc:
        if not isinstance(exc, TimeoutError) and database_failure(exc) is None:
            raise
        raise web.HTTPServiceUnavailable(text="the incident store is not answering: try "
                                              "again shortly\n",
                                         headers={"Retry-After": "5"}) from None


async def not_found(request: web.Request) -> web.Response:
    return render(request, "error.html", status=404, session=session_of(request),
                  title="Not found", message="There is no such page.")
