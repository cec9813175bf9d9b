"""The revoker against the Cendis stand-in on loopback, with faults injected over HTTP and
time injected (no test sleeps through a real backoff)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, keep_output
from standin import FakeTime, calls, faults, revoked_counts, start

from scanner.cendis.errors import CendisError
from scanner.dev.cendis_api import StandInToken
from scanner.incidents.models import Sighting, Status, TokenRef, utcnow
from scanner.incidents.revoker import Revoker
from scanner.incidents.store import Store


def _queue(store: Store, tokens: list[str], source: str = "github") -> list[str]:
    refs = [TokenRef.from_token(t) for t in tokens]
    store.record([(r, Sighting(source=source, received_at=utcnow(), url="https://x/1"))
                  for r in refs], revoke=True)
    return [r.sha256 for r in refs]


def _known(tokens: list[str], scopes: tuple[str, ...] = ("read:assets",)) -> list[StandInToken]:
    return [StandInToken.from_token(t, owner=f"user{i}", scopes=scopes)
            for i, t in enumerate(tokens)]


async def test_revoked_already_revoked_and_not_found(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    live, earlier, unknown = make_token(), make_token(), make_token()
    http, client = await start(aiohttp_client, make_token(),
                               _known([live, earlier], ("admin:org",)))
    await client.revoke([TokenRef.from_token(earlier).sha256], source="manual")
    hashes = _queue(store, [live, earlier, unknown])
    revoker = Revoker(store, client, rng=random.Random(1))
    assert await revoker.drain() == 3
    assert [store.status_of(h) for h in hashes] == [Status.REVOKED, Status.ALREADY_REVOKED,
                                                   Status.NOT_FOUND]
    first = store.get_incident(hashes[0])
    assert first is not None
    assert (first["owner"], first["severity"], first["revoke_attempts"]) == (
        "user0", "critical", 1)
    assert "notified" in [e["kind"] for e in first["events"]]
    last = (await calls(http))[-1]
    assert (last["hashes"], last["source"], last["url"], last["notify_owner"]) == (
        hashes, "github", "https://x/1", True)
    notified = await (await http.get("/_notifications")).json()
    # The owner is told once per revoke, never for an already revoked token.
    assert [n["sha256"] for n in notified] == [hashes[1], hashes[0]]
    assert revoker.outcome(hashes[2]) is Status.NOT_FOUND and revoker.healthy


async def test_outage_of_six_503s_then_recovery(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    tokens = [make_token() for _ in range(250)]
    http, client = await start(aiohttp_client, make_token(), _known(tokens))
    hashes = _queue(store, tokens)
    await faults(http, fail_next=6, status=503)
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep, rng=random.Random(7))
    assert await revoker.drain() == 250
    # Six backoffs, each in the upper half of an exponentially growing ceiling.
    assert len(time.sleeps) == 6
    for attempt, slept in enumerate(time.sleeps):
        assert 2 ** attempt * 0.5 <= slept <= 2 ** attempt
    received = await calls(http)
    assert [c["status"] for c in received] == [503] * 6 + [200] * 3
    assert all(len(c["hashes"]) <= 100 for c in received)
    counts = revoked_counts(received)
    assert set(counts) == set(hashes)
    assert all(per == {"revoked": 1} for per in counts.values())
    assert all(store.status_of(h) is Status.REVOKED for h in hashes)
    assert store.queue_depth() == 0 and revoker.errors == {"server_error": 6}


async def test_429_waits_at_least_retry_after(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    tokens = [make_token() for _ in range(3)]
    http, client = await start(aiohttp_client, make_token(), _known(tokens))
    _queue(store, tokens)
    await faults(http, rate_limit_next=2, retry_after=7)
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep)
    assert await revoker.drain() == 3
    assert time.sleeps == [7.0, 7.0]
    assert [c["status"] for c in await calls(http)] == [429, 429, 200]


async def test_401_keeps_everything_pending_then_recovers(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    tokens = [make_token() for _ in range(120)]
    http, client = await start(aiohttp_client, make_token(), _known(tokens))
    hashes = _queue(store, tokens)
    await faults(http, reject_credential=True)
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep, auth_retry=60)
    assert await revoker.drain() == 0  # blocked: drain returns, nothing dropped
    assert (revoker.healthy, revoker.unhealthy_reason) == (False, "unauthorized")
    assert store.queue_depth() == 120
    assert {store.status_of(h) for h in hashes} == {Status.PENDING}
    assert store.get_incident(hashes[0])["last_error"] == "unauthorized"  # type: ignore[index]

    async def operator_fixes_it_on_the_third_retry(seconds: float) -> None:
        if len(time.sleeps) == 3:
            await faults(http, reject_credential=False)

    time.hook = operator_fixes_it_on_the_third_retry
    task = asyncio.create_task(revoker.run())
    for _ in range(500):
        if store.queue_depth() == 0:
            break
        await asyncio.sleep(0.01)  # polled: real I/O
    revoker.stop()
    await asyncio.wait_for(task, 5)
    assert time.sleeps == [60, 60, 60]  # retried periodically while blocked
    assert (revoker.healthy, revoker.unhealthy_reason) == (True, None)
    assert all(store.status_of(h) is Status.REVOKED for h in hashes)
    assert all(per == {"revoked": 1} for per in revoked_counts(await calls(http)).values())


async def test_403_names_the_missing_scope_and_blocks(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    token = make_token()
    http, client = await start(aiohttp_client, make_token(), _known([token]), ["read:assets"])
    _queue(store, [token])
    revoker = Revoker(store, client)
    assert await revoker.drain() == 0
    assert (revoker.healthy, revoker.unhealthy_reason) == (False, "forbidden")
    with pytest.raises(CendisError) as caught:
        await client.revoke([TokenRef.from_token(token).sha256], source="manual")
    assert (caught.value.reason, caught.value.missing_scope) == ("forbidden", "revoke:tokens")
    assert store.queue_depth() == 1


async def test_400_is_not_retried_unchanged(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    tokens = [make_token() for _ in range(3)]
    http, client = await start(aiohttp_client, make_token(), _known(tokens))
    hashes = _queue(store, tokens)
    # A batch refused with 400 is split: each token alone, so no request is repeated.
    await faults(http, fail_next=1, status=400)
    revoker = Revoker(store, client)
    assert await revoker.drain() == 3
    assert [len(c["hashes"]) for c in await calls(http)] == [3, 1, 1, 1]
    assert all(store.status_of(h) is Status.REVOKED for h in hashes)
    # A single token refused with 400: recorded as an error, never sent again.
    lone = make_token()
    [lone_hash] = _queue(store, [lone], source="manual")
    await faults(http, fail_next=1, status=400)
    assert await revoker.drain() == 1
    assert store.status_of(lone_hash) is Status.ERROR and store.queue_depth() == 0
    assert await revoker.drain() == 0
    assert len(await calls(http)) == 5
    _queue(store, [lone], source="gitlab")  # seen again: still closed, not re-queued
    assert store.queue_depth() == 0


async def test_timeout_then_already_revoked_is_our_own_revoke(
        aiohttp_client: Any, store: Store, make_token: Callable[[], str],
        time: FakeTime) -> None:
    """The answer to a call is lost (timeout) but Cendis did revoke: the retry's
    already_revoked is recorded as revoked, and no token is lost."""
    token = make_token()
    http, client = await start(aiohttp_client, make_token(), _known([token]), timeout=0.1)
    [sha] = _queue(store, [token])
    await faults(http, delay=0.3)

    async def answers_are_quick_again(seconds: float) -> None:
        await faults(http, delay=0)

    time.hook = answers_are_quick_again
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep)
    assert await revoker.drain() == 1
    assert revoker.errors == {"timeout": 1} and len(time.sleeps) == 1
    assert [c["results"] for c in await calls(http)] == [["revoked"], ["already_revoked"]]
    incident = store.get_incident(sha)
    assert incident is not None and incident["status"] == "revoked"
    assert incident["revoke_attempts"] == 2


async def test_connection_refused_is_retried_without_dropping(
        store: Store, make_token: Callable[[], str], time: FakeTime) -> None:
    import aiohttp

    from scanner.cendis.client import CendisClient

    [sha] = _queue(store, [make_token()])
    async with aiohttp.ClientSession() as session:
        client = CendisClient(session, "http://127.0.0.1:9", make_token())
        revoker = Revoker(store, client, now=time.clock, sleep=time.sleep)
        assert await revoker.drain(patience=100) == 0
    assert revoker.errors["connection"] == len(time.sleeps) >= 3
    assert store.status_of(sha) is Status.PENDING and store.queue_depth() == 1


async def test_kill_9_mid_queue_then_restart(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A draining process is killed with SIGKILL while calls are in flight; a new one
    finishes the queue: every token revoked exactly once by Cendis, none lost."""
    from scanner.dev.cendis_api import create_app

    credential = make_token()
    tokens = [make_token() for _ in range(500)]
    server = await aiohttp_server(create_app(tokens=_known(tokens),
                                             service_credentials={credential: [
                                                 "revoke:tokens"]}))
    url = str(server.make_url("")).rstrip("/")
    db = tmp_path / "queue.db"
    store = Store.open(db)
    hashes = _queue(store, tokens)
    store.close()
    app = server.app
    from scanner.dev.cendis_api import STATE

    state = app[STATE]
    state.faults.delay = 0.4
    env = {**os.environ, "CENDIS_TOKEN": credential}
    driver = [sys.executable, str(ROOT / "tests" / "drivers.py"), "drain", str(db), url]
    first = await asyncio.create_subprocess_exec(*driver, env=env,
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    for _ in range(1000):
        if len(state.calls) >= 2:
            break
        await asyncio.sleep(0.01)  # polled: a real driver process
    first.send_signal(signal.SIGKILL)
    out, err = await first.communicate()
    keep_output(out + err, "driver")
    assert first.returncode == -signal.SIGKILL
    store = Store.open(db)
    assert 0 < store.queue_depth() < 500  # killed with work left
    store.close()
    state.faults.delay = 0
    second = await asyncio.create_subprocess_exec(*driver, env=env,
                                                  stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.PIPE)
    out, err = await second.communicate()
    keep_output(out + err, "driver")
    assert second.returncode == 0, err.decode()
    await asyncio.sleep(0.5)  # the killed (real) process's last call ends in the stand-in
    counts = revoked_counts(state.calls)
    assert set(counts) == set(hashes)
    assert all(per["revoked"] == 1 for per in counts.values())
    # At most the batch in flight at the kill was sent twice: Cendis had revoked it but
    # the answer was lost, so its already_revoked is recorded as our revoke.
    repeated = [h for h, per in counts.items() if sum(per.values()) > 1]
    assert len(repeated) <= 100
    store = Store.open(db)
    assert store.queue_depth() == 0
    assert {store.status_of(h) for h in hashes} == {Status.REVOKED}
    for sha in repeated:
        events = store.get_incident(sha)["events"]  # type: ignore[index]
        assert events[-1]["detail"].endswith("(by an earlier call whose answer was lost)")
    store.close()
