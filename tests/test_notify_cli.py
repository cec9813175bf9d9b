"""Notifications from one-off commands: ``scan --record --notify-config FILE`` (or
``$CENDIS_SCAN_NOTIFY_CONFIG``) and ``sweep`` with a ``[notify]`` table record with the
router, then make one bounded dispatcher pass; what is left (a channel down) stays in
the outbox, said in one line, and goes with the next run, once. The installed CLI runs
as a subprocess while the channel stand-ins answer on loopback.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dispatchtools import channels
from privacy import keep_output


async def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The installed CLI, awaited (the stand-ins in this loop answer meanwhile)."""
    exe = Path(sys.executable).parent / "cendis-scan"
    proc = await asyncio.create_subprocess_exec(
        str(exe), *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    keep_output(out + err, "notify-cli")
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def outbox(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT kind, channel, sent_at IS NOT NULL FROM outbox "
                            "ORDER BY id").fetchall()


@pytest.mark.parametrize("how", ["option", "env"])
async def test_a_possible_token_found_by_scan_record_is_a_possible_message(
        aiohttp_server: Any, tmp_path: Path, make_token: Any, how: str) -> None:
    async with channels(aiohttp_server) as ch:
        conf = tmp_path / "notify.toml"
        conf.write_text(ch.toml(digest_after=10))
        (tmp_path / "app.env").write_text(f"KEY={make_token()[:-3]}\n")  # truncated
        db = tmp_path / "incidents.db"
        given = ["--notify-config", str(conf)] if how == "option" else []
        env = {"CENDIS_SCAN_NOTIFY_CONFIG": str(conf)} if how == "env" else {}
        proc = await cli("scan", "app.env", "--record", "--db", str(db), *given,
                         cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr  # findings
    assert ch.webhook_types() == ["incident.possible"]
    assert len(ch.slack.received) == len(ch.smtp.mails) == 1
    assert "Possible Cendis token" in ch.mail_subjects()[0]
    body = ch.webhook.received[0][2]["data"]
    assert body["places"][0]["path"] == "app.env"
    assert any("cannot be revoked" in step for step in body["actions"])
    assert outbox(db) == [("possible", name, 1) for name in ("chat", "siem", "mail")]
    assert "left in the outbox" not in proc.stderr


@pytest.mark.parametrize("down", ["siem", "mail"])
async def test_what_a_run_could_not_send_goes_with_the_next_run_once(
        aiohttp_server: Any, tmp_path: Path, make_token: Any, down: str) -> None:
    async with channels(aiohttp_server) as ch:
        conf = tmp_path / "notify.toml"
        conf.write_text(ch.toml(digest_after=10))
        db = tmp_path / "incidents.db"
        (tmp_path / "a.env").write_text(f"KEY={make_token()}\n")
        if down == "siem":
            ch.webhook.replies = [400]  # refused for good: kept, said, not lost
        else:
            ch.smtp.refuse_rcpt["security@example.com"] = 550
        first = await cli("scan", "a.env", "--record", "--db", str(db),
                          "--notify-config", str(conf), cwd=tmp_path)
        assert "1 left in the outbox" in first.stderr, first.stderr
        lines = first.stderr.splitlines()  # the scan's summary, the record line, this one
        assert len(lines) == 3 and sum("outbox" in line for line in lines) == 1
        assert ("siem: http_400" if down == "siem" else "mail: recipients_refused") in \
            first.stderr
        ch.smtp.refuse_rcpt.clear()
        with sqlite3.connect(db) as conn:  # an operator fixed the channel: due now
            conn.execute("UPDATE outbox SET next_attempt_at = NULL")
        (tmp_path / "b.env").write_text("nothing here\n")
        second = await cli("scan", "b.env", "--record", "--db", str(db),
                           "--notify-config", str(conf), cwd=tmp_path)
        assert second.returncode == 0, second.stderr
    assert all(sent for *_, sent in outbox(db))
    delivered = ch.webhook_keys(1 if down == "siem" else 0)
    assert sorted(delivered.values()) == [1] and sorted(ch.mail_keys().values()) == [1]
    assert len(ch.slack.received) == 1


async def test_a_bad_notify_config_is_one_line_exit_2_before_scanning(tmp_path: Path) -> None:
    conf = tmp_path / "notify.toml"
    conf.write_text("[notify.channels.x]\nkind = \"slack\"\nurl = \"https://h.example/x\"\n"
                    "colour = \"red\"\n")
    (tmp_path / "a.txt").write_text("hello\n")
    proc = await cli("scan", "a.txt", "--record", "--db", str(tmp_path / "i.db"),
                     "--notify-config", str(conf), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown key 'colour'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "i.db").exists()


async def test_a_sweep_with_a_notify_table_tells_the_channels(
        aiohttp_server: Any, tmp_path: Path, make_token: Any) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "ci.yml").write_text(f"token: {make_token()}\n")
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "ci"], check=True)
    async with channels(aiohttp_server) as ch:
        conf = tmp_path / "sweep.toml"
        conf.write_text(f"[settings]\ndatabase = \"incidents.db\"\ncache = \"cache\"\n\n"
                        f"[[repo]]\nurl = \"{repo}\"\nname = \"app\"\n\n"
                        + ch.toml(events=["opened"]))
        proc = await cli("sweep", str(conf), "--format", "json", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert ch.webhook_types() == ["incident.opened"]
    data = ch.webhook.received[0][2]["data"]
    assert data["places"][0]["path"] == "ci.yml" and data["places"][0]["commit"]
    assert len(ch.slack.received) == len(ch.smtp.mails) == 1
    assert outbox(tmp_path / "incidents.db") == [("opened", n, 1)
                                                 for n in ("chat", "siem", "mail")]


def test_a_sweep_with_a_bad_notify_table_names_it(tmp_path: Path) -> None:
    conf = tmp_path / "sweep.toml"
    conf.write_text("[[logs]]\npaths = [\"*.log\"]\n[notify.channels.a]\nkind = \"sms\"\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "cendis-scan"), "sweep",
                           str(conf)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "[notify.channels.a] kind" in proc.stderr
    assert "Traceback" not in proc.stderr
