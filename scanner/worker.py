"""The lifecycle of a long-running worker, owned once: the revoker and the notification
dispatcher both drain a durable queue for a service's life, and both need the same
things around their own work: a wake event (work was queued in this process: look now,
not at the next timer), a graceful :meth:`Worker.stop` between units of work, a
:attr:`Worker.stopping` flag the supervisor reads, a run loop that rests between turns
(cut short by a wake), and a supervisor that logs, counts and restarts a crashed loop
with backoff. What a turn does and how it retries (its backoff, its ``Retry-After``
rules) stays each worker's own; the shape of a backoff (:func:`backoff`) is shared.

Time is a parameter: the clock and the sleep are injected, so tests run hours of
waiting without sleeping. Standard library only (a core module).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from scanner.errors import short

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


def backoff(attempts: int, base: float, cap: float, rng: Any) -> float:
    """The wait before retry number ``attempts + 1``: exponential from ``base``, capped
    at ``cap``, with jitter in its upper half (``rng``: the injected randomness), so
    that workers of several hosts that failed together do not retry together."""
    ceiling = min(cap, base * 2 ** min(attempts, 30))
    return float(ceiling * (0.5 + 0.5 * rng.random()))


class Worker:
    """The shared lifecycle; a subclass gives :meth:`turn` (one unit of work)."""

    #: Said in the supervisor's crash line: "<name> crashed (reason); restarting in ...".
    name = "worker"
    #: What waits meanwhile, appended to that line ("" for nothing).
    crash_note = ""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._stopping = False
        self._wake = asyncio.Event()
        self.down: str | None = None  # why run() crashed, until a turn gets through
        self.crashes: dict[str, int] = {}  # reason -> count, for metrics

    def wake(self) -> None:
        """Work was queued (in this process): look now instead of at the next timer."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Ask :meth:`run` to return after the work in flight (graceful shutdown)."""
        self._stopping = True
        self._wake.set()

    async def turn(self) -> float | None:
        """One unit of work; returns how long to rest before the next: None until
        :meth:`wake`, 0 not at all, else that many seconds (cut short by a wake)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Turns until :meth:`stop` or cancelled (each worker says why a cancellation
        mid-turn loses nothing)."""
        while not self._stopping:
            self._wake.clear()
            rest = await self.turn()
            self.down = None  # a turn went through: up again (after a restart)
            if self._stopping:
                return
            if rest is None:
                await self._wake.wait()
            elif rest > 0:
                await self._wait_or_wake(rest)

    async def _db(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking call (the store's) in a worker thread: the loop goes on meanwhile
        (it may be the receiver's, which never waits on a database lock)."""
        return await asyncio.to_thread(method, *args, **kwargs)

    async def _wait_or_wake(self, seconds: float) -> None:
        """Sleep ``seconds`` (the injected sleep), cut short by :meth:`wake`."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()


async def supervise(worker: Worker, *, sleep: Sleep = asyncio.sleep,
                    base: float = 1.0, cap: float = 60.0) -> None:
    """Run ``worker.run()`` for a service's life. A crash (a bug, a database error) is
    one log line with its reason, counted in ``worker.crashes``; ``worker.down`` holds
    the reason (so readiness and the health gauge can report it) until the restarted
    loop gets a turn through; restarts back off from ``base`` to ``cap``, doubling per
    crash in a row. Returns after :meth:`Worker.stop`; a cancellation propagates."""
    in_a_row = 0
    while True:
        try:
            await worker.run()
            return
        except Exception as exc:  # noqa: BLE001 - the point: nothing kills the worker
            reason = getattr(exc, "reason", None)
            if not isinstance(reason, str) or not reason:
                reason = type(exc).__name__
            reason = short(reason, 40)
            in_a_row = 1 if worker.down is None else in_a_row + 1
            worker.down = reason
            worker.crashes[reason] = worker.crashes.get(reason, 0) + 1
            delay = min(cap, base * 2 ** min(in_a_row - 1, 30))
            log = logging.getLogger(type(worker).__module__)  # the worker's own logger
            log.error("%s crashed (%s); restarting in %.1f s%s", worker.name, reason, delay,
                      worker.crash_note, extra={"reason": reason,
                                                "error": short(str(exc), 200)})
        await sleep(delay)
        if worker.stopping:
            return
