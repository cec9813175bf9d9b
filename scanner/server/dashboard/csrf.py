"""Cross-site request forgery: every POST carries its session's token, and comes from
this origin.

Two independent checks, because each alone has a gap: the per-session token (a hidden
field in every form, compared in constant time) stops a forged form from another site,
which cannot read it; the ``Origin``/``Sec-Fetch-Site`` check refuses a cross-site POST
even before the form is parsed. ``SameSite=Strict`` on the cookie is a third layer.
"""

from __future__ import annotations

from aiohttp import web

from scanner.server.dashboard.session import Session

FIELD = "csrf"  # the hidden field's name in every form


class CsrfRefused(web.HTTPForbidden):
    """A POST without this session's token, or from another site. ``refusal`` is the
    metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(text=f"refused: {reason.replace('_', ' ')}\n")
        self.refusal = reason


def same_origin(request: web.Request) -> bool:
    """The browser says the request comes from this site (or says nothing, as a
    non-browser client does: the token check still applies)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # "null": what a browser sends from a page with Referrer-Policy: no-referrer
        # (ours); Sec-Fetch-Site above and the token below still decide
        return True
    # the host only: behind a TLS-terminating proxy the browser's scheme is not ours
    scheme, _, host = origin.partition("://")
    return scheme in ("http", "https") and host.lower() == request.host.lower()


def check(request: web.Request, session: Session | None, form: dict[str, str]) -> None:
    """Raise :class:`CsrfRefused` unless this POST is from this site and carries the
    token of ``session``."""
    if not same_origin(request):
        raise CsrfRefused("cross_site")
    if session is None:
        raise CsrfRefused("no_session")
    if not session.csrf_matches(form.get(FIELD)):
        raise CsrfRefused("bad_csrf_token")
