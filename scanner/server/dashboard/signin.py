"""Signing in and out: a reader or triager token, typed once, becomes a session cookie.

The token is compared in constant time with the configured ones and then forgotten:
only the role and the name the person gave are kept in the session. Failed attempts are
limited per client address (429 with ``Retry-After``) and counted by reason in
``cendis_dashboard_signin_failures``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from scanner.scrub import scrub
from scanner.server.dashboard import csrf
from scanner.server.dashboard.session import Session
from scanner.server.dashboard.site import (
    clear_cookie,
    render,
    role_for,
    session_of,
    set_cookie,
)
from scanner.server.dashboard.state import DASHBOARD, PREFIX
from scanner.server.state import CONFIG

log = logging.getLogger(__name__)
#: A dashboard form is a few fields: anything bigger is not one of ours.
MAX_FORM = 64 * 1024
MAX_NAME = 64


async def read_form(request: web.Request) -> dict[str, str]:
    """The POSTed form's text fields (one value each), refused above :data:`MAX_FORM`."""
    length = request.content_length
    if length is None or length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=length or 0,
                                            text="refused: form too large\n")
    data = await request.post()
    return {key: value for key, value in data.items() if isinstance(value, str)}


def check_name(text: str) -> str | None:
    """The name recorded beside a person's actions: 1-64 printable characters, scrubbed
    (a pasted token never becomes an actor)."""
    name = " ".join(text.split())
    if not name or len(name) > MAX_NAME or not name.isprintable():
        return None
    return scrub(name, MAX_NAME * 2)


def _form(request: web.Request, session: Session, *, status: int = 200, error: str = "",
          name: str = "") -> web.Response:
    response = render(request, "signin.html", status=status, form_session=session,
                      error=error, name=name, title="Sign in")
    set_cookie(request, response, session)
    return response


async def signin_page(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is not None and session.role is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    if session is None:
        session = request.app[DASHBOARD].sessions.anonymous()
    return _form(request, session)


async def signin(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    address = request.remote or "unknown"

    def refuse(reason: str) -> None:
        dash.signin_failures.labels(reason).inc()
        dash.limiter.failed(address)
        log.info("dashboard sign-in refused", extra={"reason": reason})

    def limit() -> None:
        wait = dash.limiter.retry_after(address)
        if wait is not None:
            dash.signin_failures.labels("rate_limited").inc()
            raise web.HTTPTooManyRequests(
                text="refused: too many failed sign-ins, try later\n",
                headers={"Retry-After": str(round(wait))})

    limit()  # cheap: refuse before reading the body
    form = await read_form(request)
    # again after the await, with no await from here to the failure's record: many
    # attempts sent at once all passed the first check while their bodies arrived
    limit()
    session = session_of(request)
    try:
        csrf.check(request, session, form)
    except csrf.CsrfRefused as exc:
        refuse(exc.refusal)
        raise
    assert session is not None  # csrf.check refuses a POST without one
    name = check_name(form.get("name", ""))
    if name is None:
        refuse("bad_name")
        return _form(request, session, status=400,
                     error="Give your name (1 to 64 characters): it is recorded with "
                           "your actions.")
    role = role_for(request.config_dict[CONFIG], form.get("token", ""))
    if role is None:
        refuse("bad_token")
        return _form(request, session, status=401, name=name,
                     error="That token is not a reader or triager token of this server.")
    dash.limiter.succeeded(address)
    new = dash.sessions.sign_in(session, role, name)
    log.info("dashboard sign-in", extra={"role": role})
    response = web.HTTPSeeOther(f"{PREFIX}/")
    set_cookie(request, response, new)
    raise response


async def signout(request: web.Request) -> web.Response:
    form = await read_form(request)
    session = session_of(request)
    csrf.check(request, session, form)
    request.app[DASHBOARD].sessions.drop(session)
    response = web.HTTPSeeOther(f"{PREFIX}/signin")
    clear_cookie(request, response)
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
