"""What the dashboard's sub-application holds (one typed ``AppKey``, no globals): the
sessions, the sign-in limiter, the template environment, its metric and settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import Counter

from scanner.server.dashboard.session import Sessions, SignInLimiter

COOKIE = "cendis_session"
#: Where the sub-application is mounted (every link and the cookie's path start here).
PREFIX = "/dashboard"


@dataclass(slots=True)
class Dashboard:
    sessions: Sessions
    limiter: SignInLimiter
    templates: jinja2.Environment
    signin_failures: Counter  # labelled by reason
    monotonic: Callable[[], float]
    secure_cookie: bool = False  # always Secure (a TLS-terminating proxy is in front)
    #: The overview's numbers as last read (monotonic time, data): several people (or
    #: one pressing reload) within OVERVIEW_TTL seconds cost the database one read.
    overview: tuple[float, dict[str, Any]] | None = None


DASHBOARD = web.AppKey("dashboard", Dashboard)
