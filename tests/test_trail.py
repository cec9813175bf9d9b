"""The incident trail behind one facade (``scanner.incidents.trail``), and the ideas that
have one owner each: the revoke-queue rule, the bearer-token check, the atomic write.

The facade against the Cendis stand-in on loopback and a real SQLite file; the receiver's
bearer check through the real app; the atomic write on real files."""

from __future__ import annotations

import ast
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standin import calls

from scanner.atomic import write_atomic
from scanner.dev.cendis_api import StandInToken, create_app
from scanner.finding import Finding
from scanner.incidents.findings import queue_split, revocable
from scanner.incidents.models import Sighting, Status, TokenRef
from scanner.incidents.trail import IncidentTrail, open_store, open_trail
from scanner.server.auth import bearer_matches

ROOT = Path(__file__).resolve().parent.parent / "scanner"


def _finding(token: str, path: str, *, rule_id: str = "cendis-pat",
             confidence: str = "confirmed") -> Finding:
    ref = TokenRef.from_token(token)
    return Finding(rule_id=rule_id, confidence=confidence, path=path, line=1, column=1,
                   offset=0, encoding="plain", redacted=ref.redacted,
                   secret_sha256=ref.sha256)


def _calls_of(tree: ast.AST, owner: str, method: str) -> int:
    return sum(1 for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == method and isinstance(node.func.value, ast.Name)
               and node.func.value.id == owner)


def test_the_store_is_opened_by_the_facade_only() -> None:
    """The backend is chosen in one place: no module but the facade calls Store.open."""
    callers = {}
    for path in ROOT.rglob("*.py"):
        count = _calls_of(ast.parse(path.read_text(encoding="utf-8")), "Store", "open")
        if count:
            callers[str(path.relative_to(ROOT))] = count
    assert callers == {"incidents/trail.py": 1}


@pytest.mark.parametrize("name", ["Revoker", "CendisClient"])
def test_a_revoker_is_set_up_by_the_facade_only(name: str) -> None:
    """Building a revoker (a client on a session, a revoker on the store) happens in the
    facade; the CLI's whoami builds a client alone (no revoker, no store)."""
    allowed = {"Revoker": {"incidents/trail.py"},
               "CendisClient": {"incidents/trail.py", "cli/incidents.py"}}[name]
    callers = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
               for n in ast.walk(tree)):
            callers.add(str(path.relative_to(ROOT)))
    assert callers == allowed, callers


@pytest.mark.parametrize(("rule_id", "confidence", "revoke", "queued"), [
    ("cendis-pat", "confirmed", True, True),
    ("cendis-pat", "confirmed", False, False),
    ("cendis-pat", "possible", True, False),
    ("my-rule", "confirmed", True, False),
    ("", "", True, False),
    ("Cendis-Pat", "confirmed", True, False),
    ("cendis-pat", "CONFIRMED", True, False),
])
def test_one_rule_decides_what_is_queued(rule_id: str, confidence: str, revoke: bool,
                                         queued: bool) -> None:
    reported = _finding("cendis_pat_x", "a.env", rule_id=rule_id, confidence=confidence)
    assert revocable(reported) is (rule_id == "cendis-pat" and confidence == "confirmed")
    assert queue_split([(reported, "item")], revoke=revoke) == (
        (["item"], []) if queued else ([], ["item"]))


async def test_open_trail_records_in_order_and_drains_the_whole_queue(
        aiohttp_client: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    live, unknown, mine, credential = (make_token() for _ in range(4))
    http = await aiohttp_client(create_app(
        tokens=[StandInToken.from_token(live, owner="alice")],
        service_credentials={credential: ["revoke:tokens"]}))
    base = str(http.make_url("")).rstrip("/")
    db = tmp_path / "incidents.db"
    # An earlier run's leftover: queued, never sent (Cendis was down then).
    async with open_trail(db) as earlier:
        assert earlier.revoker is None
        earlier.record([_finding(unknown, "old.env")], "scan:old", revoke=True)
        await earlier.drain(5)  # without a revoker, nothing is sent
    assert await calls(http) == []

    findings = [_finding(live, "a.env"), _finding(mine, "b.txt", confidence="possible"),
                _finding(live, "c.env")]
    async with open_trail(db, cendis_url=base, credential=credential) as trail:
        assert trail.revoker is not None
        recorded = trail.record(findings, "scan:repo", revoke=True,
                                repository="org/repo", url="https://git.example/org/repo")
        assert [r.sha256 for r in recorded] == [f.secret_sha256 for f in findings]
        assert [r.status for r in recorded] == [Status.PENDING, Status.RECORDED,
                                                Status.PENDING]
        await trail.drain(5)
        assert [trail.status_of(f.secret_sha256) for f in findings] == [
            Status.REVOKED, Status.RECORDED, Status.REVOKED]
        assert trail.status_of(TokenRef.from_token(unknown).sha256) is Status.NOT_FOUND
        incident = trail.store.get_incident(recorded[0].incident_id)
        assert incident is not None
        assert {(s["repository"], s["url"]) for s in incident["sightings"]} == {
            ("org/repo", "https://git.example/org/repo")}
    assert trail.revoker is None  # the block's revoker is gone with its session
    sent = [(sha, c["source"]) for c in await calls(http) for sha in c["hashes"]]
    assert sorted(sent) == sorted([(TokenRef.from_token(live).sha256, "scan:repo"),
                                   (TokenRef.from_token(unknown).sha256, "scan:old")])
    with IncidentTrail.open(db) as again:  # closed, reopened: everything was committed
        assert again.store.queue_depth() == 0


@pytest.mark.parametrize(("header", "expected", "ok"), [
    ("Bearer right-token-0123456789", "right-token-0123456789", True),
    ("bearer right-token-0123456789", "right-token-0123456789", True),
    ("BEARER  right-token-0123456789 ", "right-token-0123456789", True),
    ("Bearer wrong-token-0123456789", "right-token-0123456789", False),
    ("Bearer right-token-012345678", "right-token-0123456789", False),
    ("Basic right-token-0123456789", "right-token-0123456789", False),
    ("right-token-0123456789", "right-token-0123456789", False),
    ("", "right-token-0123456789", False),
    ("Bearer ", "", False),  # no configured token: nobody gets in, not even with none
    ("Bearer anything", None, False),
    ("Bearer ", None, False),
])
def test_one_bearer_check(header: str, expected: str | None, ok: bool) -> None:
    assert bearer_matches(header, expected) is ok


@pytest.mark.parametrize("mode", [None, 0o644, 0o755, 0o600])
def test_write_atomic_replaces_whole_with_the_mode_asked(tmp_path: Path,
                                                         mode: int | None) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    write_atomic(target, "new é\n", mode=mode)
    assert target.read_text(encoding="utf-8") == "new é\n"
    old = os.umask(0o027)
    try:
        write_atomic(target, "newer\n", mode=mode)
    finally:
        os.umask(old)
    assert target.read_text(encoding="utf-8") == "newer\n"
    assert stat.S_IMODE(target.stat().st_mode) == (0o640 if mode is None else mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("failure", ["encode", "missing-dir", "target-is-a-directory"])
def test_write_atomic_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                           failure: str) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    text, path = "new\n", target
    if failure == "encode":
        text = "half \udcff"  # a lone surrogate: UTF-8 refuses it mid-write
    elif failure == "missing-dir":
        path = tmp_path / "nowhere" / "out.txt"
    else:
        path = tmp_path / "full"
        (path / "inside").mkdir(parents=True)  # a rename cannot replace it
    with pytest.raises((UnicodeEncodeError, OSError)):
        write_atomic(path, text)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.txt", *(["full"] if failure == "target-is-a-directory" else [])])


def test_open_store_passes_the_clock_and_timeout(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ref = TokenRef(sha256="0" * 64, redacted="sha256:000000000000…")

    with open_store(tmp_path / "i.db", now=lambda: moment, busy_timeout=0.0) as store:
        [recorded] = store.record([(ref, Sighting(source="manual", received_at=moment))],
                                  revoke=False)
        incident = store.get_incident(recorded.incident_id)
    assert incident is not None and str(incident["first_seen"]).startswith("2026-01-02")


@pytest.mark.parametrize(("answer", "reason"), [
    ("refused", "receiver"), ("stall", "receiver"), (401, "unauthorized"),
    (403, "unauthorized"), (500, "receiver"), (404, "receiver"), (302, "redirect"),
    ("not-json", "receiver"),
])
async def test_the_report_sink_says_why_in_one_reason(aiohttp_server: Any, answer: Any,
                                                      reason: str) -> None:
    """``--report-to`` over aiohttp: every failure is one :class:`SinkError` whose reason
    becomes the row's error prefix; the bearer token is in no message."""
    import asyncio

    from aiohttp import web

    from scanner.sweep.sinks import Place, RemoteSink, SinkError

    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if answer == "stall":
            await never.wait()
        if answer == "not-json":
            return web.Response(text="<html>ok</html>")
        return web.Response(status=answer, headers={"Location": "http://elsewhere/"})

    app = web.Application()
    app.router.add_post("/v1/findings", handler)
    server = await aiohttp_server(app)
    port = server.port
    if answer == "refused":
        await server.close()
    token = "report-token-for-tests-0123456789"
    sink = RemoteSink(f"http://127.0.0.1:{port}", token, timeout=0.5)
    finding = _finding("cendis_pat_x", "a.env")
    loop = asyncio.get_running_loop()
    with pytest.raises(SinkError) as caught:
        await loop.run_in_executor(None, lambda: sink.record(Place("scan:x"), [finding],
                                                             revoke=True))
    never.set()
    assert caught.value.reason == reason
    assert token not in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"http://127.0.0.1:{port}/v1/findings")
