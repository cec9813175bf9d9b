"""What the store asks the notifier: which channels an event goes to.

:class:`NotifyEvent` and :class:`Router` live in :mod:`scanner.incidents.models` (the
store is given a router); re-exported here beside the event kinds a channel can take.
"""

from __future__ import annotations

from scanner.incidents.models import NotifyEvent, Router

#: The events a channel can be sent (``events = [...]`` in a channel's table).
EVENT_KINDS = ("opened", "possible", "revoked", "revoke_failing", "reopened", "triage")

__all__ = ["EVENT_KINDS", "NotifyEvent", "Router"]
