"""Notifications for 1,000 new incidents in a burst, digests on, end to end.

A fresh SQLite incident store with a ``[notify]`` router (three channels, the default
``digest_after = 5``): a Slack-shaped endpoint and a Standard Webhooks endpoint (aiohttp
on loopback, each delivery verified with ``standardwebhooks`` when it is installed), and
a real SMTP server (aiosmtpd) on loopback. The dispatcher runs as ``serve`` runs it
(:meth:`Dispatcher.run`, woken after each commit); the burst is recorded as the receiver's
group commit records it, ``--batch`` incidents per transaction, back to back. Measured:
from the burst's first record to the last delivery (every outbox row sent), and the
messages each channel received (a digest is one). Median of ``--runs`` (3).

Needs the test extra (aiosmtpd, standardwebhooks): ``pip install -e '.[test]'``. Tokens
are generated at run time and go into the store as hashes only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from scanner.incidents.models import Sighting, TokenRef
from scanner.incidents.store import Store
from scanner.notify.config import as_router, parse_notify
from scanner.notify.dispatch import Dispatcher
from scanner.token import generate

WHSEC = "whsec_" + base64.b64encode(b"bench-secret-0123456789ab").decode()


class Endpoints:
    """What the loopback channels received (messages per channel)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.bad = 0

    async def slack(self, request: web.Request) -> web.Response:
        await request.read()
        self.count["slack"] += 1
        return web.Response(text="ok")

    async def webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            from standardwebhooks.webhooks import Webhook

            Webhook(WHSEC).verify(raw, {k.lower(): v for k, v in request.headers.items()})
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - counted: a bench must not stop on it
            self.bad += 1
            return web.Response(status=401)
        self.count["webhook"] += 1
        return web.Response(status=204)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count["email"] += 1
        return "250 OK"


async def one_run(incidents: int, batch: int, digest_after: int) -> tuple[float, Counter[str]]:
    from aiosmtpd.controller import Controller

    endpoints = Endpoints()
    app = web.Application()
    app.router.add_post("/slack", endpoints.slack)
    app.router.add_post("/hook", endpoints.webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    smtp_port = _free_port()
    smtp = Controller(endpoints, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    config = parse_notify({"channels": {
        "slack": {"kind": "slack", "url": f"http://127.0.0.1:{port}/slack",
                  "digest_after": digest_after},
        "webhook": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook",
                    "secret": WHSEC, "digest_after": digest_after},
        "email": {"kind": "email", "host": "127.0.0.1", "port": smtp_port, "tls": "none",
                  "sender": "bench@example.com", "to": ["security@example.com"],
                  "digest_after": digest_after}}}, {})
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "incidents.db", router=as_router(config))
        try:
            async with aiohttp.ClientSession() as session:
                dispatcher = Dispatcher(store, config, session, rng=rng)
                task = asyncio.create_task(dispatcher.run())
                batches = []
                for start in range(0, incidents, batch):
                    batches.append([(TokenRef.from_token(generate(rng)),
                                     Sighting(source="partner:github",
                                              received_at=_now(), url=f"https://x/{n}"))
                                    for n in range(start, min(incidents, start + batch))])
                started = time.perf_counter()
                for items in batches:  # the receiver's group commits, back to back
                    await asyncio.to_thread(store.record, items, revoke=True)
                    dispatcher.wake()
                rows = incidents * 3
                while dispatcher.messages < rows:
                    await asyncio.sleep(0.005)  # polled: the dispatcher at work
                elapsed = time.perf_counter() - started
                dispatcher.stop()
                await task
        finally:
            store.close()
    smtp.stop()
    await runner.cleanup()
    if endpoints.bad:
        raise SystemExit(f"{endpoints.bad} webhook deliveries failed verification")
    return elapsed, endpoints.count


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100,
                        help="incidents per transaction (a group commit)")
    parser.add_argument("--digest-after", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results = [asyncio.run(one_run(args.incidents, args.batch, args.digest_after))
               for _ in range(args.runs)]
    times = sorted(r[0] for r in results)
    median = statistics.median(times)
    counts = results[[r[0] for r in results].index(median)][1] if args.runs % 2 else \
        results[0][1]
    print(f"notify_burst: {args.incidents} new incidents in {args.batch}-incident commits, "
          f"digest_after={args.digest_after}, 3 channels")
    print(f"  first record -> last delivery: median {median:.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
    print("  messages sent per channel: " + ", ".join(f"{k} {v}" for k, v in
                                                       sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
