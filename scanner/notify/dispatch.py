"""The dispatcher: drains the store's notification outbox through the channels' senders.

Guarantees, and why:

- **Nothing is lost.** A row is written in the same transaction as the event that causes
  it (the store does that); the dispatcher only ever marks it sent (with the channel's
  answer) or failed (with a time to try again). A crash, a ``kill -9``, a channel down
  for a day: the row stays unsent and is sent later. A channel that refuses a message
  for good (a 4xx, a refused address) is retried at the cap (:data:`MAX_DELAY`) and
  counted (``outcome="rejected"``), never dropped: an operator fixes the channel and the
  message goes out.
- **One process at a time per row.** Rows are claimed under a lease (the store's
  ``claim_outbox``, owner from :func:`~scanner.incidents.store.claim_owner`); a dead
  process's claims end with the lease (at once on the same host for SQLite).
- **Sent once, except after a crash mid-send**, when the row is sent again with the
  same idempotency key: the row's ``evt_<event>_<channel>``, or for a digest a key
  derived from its rows' keys (the same rows give the same key). The webhook carries it
  as ``webhook-id``, e-mail as ``Message-ID``/``X-Cendis-Idempotency-Key``; Slack has
  no such key, so a crash mid-send may post twice there.
- **Bursts become digests.** Each channel sends at most ``digest_after`` times per
  rolling minute. When the due rows would go past that, they go as one digest (one
  Slack message, one webhook with a list, one e-mail) instead of one message each;
  when the minute's sends are used up, rows wait (unclaimed) for the next free slot.
- **Backoff.** A failure waits ``base * 2**attempts`` capped at :data:`MAX_DELAY`, with
  jitter (the upper half at random), and never less than the channel's ``Retry-After``.
  While a channel is down, its new rows wait for it too (one probe, not one per row).
- **The latest status.** A message is built from ``get_incident`` at send time, so a
  late ``opened`` message already says ``revoked`` if the revoke was faster.

Every store call runs in a worker thread: the event loop (the receiver's) never waits
on the database. Time, randomness and sleeping are parameters. The wake/stop/run
lifecycle and the supervisor are :mod:`scanner.worker`'s, shared with the revoker; the
retry policy above is the dispatcher's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from scanner.errors import short
from scanner.incidents.models import OutboxEntry, utcnow
from scanner.incidents.store import Store, claim_owner
from scanner.notify.config import ChannelConfig, NotifyConfig
from scanner.notify.delivery import DeliveryError, Sender
from scanner.notify.message import Message, build_message
from scanner.notify.senders import make_sender
from scanner.worker import Worker, backoff
from scanner.worker import supervise as _supervise

log = logging.getLogger(__name__)

BASE_DELAY = 5.0      # first retry after a failed send, seconds
MAX_DELAY = 3600.0    # backoff cap; a message refused for good is retried this often
RATE_WINDOW = 60.0    # digest_after counts sends in this rolling window (seconds)
DIGEST_MAX = 500      # rows in one digest (a bigger burst: several digests)
POLL = 5.0            # look at the outbox at least this often (other processes' rows)
LEASE_SLACK = 30.0    # a claim outlives the sends it covers by this much


def digest_key(keys: Sequence[str]) -> str:
    """A digest's idempotency key: from its rows' keys (order-free), so the same rows
    retried after a crash carry the same key."""
    if len(keys) == 1:
        return keys[0]
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]
    return f"dig_{digest}"


@dataclass
class _Channel:
    """One channel's sender and its in-memory rate and outage state."""

    config: ChannelConfig
    sender: Sender
    sends: deque[float]          # monotonic times of recent sends (a digest is one)
    down_until: float = 0.0      # after a retryable failure: no claim before this

    def free(self, now: float) -> int:
        while self.sends and self.sends[0] <= now - RATE_WINDOW:
            self.sends.popleft()
        return self.config.digest_after - len(self.sends)

    def wait(self, now: float) -> float:
        """Seconds until this channel may send again (0: now)."""
        if self.down_until > now:
            return self.down_until - now
        if self.free(now) <= 0:
            return max(0.0, self.sends[0] + RATE_WINDOW - now)
        return 0.0

    @property
    def lease(self) -> float:
        """Outlives every send one claim may lead to (up to ``digest_after`` of them)."""
        return min(MAX_DELAY, self.config.timeout * (self.config.digest_after + 1)
                   + LEASE_SLACK)


class Dispatcher(Worker):
    """Sends what the outbox holds, channel by channel (channels in parallel)."""

    name = "notification dispatcher"

    def __init__(self, store: Store, config: NotifyConfig, session: aiohttp.ClientSession,
                 *, now: Callable[[], datetime] = utcnow,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None,
                 senders: Mapping[str, Sender] | None = None,
                 base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY,
                 poll: float = POLL, failure_level: int = logging.WARNING) -> None:
        super().__init__(clock=clock, sleep=sleep)
        self.store = store
        self.config = config
        self.session = session
        self._now = now
        self._rng = rng or random.Random()
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.poll = poll
        self.failure_level = failure_level  # a one-off run says it in its own line
        self.last_error: str | None = None  # "<channel>: <reason>" of the latest failure
        self.owner = claim_owner(f"notify-{self._rng.getrandbits(32):08x}")
        given = dict(senders or {})
        self.channels = {name: _Channel(channel, given.get(name) or make_sender(channel),
                                        deque())
                         for name, channel in config.by_name.items()}
        #: (channel, outcome) -> count; outcome: sent | failed (retried) | rejected
        #: (refused for good, retried at the cap); for the metrics.
        self.delivered: dict[tuple[str, str], int] = {}
        self.messages = 0  # outbox rows delivered (a digest's rows each count)

    # -- public ------------------------------------------------------------------------

    async def turn(self) -> float | None:
        """One :meth:`step` for :meth:`~scanner.worker.Worker.run` (a cancellation cuts
        a send short: it is sent again later with the same key, its claim ending with
        the lease), and how long to rest: at most :attr:`poll` (other processes' rows)."""
        wait = await self.step()
        return self.poll if wait is None else min(wait, self.poll)

    async def step(self) -> float | None:
        """One pass over every channel (in parallel): claim what is due and allowed, send
        it. Returns the seconds until a channel that has work may send again (0: at
        once), or None when no channel had anything to send."""
        waits = await asyncio.gather(*(self._channel_step(c) for c in self.channels.values()))
        due = [w for w in waits if w is not None]
        return min(due) if due else None

    async def drain(self, *, patience: float) -> int:
        """Send until the outbox holds nothing due for our channels, or ``patience``
        seconds passed (a one-off ``scan --record`` or ``sweep``); returns the rows
        delivered. What is left stays in the outbox for the next run."""
        start, before = self._clock(), self.messages
        while True:
            wait = await self.step()
            if wait is None:
                break
            left = patience - (self._clock() - start)
            if left <= 0 or wait > left:
                break
            if wait > 0:
                await self._sleep(wait)
        return self.messages - before

    async def depth(self) -> int:
        return await self._db(self.store.outbox_depth)

    # -- one channel -------------------------------------------------------------------

    async def _channel_step(self, channel: _Channel) -> float | None:
        now = self._clock()
        wait = channel.wait(now)
        if wait > 0:
            return wait
        free = channel.free(now)
        name = channel.config.name
        rows = await self._db(self.store.claim_outbox, DIGEST_MAX, owner=self.owner,
                              lease=channel.lease, channel=name)
        if not rows:
            return None
        groups = [[row] for row in rows] if len(rows) <= free else [rows]
        for index, group in enumerate(groups):
            try:
                await self._deliver(channel, group)
            except DeliveryError as exc:
                rest = [row for later in groups[index + 1:] for row in later]
                if rest and exc.retryable:  # the channel is down: the rest wait with it
                    await self._db(self.store.outbox_failed, [r.id for r in rest],
                                   error=f"not tried: {exc.message}",
                                   retry_in=channel.down_until - self._clock())
                    self._count(name, "failed", len(rest))
                    break
        return channel.wait(self._clock())

    async def _deliver(self, channel: _Channel, rows: list[OutboxEntry]) -> None:
        """Send ``rows`` as one message (or a digest) and mark them; a failure is
        marked and re-raised for the caller."""
        name = channel.config.name
        messages = await self._db(self._messages, rows)
        key = digest_key([row.idem_key for row in rows])
        channel.sends.append(self._clock())
        try:
            answer = await channel.sender.send(messages, session=self.session,
                                               idem_key=key, now=self._now())
        except DeliveryError as exc:
            await self._failed(channel, rows, exc)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a sender's bug: retried, never dropped
            error = DeliveryError("sender", f"{name}: {type(exc).__name__}", True)
            await self._failed(channel, rows, error)
            raise error from None
        await self._db(self.store.outbox_sent, [row.id for row in rows], answer=answer)
        self.messages += len(rows)
        self._count(name, "sent", len(rows))
        log.info("notification sent", extra={"channel": name, "rows": len(rows),
                                              "digest": len(rows) > 1, "answer": answer})

    async def _failed(self, channel: _Channel, rows: list[OutboxEntry],
                      exc: DeliveryError) -> None:
        name = channel.config.name
        attempts = max(row.attempts for row in rows)
        if exc.retryable:
            delay = self._backoff(attempts)
            if exc.retry_after is not None and exc.retry_after == exc.retry_after:
                delay = min(self.max_delay, max(delay, exc.retry_after))
            channel.down_until = self._clock() + delay
            outcome = "failed"
        else:
            delay = self.max_delay  # refused for good: kept, retried at the cap
            outcome = "rejected"
        await self._db(self.store.outbox_failed, [row.id for row in rows],
                       error=f"{exc.reason}: {exc.message}", retry_in=delay)
        self._count(name, outcome, len(rows))
        self.last_error = f"{name}: {exc.reason}"
        log.log(self.failure_level, "notification not sent (%s); retrying in %.0f s",
                exc.reason, delay, extra={"channel": name, "reason": exc.reason, "rows": len(rows),
                           "error": short(exc.message, 200)})

    def _messages(self, rows: Sequence[OutboxEntry]) -> list[Message]:
        """Each row's message from its incident as it stands now (a worker thread)."""
        out = []
        for row in rows:
            incident: dict[str, Any] | None = self.store.get_incident(row.incident_id)
            out.append(build_message(incident or {"id": row.incident_id}, row.kind,
                                     self.config.base_url))
        return out

    def _backoff(self, attempts: int) -> float:
        return backoff(attempts, self.base_delay, self.max_delay, self._rng)

    def _count(self, channel: str, outcome: str, n: int) -> None:
        key = (channel, outcome)
        self.delivered[key] = self.delivered.get(key, 0) + n


async def supervise(dispatcher: Dispatcher, *,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    base: float = 1.0, cap: float = 60.0) -> None:
    """Run the dispatcher for a service's life (:func:`scanner.worker.supervise`): a
    crash (a database error) is logged and restarted with backoff; rows stay in the
    outbox meanwhile."""
    await _supervise(dispatcher, sleep=sleep, base=base, cap=cap)


async def drain_once(store: Store, config: NotifyConfig, *, patience: float,
                     now: Callable[[], datetime] = utcnow) -> tuple[int, int, str | None]:
    """One bounded pass for a one-off command (``scan --record``, ``sweep``): its own
    client session; returns (rows delivered, rows left in the outbox, the latest
    failure as ``channel: reason``), for the command's one line."""
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(store, config, session, now=now, failure_level=logging.DEBUG)
        try:
            sent = await asyncio.wait_for(dispatcher.drain(patience=patience),
                                          patience + 5.0)
        except TimeoutError:
            sent = dispatcher.messages
        left = await dispatcher.depth()
    return sent, left, dispatcher.last_error
