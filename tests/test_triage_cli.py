"""Triage through the installed CLI (a subprocess), on both backends: ack, assign,
resolve, a new sighting (``scan --record`` of the same token elsewhere) reopens, notes,
``incidents show`` and ``incidents export`` with every actor; refusals are one line and
their documented exit status; hostile text is stored and shown scrubbed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, assert_no_leak, run

from scanner.incidents.models import Sighting, TokenRef, utcnow
from scanner.incidents.store import Store


def _record(db: str, folder: Path, name: str, token: str) -> None:
    """``scan --record``: the token found in ``folder/name``, one sighting."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"CENDIS_TOKEN={token}\n")
    proc = run(["scan", str(folder / name), "--record", "--db", db])
    assert proc.returncode == 1, proc.err  # 1: a finding
    assert_no_leak(proc.stdout, proc.stderr)


def _cli(db: str, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    proc = run(["incidents", *args, "--db", db], env=env)
    assert "Traceback" not in proc.err, proc.err
    assert_no_leak(proc.stdout, proc.stderr)
    return proc


def _show(db: str, ident: str = "1") -> dict[str, Any]:
    proc = _cli(db, "show", ident, "--format", "json")
    assert proc.returncode == 0, proc.err
    return json.loads(proc.stdout)


def _export(db: str, *args: str) -> list[dict[str, Any]]:
    proc = _cli(db, "export", "--format", "jsonl", *args)
    assert proc.returncode == 0 and proc.err == "", proc.err
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_triage_flow_end_to_end(store_url: str, tmp_path: Path,
                                    make_token: Callable[[], str]) -> None:
    token = make_token()
    _record(store_url, tmp_path / "repo", "a.env", token)
    sha = TokenRef.from_token(token).sha256

    ack = _cli(store_url, "ack", "1", "--by", "alice")
    assert ack.returncode == 0, ack.err
    assert ack.out.startswith("incident 1 cendis_pat_") and ack.out.endswith(
        ": open -> acknowledged, by alice\n")
    assigned = _cli(store_url, "assign", sha[:12], "bob", "--by", "alice")  # by hash prefix
    assert assigned.returncode == 0 and assigned.out.endswith(": assigned to bob, by alice\n")
    # --by left out: the login name (whatever it is here), never empty
    resolved = _cli(store_url, "resolve", "1", "--note", "rotated; CI secrets replaced",
                    env={"LOGNAME": "dora", "USER": "dora"})
    assert resolved.returncode == 0, resolved.err
    assert resolved.out.endswith(": acknowledged -> resolved, by dora\n")
    assert _show(store_url)["triage"] == "resolved"

    # the same token seen again (another file): a regression, the incident reopens
    _record(store_url, tmp_path / "repo", "b.env", token)
    shown = _show(store_url)
    assert shown["triage"] == "open" and shown["assignee"] == "bob"
    assert [e["kind"] for e in shown["events"]].count("reopened") == 1

    noted = _cli(store_url, "note", "1", "owner says it was in a CI cache", "--by", "carol")
    assert noted.returncode == 0 and noted.out.endswith(": note added, by carol\n")

    text = _cli(store_url, "show", "1").out
    assert "  triage: open\n" in text and "  assignee: bob\n" in text
    for line in ("triage  by alice  open -> acknowledged", "assigned  by alice  bob",
                 "triage  by dora  acknowledged -> resolved", "note  by dora  rotated",
                 "note  by carol  owner says it was in a CI cache"):
        assert line in text, (line, text)

    events = _export(store_url)
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    assert {e["sha256"] for e in events} == {sha} and {e["incident_id"] for e in events} == {1}
    mine = [(e["kind"], e["actor"], e["detail"]) for e in events if e["actor"]]
    assert mine == [("triage", "alice", "open -> acknowledged"),
                    ("assigned", "alice", "bob"),
                    ("triage", "dora", "acknowledged -> resolved"),
                    ("note", "dora", "rotated; CI secrets replaced"),
                    ("note", "carol", "owner says it was in a CI cache")]
    system = {e["kind"] for e in events if e["actor"] is None}
    assert "reopened" in system and "received" in system
    assert all(set(e) == {"id", "incident_id", "sha256", "redacted", "at", "kind", "detail",
                          "actor"} for e in events)
    # --since: only what happened from then on
    later = _export(store_url, "--since", events[-1]["at"])
    assert later and all(e["at"] >= events[-1]["at"] for e in later)
    assert _export(store_url, "--since", "2999-01-01") == []


@pytest.fixture
def one_incident(tmp_path: Path, make_token: Callable[[], str]) -> str:
    """An SQLite trail holding incident 1, open."""
    db = str(tmp_path / "t.db")
    with Store.open(db) as store:
        store.record([(TokenRef.from_token(make_token()),
                       Sighting(source="manual", received_at=utcnow()))], revoke=False)
    return db


@pytest.mark.parametrize(("steps", "args", "status", "said"), [
    ([], ["ack", "99"], 1, "no incident '99'"),
    ([], ["note", "abcdef99", "x"], 1, "no incident 'abcdef99'"),
    ([], ["ack", "zz"], 2, "is not an incident id"),
    ([], ["ack", "0"], 2, "is not an incident id"),
    ([], ["ack", "١"], 2, "is not an incident id"),
    ([["ack", "1"]], ["ack", "1"], 2, "cannot ack an incident that is acknowledged"),
    ([["resolve", "1"]], ["ack", "1"], 2, "cannot ack an incident that is resolved"),
    ([], ["reopen", "1"], 2, "cannot reopen an incident that is open"),
    ([], ["ignore", "1", "--reason", "  "], 2, "ignore needs a reason"),
    ([], ["ignore", "1"], 2, "--reason"),  # typer: a required option
    ([], ["note", "1", ""], 2, "note needs the note's text"),
    ([], ["assign", "1", " "], 2, "assign needs an assignee"),
    ([], ["ack", "1", "--by", ""], 2, "by (who acts) is required"),
    ([], ["ack", "1", "--by", "x" * 201], 2, "by is over 200 characters"),
    ([], ["note", "1", "n" * 4001], 2, "note is over 4000 characters"),
    ([], ["ignore", "1", "--reason", "r" * 501], 2, "reason is over 500 characters"),
])
def test_refusals_are_one_line_and_their_exit_status(
        one_incident: str, steps: list[list[str]], args: list[str], status: int,
        said: str) -> None:
    for step in steps:
        assert _cli(one_incident, *step, "--by", "x").returncode == 0
    before = _show(one_incident)
    proc = _cli(one_incident, *args)
    assert proc.returncode == status, (proc.out, proc.err)
    assert proc.out == "" and len(proc.err.splitlines()) == 1 and said in proc.err, proc.err
    assert _show(one_incident) == before  # nothing changed, no event


def test_a_missing_database_is_one_line_exit_2(tmp_path: Path) -> None:
    for args in (["ack", "1"], ["export"]):
        proc = _cli(str(tmp_path / "none.db"), *args)
        assert proc.returncode == 2 and "no incident database" in proc.err
        assert not (tmp_path / "none.db").exists()


def _hostile(token: str) -> list[str]:
    """What a careless or hostile person may type: a token (whole, in a URL, base64'd),
    a CR/LF that forges a line, terminal escapes, bidi overrides."""
    import base64

    return [f"me {token}", f"https://x/?t={token}\r\nincident 2: resolved",
            "\x1b[31mred\x1b[0m\x07", f"b64 {base64.b64encode(token.encode()).decode()}",
            "\u202eevil\u2066", "tab\there\x7f"]


def test_hostile_text_is_scrubbed_in_the_store_and_every_output(
        store_url: str, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    _record(store_url, tmp_path / "repo", "a.env", token)
    secret = make_token()
    outputs: list[str] = []
    texts = _hostile(secret)
    runs = [["note", "1", text, "--by", text] for text in texts]
    runs.append(["assign", "1", texts[1], "--by", texts[2]])
    for args in runs:
        proc = _cli(store_url, *args)
        assert proc.returncode == 0, proc.err
        outputs.append(proc.out)
    outputs += [_cli(store_url, "show", "1").out, _cli(store_url, "export").out,
                _cli(store_url, "show", "1", "--format", "json").out]
    for out in outputs:
        assert secret not in out and token not in out
        assert "\r" not in out and "\x1b" not in out and "\x07" not in out
        assert "\u202e" not in out and "\x7f" not in out
    shown = _cli(store_url, "show", "1").out
    assert "\\x0d\\x0aincident 2: resolved" in shown and "\\x1b[31mred" in shown
    assert "\nincident 2" not in shown  # no forged line
    with Store.open(store_url) as store:  # what is stored: scrubbed before it was written
        stored = json.dumps(store.list_events(limit=1000)) + json.dumps(store.get_incident(1))
    assert secret not in stored and "\\r" not in stored and "\\u001b" not in stored


def test_export_streams_pages_and_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """2,500 incidents (5,000+ events, several pages, more than a pipe holds): the export
    has each event once, in id order; ``| head -1`` ends it without a word."""
    from scanner.token import generate

    db = str(tmp_path / "many.db")
    import random

    rng = random.Random("export")
    with Store.open(db) as store:
        store.record([(TokenRef.from_token(generate(rng)),
                       Sighting(source="manual", received_at=utcnow()))
                      for _ in range(2500)], revoke=False)
        total = len(store.list_events(limit=100_000))
    assert total > 2 * 1000
    events = _export(db)
    assert len(events) == total
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert len({e["id"] for e in events}) == total

    out = tmp_path / "events.jsonl"
    out.write_text("old\n")
    assert _cli(db, "export", "--output", str(out)).returncode == 0
    assert out.read_text().count("\n") == total
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cendis")] == []

    proc = subprocess.run(f"'{CLI}' incidents export --db '{db}' | head -1", shell=True,
                          capture_output=True, timeout=60)
    assert proc.stderr == b"", proc.stderr
    assert json.loads(proc.stdout)["id"] == events[0]["id"]
