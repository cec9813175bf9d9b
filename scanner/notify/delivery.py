"""What every sender shares: the one error a delivery raises, the sender's shape, and
the HTTP POST that Slack and the webhook both make.

A dispatcher calls ``await sender.send(messages, session=..., idem_key=..., now=...)``
with one message or a digest of several, and gets the channel's answer (short, scrubbed:
it is stored in the outbox) or a :class:`DeliveryError` saying whether to try again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import aiohttp

from scanner.scrub import scrub

if TYPE_CHECKING:
    from scanner.notify.message import Message

#: Bytes of an answer read (Slack says "ok" or "invalid_payload"; a body is not needed).
ANSWER_BYTES = 2048
ANSWER_CHARS = 200


class DeliveryError(Exception):
    """A delivery that did not happen. ``reason`` is a metric label (``http_429``,
    ``timeout``, ``auth``...); ``retryable`` says whether the same message may succeed
    later (a 5xx, a timeout) or never will unchanged (a 4xx, a refused address);
    ``retry_after`` is the channel's own hint in seconds, when it gave one."""

    def __init__(self, reason: str, message: str, retryable: bool,
                 retry_after: float | None = None) -> None:
        self.reason = reason
        self.message = scrub(message, 300)
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(self.message)


class Sender(Protocol):
    """One configured channel, able to deliver."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    async def send(self, messages: Sequence[Message], *, session: aiohttp.ClientSession,
                   idem_key: str, now: datetime) -> str: ...


def short_answer(text: str) -> str:
    """A channel's answer as stored and printed: one line, scrubbed, cut."""
    return scrub(" ".join(text.split()), ANSWER_CHARS)


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               headers: Mapping[str, str], *, timeout: float, what: str) -> tuple[int, str]:
    """POST ``body``; the status and the answer's start, or a :class:`DeliveryError`.

    Redirects are not followed (a signed body goes to the configured URL only); the URL
    is never quoted in an error (a Slack webhook URL is a credential). 2xx answers; 408,
    429 and 5xx are worth retrying (429 with its ``Retry-After``); other statuses are not.
    """
    try:
        async with session.post(url, data=body, headers=dict(headers), allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.content.read(ANSWER_BYTES)
            status = response.status
            retry_after = _seconds(response.headers.get("Retry-After"))
    except TimeoutError:
        raise DeliveryError("timeout", f"{what}: no answer in {timeout:g} s", True) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError("unreachable", f"{what}: {type(exc).__name__}", True) from None
    except asyncio.CancelledError:
        raise
    answer = short_answer(raw.decode("utf-8", "replace"))
    if 200 <= status < 300:
        return status, answer
    said = f"{what}: HTTP {status}" + (f" {answer}" if answer else "")
    if status == 429:
        raise DeliveryError("http_429", said, True, retry_after)
    if status == 408 or status >= 500:
        raise DeliveryError(f"http_{status // 100}xx" if status != 408 else "http_408", said,
                            True, retry_after)
    raise DeliveryError(f"http_{status}" if status < 500 else "http_5xx", said, False)


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the date form is rare for webhooks: ignored)."""
    if value is None or not value.strip().isdigit() or len(value.strip()) > 9:
        return None
    return float(value.strip())
