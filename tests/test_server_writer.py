"""Group commit: concurrent deliveries share a transaction, each gets its own results,
first tried in the event loop (the default) or always on the writer thread."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from scanner.incidents.models import Sighting
from scanner.incidents.store import Store
from scanner.server.reports import token_ref
from scanner.server.writer import BatchWriter


@pytest.mark.parametrize("inline", [False, True])
async def test_concurrent_deliveries_share_commits_and_get_their_slices(
        store_url: str, make_token: Any, inline: bool) -> None:
    db = store_url
    writer = BatchWriter(lambda wait: Store.open(db, busy_timeout=wait), revoke=True,
                         inline=inline)
    await writer.start()
    now = datetime.now(UTC)
    deliveries = [[(token_ref(make_token()), Sighting(source="github", received_at=now,
                                                       url=f"u{i}"))
                   for _ in range(1 + i % 3)] for i in range(40)]
    try:
        results = await asyncio.gather(*(writer.record(d) for d in deliveries))
        for delivery, recorded in zip(deliveries, results, strict=True):
            assert [r.sha256 for r in recorded] == [ref.sha256 for ref, _ in delivery]
            assert all(r.new_incident for r in recorded)
        assert writer.commits < len(deliveries)  # batched
        assert await writer.call(lambda s: s.queue_depth()) == sum(map(len, deliveries))
    finally:
        await writer.close()


# (A lone surrogate in a text is no longer one: the store's scrub escapes it.)
@pytest.mark.parametrize("bad", [{"line": 2**63}, {"line": 2**100}, {"line": -2**64}])
async def test_a_group_refused_for_one_delivery_fails_only_that_delivery(
        store_url: str, make_token: Any, bad: dict[str, Any]) -> None:
    """Past the views' validation (a value the database still refuses): the group is
    retried delivery by delivery, so only the bad one fails, and not as a database
    outage."""
    from scanner.server.writer import Unstorable

    db = store_url
    writer = BatchWriter(lambda wait: Store.open(db, busy_timeout=wait), revoke=True)
    await writer.start()
    now = datetime.now(UTC)
    good = [[(token_ref(make_token()), Sighting(source="github", received_at=now,
                                                url=f"u{i}"))] for i in range(6)]
    poisoned = [(token_ref(make_token()), Sighting(source="github", received_at=now,
                                                   **bad))]
    try:
        results = await asyncio.gather(*(writer.record(d) for d in good[:3]),
                                       writer.record(poisoned),
                                       *(writer.record(d) for d in good[3:]),
                                       return_exceptions=True)
        assert isinstance(results[3], Unstorable)
        assert all(isinstance(r, list) and r[0].new_incident
                   for i, r in enumerate(results) if i != 3)
        assert writer.healthy  # the data's fault, not the database's
        assert await writer.call(lambda s: s.queue_depth()) == 6
    finally:
        await writer.close()
