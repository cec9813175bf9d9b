"""The incident dashboard: server-rendered pages over the receiver's store, mounted by
:func:`scanner.server.app.create_app` at ``/dashboard``.

``app`` (the sub-application), ``site`` (its headers and renderer), ``session`` (sessions and the
sign-in limit), ``csrf``, ``signin``, ``listing`` (the list and its CSV), ``pages`` (the
overview and the incident page), ``charts`` (SVG), ``present`` (links, times),
``templates/`` (Jinja2, autoescaped) and ``static/`` (the stylesheet)."""

from scanner.server.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
