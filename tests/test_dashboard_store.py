"""The dashboard's reads (``incidents/store/browse.py``) give the same answers on both
backends: every filter, keyset pages, the overview's counts and the revoke times."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dashtools import START, seed
from pgtools import fresh_schema

from scanner.incidents.store.browse import Cursor, IncidentFilter
from scanner.incidents.trail import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "trail.db")
    else:
        with fresh_schema() as url:
            yield url


FILTERS = [
    (IncidentFilter(), lambda i: True),
    (IncidentFilter(source="partner:acme"), lambda i: i % 3 == 0),
    (IncidentFilter(source="acme"), lambda i: i % 3 == 0),
    (IncidentFilter(repository="org/"), lambda i: i % 3 in (0, 1)),
    (IncidentFilter(status="revoked", severity="critical"), lambda i: i % 3 == 0),
    (IncidentFilter(triage="open", status="pending"), lambda i: i % 3 != 0),
    (IncidentFilter(seen_from=START + timedelta(minutes=10),
                    seen_to=START + timedelta(minutes=20)), lambda i: 10 <= i < 20),
    (IncidentFilter(repository="100%_"), lambda i: False),  # no LIKE wildcards
]


def test_browse_filters_pages_and_counts(target: str) -> None:
    seeded = seed(target, random.Random(5), 30)  # type: ignore[arg-type]
    store = open_store(target)
    try:
        for where, keep in FILTERS:
            want = sorted((seeded.ids[i] for i in range(30) if keep(i)), reverse=True)
            got, after = [], None
            while True:  # pages of 7: keyset all the way
                rows = store.browse_incidents(where, after=after, limit=7)
                got += [row["id"] for row in rows]
                if len(rows) < 7:
                    break
                after = Cursor(rows[-1]["last_seen"], rows[-1]["id"])
            assert got == want, where
        ref = store.browse_incidents(IncidentFilter(), limit=1)[0]
        assert ref["sightings"] == 1 and ref["source"] and ref["triage"] == "open"
        found = store.browse_incidents(IncidentFilter(sha256_prefix=ref["sha256"][:6]))
        assert [row["id"] for row in found] == [ref["id"]]
        found = store.browse_incidents(IncidentFilter(redacted=ref["redacted"]))
        assert ref["id"] in [row["id"] for row in found]
        counts = {(r["triage"], r["severity"]): r["n"] for r in store.incident_counts()}
        assert counts == {("open", "critical"): 10, ("open", "unknown"): 20}
        assert {r["status"]: r["n"] for r in store.status_counts()} == {
            "revoked": 10, "pending": 20}
        days = store.incidents_per_day(START - timedelta(days=1))
        assert [(d["day"], d["n"]) for d in days] == [("2026-03-01", 30)]
        times = store.revoke_times(START - timedelta(days=1))
        assert len(times) == 10
        for row in times:
            seconds = (datetime.fromisoformat(row["revoked_at"]) -
                       datetime.fromisoformat(row["first_seen"])).total_seconds()
            assert seconds == 90
        assert store.incident_notifications(ref["id"]) == []
        assert store.revoke_times(datetime.now(UTC) + timedelta(days=1)) == []
    finally:
        store.close()
