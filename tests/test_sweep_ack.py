"""``sweep --report-to``: only a receiver's answer that names what it recorded moves the
sweep's state. The installed CLI as a subprocess, against the real receiver (``serve``'s
app on loopback) and against answers a broken or hostile receiver gives (a small aiohttp
app on loopback): ``{}``, ``[]``, a list that misses or adds a finding, a redirect to
another host. Each time: one error, the state not advanced, and the findings delivered by
the next sweep to the real receiver."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import CLI, assert_no_leak, keep_output
from receiver import Rig, RigFactory
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture

from scanner.incidents.store import Store

REPORT_TOKEN = "report-token-for-tests-0123456789"
Answer = Callable[[list[str]], tuple[int, Any]]


def base(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


async def sweep_cli(tmp_path: Path, config: Path, report_to: str, *extra: str
                    ) -> tuple[int, str, str]:
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(tmp_path / "home"),
           "GIT_CONFIG_NOSYSTEM": "1", "CENDIS_SCAN_REPORT_TOKEN": REPORT_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        CLI, "sweep", str(config), "--report-to", report_to, *extra, cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    keep_output(out + b"\n" + err, "cli")
    assert_no_leak(out, err)
    assert b"Traceback" not in err, err
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def liar(answer: Answer) -> tuple[web.Application, list[dict[str, Any]]]:
    """A receiver that records nothing and answers ``answer(sent sha256s)``."""
    seen: list[dict[str, Any]] = []

    async def findings(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else None
        seen.append({"method": request.method, "headers": dict(request.headers),
                     "body": body})
        if body is None:  # a redirected POST that became a GET: seen, and refused
            return web.Response(status=405)
        status, data = answer([f["sha256"] for f in body["findings"]])
        if isinstance(data, bytes):
            return web.Response(status=status, body=data, content_type="text/html")
        return web.json_response(data, status=status)

    app = web.Application()
    app.router.add_route("*", "/v1/findings", findings)
    return app, seen


def items(shas: list[str]) -> list[dict[str, Any]]:
    return [{"sha256": s, "incident_id": i, "status": "recorded", "new_incident": True}
            for i, s in enumerate(shas, 1)]


BAD_ANSWERS: dict[str, Answer] = {
    "empty-object": lambda sent: (200, {}),
    "empty-list": lambda sent: (200, []),
    "null": lambda sent: (200, None),
    "a-string": lambda sent: (200, "ok"),
    "recorded-empty": lambda sent: (200, {"recorded": []}),
    "recorded-a-string": lambda sent: (200, {"recorded": "all"}),
    "recorded-other-hashes": lambda sent: (200, {"recorded": items(["0" * 64] * len(sent))}),
    "recorded-one-missing": lambda sent: (200, {"recorded": items(sent[:-1])}),
    "recorded-one-extra": lambda sent: (200, {"recorded": items([*sent, "f" * 64])}),
    "recorded-one-twice": lambda sent: (200, {"recorded": items([sent[0]] * len(sent))}),
    "recorded-without-status": lambda sent: (200, {"recorded": [{"sha256": s}
                                                                for s in sent]}),
    "count-disagrees": lambda sent: (200, {"recorded": items(sent), "count": 99}),
    "accepted-not-200": lambda sent: (202, {"recorded": items(sent)}),
    "html": lambda sent: (200, b"<html>ok</html>"),
}


def two_token_log(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Path, list[str]]:
    tokens = [make_token(), make_token()]
    (tmp_path / "svc.log").write_text("".join(f"auth {t}\n" for t in tokens))
    return write_config(tmp_path, logs=["svc.log"]), tokens


async def delivered_later(rig: Rig, tmp_path: Path, config: Path, tokens: list[str]) -> None:
    """The next sweep, to the real receiver, delivers every finding: nothing was lost."""
    status, out, err = await sweep_cli(tmp_path, config, base(rig.client), "--format", "json")
    report = json.loads(out)
    assert status == 1, err
    assert report["new_findings"] == len(tokens)
    with Store.open(rig.db) as db:
        assert {i["sha256"] for i in db.list_incidents()} == {sha(t) for t in tokens}
    status, out, _ = await sweep_cli(tmp_path, config, base(rig.client), "--format", "json")
    assert status == 0 and json.loads(out)["new_findings"] == 0


@pytest.mark.parametrize("variant", sorted(BAD_ANSWERS))
async def test_an_answer_that_names_nothing_is_no_acknowledgement(
        rig_factory: RigFactory, aiohttp_server: Any, tmp_path: Path,
        make_token: Callable[[], str], variant: str) -> None:
    rig = await rig_factory(report_token=REPORT_TOKEN)
    app, seen = liar(BAD_ANSWERS[variant])
    server = await aiohttp_server(app)
    config, tokens = two_token_log(tmp_path, make_token)

    status, out, err = await sweep_cli(tmp_path, config, base(server), "--format", "json")
    assert status == 2, err
    (row,) = json.loads(out)["sources"]
    assert len(row["errors"]) == 1, row["errors"]
    reason = "receiver" if variant == "html" else "unacknowledged"
    assert row["errors"][0].startswith(f"{reason}:"), row["errors"]
    assert len(seen) == 1  # sent once
    # Again to the same liar: the same findings are sent again (the state did not move).
    status, out, _ = await sweep_cli(tmp_path, config, base(server), "--format", "json")
    assert status == 2 and len(seen) == 2
    assert sorted(f["sha256"] for f in seen[1]["body"]["findings"]) == sorted(
        sha(t) for t in tokens)
    await delivered_later(rig, tmp_path, config, tokens)


@pytest.mark.parametrize("variant", ["empty-object", "recorded-one-missing",
                                     "recorded-other-hashes"])
async def test_a_repository_is_not_advanced_without_an_acknowledgement(
        rig_factory: RigFactory, aiohttp_server: Any, tmp_path: Path,
        make_token: Callable[[], str], variant: str) -> None:
    rig = await rig_factory(report_token=REPORT_TOKEN)
    app, seen = liar(BAD_ANSWERS[variant])
    server = await aiohttp_server(app)
    tokens = [make_token(), make_token()]
    origin = Origin(tmp_path, "app")
    origin.commit("leak", **{"a.env": f"A={tokens[0]}\nB={tokens[1]}\n"})
    origin.push()
    config = write_config(tmp_path, [origin.url])
    status, out, err = await sweep_cli(tmp_path, config, base(server), "--format", "json")
    assert status == 2, err
    assert json.loads(out)["sources"][0]["errors"][0].startswith("unacknowledged:")
    await delivered_later(rig, tmp_path, config, tokens)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_an_error_and_the_token_stays_home(
        rig_factory: RigFactory, aiohttp_server: Any, tmp_path: Path,
        make_token: Callable[[], str], code: int) -> None:
    rig = await rig_factory(report_token=REPORT_TOKEN)
    elsewhere, seen = liar(lambda sent: (200, {"recorded": items(sent)}))
    target = await aiohttp_server(elsewhere)
    where = f"http://localhost:{target.port}/v1/findings"  # another host name

    async def bounce(request: web.Request) -> web.Response:
        return web.Response(status=code, headers={"Location": where})

    app = web.Application()
    app.router.add_post("/v1/findings", bounce)
    server = await aiohttp_server(app)
    config, tokens = two_token_log(tmp_path, make_token)
    status, out, err = await sweep_cli(tmp_path, config, base(server), "--format", "json")
    assert status == 2, err
    (row,) = json.loads(out)["sources"]
    assert row["errors"][0].startswith(f"redirect: {base(server)}/v1/findings answered "
                                       f"{code}"), row["errors"]
    assert seen == []  # never followed: the bearer token reached nobody else
    await delivered_later(rig, tmp_path, config, tokens)


async def test_the_receiver_acknowledges_by_hash_and_the_table_says_what_it_queued(
        rig_factory: RigFactory, tmp_path: Path, make_token: Callable[[], str]) -> None:
    rig = await rig_factory(known=2, report_token=REPORT_TOKEN)
    (tmp_path / "svc.log").write_text("".join(f"auth {t}\n" for t in rig.tokens))
    config = write_config(tmp_path, logs=["svc.log"], settings="auto_revoke = true")
    status, out, err = await sweep_cli(tmp_path, config, base(rig.client))
    assert status == 1, err
    row = next(ln for ln in out.splitlines() if "svc.log" in ln and "│" in ln)
    assert "0 (+2 queued at receiver)" in row, out
    await rig.quiet()
    assert rig.revoked() == {sha(t) for t in rig.tokens}

    # The answer itself: every sha256 recorded, how many, how many queued.
    token = make_token()
    resp = await rig.client.post("/v1/findings", json={
        "source": "scan:x", "revoke": False, "findings": [
            {"sha256": sha(token), "redacted": "cendis_pat_abcd…ef"},
            {"sha256": sha(rig.tokens[0]), "redacted": "cendis_pat_abcd…ef"}]},
        headers={"Authorization": f"Bearer {REPORT_TOKEN}"})
    assert resp.status == 200
    answer = await resp.json()
    assert [r["sha256"] for r in answer["recorded"]] == [sha(token), sha(rig.tokens[0])]
    assert answer["count"] == 2 and answer["queued"] == 0
    assert [r["status"] for r in answer["recorded"]] == ["recorded", "revoked"]

    # JSON says who revokes: the receiver.
    (tmp_path / "svc.log").write_text(f"auth {make_token()}\n")
    status, out, _ = await sweep_cli(tmp_path, config, base(rig.client), "--format", "json")
    (source,) = json.loads(out)["sources"]
    assert source["revoked_by"] == "receiver" and source["new_findings"] == 1
