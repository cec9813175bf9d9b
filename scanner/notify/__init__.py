"""Notifications: who is told about an incident, and how.

``config`` parses the ``[notify]`` table and routes events to channels (the store's
``Router``); ``message`` builds one scrubbed message from an incident; ``slack``,
``webhook`` and ``email`` deliver one message or a digest, answering with the channel's
short reply or raising :class:`~scanner.notify.delivery.DeliveryError`. The durable
outbox and the dispatcher that drains it sit on top of these.
"""

from scanner.notify.config import NotifyConfig, NotifyConfigError, load_notify_config, parse_notify
from scanner.notify.delivery import DeliveryError, Sender
from scanner.notify.events import NotifyEvent, Router
from scanner.notify.message import Message, build_message
from scanner.notify.senders import make_sender

__all__ = ["DeliveryError", "Message", "NotifyConfig", "NotifyConfigError", "NotifyEvent",
           "Router", "Sender", "build_message", "load_notify_config", "make_sender",
           "parse_notify"]
