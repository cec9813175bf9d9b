"""The dashboard's incident list over a large trail (issue 18: the first page over 100,000
incidents in at most 200 ms on this machine).

    python bench/dashboard_list.py [--incidents 100000] [--requests 30]

Builds an SQLite trail of ``--incidents`` incidents (one or two sightings each, several
sources, repositories, severities and statuses, over 90 days) by bulk insert into a
store the real code created (schema and indexes are the store's own), starts a real
``cendis-scan serve`` on it, signs in to the dashboard as a browser does, and times
``--requests`` sequential GETs of: the first page, a filtered first page (a partner and
a severity), a page deep in the list (keyset: as fast as the first), a hash search, and
the overview. Prints the median and p95 of each, in milliseconds. No token is made:
the incidents hold random hashes and made-up redacted forms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_load import CREDENTIAL, _port, _wait_ready  # noqa: E402

SOURCES = ("partner:acme", "github", "gitlab", "scan:ci", "sweep:mirrors")
SEVERITIES = ("critical", "high", "medium", "unknown")
STATUSES = ("revoked", "revoked", "revoked", "already_revoked", "not_found", "recorded")


def build(db: Path, count: int, rng: random.Random, *, index: bool = False) -> None:
    """``count`` incidents by executemany into a store ``open_store`` created."""
    from scanner.incidents.trail import open_store

    open_store(db).close()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    incidents, sightings = [], []
    for index in range(1, count + 1):
        seen = start + timedelta(seconds=rng.randrange(90 * 86400))
        last = seen + timedelta(seconds=rng.randrange(3600))
        source = SOURCES[index % len(SOURCES)]
        digest = hashlib.sha256(rng.randbytes(32)).hexdigest()
        incidents.append((index, digest, f"cendis_pat_{digest[:4]}…{digest[-2:]}",
                          seen.isoformat(timespec="microseconds"),
                          last.isoformat(timespec="microseconds"), rng.choice(STATUSES),
                          rng.choice(SEVERITIES), f"dev{index % 500}@example.com", 1,
                          last.isoformat(timespec="microseconds")))
        for n in range(1 + (index % 7 == 0)):
            sightings.append((index, source, source.partition(":")[2] or source,
                              f"org{index % 40}/repo{index % 300}",
                              f"https://git.example/org/repo/blob/{index}/f.py#L{n}",
                              "app/settings.py", 10 + n,
                              (seen + timedelta(minutes=n)).isoformat(timespec="microseconds")))
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO incidents(id, sha256, redacted, first_seen, last_seen, "
                         "status, severity, owner, revoke_attempts, updated_at) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?)", incidents)
        conn.executemany("INSERT INTO sightings(incident_id, source, partner, repository, "
                         "url, path, line, received_at) VALUES (?,?,?,?,?,?,?,?)", sightings)
    if index:  # the list's order, as schema 3 has it (what an older schema lacks)
        conn.execute("CREATE INDEX IF NOT EXISTS incidents_last_seen "
                     "ON incidents(last_seen, id)")
    conn.execute("ANALYZE")
    conn.close()


async def measure(url: str, token: str, requests: int, sample: str) -> dict[str, list[float]]:
    import aiohttp

    paths = {
        "first page": "/dashboard/incidents",
        "filtered (partner + severity)": "/dashboard/incidents?source=partner:acme"
                                         "&severity=critical",
        "filtered (repository prefix)": "/dashboard/incidents?repository=org7/",
        "hash search": f"/dashboard/incidents?q={sample[:8]}",
        "overview (numbers reused 10 s)": "/dashboard/",
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    # unsafe: the cookie jar keeps cookies of an IP address (127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        page = await (await session.get(url + "/dashboard/signin")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, "no sign-in form"
        began = time.perf_counter()  # lands on the overview: its first, uncached read
        resp = await session.post(url + "/dashboard/signin", data={
            "csrf": csrf.group(1), "name": "bench", "token": token})
        await resp.read()
        first_overview = (time.perf_counter() - began) * 1000
        assert resp.url.path == "/dashboard/", resp.status
        # a page deep in the list: follow "next" 20 times, then time that page
        deep = "/dashboard/incidents"
        for _ in range(20):
            found = re.search(r'<a href="([^"]+)" rel="next">',
                              await (await session.get(url + deep)).text())
            assert found
            deep = found.group(1).replace("&amp;", "&")
        paths["page 21 (keyset)"] = deep
        times["page 21 (keyset)"] = []
        times["sign-in + overview, first read"] = [first_overview]
        for _ in range(requests):
            for name, path in paths.items():
                began = time.perf_counter()
                async with session.get(url + path) as resp:
                    await resp.read()
                    assert resp.status == 200, (path, resp.status)
                times[name].append((time.perf_counter() - began) * 1000)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--add-index", action="store_true",
                        help="add incidents(last_seen, id) when the store has not")
    args = parser.parse_args()
    rng = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "trail.db"
        began = time.perf_counter()
        build(db, args.incidents, rng, index=args.add_index)
        sample = sqlite3.connect(db).execute("SELECT sha256 FROM incidents LIMIT 1").fetchone()[0]
        print(f"built {args.incidents:,} incidents in {time.perf_counter() - began:.1f} s")
        token = hashlib.sha256(rng.randbytes(16)).hexdigest()
        port = _port()
        env = {**os.environ, "CENDIS_TOKEN": CREDENTIAL, "CENDIS_SCAN_READER_TOKEN": token}
        proc = subprocess.Popen(
            ["cendis-scan", "serve", "--db", str(db), "--port", str(port),
             "--cendis-api-url", f"http://127.0.0.1:{_port()}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            await _wait_ready(url, proc, "/healthz")
            times = await measure(url, token, args.requests, sample)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"{'request':32} {'median ms':>10} {'p95 ms':>8}")
    for name, values in times.items():
        p95 = sorted(values)[max(0, round(0.95 * len(values)) - 1)]
        print(f"{name:32} {statistics.median(values):10.1f} {p95:8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
