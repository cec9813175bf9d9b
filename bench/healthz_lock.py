"""``/healthz`` latency of a real ``cendis-scan serve`` while another process holds the
SQLite write lock (issue 14: it took 18-28 s when the writer waited in the event loop).

    python bench/healthz_lock.py [--requests 200]

A helper process takes ``BEGIN IMMEDIATE`` on the receiver's database and keeps it;
meanwhile signed deliveries keep arriving (each waits for the lock, then gets 503 after
the busy timeout) and ``/healthz`` is asked ``--requests`` times, one after another.
Prints the median and p99 of ``/healthz`` with and without the lock held, and what the
deliveries got. Goal: under 100 ms with the lock held.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_load import CREDENTIAL, _helpers, _port, _wait_ready  # noqa: E402

HOLD = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


async def _healthz(url: str, n: int) -> list[float]:
    import aiohttp

    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            start = time.perf_counter()
            async with session.get(url + "/healthz") as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times.append(time.perf_counter() - start)
    return times


async def _deliveries(url: str, requests: list[tuple[bytes, dict[str, str]]],
                      stop: asyncio.Event) -> dict[str, int]:
    import aiohttp

    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with session.post(url + "/partners/github", data=body,
                                    headers=headers) as resp:
                await resp.read()
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1

        i = 0
        while not stop.is_set():  # 8 at a time, all the while
            batch = requests[i:i + 8]
            i += 8
            await asyncio.gather(*(one(b, h) for b, h in batch))
    return statuses


def _figures(name: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return (f"{name:34} median {1000 * statistics.median(times):7.2f} ms   "
            f"p99 {1000 * p99:7.2f} ms   max {1000 * times[-1]:7.2f} ms  ({len(times)})")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    import multiprocessing
    import shutil

    from scanner.dev.partner import KEYS_PATH, PartnerKey, report_body, signed_headers
    from scanner.token import generate

    cli = shutil.which("cendis-scan") or str(Path(sys.executable).parent / "cendis-scan")
    rng = random.Random(14)
    key = PartnerKey.generate()
    requests = []
    for _ in range(4000):
        body = report_body([generate(rng)])
        requests.append((body, signed_headers(key, body)))
    keys_port, cendis_port, port = _port(), _port(), _port()
    helper = multiprocessing.get_context("spawn").Process(
        target=_helpers, args=(key.entry(), keys_port, cendis_port), daemon=True)
    helper.start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="healthz-lock-") as tmp:
        db = Path(tmp) / "bench.db"
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [cli, "serve", "--port", str(port), "--db", str(db),
             "--cendis-api-url", f"http://127.0.0.1:{cendis_port}",
             "--github-keys-url", f"http://127.0.0.1:{keys_port}{KEYS_PATH}"],
            env={**os.environ, "CENDIS_TOKEN": CREDENTIAL}, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, server, "/readyz")
            results["free"] = await _healthz(url, args.requests)
            holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
                stop = asyncio.Event()
                load = asyncio.ensure_future(_deliveries(url, requests, stop))
                await asyncio.sleep(0.5)  # deliveries are waiting for the lock now
                results["held"] = await _healthz(url, args.requests)
                stop.set()
                results["deliveries"] = await load
            finally:
                holder.communicate(b"", timeout=30)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            helper.terminate()
    print(_figures("/healthz, lock free", results["free"]))
    print(_figures("/healthz, write lock held", results["held"]))
    print(f"{'deliveries meanwhile':34} {results['deliveries']}  (503: the lock, bounded)")
    held = sorted(results["held"])
    return 0 if statistics.median(held) < 0.1 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
