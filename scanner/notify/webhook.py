"""A generic webhook, signed with Standard Webhooks: we are the sender here.

Headers: ``webhook-id`` is the outbox row's idempotency key (the same on every retry,
so a receiver drops a repeat after a crash mid-send), ``webhook-timestamp`` (seconds),
``webhook-signature`` ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` (one per
configured secret during a rotation, space-separated).

The body is JSON whose fields are plain text: ``{"type": "incident.opened",
"timestamp": "...", "data": {...}}``, or for a digest ``{"type": "incident.digest",
"timestamp": "...", "data": {"events": [{"type": ..., "data": ...}, ...]}}``. ``<``,
``>`` and ``&`` are written as ``\\u003c``, ``\\u003e``, ``\\u0026`` (the same JSON
value): a receiver that pastes a field into a web page gets no markup from a partner's
URL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from scanner.notify.delivery import post
from scanner.notify.message import Message
from scanner.whsec import sign


def html_safe(text: str) -> str:
    """JSON text with ``<``, ``>``, ``&`` as ``\\u`` escapes (the same values)."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def event_type(message: Message) -> str:
    return f"incident.{message.kind}"


def body_of(messages: Sequence[Message], now: datetime) -> bytes:
    """The JSON body for one message or a digest, HTML-safe."""
    stamp = now.astimezone(UTC).isoformat()
    document: dict[str, Any]
    if len(messages) == 1:
        document = {"type": event_type(messages[0]), "timestamp": stamp,
                    "data": messages[0].to_json()}
    else:
        document = {"type": "incident.digest", "timestamp": stamp, "data": {"events": [
            {"type": event_type(m), "data": m.to_json()} for m in messages]}}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return html_safe(text).encode()


@dataclass(frozen=True, slots=True)
class WebhookSender:
    name: str
    url: str
    secrets: tuple[bytes, ...] = field(repr=False)
    timeout: float = 10.0
    kind: str = "webhook"

    def headers(self, idem_key: str, timestamp: int, body: bytes) -> dict[str, str]:
        signatures = " ".join(sign(s, idem_key, timestamp, body) for s in self.secrets)
        return {"Content-Type": "application/json", "webhook-id": idem_key,
                "webhook-timestamp": str(timestamp), "webhook-signature": signatures}

    async def send(self, messages: Sequence[Message], *, session: aiohttp.ClientSession,
                   idem_key: str, now: datetime) -> str:
        """POST the signed body; the endpoint's answer (``HTTP 204``, or its text)."""
        if not messages:
            raise ValueError("nothing to send")
        body = body_of(messages, now)
        status, answer = await post(session, self.url, body,
                                    self.headers(idem_key, int(now.timestamp()), body),
                                    timeout=self.timeout, what=f"webhook channel {self.name}")
        return f"HTTP {status}" + (f" {answer}" if answer else "")
