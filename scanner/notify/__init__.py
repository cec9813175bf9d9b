"""Notifications: who is told about an incident, and how.

``config`` parses the ``[notify]`` table and routes events to channels (the store's
``Router``); ``message`` builds one scrubbed message from an incident; ``slack``,
``webhook`` and ``email`` deliver one message or a digest, answering with the channel's
short reply or raising :class:`~scanner.notify.delivery.DeliveryError`. The durable
outbox and the dispatcher that drains it sit on top of these.

The names below are imported on first use: a sweep or an ``incidents`` command that only
reads the ``[notify]`` table (``scanner.notify.config``) must not pay for aiohttp
(~0.3 s, PERF-NOTES.md), which only the senders need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.notify.config import (
        NotifyConfig,
        NotifyConfigError,
        load_notify_config,
        parse_notify,
    )
    from scanner.notify.delivery import DeliveryError, Sender
    from scanner.notify.events import NotifyEvent, Router
    from scanner.notify.message import Message, build_message
    from scanner.notify.senders import make_sender

#: Where each public name lives.
_HOME = {
    "NotifyConfig": "config", "NotifyConfigError": "config", "load_notify_config": "config",
    "parse_notify": "config", "DeliveryError": "delivery", "Sender": "delivery",
    "NotifyEvent": "events", "Router": "events", "Message": "message",
    "build_message": "message", "make_sender": "senders",
}

__all__ = ["DeliveryError", "Message", "NotifyConfig", "NotifyConfigError", "NotifyEvent",
           "Router", "Sender", "build_message", "load_notify_config", "make_sender",
           "parse_notify"]


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'scanner.notify' has no attribute {name!r}")
    return getattr(importlib.import_module(f"scanner.notify.{home}"), name)
