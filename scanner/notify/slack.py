"""Slack: one Block Kit message per delivery, POSTed to an incoming-webhook URL.

Partner-supplied text (a record's url and source, a path, an author) only ever goes
into ``plain_text`` objects, where Slack applies no formatting (``*bold*``, ``_it_``),
turns no ``:emoji:`` and parses no link; and ``&``, ``<``, ``>`` are escaped in every
string we send, so ``<!channel>``, ``<!here>``, ``<@U123>`` and ``<http://evil|click>``
reach the channel as the literal text they are. The fallback ``text`` (the push
notification) holds our own words only. Links are not unfurled: a partner's URL is not
fetched by Slack for a preview.

Slack answers ``200 ok``; 429 (with ``Retry-After``) and 5xx are retried; other 4xx
(``invalid_payload``, ``no_service``, ``channel_is_archived``...) are not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from scanner.notify.delivery import post
from scanner.notify.message import Message

#: Slack's limits: a header's text, a field's, a section's, blocks per message.
HEADER_CHARS, FIELD_CHARS, SECTION_CHARS, MAX_BLOCKS = 150, 2000, 3000, 50
#: Messages listed one by one in a digest; the rest are counted.
DIGEST_LISTED = 20


def escape(text: str) -> str:
    """Slack's three control characters as entities (``&`` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int = SECTION_CHARS) -> dict[str, Any]:
    """A ``plain_text`` object: escaped, no emoji, cut to Slack's limit."""
    shown = escape(text)
    if len(shown) > limit:
        shown = shown[: limit - 1]
        shown = shown[: shown.rfind("&")] if shown.rfind("&") > shown.rfind(";") else shown
        shown += "…"
    return {"type": "plain_text", "text": shown, "emoji": False}


def _button(message: Message) -> dict[str, Any] | None:
    if not message.link:
        return None
    return {"type": "button", "text": plain(f"Incident {message.incident_id}", 75),
            "url": message.link}


def blocks_of(message: Message) -> list[dict[str, Any]]:
    """One message: header, facts, where, what to do, the link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(message.title, HEADER_CHARS)},
        {"type": "section", "fields": [plain(f"{label}: {value}", FIELD_CHARS)
                                       for label, value in message.facts()[:10]]},
    ]
    places = message.place_lines()
    if places:
        blocks.append({"type": "section", "text": plain("Where:\n" + "\n".join(places))})
    if message.actions:
        steps = "\n".join(f"{n}. {a}" for n, a in enumerate(message.actions, 1))
        blocks.append({"type": "section", "text": plain("What to do:\n" + steps)})
    button = _button(message)
    if button:
        blocks.append({"type": "actions", "elements": [button]})
    return blocks


def digest_blocks(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Several messages as one: a line each (the first place, the link), then a count."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"cendis-scan: {len(messages)} notifications",
                                         HEADER_CHARS)}]
    for message in messages[:DIGEST_LISTED]:
        places = message.place_lines()
        section: dict[str, Any] = {"type": "section", "text": plain(
            message.summary + (f"\n{places[0]}" if places else ""))}
        button = _button(message)
        if button:
            section["accessory"] = button
        blocks.append(section)
    if len(messages) > DIGEST_LISTED:
        blocks.append({"type": "context", "elements": [
            plain(f"and {len(messages) - DIGEST_LISTED} more", 200)]})
    return blocks[:MAX_BLOCKS]


def payload(messages: Sequence[Message]) -> dict[str, Any]:
    """The JSON body: ``text`` (our words only, for push notifications) and ``blocks``."""
    if len(messages) == 1:
        one = messages[0]
        text = escape(one.summary)
        blocks = blocks_of(one)
    else:
        worst = sorted({m.severity for m in messages})
        text = escape(f"cendis-scan: {len(messages)} notifications ({', '.join(worst)})")
        blocks = digest_blocks(messages)
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


@dataclass(frozen=True, slots=True)
class SlackSender:
    name: str
    url: str = field(repr=False)
    timeout: float = 10.0
    kind: str = "slack"

    async def send(self, messages: Sequence[Message], *, session: aiohttp.ClientSession,
                   idem_key: str, now: datetime) -> str:
        """POST one Block Kit message; Slack's answer (``ok``). Slack has no idempotency
        key: a crash mid-send may post twice, which the dispatcher accepts."""
        if not messages:
            raise ValueError("nothing to send")
        body = json.dumps(payload(messages), ensure_ascii=False).encode()
        what = f"slack channel {self.name}"
        status, answer = await post(session, self.url, body,
                                    {"Content-Type": "application/json; charset=utf-8"},
                                    timeout=self.timeout, what=what)
        return answer or f"HTTP {status}"  # Slack says "ok"; a look-alike may say more
