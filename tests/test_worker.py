"""The one long-running-worker lifecycle (scanner/worker.py), through both real workers
that share it: the revoker and the notification dispatcher, each on a real SQLite store
(the dispatcher with a real webhook channel configured, the revoker with a real client
that is never called: nothing is queued). Time is injected: no test sleeps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dispatchtools import channels
from standin import FakeTime

from scanner.cendis.client import CendisClient
from scanner.incidents.revoker import Revoker
from scanner.incidents.revoker import supervise as supervise_revoker
from scanner.incidents.store import Store
from scanner.notify.config import as_router
from scanner.notify.dispatch import Dispatcher
from scanner.notify.dispatch import supervise as supervise_dispatcher
from scanner.worker import Worker

WORKERS = ("revoker", "dispatcher")
#: The store method each worker calls first in a turn (where a crash is injected).
FIRST_CALL = {"revoker": "claim_batch", "dispatcher": "claim_outbox"}
SUPERVISE: dict[str, Callable[..., Any]] = {"revoker": supervise_revoker,
                                            "dispatcher": supervise_dispatcher}


@asynccontextmanager
async def a_worker(kind: str, tmp_path: Path, aiohttp_server: Any, time: FakeTime,
                   sleep: Callable[[float], Any]) -> AsyncIterator[tuple[Worker, Store]]:
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config()
        store = Store.open(str(tmp_path / "incidents.db"), now=time.wall,
                           router=as_router(config))
        try:
            worker: Worker
            if kind == "revoker":
                client = CendisClient(session, "http://127.0.0.1:9", "unused")
                worker = Revoker(store, client, now=time.clock, sleep=sleep)
            else:
                worker = Dispatcher(store, config, session, clock=time.clock, sleep=sleep)
            yield worker, store
        finally:
            store.close()


class Crash(Exception):
    def __init__(self, reason: object) -> None:
        super().__init__("injected")
        self.reason = reason


@pytest.mark.parametrize("kind", WORKERS)
@pytest.mark.parametrize("reason,label", [("database", "database"), (None, "Crash"),
                                         (42, "Crash"), ("x" * 80, "x" * 39 + "…")])
async def test_a_crashed_worker_is_restarted_with_backoff_down_meanwhile(
        tmp_path: Path, aiohttp_server: Any, caplog: pytest.LogCaptureFixture,
        kind: str, reason: object, label: str) -> None:
    """Crashes in a row double the restart wait; ``down`` and ``crashes`` say why; a
    turn that gets through clears ``down`` and the next crash waits ``base`` again."""
    time, restarts = FakeTime(), []
    failing = [2]  # crashes before a turn gets through
    permits = asyncio.Semaphore(0)

    async def restart_sleep(seconds: float) -> None:
        restarts.append(seconds)
        await permits.acquire()

    async with a_worker(kind, tmp_path, aiohttp_server, time, time.sleep) as (worker, store):
        real = getattr(store, FIRST_CALL[kind])
        broken = [False]  # the store fails until the turn's end says so

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if broken[0]:
                raise Crash(reason)
            return real(*args, **kwargs)

        turn = worker.turn

        async def one_turn() -> float | None:  # one crash a turn (channels in parallel)
            broken[0] = failing[0] > 0
            try:
                return await turn()
            finally:
                failing[0] -= broken[0]

        setattr(store, FIRST_CALL[kind], flaky)
        worker.turn = one_turn  # type: ignore[method-assign]
        caplog.set_level(logging.ERROR, logger=type(worker).__module__)
        task = asyncio.create_task(SUPERVISE[kind](worker, sleep=restart_sleep))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(restarts) == 1:
                break
        assert worker.down == label and worker.crashes == {label: 1}
        permits.release()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(restarts) == 2:
                break
        assert restarts == [1.0, 2.0] and worker.crashes == {label: 2}
        permits.release()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if worker.down is None:
                break
        assert worker.down is None  # a turn went through
        failing[0] = 1
        worker.wake()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(restarts) == 3:
                break
        assert restarts == [1.0, 2.0, 1.0]  # not in a row: from base again
        worker.stop()
        permits.release()
        await asyncio.wait_for(task, 10)
    lines = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert len(lines) == 3 and all(f"({label})" in line for line in lines)
    assert all(r.name == type(worker).__module__ for r in caplog.records
               if "crashed" in r.getMessage())


@pytest.mark.parametrize("kind", WORKERS)
async def test_stop_ends_run_and_wake_cuts_a_rest_short(
        tmp_path: Path, aiohttp_server: Any, kind: str) -> None:
    """Nothing to do: the worker rests (until woken, or a poll's length) and looks
    again at once when woken; ``stop`` ends ``run`` however long the rest was."""
    time = FakeTime()
    rests: list[float] = []
    resting = asyncio.Event()

    async def long_sleep(seconds: float) -> None:  # a rest that never ends by itself
        rests.append(seconds)
        resting.set()
        await asyncio.Event().wait()

    async with a_worker(kind, tmp_path, aiohttp_server, time, long_sleep) as (worker, store):
        turn, calls = worker.turn, [0]

        async def counted() -> float | None:
            calls[0] += 1
            return await turn()

        worker.turn = counted  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls[0] == 1 and (resting.is_set() or kind == "revoker"):
                break
        assert calls[0] == 1 and not task.done()
        worker.wake()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls[0] == 2:
                break
        assert calls[0] == 2 and not task.done()
        assert not worker.stopping
        worker.stop()
        assert worker.stopping
        await asyncio.wait_for(task, 10)
    # The revoker with nothing queued rests until woken (no timer); the dispatcher polls.
    assert all(r > 0 for r in rests) and (rests == [] if kind == "revoker" else rests)
