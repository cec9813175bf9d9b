"""Several hosts, tested for real (issue 16): receivers and sweep shards as real
``cendis-scan`` processes on loopback sharing one PostgreSQL database (a fresh schema
per test, tests/pgtools.py), revoking through one Cendis stand-in on a real port.

1. Three ``serve`` processes (started at once: they migrate once, under the advisory
   lock), a partner spreading signed reports across them as a load balancer would (the
   same token to all three at once, Standard Webhooks deliveries replayed, many distinct
   tokens), Cendis answering 503 in bursts, one receiver ``kill -9``ed mid-load: every
   acknowledged token is one incident and is revoked once, and no token is in two
   successful revoke calls but for the one batch the killed receiver may have had in
   flight (revoked by Cendis, the answer lost with the process: a survivor resends it
   once, hears ``already_revoked`` and records it as its own revoke).
2. ``sweep --shard 0/2`` and ``--shard 1/2`` at once, each ``--report-to`` its own
   receiver of the same database, a token planted in repositories of both shards: one
   incident per token, one sighting per repository, one revoke each.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from conftest import CLI, READY_TIMEOUT, keep_output
from pgtools import fresh_schema, require
from receiver import CREDENTIAL, PARTNERS, WHSEC, assert_tokens_nowhere
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture
from test_server_process import _start

from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.dev.partner import KEYS_PATH, PartnerKey, create_key_app, report_body, signed_headers
from scanner.incidents.store import Store
from scanner.server.config import decode_whsec
from scanner.server.verify import standard_webhooks_sign
from scanner.sweep.config import load
from scanner.sweep.run import select

REPORT_TOKEN = "report-token-for-tests-0123456789"
GITHUB, ACME = "/partners/github", "/partners/acme"
DRAIN = READY_TIMEOUT  # a poll's ceiling: every acknowledged token revoked by then


@dataclass
class Fleet:
    """Receivers as real processes, the Cendis stand-in and the key server beside them."""

    procs: list[subprocess.Popen[bytes]]
    urls: list[str]
    cendis: str
    session: aiohttp.ClientSession
    live: set[int] = field(default_factory=set)
    rerouted: int = 0  # posts that went on to another receiver (theirs failed or died)

    async def get(self, path: str) -> Any:
        async with self.session.get(self.cendis + path) as resp:
            assert resp.status == 200
            return await resp.json()

    async def faults(self, **settings: Any) -> None:
        async with self.session.post(self.cendis + "/_faults", json=settings) as resp:
            assert resp.status == 200

    async def post(self, first: int, path: str, body: bytes, headers: dict[str, str],
                   deadline: float) -> bool:
        """POST to receiver ``first``; on a refused connection or a 5xx, to the next live
        one (what a load balancer and a partner that retries do). True on a 200."""
        loop = asyncio.get_running_loop()
        target = first
        while loop.time() < deadline:
            if target in self.live:
                try:
                    async with self.session.post(self.urls[target] + path, data=body,
                                                 headers=headers) as resp:
                        await resp.read()
                        if resp.status == 200:
                            return True
                        assert resp.status >= 500, (resp.status, path)  # never a 4xx
                except aiohttp.ClientError:
                    pass  # killed under us: this post was not acknowledged
                await asyncio.sleep(0.02)
            self.rerouted += 1
            target = (target + 1) % len(self.urls)
        return False

    async def revoked_by_standin(self) -> Counter[str]:
        """Per hash, how many revoke calls Cendis answered ``revoked`` (from /_calls)."""
        calls = await self.get("/_calls")
        return Counter(h for c in calls if c["status"] == 200
                       for h, r in zip(c["hashes"], c["results"], strict=True)
                       if r == "revoked")

    async def drain(self, want: set[str], url: str) -> None:
        """Until Cendis revoked every hash in ``want`` and the shared queue is empty
        (a bounded poll)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        with Store.open(url) as store:
            while True:
                revoked = set(await self.revoked_by_standin())
                depth = await asyncio.to_thread(store.queue_depth)
                if want <= revoked and depth == 0:
                    return
                assert loop.time() - start < DRAIN, \
                    f"{len(want - revoked)} of {len(want)} not revoked, {depth} queued"
                await asyncio.sleep(0.05)

    async def stop(self) -> list[int]:
        """SIGTERM to the live receivers; their exit statuses (waited for off the loop:
        the stand-in they may be finishing a call with answers on it)."""
        for i in sorted(self.live):
            self.procs[i].send_signal(signal.SIGTERM)
        return [await asyncio.to_thread(self.procs[i].wait, 15) for i in sorted(self.live)]


async def _fleet(aiohttp_server: Any, tmp_path: Path, url: str, count: int,
                 tokens: Sequence[str], partner: PartnerKey,
                 session: aiohttp.ClientSession) -> Fleet:
    """``count`` receivers on the database ``url``, started at once."""
    cendis = await aiohttp_server(standin_app(
        tokens=[StandInToken.from_token(t) for t in tokens],
        service_credentials={CREDENTIAL: ["revoke:tokens"]}))
    keys = await aiohttp_server(create_key_app(
        [*PARTNERS["public_keys"]["public_keys"], partner.entry()]))
    config = tmp_path / "receiver.toml"
    config.write_text(f'report_token = "{REPORT_TOKEN}"\n[partners.acme]\n'
                      f'secrets = ["{WHSEC}"]\n')
    args = ["--db", url, "--config", str(config),
            "--cendis-api-url", str(cendis.make_url("")),
            "--github-keys-url", str(keys.make_url(KEYS_PATH))]
    started = await asyncio.gather(*(_start(args, tmp_path / f"serve-{i}.log")
                                     for i in range(count)), return_exceptions=True)
    procs = [s[0] for s in started if isinstance(s, tuple)]
    if len(procs) < count:  # one did not start: stop the others before failing
        for proc in procs:
            proc.kill()
            proc.wait()
        raise next(s for s in started if isinstance(s, BaseException))
    return Fleet(procs, [s[1] for s in started if isinstance(s, tuple)],
                 str(cendis.make_url("")).rstrip("/"), session, set(range(count)))


def _logs(tmp_path: Path, tokens: Sequence[str]) -> None:
    """Every receiver's log: JSON lines, no traceback, kept for the privacy test."""
    logs = sorted(tmp_path.glob("serve-*.log"))
    for log in logs:
        text = log.read_text()
        keep_output(text.encode(), "serve")
        assert "Traceback" not in text, text[-2000:]
        assert all(line.startswith("{") for line in text.splitlines()), log.name
    assert_tokens_nowhere(list(tokens) + [CREDENTIAL], *logs)


def _no_token_in(store: Store, tokens: Sequence[str]) -> None:
    dumped = json.dumps({t: store.dump(t) for t in ("incidents", "sightings", "events",
                                                    "revoke_queue", "deliveries")})
    assert not [t for t in tokens if t in dumped], "a whole token in the database"


@dataclass
class Job:
    """Posts that carry ``tokens``, sent at once; acknowledged when any answers 200."""

    kind: str
    tokens: list[str]
    posts: list[tuple[int, str, bytes, dict[str, str]]]
    replays: list[tuple[int, str, bytes, dict[str, str]]] = field(default_factory=list)


def _webhook(body: bytes, msg_id: str) -> dict[str, str]:
    stamp = int(time.time())
    return {"Content-Type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_webhooks_sign(decode_whsec(WHSEC, "t"), msg_id,
                                                        stamp, body)}


def _jobs(tokens: list[str], partner: PartnerKey, rng: random.Random) -> list[Job]:
    """150 tokens: 15 in one body sent to all three receivers at once, 15 in three bodies
    (another URL each) to all three at once, 30 in Standard Webhooks deliveries sent to
    two at once and replayed to the third, 90 in reports of 1-3 tokens to one each."""
    left = iter(tokens)
    jobs = []
    for _ in range(15):
        token = next(left)
        body = report_body([token])
        jobs.append(Job("same body everywhere", [token],
                        [(i, GITHUB, body, signed_headers(partner, body)) for i in range(3)]))
    for _ in range(15):
        token = next(left)
        bodies = [report_body([token], url=f"https://github.com/acme/r{i}/blob/main/.env")
                  for i in range(3)]
        jobs.append(Job("three places", [token], [(i, GITHUB, b, signed_headers(partner, b))
                                                  for i, b in enumerate(bodies)]))
    for n in range(15):
        pair = [next(left), next(left)]
        body = report_body(pair)
        headers = _webhook(body, f"msg_{n:03d}")
        first, second, third = rng.sample(range(3), 3)
        jobs.append(Job("replayed delivery", pair,
                        [(first, ACME, body, headers), (second, ACME, body, headers)],
                        [(third, ACME, body, headers), (first, ACME, body, headers)]))
    rest = list(left)
    while rest:
        size = rng.randint(1, 3)
        batch, rest = rest[:size], rest[size:]
        body = report_body(batch)
        jobs.append(Job("distinct", batch,
                        [(rng.randrange(3), GITHUB, body, signed_headers(partner, body))]))
    rng.shuffle(jobs)
    return jobs


async def _load(fleet: Fleet, jobs: list[Job], *, workers: int = 6, kill_at: float = 0.4,
                budget: float = READY_TIMEOUT) -> tuple[list[str], int]:
    """The jobs by ``workers`` concurrent senders, Cendis answering 503 in bursts, and
    receiver 0 ``kill -9``ed once ``kill_at`` of the jobs are done. Returns the tokens
    acknowledged, and how many revoke calls Cendis had received when the kill landed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    pending, acked = list(jobs), []
    done, calls_at_kill = 0, -1

    async def run(job: Job) -> None:
        answers = await asyncio.gather(*(fleet.post(*post, deadline) for post in job.posts))
        assert all(answers), f"{job.kind}: not acknowledged within {budget} s"
        acked.extend(job.tokens)
        for replay in job.replays:  # the partner redelivers, to whichever receiver
            assert await fleet.post(*replay, deadline), f"{job.kind}: replay refused"

    async def worker() -> None:
        nonlocal done
        while pending:
            await run(pending.pop())
            done += 1

    async def bursts() -> None:  # a few short outages: retried, never backed off for long
        for _ in range(4):
            await fleet.faults(fail_next=2, status=503)
            await asyncio.sleep(0.4)

    async def killer() -> None:
        nonlocal calls_at_kill
        while done < len(jobs) * kill_at:
            await asyncio.sleep(0.005)
        fleet.procs[0].kill()  # SIGKILL, mid-load: its claims and its answers die with it
        await asyncio.to_thread(fleet.procs[0].wait)
        fleet.live.discard(0)
        calls_at_kill = len(await fleet.get("/_calls"))

    await asyncio.gather(*(worker() for _ in range(workers)), bursts(), killer())
    return acked, calls_at_kill


async def test_three_receivers_one_database_kill_9_mid_load(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str],
        rng: random.Random) -> None:
    """150 tokens in about 105 jobs by six concurrent senders; receiver 0 killed when 40 %
    are done (the partner retries what it dropped on the others)."""
    require()  # no PostgreSQL: one line saying how to enable (under CI, a failure)
    import psycopg

    tokens = [make_token() for _ in range(150)]
    partner = PartnerKey.generate()
    jobs = _jobs(tokens, partner, rng)
    with fresh_schema() as url:
        async with aiohttp.ClientSession() as session:
            fleet = await _fleet(aiohttp_server, tmp_path, url, 3, tokens, partner, session)
            try:
                acked, calls_at_kill = await _load(fleet, jobs)
                want = {sha(t) for t in acked}
                await fleet.drain(want, url)
                calls = await fleet.get("/_calls")
                notified = Counter(n["sha256"] for n in await fleet.get("/_notifications"))
            finally:
                statuses = await fleet.stop()
        assert statuses == [0, 0], statuses  # the survivors stop cleanly on SIGTERM
        assert calls_at_kill >= 0 and fleet.procs[0].returncode == -signal.SIGKILL
        assert fleet.rerouted > 0  # killed mid-load: some posts to it were lost
        # Every token acknowledged (the partner retried what the dead receiver dropped).
        assert sorted(map(sha, acked)) == sorted(map(sha, tokens))

        with Store.open(url) as store:
            incidents = store.dump("incidents")
            sightings = Counter(s["incident_id"] for s in store.dump("sightings"))
            deliveries = [d for d in store.dump("deliveries") if d["partner"] == "acme"]
            assert store.queue_depth() == 0
            _no_token_in(store, tokens)
        with psycopg.connect(url) as conn:  # three replicas started at once, one migration
            assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
            per_hash = dict(conn.execute(
                "SELECT sha256, count(*) FROM incidents GROUP BY sha256").fetchall())
        # One incident per token hash, each revoked, each with the sightings it was sent.
        assert per_hash == {h: 1 for h in want}
        assert {i["status"] for i in incidents} == {"revoked"}
        by_hash = {i["sha256"]: i["id"] for i in incidents}
        places = {"three places": 3}
        for job in jobs:
            for token in job.tokens:
                assert sightings[by_hash[sha(token)]] == places.get(job.kind, 1), job.kind
        assert len(deliveries) == 15  # each Standard Webhooks delivery id once

        # Cendis revoked each once and mailed each owner once. No token was in two
        # successful revoke calls, but for the one batch the killed receiver had in
        # flight (Cendis revoked it, the answer died with the process): a survivor
        # resends it once, hears already_revoked and records it as its own revoke.
        ok = [c for c in calls if c["status"] == 200]
        revoked = Counter(h for c in ok for h, r in zip(c["hashes"], c["results"],
                                                        strict=True) if r == "revoked")
        assert revoked == Counter(want) and notified == Counter(want)
        sent = Counter(h for c in ok for h in c["hashes"])
        twice = {h for h, n in sent.items() if n > 1}
        assert set(sent) == want and all(sent[h] <= 2 for h in twice)
        if twice:
            first = [i for i, c in enumerate(ok) if twice & set(c["hashes"])]
            assert twice <= set(ok[first[0]]["hashes"]), "more than one batch resent"
            assert calls.index(ok[first[0]]) < calls_at_kill  # sent before the kill
            assert all(r == "already_revoked" for c in ok[first[0] + 1:]
                       for h, r in zip(c["hashes"], c["results"], strict=True) if h in twice)
        assert any(c["status"] == 503 for c in calls)  # the bursts did hit the revokers
    _logs(tmp_path, tokens)


async def test_sweep_shards_report_to_two_receivers_of_one_database(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """Two sweep pods (each its own folder and cache) run ``--shard 0/2`` and ``1/2`` at
    once, each ``--report-to`` its own receiver; ``shared`` is in every repository and
    ``pair`` in one repository of each shard."""
    require()
    names = [f"svc-{c}" for c in "abcdef"]
    origins = {name: Origin(tmp_path, name) for name in names}
    configs = []
    for k in (0, 1):
        (tmp_path / f"pod{k}").mkdir()
        configs.append(write_config(tmp_path / f"pod{k}", [o.url for o in origins.values()],
                                    settings="auto_revoke = true"))
    shards = [[s.name for s in select(load(configs[0]), (k, 2))] for k in (0, 1)]
    assert all(shards) and sorted(shards[0] + shards[1]) == names, shards
    shared, pair = make_token(), make_token()
    own = {name: make_token() for name in names}
    for name, origin in origins.items():
        files = {".env": f"OWN={own[name]}\nSHARED={shared}\n"}
        if name in (shards[0][0], shards[1][0]):
            files["deploy.yaml"] = f"token: {pair}\n"
        origin.commit("config", **files)
        origin.push()
    tokens = [shared, pair, *own.values()]
    want = {sha(t) for t in tokens}
    partner = PartnerKey.generate()
    with fresh_schema() as url:
        async with aiohttp.ClientSession() as session:
            fleet = await _fleet(aiohttp_server, tmp_path, url, 2, tokens, partner, session)
            env = {**os.environ, "CENDIS_SCAN_REPORT_TOKEN": REPORT_TOKEN, "NO_COLOR": "1"}
            sweeps: list[asyncio.subprocess.Process] = []
            try:
                sweeps += [await asyncio.create_subprocess_exec(
                    CLI, "sweep", str(configs[k]), "--shard", f"{k}/2", "--report-to",
                    fleet.urls[k], "--format", "json", cwd=tmp_path / f"pod{k}", env=env,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for k in (0, 1)]
                outputs = await asyncio.wait_for(
                    asyncio.gather(*(s.communicate() for s in sweeps)), 60)
                await fleet.drain(want, url)
                calls = await fleet.get("/_calls")
            finally:
                for sweep in sweeps:
                    if sweep.returncode is None:
                        sweep.kill()
                        await sweep.wait()
                statuses = await fleet.stop()
        assert statuses == [0, 0]
        for k, (sweep, (out, err)) in enumerate(zip(sweeps, outputs, strict=True)):
            keep_output(out + b"\n" + err, "cli")
            assert sweep.returncode == 1, err.decode()  # new findings, nothing failed
            report = json.loads(out)
            assert report["shard"] == [k, 2]
            assert sorted(s["name"] for s in report["sources"]) == sorted(shards[k])
            assert all(s["revoked_by"] == "receiver" for s in report["sources"])
        with Store.open(url) as store:
            incidents = store.dump("incidents")
            sightings = store.dump("sightings")
            assert store.queue_depth() == 0
            _no_token_in(store, tokens)
    # One incident per token, whichever shard and receiver saw it; a sighting per place.
    assert sorted(i["sha256"] for i in incidents) == sorted(want)
    assert {i["status"] for i in incidents} == {"revoked"}
    by_id = {i["id"]: i["sha256"] for i in incidents}
    seen = Counter((by_id[s["incident_id"]], s["source"]) for s in sightings)
    assert {src for (h, src) in seen if h == sha(shared)} == {f"scan:{n}" for n in names}
    assert {src for (h, src) in seen if h == sha(pair)} == {f"scan:{shards[0][0]}",
                                                           f"scan:{shards[1][0]}"}
    assert all(n == 1 for n in seen.values())
    # Each token in one successful revoke call, revoked once (no kill here: no exception).
    sent = Counter(h for c in calls if c["status"] == 200 for h in c["hashes"])
    assert sent == Counter(want)
    _logs(tmp_path, tokens)
