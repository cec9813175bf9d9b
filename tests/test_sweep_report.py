"""``sweep --report-to`` a running receiver (``serve``'s app, real HTTP on loopback):
its ``POST /v1/findings`` records incidents and queues revokes as partner reports do;
a token seen by a partner and by a sweep is one incident with two sightings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from receiver import Rig, RigFactory
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture

from scanner.errors import ConfigError
from scanner.incidents.store import Store
from scanner.rules import load as load_rules
from scanner.sweep.config import load
from scanner.sweep.run import run_sweep
from scanner.sweep.sinks import RemoteSink

REPORT_TOKEN = "report-token-for-tests-0123456789"


def url(rig: Rig) -> str:
    return str(rig.client.make_url("")).rstrip("/")


async def sweep_to(rig: Rig, config: Path, token: str = REPORT_TOKEN) -> Any:
    def run() -> Any:
        return run_sweep(load(config), RemoteSink(url(rig), token), load_rules())

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def test_report_to_records_and_revokes(rig_factory: RigFactory, tmp_path: Path,
                                             make_token: Callable[[], str]) -> None:
    rig = await rig_factory(known=2, report_token=REPORT_TOKEN)
    known, unknown = rig.tokens  # both issued (the stand-in knows them); a partner saw one
    app = Origin(tmp_path, "app")
    app.commit("leak", **{"cfg.env": f"A={known}\n"})
    app.push()
    (tmp_path / "svc.log").write_text(f"token {unknown}\n")
    config = write_config(tmp_path, [app.url], logs=["svc.log"],
                          settings="auto_revoke = true")

    # The same token as a partner saw it first: one incident, two sightings.
    status, _ = await rig.report([known])
    assert status == 200
    await rig.quiet()  # revoked already
    report = await sweep_to(rig, config)
    assert report.exit_status == 1 and report.new_findings == 2
    rows = {s.kind: s for s in report.sources}
    assert (rows["repo"].queued, rows["repo"].revoked) == (0, 1)  # nothing left to do
    assert rows["logs"].queued == 1  # queued by the receiver, revoked in its background
    await rig.quiet()
    assert rig.revoked() == {sha(known), sha(unknown)}
    with Store.open(rig.db) as db:
        incidents = {i["sha256"]: i for i in db.list_incidents()}
        assert set(incidents) == {sha(known), sha(unknown)}
        shown = db.get_incident(sha(known))
        assert shown is not None and shown["status"] == "revoked"
        sources = sorted(s["source"] for s in shown["sightings"])
        assert sources == ["github", "scan:app"]
        scan = next(s for s in shown["sightings"] if s["source"] == "scan:app")
        assert scan["commit"] == app.work.head() and scan["path"] == "cfg.env"
        assert scan["repository"] == "app" and scan["url"] == app.url
    # Each revoked once, ever: the partner's and the sweep's sightings share one call.
    sent = [h for call in rig.calls for h in call["hashes"]]
    assert sorted(sent) == sorted([sha(known), sha(unknown)])

    again = await sweep_to(rig, config)  # nothing new: nothing sent
    assert again.new_findings == 0 and again.exit_status == 0


async def test_report_to_refuses_a_bad_token_and_the_state_stays(
        rig_factory: RigFactory, tmp_path: Path, make_token: Callable[[], str]) -> None:
    rig = await rig_factory(report_token=REPORT_TOKEN)
    token = make_token()
    (tmp_path / "a.log").write_text(f"{token}\n")
    config = write_config(tmp_path, logs=["a.log"])
    report = await sweep_to(rig, config, token="wrong-token-0123456789")
    assert report.exit_status == 2
    assert report.sources[0].errors[0].startswith("unauthorized:")
    good = await sweep_to(rig, config)  # the log was not advanced: found now
    assert good.new_findings == 1 and not good.sources[0].errors

    for headers, body, code in (
            ({}, b"{}", 401),
            ({"Authorization": f"Bearer {REPORT_TOKEN}"}, b"not json", 400),
            ({"Authorization": f"Bearer {REPORT_TOKEN}"},
             json.dumps({"source": "scan:x", "findings": [
                 {"sha256": sha(token), "redacted": token}]}).encode(), 400)):
        resp = await rig.client.post("/v1/findings", data=body, headers={
            "Content-Type": "application/json", **headers})
        assert resp.status == code
    # A path that holds a token (a careless client) is stored redacted, never whole.
    resp = await rig.client.post("/v1/findings", json={
        "source": "scan:careless", "findings": [{
            "sha256": sha(token), "redacted": "cendis_pat_abcd…ef",
            "path": f"backup-{token}.txt", "line": 3}]},
        headers={"Authorization": f"Bearer {REPORT_TOKEN}"})
    assert resp.status == 200
    with Store.open(rig.db) as db:
        shown = db.get_incident(sha(token))
        assert shown is not None
        paths = [s["path"] for s in shown["sightings"] if s["source"] == "scan:careless"]
        assert len(paths) == 1 and token not in paths[0] and paths[0].startswith("backup-")
    with pytest.raises(ConfigError, match="CENDIS_SCAN_REPORT_TOKEN"):
        RemoteSink(url(rig), None)


def test_report_token_in_the_receiver_config(tmp_path: Path) -> None:
    from scanner.server.config import ServerConfigError, load_config

    assert load_config(None, {}).report_token is None
    assert load_config(None, {"CENDIS_SCAN_REPORT_TOKEN": REPORT_TOKEN}).report_token \
        == REPORT_TOKEN
    conf = tmp_path / "receiver.toml"
    conf.write_text('report_token_env = "MY_REPORT_TOKEN"\n')
    assert load_config(str(conf), {"MY_REPORT_TOKEN": REPORT_TOKEN}).report_token \
        == REPORT_TOKEN
    conf.write_text('report_token = "short"\n')
    with pytest.raises(ServerConfigError, match="report_token: use at least 16"):
        load_config(str(conf), {})
    assert REPORT_TOKEN not in repr(load_config(None, {"CENDIS_SCAN_REPORT_TOKEN":
                                                       REPORT_TOKEN}))
