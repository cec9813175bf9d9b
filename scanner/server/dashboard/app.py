"""The dashboard's sub-application factory.

Mounted by :func:`scanner.server.app.create_app` at ``/dashboard``: it reads the
receiver's store and config through ``request.config_dict`` (the parent app's keys) and
keeps its own state under :data:`~.state.DASHBOARD`. A sub-application, so its response
hook (the security headers) and its catch-all 404 apply to the dashboard's paths only.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import Counter

from scanner.server.dashboard import actions, listing, pages, signin
from scanner.server.dashboard.session import Sessions, SignInLimiter
from scanner.server.dashboard.site import HERE, not_found, security_headers, templates
from scanner.server.dashboard.state import DASHBOARD, Dashboard
from scanner.server.metrics import Metrics


def create_dashboard(metrics: Metrics, *, monotonic: Callable[[], float],
                     randbytes: Callable[[int], bytes], secure_cookie: bool = False,
                     session_ttl: float = 8 * 3600.0) -> web.Application:
    """The sub-application; ``randbytes`` makes session ids and CSRF tokens,
    ``monotonic`` ages sessions and sign-in failures (both injected by tests)."""
    app = web.Application()
    failures = Counter("cendis_dashboard_signin_failures", "Dashboard sign-ins refused, "
                       "by reason (bad_token, rate_limited, bad_csrf_token, ...)",
                       ["reason"], registry=metrics.registry)
    app[DASHBOARD] = Dashboard(
        sessions=Sessions(randbytes=randbytes, monotonic=monotonic, ttl=session_ttl,
                          idle=min(session_ttl, 3600.0)),
        limiter=SignInLimiter(monotonic=monotonic), templates=templates(),
        signin_failures=failures, monotonic=monotonic, secure_cookie=secure_cookie)
    app.on_response_prepare.append(security_headers)
    signin.add_routes(app)
    listing.add_routes(app)
    pages.add_routes(app)
    actions.add_routes(app)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
