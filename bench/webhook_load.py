"""Load on the partner receiver: signed single-record reports through a real
``cendis-scan serve`` process, with the load generator (an aiohttp client) on this same
machine, and a bare aiohttp handler measured in the same sitting as the reference.

    python bench/webhook_load.py [--duration 30] [--concurrency 32] [--skip-bare]
        [--db postgresql://USER:PASSWORD@HOST/DB] [--receivers N]

Prints requests/s, p50/p99 latency and errors for the receiver and for the bare handler,
and the acknowledgement time of one 1,000-record report. Targets (issue 9): >= 2,000
req/s sustained, p99 <= 50 ms, no errors; 1,000 records acknowledged in <= 1 s.

``--receivers N`` starts N ``serve`` processes sharing one database (each with its own
revoker), and the generator spreads the requests round-robin across them. ``--db`` names
a PostgreSQL database: the run gets a fresh schema in it, dropped afterwards (default:
an SQLite file in a temp dir). Issue 16's goal: two receivers on PostgreSQL at least
match one on SQLite.

The key endpoint and the Cendis stand-in run in a helper process (so the generator's
event loop only generates); tokens are generated at run time, all distinct (the pool is
duration x 2,500 unless --pool says otherwise), and the database lives in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pgschema import fresh_schema, is_postgres

CREDENTIAL = "bench-service-credential-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _helpers(key_entry: dict[str, Any], keys_port: int, cendis_port: int) -> None:
    """Child process: the partner's key endpoint and the Cendis stand-in."""
    from aiohttp import web

    from scanner.dev.cendis_api import create_app as standin
    from scanner.dev.partner import create_key_app

    async def main() -> None:
        runners = []
        for app, port in ((create_key_app([key_entry]), keys_port),
                          (standin(tokens=[], service_credentials={
                              CREDENTIAL: ["revoke:tokens"]}), cendis_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        await asyncio.Event().wait()

    asyncio.run(main())


BARE = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response([])
app = web.Application()
app.router.add_post("/partners/github", handle)
app.router.add_get("/healthz", lambda r: web.json_response({}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def start_receivers(cli: str, count: int, db: str, tmp: Path, cendis_port: int,
                    keys_port: int) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``count`` serve processes on the database ``db`` (each logging to its own file
    in ``tmp``), with their URLs."""
    from scanner.dev.partner import KEYS_PATH

    servers = []
    for n in range(count):
        port = _port()
        log = open(tmp / f"serve-{n}.log", "wb")  # noqa: SIM115 - the child holds it
        servers.append((subprocess.Popen(
            [cli, "serve", "--port", str(port), "--db", db,
             "--cendis-api-url", f"http://127.0.0.1:{cendis_port}",
             "--github-keys-url", f"http://127.0.0.1:{keys_port}{KEYS_PATH}"],
            env={**os.environ, "CENDIS_TOKEN": CREDENTIAL}, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL), f"http://127.0.0.1:{port}"))
        log.close()
    return servers


def stop_receivers(servers: list[tuple[subprocess.Popen[bytes], str]]) -> None:
    for proc, _ in servers:
        proc.terminate()
    for proc, _ in servers:
        proc.wait(timeout=30)


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with session.get(url + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not become ready")


async def _load(url: str | list[str], requests: list[tuple[bytes, dict[str, str]]],
                duration: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    urls = [url] if isinstance(url, str) else url
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal index
            while time.perf_counter() < end:
                body, headers = requests[index % len(requests)]
                target = urls[index % len(urls)]  # round-robin across the receivers
                index += 1
                start = time.perf_counter()
                try:
                    async with session.post(target, data=body, headers=headers) as resp:
                        await resp.read()
                        key = str(resp.status)
                except aiohttp.ClientError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - start)
                statuses[key] = statuses.get(key, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "rps": n / elapsed,
            "p50_ms": 1000 * statistics.median(latencies) if n else None,
            "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
            "errors": sum(v for k, v in statuses.items() if k != "200"),
            "statuses": statuses, "distinct": min(n, len(requests))}


def _line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:28} {r['rps']:9.0f} req/s   p50 {r['p50_ms']:6.2f} ms   "
            f"p99 {r['p99_ms']:6.2f} ms   errors {r['errors']}  ({r['requests']} requests)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool", type=int, default=0, help="distinct signed reports")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--db", metavar="URL", help="a PostgreSQL database (a fresh schema "
                        "in it per run); default: an SQLite file in a temp dir")
    parser.add_argument("--receivers", type=int, default=1,
                        help="serve processes sharing the database (round-robin load)")
    args = parser.parse_args()

    from scanner.dev.partner import PartnerKey, report_body, signed_headers
    from scanner.token import generate

    cli = shutil.which("cendis-scan") or str(Path(sys.executable).parent / "cendis-scan")
    rng = random.Random(9)
    key = PartnerKey.generate()
    pool = args.pool or int(min(args.duration * 2500, 150_000))
    t0 = time.perf_counter()
    requests = []
    for _ in range(pool):
        body = report_body([generate(rng)])
        requests.append((body, signed_headers(key, body)))
    big_body = report_body([generate(rng) for _ in range(1000)])
    big = (big_body, signed_headers(key, big_body))
    print(f"signed {pool} single-record reports in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)

    keys_port, cendis_port, bare_port = _port(), _port(), _port()
    helper = multiprocessing.get_context("spawn").Process(
        target=_helpers, args=(key.entry(), keys_port, cendis_port), daemon=True)
    helper.start()
    results: dict[str, Any] = {"cpus": os.cpu_count(), "duration_s": args.duration,
                               "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        db = str(Path(tmp) / "bench.db")
        if is_postgres(args.db):
            db = stack.enter_context(fresh_schema(args.db))
        results["backend"] = "postgresql" if is_postgres(args.db) else "sqlite"
        results["receivers"] = args.receivers
        servers = start_receivers(cli, args.receivers, db, Path(tmp), cendis_port, keys_port)
        try:
            urls = [url for _, url in servers]
            for proc, url in servers:
                await _wait_ready(url, proc, "/readyz")
            posts = [url + "/partners/github" for url in urls]
            await _load(posts, requests[-200:], 1.0, 8)  # warm-up
            results["receiver"] = await _load(posts, requests, args.duration,
                                              args.concurrency)
            import aiohttp

            async with aiohttp.ClientSession() as session:
                start = time.perf_counter()
                async with session.post(posts[0], data=big[0], headers=big[1]) as resp:
                    await resp.read()
                    big_status = resp.status
                results["report_1000"] = {"status": big_status,
                                          "ack_s": time.perf_counter() - start}
        finally:
            stop_receivers(servers)
        if not args.skip_bare:
            bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{bare_port}"
                await _wait_ready(url, bare, "/healthz")
                await _load(url + "/partners/github", requests[-200:], 1.0, 8)
                results["bare"] = await _load(url + "/partners/github", requests,
                                              args.duration, args.concurrency)
            finally:
                bare.terminate()
                bare.wait(timeout=30)
    helper.terminate()

    rec = results["receiver"]
    print(f"{'receiver (signed, 1 record)':28} target >= 2000 req/s, p99 <= 50 ms, no errors")
    print(_line(f"{args.receivers} x receiver, {results['backend']}", rec))
    if "bare" in results:
        print(_line("bare aiohttp handler", results["bare"]))
    big_r = results["report_1000"]
    print(f"{'1,000-record report':28} acknowledged in {big_r['ack_s'] * 1000:.0f} ms "
          f"(status {big_r['status']}; target <= 1000 ms)")
    if args.json:
        print(json.dumps(results, indent=1))
    ok = (rec["rps"] >= 2000 and rec["p99_ms"] <= 50 and rec["errors"] == 0
          and big_r["status"] == 200 and big_r["ack_s"] <= 1.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
