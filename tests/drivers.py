"""Small programs that tests run as real, separate processes over one incident database.

``python tests/drivers.py drain DB URL`` drains the revoke queue (credential in
``CENDIS_TOKEN``), like ``scan --revoke`` or a receiver would; a test kills it with
SIGKILL mid-queue and runs it again. ``python tests/drivers.py record DB REFS SOURCE``
records a sighting for each (sha256, redacted) pair in the JSON file REFS, in many small
transactions (20 sightings each, so the two writers interleave), then the first 100
again (identical sightings, which must not be stored twice). The drivers never see a
raw token: the store API takes hashes only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def _drain(db: str, url: str, batch: int) -> None:
    import aiohttp

    from scanner.cendis.client import CendisClient
    from scanner.incidents.revoker import Revoker
    from scanner.incidents.store import Store

    store = Store.open(db)
    async with aiohttp.ClientSession() as session:
        client = CendisClient(session, url, os.environ["CENDIS_TOKEN"])
        revoker = Revoker(store, client, batch=batch, base_delay=0.05, max_delay=0.2)
        closed = await revoker.drain()
    store.close()
    print(f"closed {closed}", flush=True)


def _record(db: str, refs_file: str, source: str) -> None:
    from scanner.incidents.models import Sighting, TokenRef, utcnow
    from scanner.incidents.store import Store

    with open(refs_file) as handle:
        refs = [TokenRef(sha256=s, redacted=r) for s, r in json.load(handle)]
    store = Store.open(db)
    print("ready", flush=True)
    items = [(ref, Sighting(source=source, received_at=utcnow(), path=f"src/{i}.py"))
             for i, ref in enumerate(refs)]
    items += items[:100]
    for start in range(0, len(items), 20):
        store.record(items[start:start + 20], revoke=False)
    store.close()


def main(argv: list[str]) -> int:
    if argv[0] == "drain":
        asyncio.run(_drain(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 100))
    elif argv[0] == "record":
        _record(argv[1], argv[2], argv[3])
    else:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
