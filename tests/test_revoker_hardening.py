"""The revoker never dies, never spins, and honours backoff across processes (issue 14,
class 2): any Retry-After becomes a bounded wait, a contract-breaking or redirected
answer is an error retried with backoff (never a crash, never a wrong severity, never a
revoke recorded from another host), ``next_attempt_at`` holds for every process, and a
crashed revoker task is restarted while /readyz says it is down.

Everything goes through the Cendis stand-in on loopback with its faults set over HTTP;
time is injected (no test sleeps through a backoff) except where a real process runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import CLI, async_http_answers, async_wait_until, free_port, keep_output
from receiver import CREDENTIAL, PARTNERS, Rig
from receiver import test_config as receiver_config
from standin import FakeTime, calls, faults, start

from scanner.cendis.contract import RETRY_AFTER_MAX, RETRY_AFTER_MIN, retry_after_seconds
from scanner.cendis.errors import CendisError
from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.dev.partner import KEYS_PATH, PartnerKey, create_key_app
from scanner.incidents.models import Sighting, Status, TokenRef, utcnow
from scanner.incidents.revoker import RATE_LIMIT_DEFAULT, Revoker
from scanner.incidents.store import Store
from scanner.server.app import create_app
from scanner.server.logs import JsonFormatter
from scanner.server.state import REVOKER, STORE


def _queue(store: Store, tokens: list[str], source: str = "github") -> list[str]:
    refs = [TokenRef.from_token(t) for t in tokens]
    store.record([(r, Sighting(source=source, received_at=utcnow())) for r in refs],
                 revoke=True)
    return [r.sha256 for r in refs]


def _known(tokens: list[str], scopes: tuple[str, ...] = ("admin:org",)) -> list[StandInToken]:
    return [StandInToken.from_token(t, scopes=scopes) for t in tokens]


def _next_attempt(db: Path | Store, sha256: str) -> datetime:
    if isinstance(db, Store):
        row = db.db.execute("SELECT next_attempt_at FROM revoke_queue WHERE sha256 = ?",
                            [sha256]).fetchone()
    else:
        conn = sqlite3.connect(db)
        row = conn.execute("SELECT next_attempt_at FROM revoke_queue WHERE sha256 = ?",
                           [sha256]).fetchone()
        conn.close()
    return datetime.fromisoformat(row[0])


# -- Retry-After: any value is a bounded wait, and the serve loop never spins -----------

#: (Retry-After as sent, the waits it may cause). Dates are relative to the fake clock.
RETRY_AFTERS: list[tuple[Any, set[float]]] = [
    (1e12, {RETRY_AFTER_MAX}), ("1e12", {RETRY_AFTER_MAX}), ("inf", {RETRY_AFTER_MAX}),
    ("-inf", {RETRY_AFTER_MIN}), ("nan", {RATE_LIMIT_DEFAULT}), ("0", {RETRY_AFTER_MIN}),
    ("-5", {RETRY_AFTER_MIN}), ("100000", {RETRY_AFTER_MAX}), ("9" * 400, {RETRY_AFTER_MAX}),
    ("0.0001", {RETRY_AFTER_MIN}), ("garbage", {RATE_LIMIT_DEFAULT}),
    ("", {RATE_LIMIT_DEFAULT}), (None, {RATE_LIMIT_DEFAULT}), ("7", {7.0}),
    ("date+120", {120.0, RETRY_AFTER_MIN}), ("date-600", {RETRY_AFTER_MIN}),
    ("date+10y", {RETRY_AFTER_MAX}),
    # only ASCII digits are seconds: float() alone read these as 10 (hostile 14 D5)
    ("1_0", {RATE_LIMIT_DEFAULT}), ("1 0", {RATE_LIMIT_DEFAULT}), ("0x10", {RATE_LIMIT_DEFAULT}),
    ("10.5", {10.5}),
]


def _header(value: Any, now: datetime) -> Any:
    if isinstance(value, str) and value.startswith("date"):
        offset = {"+120": timedelta(seconds=120), "-600": timedelta(seconds=-600),
                  "+10y": timedelta(days=3650)}[value[4:]]
        return format_datetime(now + offset, usegmt=True)
    return value


@pytest.mark.parametrize(("retry_after", "waits"), RETRY_AFTERS,
                         ids=[str(v)[:12] for v, _ in RETRY_AFTERS])
async def test_retry_after_is_bounded_and_the_loop_never_spins(
        aiohttp_client: Any, store: Store, time: FakeTime, make_token: Callable[[], str],
        retry_after: Any, waits: set[float]) -> None:
    from scanner.cendis.client import CendisClient

    token, credential = make_token(), make_token()
    http, _ = await start(aiohttp_client, credential, _known([token]))
    # An HTTP-date is read against the same (fake) clock as everything else.
    client = CendisClient(http.session, str(http.make_url("")).rstrip("/"), credential,
                          now=time.wall)
    [sha] = _queue(store, [token])
    await faults(http, rate_limit_next=10**6, retry_after=_header(retry_after, time.wall()))
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep,
                      rng=random.Random(3))
    started, span = time.now, 100 * min(waits)  # injected seconds under a permanent 429

    async def stop_after_the_span(seconds: float) -> None:
        assert RETRY_AFTER_MIN <= seconds <= RETRY_AFTER_MAX
        assert _next_attempt(store, sha) <= time.wall() + timedelta(seconds=RETRY_AFTER_MAX)
        if time.now - started >= span:
            revoker.stop()

    time.hook = stop_after_the_span
    await asyncio.wait_for(revoker.run(), 30)  # the serve loop, under injected time
    received = await calls(http)
    assert all(c["status"] == 429 for c in received)
    assert {round(s) for s in time.sleeps} <= {round(w) for w in waits}, time.sleeps[:5]
    # No spin: at most one call per shortest allowed wait over the span.
    assert 1 <= len(received) <= span / min(waits) + 2
    assert len(received) == len(time.sleeps)  # every call was followed by its wait
    assert store.status_of(sha) is Status.PENDING and store.queue_depth() == 1
    assert revoker.healthy and revoker.errors == {"rate_limited": len(received)}


@pytest.mark.parametrize("value", ["1e12", "inf", "-inf", "nan", "0", "-5", "100000",
                                   "garbage", " 12 ", "1_0", "0x10", "Wed, 99 Foo 2026",
                                   "Sun, 06 Nov 1994 08:49:37 GMT", "\x00"])
def test_retry_after_parse_is_total_and_bounded(value: str) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    wait = retry_after_seconds(value, now)
    assert wait is None or RETRY_AFTER_MIN <= wait <= RETRY_AFTER_MAX


@pytest.mark.parametrize(("value", "seconds"), [
    ("10", 10.0), (" 12 ", 12.0), ("10.5", 10.5), ("1_0", None), ("1_000", None),
    ("\u0661\u0660", None), ("\uff11\uff10", None), ("10\u00b2", None), ("0x10", None),
    ("1 0", None), ("10s", None), ("1,5", None)])
def test_retry_after_seconds_are_ascii_digits(value: str, seconds: float | None) -> None:
    """``float()`` reads ``1_0``, Arabic-Indic and fullwidth digits as 10: not here."""
    assert retry_after_seconds(value, datetime(2026, 3, 1, tzinfo=UTC)) == seconds


# -- contract violations: an error for the batch, recorded, retried with backoff --------

def _good(sha: str, **token: Any) -> dict[str, Any]:
    fields = {"id": "tok_1", "name": "laptop", "owner": "mallory", "org": "acme",
              "scopes": ["read:assets"], "created_at": "2026-01-01T00:00:00Z",
              "expires_at": "2027-01-01T00:00:00Z", "last_used_at": None}
    fields.update(token)
    return {"sha256": sha, "status": "revoked",
            "token": {k: v for k, v in fields.items() if v is not _MISSING}}


_MISSING = object()

#: A builder per broken answer: sha256 -> the body Cendis (or an impostor) sends.
BROKEN: dict[str, Callable[[str], Any]] = {
    "token_is_list": lambda h: {"results": [{"sha256": h, "status": "revoked", "token": []}]},
    "token_is_string": lambda h: {"results": [{"sha256": h, "status": "revoked",
                                               "token": "admin:org"}]},
    "token_missing": lambda h: {"results": [{"sha256": h, "status": "revoked"}]},
    "owner_is_int": lambda h: {"results": [_good(h, owner=7)]},
    "owner_is_list": lambda h: {"results": [_good(h, owner=["a"])]},
    "owner_missing": lambda h: {"results": [_good(h, owner=_MISSING)]},
    "scopes_is_string": lambda h: {"results": [_good(h, scopes="admin:org")]},
    "scopes_holds_int": lambda h: {"results": [_good(h, scopes=["read:assets", 1])]},
    "last_used_is_int": lambda h: {"results": [_good(h, last_used_at=5)]},
    "status_unknown": lambda h: {"results": [{**_good(h), "status": "deleted"}]},
    "status_is_int": lambda h: {"results": [{**_good(h), "status": 1}]},
    "sha_mismatch": lambda h: {"results": [_good("0" * 64)]},
    "sha_missing": lambda h: {"results": [{"status": "not_found"}]},
    "not_found_with_token": lambda h: {"results": [{**_good(h), "status": "not_found"}]},
    "extra_result": lambda h: {"results": [_good(h), _good(h)]},
    "no_results": lambda h: {"results": []},
    "results_is_object": lambda h: {"results": {h: "revoked"}},
    "results_missing": lambda h: {"ok": True},
    "list_body": lambda h: [_good(h)],
    "string_body": lambda h: "revoked",
    "null_body": lambda h: None,
    "number_body": lambda h: 5,
    "not_json": lambda h: "<html>revoked</html>",
    "trailing_garbage": lambda h: json.dumps({"results": [_good(h)]}) + " garbage",
    "nested_too_deep": lambda h: "[" * 200_000,
}
RAW = {"not_json", "trailing_garbage", "nested_too_deep"}


@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_contract_breaking_answer_is_retried_with_backoff(
        aiohttp_client: Any, store: Store, time: FakeTime, make_token: Callable[[], str],
        case: str) -> None:
    token = make_token()
    http, client = await start(aiohttp_client, make_token(), _known([token]))
    [sha] = _queue(store, [token])
    body = BROKEN[case](sha)
    await faults(http, answer_next=1,
                 **({"answer_text": body} if case in RAW else {"answer": body}))
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep,
                      rng=random.Random(5))
    assert await revoker.drain() == 1
    assert revoker.errors == {"contract": 1} and revoker.healthy
    assert len(time.sleeps) == 1 and 0.5 <= time.sleeps[0] <= 1.0  # the first backoff
    assert [c["status"] for c in await calls(http)] == [200, 200]
    incident = store.get_incident(sha)
    assert incident is not None
    # The real answer decides: revoked, by its owner, with the severity of its scopes.
    assert (incident["status"], incident["severity"], incident["owner"]) == (
        "revoked", "critical", "dev-user")
    failed = [e for e in incident["events"] if e["kind"] == "revoke_failed"]
    assert [e["detail"] for e in failed] == ["contract"]


@pytest.mark.parametrize("body", [
    {"username": 5, "org": "acme", "scopes": [], "token": {"name": "n",
                                                           "expires_at": "2027-01-01Z"}},
    {"username": "bot", "org": "acme", "scopes": "revoke:tokens",
     "token": {"name": "n", "expires_at": "2027-01-01T00:00:00Z"}},
    {"username": "bot", "org": "acme", "scopes": [], "token": []},
    {"username": "bot", "org": "acme", "scopes": [],
     "token": {"name": "n", "expires_at": "2027-01-01T00:00:00"}},  # no offset
    {"username": "bot", "org": "acme", "scopes": [], "token": {"name": "n",
                                                               "expires_at": "soon"}},
    [], None,
], ids=["username_int", "scopes_string", "token_list", "naive_expiry", "bad_expiry",
        "list", "null"])
async def test_a_contract_breaking_whoami_is_an_error(
        aiohttp_client: Any, make_token: Callable[[], str], body: Any) -> None:
    http, client = await start(aiohttp_client, make_token(), [])
    await faults(http, answer_next=1, answer=body)
    with pytest.raises(CendisError) as caught:
        await client.whoami()
    assert caught.value.reason == "contract"


# -- redirects are never followed -------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed(
        aiohttp_client: Any, aiohttp_server: Any, store: Store, time: FakeTime,
        make_token: Callable[[], str], status: int) -> None:
    token = make_token()
    http, client = await start(aiohttp_client, make_token(), _known([token]))
    impostor = standin_app(tokens=[], service_credentials={})
    impostor[STANDIN].faults.open = True  # "revoked" for anyone, with no credential
    elsewhere = await aiohttp_server(impostor)
    [sha] = _queue(store, [token])
    await faults(http, redirect_next=3, redirect_status=status,
                 location=str(elsewhere.make_url("/v1/tokens/revoke")))
    revoker = Revoker(store, client, now=time.clock, sleep=time.sleep)
    assert await revoker.drain() == 1  # three redirects (backoff), then the real answer
    assert impostor[STANDIN].calls == []  # never followed, with or without credential
    assert revoker.errors == {"redirect": 3} and len(time.sleeps) == 3
    assert [c["status"] for c in await calls(http)] == [status] * 3 + [200]
    incident = store.get_incident(sha)
    assert incident is not None and incident["status"] == "revoked"
    assert [e["detail"] for e in incident["events"] if e["kind"] == "revoke_failed"] == [
        "redirect"] * 3
    with pytest.raises(CendisError) as caught:
        await faults(http, redirect_next=1, location=str(elsewhere.make_url("/v1/whoami")))
        await client.whoami()
    assert caught.value.reason == "redirect"


# -- next_attempt_at holds for every process sharing the database ------------------------

async def test_a_backoff_holds_for_another_store_on_the_same_file(
        aiohttp_client: Any, tmp_path: Path, time: FakeTime,
        make_token: Callable[[], str]) -> None:
    tokens = [make_token() for _ in range(3)]
    http, client = await start(aiohttp_client, make_token(), _known(tokens))
    first, second = (Store.open(tmp_path / "shared.db", now=time.wall) for _ in range(2))
    try:
        hashes = _queue(first, tokens)
        await faults(http, rate_limit_next=1, retry_after="100000")
        one = Revoker(first, client, now=time.clock, sleep=time.sleep)
        assert await one.drain(patience=10) == 0  # one 429: an hour's wait, 10 s patience
        assert _next_attempt(second, hashes[0]) == time.wall() - timedelta(seconds=10) + \
            timedelta(seconds=RETRY_AFTER_MAX)
        other = Revoker(second, client, now=time.clock, sleep=time.sleep)
        # Nothing comes due within half an hour's patience: it sends nothing, at once.
        assert await other.drain(patience=1800) == 0
        assert len(await calls(http)) == 1 and len(time.sleeps) == 1
        assert await other.drain() == 3  # no patience: the hour ends, sent once
        assert all(0 < s <= 60 for s in time.sleeps[1:])  # it looked now and then
        assert time.now >= 1000 + RETRY_AFTER_MAX
        assert [c["status"] for c in await calls(http)] == [429, 200]
        assert {first.status_of(h) for h in hashes} == {Status.REVOKED}
    finally:
        first.close()
        second.close()


async def test_a_backoff_holds_for_another_process(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A 429 with Retry-After 100000 in this process; ``cendis-scan revoke`` in another
    sends nothing for that token and says it stays queued."""
    token = make_token()
    credential = make_token()
    server = await aiohttp_server(standin_app(tokens=_known([token]),
                                              service_credentials={credential: [
                                                  "revoke:tokens"]}))
    state = server.app[STANDIN]
    state.faults.rate_limit_next, state.faults.retry_after = 1, "100000"
    db = tmp_path / "shared.db"
    store = Store.open(db)
    [sha] = _queue(store, [token])
    async with aiohttp.ClientSession() as session:
        from scanner.cendis.client import CendisClient

        url = str(server.make_url("")).rstrip("/")
        revoker = Revoker(store, CendisClient(session, url, credential))
        assert await revoker.drain(patience=0) == 0
    store.close()
    assert len(state.calls) == 1
    proc = await asyncio.create_subprocess_exec(
        CLI, "revoke", "--sha256", sha, "--db", str(db), "--cendis-api-url", url,
        "--wait", "2", env={**os.environ, "CENDIS_TOKEN": credential},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    keep_output(out + err, "cli")
    assert proc.returncode == 2, err.decode()
    assert "queued for the next run" in err.decode() and "Traceback" not in err.decode()
    assert len(state.calls) == 1  # the other process waited for the Retry-After


# -- a one-off revoke keeps its own patience whatever Cendis asks ----------------------

@pytest.mark.parametrize("retry_after", ["100000", "inf"])
async def test_revoke_wait_5_returns_within_its_patience(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str],
        retry_after: str) -> None:
    token, credential = make_token(), make_token()
    server = await aiohttp_server(standin_app(tokens=_known([token]),
                                              service_credentials={credential: [
                                                  "revoke:tokens"]}))
    state = server.app[STANDIN]
    state.faults.rate_limit_next, state.faults.retry_after = 10**6, retry_after
    db = tmp_path / "incidents.db"
    proc = await asyncio.create_subprocess_exec(
        CLI, "revoke", "--wait", "5", "--db", str(db), "--cendis-api-url",
        str(server.make_url("")), env={**os.environ,
                                       "CENDIS_TOKEN": credential},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(token.encode() + b"\n"), 30)
    keep_output(out + err, "cli")
    assert proc.returncode == 2, err.decode()
    assert "queued for the next run" in err.decode() and "rate_limited" in err.decode()
    assert len(state.calls) == 1  # waited (not spun) until its patience ran out
    sha = TokenRef.from_token(token).sha256
    assert _next_attempt(db, sha) > datetime.now(UTC) + timedelta(
        seconds=RETRY_AFTER_MAX - 120)


async def test_scan_revoke_returns_within_its_patience(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token, credential = make_token(), make_token()
    server = await aiohttp_server(standin_app(tokens=_known([token]),
                                              service_credentials={credential: [
                                                  "revoke:tokens"]}))
    state = server.app[STANDIN]
    state.faults.rate_limit_next, state.faults.retry_after = 10**6, "100000"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.env").write_text(f"CENDIS_TOKEN={token}\n")
    proc = await asyncio.create_subprocess_exec(
        CLI, "scan", str(tmp_path / "src"), "--revoke", "--db", str(tmp_path / "i.db"),
        "--cendis-api-url", str(server.make_url("")),
        env={**os.environ, "CENDIS_TOKEN": credential},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)  # its patience is 30 s
    keep_output(out + err, "cli")
    assert proc.returncode == 2, err.decode()
    assert "still queued" in err.decode() and "Traceback" not in err.decode()
    assert len(state.calls) == 1


# -- a crashed revoker task restarts; /readyz and the metrics say so meanwhile ----------

class _FlakyRandom(random.Random):
    """Randomness is a parameter: this one breaks on demand, so the revoker's loop
    crashes mid-backoff exactly as an unexpected bug would."""

    broken = True

    def random(self) -> float:
        if self.broken:
            raise RuntimeError("injected crash")
        return super().random()


async def test_a_crashed_revoker_restarts_and_readyz_says_so_meanwhile(
        aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path,
        make_token: Callable[[], str], caplog: pytest.LogCaptureFixture) -> None:
    tokens = [make_token()]
    partner = PartnerKey.generate()
    keys = create_key_app([*PARTNERS["public_keys"]["public_keys"], partner.entry()])
    key_server = await aiohttp_server(keys)
    standin = standin_app(tokens=_known(tokens), service_credentials={
        CREDENTIAL: ["revoke:tokens"]})
    cendis = await aiohttp_server(standin)
    restarts: list[float] = []
    permits = asyncio.Semaphore(0)

    async def restart_sleep(seconds: float) -> None:
        restarts.append(seconds)
        await permits.acquire()

    flaky = _FlakyRandom(1)
    app = create_app(receiver_config(str(key_server.make_url(KEYS_PATH))),
                     db_path=tmp_path / "incidents.db",
                     cendis_api_url=str(cendis.make_url("")), credential=CREDENTIAL,
                     revoker_options={"rng": flaky, "base_delay": 0.01, "max_delay": 0.05},
                     restart_sleep=restart_sleep)
    rig = Rig(await aiohttp_client(app), keys, standin, partner, tmp_path / "incidents.db",
              tokens)
    await rig.settle(lambda: (rig.client.app[REVOKER] is not None  # type: ignore[index]
                              and (rig.key_cache.loaded)))
    revoker = rig.client.app[REVOKER]  # type: ignore[index]
    caplog.set_level(logging.ERROR, logger="scanner.incidents.revoker")
    standin[STANDIN].faults.fail_next = 2  # each 503 asks the broken rng for a backoff
    assert (await rig.report(tokens))[0] == 200
    await rig.settle(lambda: len(restarts) == 1)

    async def readiness() -> tuple[int, dict[str, Any], str]:
        ready = await rig.client.get("/readyz")
        metrics = await (await rig.client.get("/metrics")).text()
        return ready.status, await ready.json(), metrics

    status, body, metrics = await readiness()
    assert status == 503 and "revoker_down" in body["reasons"]
    assert "cendis_revoker_healthy 0.0" in metrics
    assert 'cendis_revoker_crashes_total{reason="RuntimeError"} 1.0' in metrics
    crash_logs = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crash_logs) == 1
    line = JsonFormatter().format(crash_logs[0])
    assert "\n" not in line and json.loads(line)["reason"] == "RuntimeError"
    permits.release()  # restart, still broken: crashes again, waits twice as long
    await rig.settle(lambda: len(restarts) == 2)
    assert restarts == [1.0, 2.0] and revoker.crashes == {"RuntimeError": 2}
    assert (await readiness())[0] == 503
    flaky.broken = False
    permits.release()
    want = {TokenRef.from_token(t).sha256 for t in tokens}
    await rig.settle(lambda: want <= rig.revoked())
    await rig.quiet()
    status, body, metrics = await readiness()
    assert (status, body) == (200, {"ready": True})
    assert "cendis_revoker_healthy 1.0" in metrics
    assert rig.client.app[STORE].status_of(next(iter(want))) is Status.REVOKED  # type: ignore[index]


# -- a real serve process: nothing Cendis answers kills the revoker; SIGTERM exits 0 ----

async def test_serve_survives_hostile_answers_and_stops_cleanly(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    from scanner.dev.partner import report_body

    tokens = [make_token() for _ in range(2)]
    standin = standin_app(tokens=_known(tokens), service_credentials={
        CREDENTIAL: ["revoke:tokens"]})
    state = standin[STANDIN]
    cendis = await aiohttp_server(standin)
    partner = PartnerKey.generate()
    keys = await aiohttp_server(create_key_app(
        [*PARTNERS["public_keys"]["public_keys"], partner.entry()]))
    db, log = tmp_path / "incidents.db", tmp_path / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--db", str(db), "--cendis-api-url",
         str(cendis.make_url("")), "--github-keys-url", str(keys.make_url(KEYS_PATH))],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL,
        env={**os.environ, "CENDIS_TOKEN": CREDENTIAL})
    try:
        async with aiohttp.ClientSession() as session:
            async def get(path: str) -> tuple[int, str]:
                async with session.get(url + path) as resp:
                    return resp.status, await resp.text()

            await async_wait_until(lambda: async_http_answers(url + "/readyz"),
                                   "serve /readyz", proc=proc, log=log)
            hashes = [TokenRef.from_token(t).sha256 for t in tokens]
            # Twice a token as a list (the batch's contract broken), then a 429 of 1e12 s.
            state.faults.answer_next = 2
            state.faults.answer = json.dumps({"results": [
                {"sha256": h, "status": "revoked", "token": []} for h in hashes]})
            body = report_body(tokens)
            async with session.post(url + "/partners/github", data=body, headers={
                    "Content-Type": "application/json",
                    "Github-Public-Key-Identifier": partner.key_id,
                    "Github-Public-Key-Signature": partner.sign(body)}) as resp:
                assert resp.status == 200
            # two broken answers (backoff: 0.5-1 s, 1-2 s), polled on a real serve process
            await async_wait_until(lambda: len(state.calls) >= 2, "two revoke calls",
                                   proc=proc, log=log)
            state.faults.rate_limit_next, state.faults.retry_after = 1, "1e12"
            await async_wait_until(lambda: len(state.calls) >= 3, "a third revoke call",
                                   proc=proc, log=log)
            await asyncio.sleep(1.0)  # a real serve process, watched for a spin in real time
            assert len(state.calls) == 3  # waiting out the (bounded) hour: no spin
            status, text = await get("/readyz")
            assert status == 200, text
            metrics = (await get("/metrics"))[1]
            assert "cendis_revoker_healthy 1.0" in metrics
            assert 'cendis_revoke_errors_total{reason="contract"} 2.0' in metrics
            assert 'cendis_revoke_errors_total{reason="rate_limited"} 1.0' in metrics
            assert "cendis_revoker_crashes_total{" not in metrics
        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT status, severity FROM incidents").fetchall()
        conn.close()
        assert rows == [("pending", "unknown")] * 2  # nothing believed from a broken answer
        ahead = _next_attempt(db, hashes[0]) - datetime.now(UTC)
        assert timedelta(seconds=RETRY_AFTER_MAX - 60) < ahead <= timedelta(
            seconds=RETRY_AFTER_MAX)
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    keep_output(log.read_bytes(), "serve")
    assert status == 0, log.read_text()[-800:]
    lines = log.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # one JSON object per line
    assert not any("Traceback" in line or "internal" in line for line in lines)
