"""auto_revoke on and off, against the local Cendis stand-in on loopback: the sweep
records incidents and revokes through the durable queue only where it is asked to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standin import calls, faults, revoked_counts, start
from sweeptools import Origin, by_name, isolated_git, sha, sweep, write_config  # noqa: F401 - the autouse fixture

from scanner.dev.cendis_api import StandInToken
from scanner.errors import ConfigError
from scanner.incidents.store import Store
from scanner.sweep.config import load

CREDENTIAL = "service-credential-for-tests"


async def test_auto_revoke_on_and_off(tmp_path: Path, aiohttp_client: Any,
                                      make_token: Callable[[], str]) -> None:
    revoke_me, keep_me, in_log = make_token(), make_token(), make_token()
    http, _ = await start(aiohttp_client, CREDENTIAL,
                          [StandInToken.from_token(t, scopes=("admin:org",))
                           for t in (revoke_me, keep_me, in_log)])
    base = str(http.make_url("")).rstrip("/")
    hot, cold = Origin(tmp_path, "hot"), Origin(tmp_path, "cold")
    hot.commit("leak", **{"k.txt": f"{revoke_me}\n"})
    cold.commit("leak", **{"k.txt": f"{keep_me}\n"})
    hot.push()
    cold.push()
    (tmp_path / "svc.log").write_text(f"token={in_log}\n")
    config = tmp_path / "sweep.toml"
    config.write_text(f'[settings]\ndatabase = "incidents.db"\ncache = "cache"\n'
                      f'auto_revoke = true\n'
                      f'[[repo]]\nurl = "{hot.url}"\n'
                      f'[[repo]]\nurl = "{cold.url}"\nauto_revoke = false\n'
                      f'[[logs]]\npaths = ["svc.log"]\n')
    await faults(http, fail_next=1, status=503)  # one failed call first: retried

    def run() -> Any:
        return sweep(config, api_url=base, credential=CREDENTIAL)

    report = await asyncio.get_running_loop().run_in_executor(None, run)
    rows = by_name(report)
    assert rows["hot"].revoked == 1 and rows["hot"].queued == 1  # type: ignore[attr-defined]
    assert rows["cold"].revoked == 0 and rows["cold"].queued == 0  # type: ignore
    assert rows[str(tmp_path / "svc.log")].revoked == 1  # type: ignore[attr-defined]
    assert report.exit_status == 1 and not report.problems
    made = await calls(http)
    assert revoked_counts(made) == {sha(revoke_me): {"revoked": 1},
                                    sha(in_log): {"revoked": 1}}  # the 503 was retried
    with Store.open(tmp_path / "incidents.db") as store:
        assert store.status_of(sha(revoke_me)) == "revoked"
        assert store.status_of(sha(in_log)) == "revoked"
        assert store.status_of(sha(keep_me)) == "recorded"
        incident = store.get_incident(sha(revoke_me))
        assert incident is not None and incident["severity"] == "critical"
        assert store.queue_depth() == 0

    again = await asyncio.get_running_loop().run_in_executor(None, run)
    assert again.new_findings == 0 and again.exit_status == 0
    assert len(await calls(http)) == len(made)  # no call for anything already handled


async def test_rejected_credential_keeps_tokens_queued(
        tmp_path: Path, aiohttp_client: Any, make_token: Callable[[], str]) -> None:
    token = make_token()
    http, _ = await start(aiohttp_client, CREDENTIAL, [StandInToken.from_token(token)])
    base = str(http.make_url("")).rstrip("/")
    (tmp_path / "a.log").write_text(f"{token}\n")
    config = write_config(tmp_path, logs=["a.log"], settings="auto_revoke = true")
    await faults(http, reject_credential=True)
    report = await asyncio.get_running_loop().run_in_executor(
        None, lambda: sweep(config, api_url=base, credential=CREDENTIAL))
    assert report.exit_status == 2
    assert any("unauthorized" in p for p in report.problems), report.problems
    with Store.open(tmp_path / "incidents.db") as store:
        assert store.status_of(sha(token)) == "pending" and store.queue_depth() == 1


def test_auto_revoke_needs_a_credential(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.cli.sweep import _make_sink

    monkeypatch.delenv("CENDIS_TOKEN", raising=False)
    (tmp_path / "a.log").write_text("nothing\n")
    config = load(write_config(tmp_path, logs=["a.log"], settings="auto_revoke = true"))
    with pytest.raises(ConfigError, match="--token or set CENDIS_TOKEN"):
        _make_sink(config, None, None, None, None, None)
    sink = _make_sink(config, None, None, "cred", "http://127.0.0.1:9", None)
    sink.close()
