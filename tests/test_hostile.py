"""What a hostile new user broke in a pass over the README, one test per class:
tokens in URLs, hosts and ref names; output that cannot be written; library calls
with the wrong types; layers nested past the limit; a queue left by an earlier run."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, assert_no_leak, run
from gitrepo import Repo
from test_incidents_cli import Api, api  # noqa: F401 - the stand-in fixture

import scanner


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:1/{T}", "http://{T}", "http://127.0.0.1:1/?a={T}",
    "http://u:{T}@127.0.0.1:1", "http://127.0.0.1:{T}/", "http://[{T}]/",
    "http://127.0.0.1:1/\n{T}",
])
def test_urls_and_hosts_are_never_echoed_whole(url: str, make_token: Callable[[], str],
                                                tmp_path: Path) -> None:
    token = make_token()
    shown = url.format(T=token)
    proc = run(["whoami", "--token", "x", "--cendis-api-url", shown], timeout=60)
    assert proc.returncode == 2, proc.err
    assert len(proc.err.strip().splitlines()) == 1, proc.err
    assert "internal error" not in proc.err
    # scan --revoke checks the URL before the scan (a bad one) or has nothing to send
    scan = run(["scan", str(tmp_path), "--revoke", "--token", "x", "--cendis-api-url", shown,
                "--db", str(tmp_path / "t.db")], timeout=60)
    assert scan.returncode in (0, 2) and "internal error" not in scan.err
    assert_no_leak(proc.stdout, proc.stderr, scan.stdout, scan.stderr)


def test_a_token_as_the_stand_ins_host_is_one_redacted_line(
        make_token: Callable[[], str]) -> None:
    proc = run(["dev", "cendis-api", "--host", make_token(), "--port", "1"], timeout=60)
    assert proc.returncode == 2 and "internal error" not in proc.err
    assert "cannot listen on" in proc.err
    assert_no_leak(proc.stdout, proc.stderr)


def test_ref_names_are_content(tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    tip = repo.commit("init")
    branch, tag = make_token(), make_token()
    repo.git("branch", f"b{branch}")
    repo.git("tag", "-a", f"t{tag}", "-m", "release")
    status, report, _ = repo.scan_json("git", "--all")
    assert status == 1
    assert sorted(f["path"] for f in report["findings"] if f["location"] == "ref") == sorted(
        [f"refs/heads/b{scanner_redact(branch)}", f"refs/tags/t{scanner_redact(tag)}"])
    line = f"refs/heads/b{branch} {tip} refs/heads/b{branch} {'0' * 40}\n"
    status, report, _ = repo.scan_json("git", "--pre-push", input=line)
    assert status == 1 and {f["location"] for f in report["findings"]} == {"ref"}


def scanner_redact(token: str) -> str:
    from scanner.token import redact

    return redact(token)


@pytest.mark.parametrize("args", [["--version"], ["-h"], ["scan", "--help"],
                                  ["git", "-h"], ["version"]])
def test_output_that_cannot_be_written_is_one_line_and_exit_2(
        args: list[str], tmp_path: Path) -> None:
    full = tmp_path / "full"
    os.mknod(full, 0o600 | 0o020000, os.makedev(1, 7))  # our own /dev/full
    with full.open("w") as out:
        proc = subprocess.run([CLI, *args], stdout=out, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "No space left" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert full.is_char_device()


def test_layers_past_the_limit_are_an_error_not_a_clean_scan(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    data = f"k={make_token()}\n".encode()
    for _ in range(5):
        data = gzip.compress(data)
    (tmp_path / "five.gz").write_bytes(data)
    proc = run(["scan", str(tmp_path / "five.gz")])
    assert proc.returncode == 2 and "more than 4 layers of gzip" in proc.err


def test_library_rejects_wrong_types_and_scrubs_errors(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    rules = scanner.load_rules()
    (tmp_path / "x").write_text("nothing\n")
    with pytest.raises(scanner.UsageError, match="not one path"):
        scanner.scan_paths(str(tmp_path / "x"), rules)
    with pytest.raises(scanner.UsageError, match="min_confidence"):
        scanner.ScanOptions(min_confidence="bogus")  # type: ignore[arg-type]
    with pytest.raises(scanner.UsageError, match="excludes"):
        scanner.ScanOptions(excludes="*.env")  # type: ignore[arg-type]
    token = make_token()
    with pytest.raises(scanner.ConfigError) as caught:
        scanner.scan_paths([tmp_path / "x"], rules,
                           scanner.ScanOptions(baseline=f"/nonexistent/{token}"))
    assert_no_leak(str(caught.value))


@pytest.mark.parametrize("kind", ["text", "directory", "missing-parent"])
def test_a_bad_incident_database_is_said_before_the_scan(
        kind: str, tmp_path: Path, make_token: Callable[[], str]) -> None:
    db = {"text": tmp_path / "t.db", "directory": tmp_path / "d.db",
          "missing-parent": tmp_path / "nowhere" / "x.db"}[kind]
    if kind == "text":
        db.write_text("hello, not a database\n" * 100)
    elif kind == "directory":
        db.mkdir()
    (tmp_path / "a.env").write_text(f"T={make_token()}\n")
    proc = run(["scan", str(tmp_path / "a.env"), "--record", "--db", str(db)])
    assert proc.returncode == 2 and proc.out == ""
    [line] = proc.err.splitlines()
    assert line.startswith("cendis-scan: error: incident database ")


def test_revoke_sends_what_an_earlier_run_left_queued(api: Api,  # noqa: F811
                                                      tmp_path: Path) -> None:
    """The credential was refused (token left pending); once it is fixed, the next
    --revoke sends it, even from a scan that finds nothing new."""
    db = str(tmp_path / "q.db")
    (tmp_path / "k.env").write_text(f"T={api.live[2]}\n")
    (tmp_path / "empty").mkdir()
    first = run(["scan", str(tmp_path / "k.env"), "--revoke", "--db", db],
                env=api.env(api.weak))
    assert first.returncode == 2 and "1 not revoked yet" in first.err
    second = run(["scan", str(tmp_path / "empty"), "--revoke", "--db", db], env=api.env())
    assert second.returncode == 0, second.err
    rows = json.loads(run(["incidents", "list", "--format", "json", "--db", db]).out)
    assert [r["status"] for r in rows] in (["revoked"], ["already_revoked"])
    assert_no_leak(first.stdout, first.stderr, second.stdout, second.stderr)
