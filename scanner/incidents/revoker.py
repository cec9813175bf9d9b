"""The revoker: drains the durable revoke queue through the Cendis API.

What it does with each answer follows cendis-api.md's table. A token leaves the queue
only with an answer about it (revoked, already revoked, not found) or a 400 for it alone;
everything else (5xx, timeouts, connection errors, 429, 401, 403) keeps it queued, so a
token is never dropped. Each attempt is written to the database before the call, so
after a crash an ``already_revoked`` is recognised as our own earlier revoke.

Several revokers (in several processes) may drain one database: each claims the batch
it sends (see :meth:`Store.claim_batch`), so no token is sent by two of them at once.

Backoff is one state for the whole revoker (Cendis being down is not a property of one
token): the head batch is retried, the rest wait behind it. The wait is also written to
the queue (``next_attempt_at``), so another process sharing the database does not resend
those tokens before it ends. Every wait is bounded (a ``Retry-After`` to [1 s, 1 h]), and
a ``drain`` with patience never waits past its deadline. Time and randomness are
parameters, so tests run an outage of any length without sleeping.

Every store call runs in a worker thread (:meth:`Revoker._db`): the event loop it shares
with the receiver never waits on a database lock, a network round trip to PostgreSQL, or
an fsync. Both stores are safe to call from threads.

In a service, :func:`supervise` runs the loop: a crash is logged, counted and restarted
with backoff, and the revoker reports itself down (``healthy`` false) meanwhile. The
wake/stop/run lifecycle and the supervisor are :mod:`scanner.worker`'s, shared with the
notification dispatcher; the retry policy is the revoker's own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum

from scanner.cendis.client import CendisClient
from scanner.cendis.contract import RETRY_AFTER_MAX, RETRY_AFTER_MIN
from scanner.cendis.errors import CendisError
from scanner.incidents.models import QueueEntry, RevokeOutcome, Status
from scanner.incidents.store import Store, claim_owner
from scanner.worker import Worker, backoff
from scanner.worker import supervise as _supervise

log = logging.getLogger(__name__)

BASE_DELAY = 1.0  # first backoff after a 5xx / timeout, seconds
MAX_DELAY = 300.0  # backoff ceiling: retried forever, at least every 5 minutes
AUTH_RETRY = 60.0  # a bad credential is retried this often, until an operator fixes it
LEASE = 120.0  # a claim on queued tokens outlives any call; a dead process's ends at once
BUSY_WAIT = 0.25  # another process holds the queued tokens: look again this soon
RATE_LIMIT_DEFAULT = 5.0  # a 429 without a readable Retry-After
POLL_CAP = 60.0  # queued tokens not yet due: look again at the latest this soon
RESTART_BASE = 1.0  # a crashed run() restarts after this, doubling per crash in a row
RESTART_MAX = 60.0  # ... up to this


class Step(Enum):
    EMPTY = "empty"  # nothing queued
    PROGRESS = "progress"  # tokens left the queue
    WAITED = "waited"  # a transient failure; waited as told (backoff or Retry-After)
    BUSY = "busy"  # tokens are queued but another process is sending them
    DEFERRED = "deferred"  # tokens are queued but not due yet (a backoff, any process's)
    BLOCKED = "blocked"  # 401/403: only an operator can help


class Revoker(Worker):
    """Drains the queue in batches of up to ``batch`` hashes per call."""

    name = "revoker"
    crash_note = "; queued tokens wait"

    def __init__(self, store: Store, client: CendisClient, *,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, batch: int = 100,
                 base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY,
                 auth_retry: float = AUTH_RETRY, notify_owner: bool = True,
                 reason: str = "leaked", lease: float = LEASE) -> None:
        if not 1 <= batch <= 100:
            raise ValueError("a revoke call names 1 to 100 tokens")
        super().__init__(clock=now, sleep=sleep)
        self.store = store
        self.client = client
        self._rng = rng or random.Random()
        self.batch = batch
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.auth_retry = auth_retry
        self.notify_owner = notify_owner
        self.reason = reason
        self.lease = lease
        self.owner = claim_owner(f"{self._rng.getrandbits(32):08x}")
        self._credential_ok = True
        self._blocked_reason: str | None = None
        self.deferred = 0.0  # after Step.DEFERRED: seconds until the next token is due
        self._deadline: float | None = None  # a drain's patience ends then (self._clock)
        self.failures = 0  # consecutive transient failures (the backoff exponent)
        self.calls = 0
        self.closed = 0  # tokens that left the queue with an answer
        self.revoked = 0  # of which Cendis revoked (status revoked)
        self.errors: dict[str, int] = {}  # reason -> count, for metrics
        #: Called (in the loop) after the revoker wrote outcomes or failures, with the
        #: ids of the incidents it just revoked: a service wakes its notification
        #: dispatcher and observes the leak-to-revoke time. Must not block.
        self.on_outcomes: Callable[[Sequence[int]], None] | None = None

    # -- public ------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while Cendis refuses the credential, or while run() is down (crashed)."""
        return self._credential_ok and self.down is None

    @property
    def unhealthy_reason(self) -> str | None:
        """``down`` after a crash, else the credential's refusal reason, else None."""
        return "down" if self.down is not None else self._blocked_reason

    def outcome(self, sha256: str) -> Status | None:
        """The incident's status, for partner feedback (None if never recorded). A
        blocking read: from a coroutine, use :meth:`outcome_async`."""
        return self.store.status_of(sha256)

    async def outcome_async(self, sha256: str) -> Status | None:
        """:meth:`outcome` in a worker thread."""
        return await self._db(self.store.status_of, sha256)

    async def turn(self) -> float | None:
        """One :meth:`step` for :meth:`~scanner.worker.Worker.run` (the serve loop; a
        cancellation mid-call is safe: the attempt was written first, see the module
        docstring), and how long to rest after it."""
        step = await self.step()
        if step is Step.EMPTY:
            return None  # until new work wakes us
        if step is Step.BUSY:
            return BUSY_WAIT
        if step is Step.DEFERRED:
            return min(self.deferred, POLL_CAP)
        if step is Step.BLOCKED:
            return self.auth_retry
        return 0.0  # progress, or a wait already made: go on at once

    async def drain(self, *, patience: float | None = None) -> int:
        """Until the queue is empty (waiting while another process sends some of it), or
        blocked on the credential, or (with ``patience``) that many seconds of failures
        or waiting have passed; returns the tokens this revoker closed."""
        closed_before = self.closed
        self._deadline = None if patience is None else self._clock() + max(0.0, patience)
        try:
            while True:
                step = await self.step()
                if step in (Step.EMPTY, Step.BLOCKED):
                    break
                if step is Step.BUSY:
                    await self._pause(BUSY_WAIT)
                elif step is Step.DEFERRED:
                    if (self._deadline is not None
                            and self._clock() + self.deferred > self._deadline):
                        break  # nothing comes due within our patience: stop now
                    await self._pause(min(self.deferred, POLL_CAP))
                if (step is not Step.PROGRESS and self._deadline is not None
                        and self._clock() >= self._deadline):
                    break
        finally:
            self._deadline = None
        return self.closed - closed_before

    async def step(self) -> Step:
        """One batch: call, then record what Cendis said (or wait as it asked)."""
        entries = await self._db(self.store.claim_batch, self.batch, owner=self.owner,
                                 lease=self.lease)
        if not entries:
            due_in = await self._db(self.store.next_attempt_in)
            if due_in is None:
                return Step.EMPTY
            if due_in > 0:
                self.deferred = due_in
                return Step.DEFERRED
            return Step.BUSY
        return await self._send(entries)

    # -- internals -----------------------------------------------------------------------

    async def _send(self, entries: Sequence[QueueEntry]) -> Step:
        """One call for claimed entries (the attempt is already written)."""
        urls = {e.url for e in entries}
        url = urls.pop() if len(urls) == 1 else ""  # one call, one url: shared or none
        self.calls += 1
        try:
            results = await self.client.revoke(
                [e.sha256 for e in entries], source=entries[0].source, url=url,
                reason=self.reason, notify_owner=self.notify_owner)
        except CendisError as exc:
            self.errors[exc.reason] = self.errors.get(exc.reason, 0) + 1
            return await self._failed(entries, exc)
        outcomes = [RevokeOutcome(sha256=r.sha256, status=Status(r.status), owner=r.owner,
                                  token_name=r.token_name, org=r.org, scopes=tuple(r.scopes))
                    for r in results]
        statuses = await self._db(self.store.apply_outcomes, entries, outcomes,
                                  notify_owner=self.notify_owner)
        self.closed += len(statuses)
        self.revoked += sum(1 for s in statuses if s is Status.REVOKED)
        incident_of = {e.sha256: e.incident_id for e in entries}
        self._written([incident_of[o.sha256] for o, s in zip(outcomes, statuses, strict=True)
                       if s in (Status.REVOKED, Status.ALREADY_REVOKED)])
        for outcome, status in zip(outcomes, statuses, strict=True):  # one line each
            log.info("token %s", status.value.replace("_", " "),
                     extra={"incident_id": incident_of.get(outcome.sha256),
                            "status": status.value})
        self.failures = 0
        if not self._credential_ok:
            log.info("revoker recovered: Cendis accepts the credential again")
        self._credential_ok, self._blocked_reason = True, None
        return Step.PROGRESS

    def _written(self, revoked: Sequence[int]) -> None:
        """Tell :attr:`on_outcomes` (a failure may have written a ``revoke_failing``
        event, an outcome a ``revoked`` one); its own failure is only logged."""
        if self.on_outcomes is None:
            return
        try:
            self.on_outcomes(list(dict.fromkeys(revoked)))
        except Exception:  # noqa: BLE001 - a hook never stops the revoker
            log.debug("on_outcomes hook failed", exc_info=True)

    async def _attempt_failed(self, entries: Sequence[QueueEntry], reason: str, *,
                              answered: bool, retry_in: float | None = None) -> None:
        """``attempt_failed`` in the store (which writes a ``revoke_failing`` event
        once a token has waited past the router's limit), then the hook, at once."""
        await self._db(self.store.attempt_failed, entries, reason, answered=answered,
                       retry_in=retry_in)
        self._written([])

    async def _failed(self, entries: Sequence[QueueEntry], exc: CendisError) -> Step:
        answered = exc.status is not None  # an HTTP answer: Cendis did nothing
        if exc.credential_problem:
            await self._attempt_failed(entries, exc.reason, answered=True)
            if self._credential_ok:
                log.error("revoker blocked: %s; every token stays queued until the "
                          "credential is fixed", exc)
            self._credential_ok, self._blocked_reason = False, exc.reason
            return Step.BLOCKED
        if exc.reason == "bad_request":
            await self._attempt_failed(entries, exc.reason, answered=True)
            if len(entries) > 1:
                # Not resent unchanged: each token alone, so one bad entry cannot hold
                # back the others.
                for entry in entries:
                    claimed = await self._db(self.store.claim_batch, 1, owner=self.owner,
                                             lease=self.lease, only=entry.sha256)
                    if claimed:
                        step = await self._send(claimed)
                        if step is not Step.PROGRESS:
                            return step
                return Step.PROGRESS
            await self._db(self.store.reject, entries[0], exc.reason, str(exc))
            self._written([])
            self.closed += 1
            return Step.PROGRESS
        if exc.reason == "rate_limited":
            wait = _bounded_retry_after(exc.retry_after)
            await self._attempt_failed(entries, exc.reason, answered=True, retry_in=wait)
            log.warning("Cendis rate limit: waiting %.1f s", self._capped(wait))
            await self._pause(wait)
            return Step.WAITED
        # 5xx, timeout, connection error, an answer we cannot read: back off and retry.
        delay = self._backoff()
        await self._attempt_failed(entries, exc.reason, retry_in=delay,
                                   answered=answered and exc.reason == "server_error")
        log.warning("revoke call failed (%s); retrying in %.1f s", exc.reason,
                    self._capped(delay), extra={"reason": exc.reason})
        await self._pause(delay)
        return Step.WAITED

    def _backoff(self) -> float:
        """The next wait (:func:`~scanner.worker.backoff`); no retry limit."""
        self.failures += 1
        return backoff(self.failures - 1, self.base_delay, self.max_delay, self._rng)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (the injected sleep), but never past a drain's deadline: a
        one-off ``revoke --wait 5`` returns after 5 s even if Cendis asked for an hour
        (the token stays queued, due when Cendis said)."""
        await self._sleep(self._capped(seconds))

    def _capped(self, seconds: float) -> float:
        """The wait :meth:`_pause` really makes (what the log says it waits)."""
        if self._deadline is not None:
            return min(seconds, max(0.0, self._deadline - self._clock()))
        return seconds


def _bounded_retry_after(seconds: float | None) -> float:
    """A 429's wait: the client bounds Retry-After already; bounded again here, since a
    wait becomes a sleep and a queue date (nan, inf or 0 would spin or overflow)."""
    if seconds is None or seconds != seconds:  # absent or nan
        return RATE_LIMIT_DEFAULT
    return min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, seconds))


async def supervise(revoker: Revoker, *,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    base: float = RESTART_BASE, cap: float = RESTART_MAX) -> None:
    """Run ``revoker.run()`` for a service's life (:func:`scanner.worker.supervise`): a
    crash is one log line, counted in ``revoker.crashes``; ``revoker.down`` (so /readyz
    and the health gauge report it) until a step gets through; restarts back off from
    ``base`` to ``cap``. Tokens are never lost by a crash: they stay queued and their
    claims end with the lease."""
    await _supervise(revoker, sleep=sleep, base=base, cap=cap)
