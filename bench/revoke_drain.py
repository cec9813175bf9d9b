"""Drain 10,000 queued tokens through the Cendis stand-in, in batches of 100.

The stand-in runs as its own process (``cendis-scan dev cendis-api``) on loopback, seeded
by hash only; the queue is a fresh SQLite file (WAL, synchronous=FULL), or with
``--db postgresql://...`` a fresh schema in that database (dropped afterwards).
``--revokers N`` drains with N revoker processes started at once (issue 16: two), and
checks from the stand-in's journal that every token was sent exactly once.
``--store-in-loop`` runs the revoker's store calls in the event loop, as before they
moved to worker threads, to compare the two in one sitting. Prints the time to
record and queue them (one transaction), the drain's tokens per second, and this process's
peak RSS and Python peak allocation during the drain. As a reference in the same sitting,
the same number of revoke calls made straight with the client (no store) against a
freshly started stand-in: what the HTTP round trips alone cost.

No token is written anywhere: the seed and the store get SHA-256 hashes only, and the
service credential is generated at run time into a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

from scanner.incidents.models import Sighting, TokenRef, utcnow
from scanner.token import generate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_standin(cli: str, seed: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([cli, "dev", "cendis-api", "--port", str(port), "--seed",
                             str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(url + "/_calls", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the stand-in did not start")


async def _drain(db: Path | str, url: str, credential: str, batch: int
                 ) -> tuple[int, float, int]:
    import aiohttp

    from scanner.cendis.client import CendisClient
    from scanner.incidents.revoker import Revoker
    from scanner.incidents.store import Store

    store = Store.open(db)
    async with aiohttp.ClientSession() as session:
        revoker = Revoker(store, CendisClient(session, url, credential), batch=batch)
        tracemalloc.start()
        started = time.perf_counter()
        closed = await revoker.drain()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    store.close()
    return closed, elapsed, peak


def _worker(db: str, url: str, credential: str, batch: int, start: Any, out: Any,
            store_in_loop: bool) -> None:
    """One revoker process of ``--revokers N``: waits for the others, then drains."""
    if store_in_loop:
        _store_in_loop()
    start.wait()
    closed, elapsed, _ = asyncio.run(_drain(db, url, credential, batch))
    out.put((closed, elapsed))


def _drain_all(db: Path | str, url: str, credential: str, batch: int, revokers: int,
               store_in_loop: bool) -> tuple[int, float, int]:
    """The drain by ``revokers`` processes at once (one: in this process, as before);
    the queue must end empty and every token revoked."""
    if revokers == 1:
        closed, elapsed, peak = asyncio.run(_drain(db, url, credential, batch))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(str(db), url, credential, batch, start,
                                                   out, store_in_loop))
                 for _ in range(revokers)]
        for proc in procs:
            proc.start()
        time.sleep(2.0)  # let every process import and connect before the start
        started = time.perf_counter()
        start.set()
        each = [out.get(timeout=600) for _ in procs]
        elapsed = time.perf_counter() - started
        for proc in procs:
            proc.join(30)
        closed, peak = sum(c for c, _ in each), 0
        print(f"  per revoker: {', '.join(f'{c:,} in {t:.2f} s' for c, t in each)}")
    from scanner.incidents.store import Store

    with Store.open(db) as store:
        assert store.queue_depth() == 0, "tokens left in the queue"
        revoked = len(store.list_incidents(status="revoked"))
    assert revoked == closed, f"{closed} closed but {revoked} revoked"
    return closed, elapsed, peak


def _sent_once(url: str, hashes: list[str]) -> None:
    """From the stand-in's journal: every token was in exactly one answered call."""
    calls = json.loads(urllib.request.urlopen(url + "/_calls", timeout=30).read())
    sent: dict[str, int] = {}
    for call in calls:
        if call["status"] == 200:
            for sha in call["hashes"]:
                sent[sha] = sent.get(sha, 0) + 1
    twice = sum(1 for n in sent.values() if n > 1)
    missing = len(set(hashes) - set(sent))
    print(f"stand-in: {len(calls)} calls, {len(sent):,} distinct tokens, "
          f"{twice} sent more than once, {missing} never sent")
    assert twice == 0 and missing == 0, "a token was sent twice or never"


def _store_in_loop() -> None:
    from scanner.incidents.revoker import Revoker

    async def in_loop(self: object, method: Any, *a: Any, **kw: Any) -> Any:
        return method(*a, **kw)

    Revoker._db = in_loop  # type: ignore[method-assign]


async def _calls_only(url: str, credential: str, hashes: list[str], batch: int) -> float:
    import aiohttp

    from scanner.cendis.client import CendisClient

    async with aiohttp.ClientSession() as session:
        client = CendisClient(session, url, credential)
        started = time.perf_counter()
        for start in range(0, len(hashes), batch):
            await client.revoke(hashes[start:start + batch], source="bench")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--db", metavar="URL", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--revokers", type=int, default=1,
                        help="revoker processes draining the queue at once")
    parser.add_argument("--store-in-loop", action="store_true",
                        help="the revoker's store calls in the event loop (the old way)")
    parser.add_argument("--cli", default=shutil.which("cendis-scan")
                        or str(Path(sys.executable).parent / "cendis-scan"))
    args = parser.parse_args()
    rng = random.Random()
    refs = [TokenRef.from_token(generate(rng)) for _ in range(args.tokens)]
    hashes = [r.sha256 for r in refs]
    credential = generate(rng)

    with tempfile.TemporaryDirectory(prefix="bench-revoke-") as tmp:
        seed = Path(tmp, "seed.json")
        seed.write_text(json.dumps({"service": [{"token": credential}],
                                    "tokens": [{"sha256": h} for h in hashes]}))
        os.chmod(seed, 0o600)
        db: Path | str = Path(tmp, "incidents.db")
        if args.db:
            db = _fresh_schema(args.db)
        if args.store_in_loop:
            _store_in_loop()

        from scanner.incidents.store import Store

        store = Store.open(db)
        started = time.perf_counter()
        store.record([(r, Sighting(source="bench", received_at=utcnow())) for r in refs],
                     revoke=True)
        recorded = time.perf_counter() - started
        store.close()
        print(f"record + queue {args.tokens:,} tokens (one transaction): {recorded:.2f} s")

        proc, url = _start_standin(args.cli, seed)
        try:
            closed, elapsed, peak = _drain_all(db, url, credential, args.batch,
                                               args.revokers, args.store_in_loop)
            _sent_once(url, hashes)
        finally:
            proc.terminate()
            proc.wait(10)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory = "" if args.revokers > 1 else (
            f"; peak RSS {rss:.0f} MiB, Python peak allocation during the drain "
            f"{peak / 2**20:.1f} MiB")
        print(f"drain by {args.revokers} revoker(s): {closed:,} tokens revoked in "
              f"{elapsed:.2f} s ({closed / elapsed:,.0f} tokens/s, calls of up to "
              f"{args.batch}){memory}")

        proc, url = _start_standin(args.cli, seed)
        try:
            bare = asyncio.run(_calls_only(url, credential, hashes, args.batch))
        finally:
            proc.terminate()
            proc.wait(10)
        print(f"reference, the same calls without the store: {bare:.2f} s "
              f"({args.tokens / bare:,.0f} tokens/s)")
        if args.db:
            _drop_schema(args.db, str(db))


def _fresh_schema(base: str) -> str:
    import uuid
    from urllib.parse import quote

    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={name}')}"


def _drop_schema(base: str, url: str) -> None:
    import psycopg

    name = url.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


if __name__ == "__main__":
    main()
