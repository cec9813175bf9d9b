"""Group commit: concurrent deliveries share a transaction, each gets its own results,
first tried in the event loop (the default) or always on the writer thread."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
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


@pytest.mark.parametrize("bad", [{"line": 2**63}, {"line": -2**64}, {"line": 2**70}])
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


async def test_text_sqlite_would_refuse_is_stored_escaped(tmp_path: Path, make_token: Any) -> None:
    """A lone surrogate in a stored text passes the store's scrub (escaped), so it is no
    reason to refuse a delivery: the sighting is stored, readable and valid UTF-8."""
    db = tmp_path / "w.db"
    writer = BatchWriter(lambda wait: Store.open(db, busy_timeout=wait), revoke=True)
    await writer.start()
    now = datetime.now(UTC)
    try:
        recorded = await writer.record([(token_ref(make_token()), Sighting(
            source="github\udfff", received_at=now, url="x\ud800y"))])
        incident = await writer.call(lambda s: s.get_incident(recorded[0].incident_id))
    finally:
        await writer.close()
    assert incident is not None
    sighting = incident["sightings"][0]
    assert sighting["url"] == "x\\ud800y"  # escaped as text, valid UTF-8
    assert sighting["url"].encode("utf-8")
