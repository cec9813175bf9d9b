"""``record_findings``: what ``scan --record [--revoke]`` and ``git --record`` call, fed with
real ``scanner.finding.Finding`` objects and drained through the stand-in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from standin import calls, start

from scanner.dev.cendis_api import StandInToken
from scanner.finding import Finding
from scanner.incidents.findings import record_findings
from scanner.incidents.models import Status, TokenRef
from scanner.incidents.revoker import Revoker
from scanner.incidents.store import Store


def _finding(token: str, path: str, line: int, confidence: str = "confirmed",
             **git: Any) -> Finding:
    ref = TokenRef.from_token(token)
    return Finding(rule_id="cendis-pat", confidence=confidence, path=path, line=line,
                   column=5, offset=100, encoding="plain", redacted=ref.redacted,
                   secret_sha256=ref.sha256, **git)


async def test_scan_findings_recorded_and_revoked(
        aiohttp_client: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    live, unknown, truncated = make_token(), make_token(), make_token()[:-3]
    findings = [
        _finding(live, ".env", 3),
        _finding(live, "deploy/secret.yaml", 7),  # the same token in a second file
        _finding(truncated, "src/client.py", 9, confidence="possible"),
        _finding(unknown, "app.py", 1, commit="a" * 40, author_name="Dev",
                 author_email="dev@example.com", date="2026-01-01T00:00:00Z",
                 location="file"),
    ]
    before = [(f.path, f.line, f.confidence) for f in findings]
    store = Store.open(tmp_path / "i.db")
    recorded = record_findings(store, findings, "scan:examples/leaky-project", revoke=True)
    assert [(f.path, f.line, f.confidence) for f in findings] == before  # not mutated
    assert [r.sha256 for r in recorded] == [f.secret_sha256 for f in findings]
    assert [r.status for r in recorded] == [Status.PENDING, Status.PENDING, Status.RECORDED,
                                            Status.PENDING]
    assert [(r.new_incident, r.new_sighting) for r in recorded] == [
        (True, True), (False, True), (True, True), (True, True)]
    assert store.queue_depth() == 2  # the possible finding is never sent to Cendis
    git = store.get_incident(recorded[3].incident_id)
    assert git is not None
    assert git["sightings"][0] | {"received_at": None} == {
        "source": "scan:examples/leaky-project", "partner": None, "repository": None,
        "url": None, "commit": "a" * 40, "path": "app.py", "line": 1,
        "author": "Dev <dev@example.com>", "record_type": None, "record_source": None,
        "delivery_id": None, "received_at": None}

    http, client = await start(aiohttp_client, make_token(),
                               [StandInToken.from_token(live, owner="alice")])
    assert await Revoker(store, client).drain() == 2
    assert [store.status_of(f.secret_sha256) for f in findings] == [
        Status.REVOKED, Status.REVOKED, Status.RECORDED, Status.NOT_FOUND]
    [call] = await calls(http)
    assert call["source"] == "scan:examples/leaky-project" and len(call["hashes"]) == 2

    # The next scan finds the same leak again: one more sighting at most, no new call.
    again = record_findings(store, findings[:1], "scan:examples/leaky-project", revoke=True)
    assert (again[0].status, again[0].new_sighting) == (Status.REVOKED, False)
    assert store.queue_depth() == 0
    store.close()


def test_record_without_revoke_queues_nothing(tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    store = Store.open(tmp_path / "i.db")
    findings = [_finding(make_token(), f"f{i}.txt", i + 1) for i in range(3)]
    recorded = record_findings(store, findings, "scan:.", revoke=False)
    assert {r.status for r in recorded} == {Status.RECORDED}
    assert store.queue_depth() == 0
    assert record_findings(store, [], "scan:.", revoke=True) == []
    store.close()
