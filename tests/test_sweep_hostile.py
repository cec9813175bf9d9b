"""Sweeps against hostile or broken input, through the installed CLI on real log files
and real file:// repositories: a token in a log file's name, a token or a forbidden
transport in a repository URL, absurd ``--every`` intervals, corrupt logs state files,
a copytruncate behind the same long banner, a 4 GiB sparse log, and a token in a commit
message (placed as ``cendis-scan git`` places it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_no_leak, run
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture
from test_zz_privacy import Needles

from scanner.engine.inputs import data_extents
from scanner.errors import GitError
from scanner.sweep.mirrors import Mirror


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1"}
    proc = run(["sweep", *args], cwd=tmp_path, env=env, timeout=60)
    assert_no_leak(proc.stdout, proc.stderr)
    assert b"Traceback" not in proc.stderr and b"internal" not in proc.stderr, proc.err
    return proc


def sweep_json(tmp_path: Path, config: Path) -> tuple[int, dict[str, Any], str]:
    proc = cli(tmp_path, str(config), "--format", "json")
    return proc.returncode, json.loads(proc.stdout), proc.err  # type: ignore[attr-defined]


def state_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("logs:*.json"))


def no_token_in(paths: list[Path], tokens: list[str]) -> None:
    needles = Needles(tokens)
    for path in paths:
        found = needles.find(path.read_bytes())
        assert found is None, f"{path.name}: {found}"


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and proc.stdout == b"", proc.err  # type: ignore[attr-defined]
    line: str = proc.err.strip()  # type: ignore[attr-defined]
    assert line and "\n" not in line, line
    return line


# -- class 1: a token in a log file's name ---------------------------------------------

@pytest.mark.parametrize("where", ["file", "folder", "base64-file", "file-and-content"])
def test_a_token_in_a_log_name_is_found_and_never_stored(
        tmp_path: Path, make_token: Callable[[], str], where: str) -> None:
    token, inside = make_token(), make_token()
    logs = tmp_path / "logs"
    if where == "folder":
        folder = logs / f"svc-{token}"
        name = "app.log"
    else:
        folder = logs
        shown = base64.b64encode(token.encode()).decode().rstrip("=") \
            if where == "base64-file" else token
        name = f"app-{shown}.log"
    folder.mkdir(parents=True)
    body = f"line\nauth {inside}\n" if where == "file-and-content" else "quiet line\n"
    (folder / name).write_text(body)
    config = write_config(tmp_path, logs=["logs/**/*.log"])

    status, report, _ = sweep_json(tmp_path, config)
    assert status == 1, report
    found = report["sources"][0]["findings"]
    by_sha = {f["secret_sha256"]: f for f in found}
    assert sha(token) in by_sha
    assert by_sha[sha(token)]["location"] == "path"
    if where == "file-and-content":
        assert sha(inside) in by_sha and by_sha[sha(inside)]["line"] == 2
    # Reported once: the next sweep finds nothing new in the same name.
    again, report, _ = sweep_json(tmp_path, config)
    assert again == 0 and report["new_findings"] == 0
    # Neither the state file nor the incident database holds the token, in any form.
    assert state_files(tmp_path)
    no_token_in([*state_files(tmp_path), tmp_path / "incidents.db"], [token, inside])
    text = cli(tmp_path, str(config))
    assert text.returncode == 0


# -- class 1 and 5: repository URLs ------------------------------------------------------

HOSTILE_URLS = {
    "https-user": "https://{token}@example.com/acme/app.git",
    "file-user": "file://{token}@localhost{path}",
    "ssh-user": "ssh://{token}@example.com/acme/app.git",
    "scp-user": "{token}@example.com:acme/app.git",
    "query": "https://example.com/acme/app.git?access_token={token}",
    "path": "https://example.com/{token}/app.git",
    "percent-encoded": "https://{encoded}@example.com/acme/app.git",
    "base64-user": "https://{b64}@example.com/acme/app.git",
    "password": "https://x-access:{token}@example.com/acme/app.git",
}


@pytest.mark.parametrize("variant", sorted(HOSTILE_URLS))
def test_a_token_in_a_repository_url_is_refused(tmp_path: Path, make_token: Callable[[], str],
                                                variant: str) -> None:
    token = make_token()
    origin = Origin(tmp_path, "app")
    origin.commit("c", **{"a.txt": "clean\n"})
    origin.push()
    url = HOSTILE_URLS[variant].format(
        token=token, path=origin.bare.path, encoded=token.replace("_", "%5F"),
        b64=base64.b64encode(token.encode()).decode().rstrip("="))
    config = write_config(tmp_path, [url])
    line = one_line(cli(tmp_path, str(config)))
    assert "repo[1].url holds a" in line and "token" in line
    assert not (tmp_path / "cache").exists()  # no mirror, no git config written


TRANSPORTS = ["ext::sh -c touch% {marker}", "fd::0", "fd::3,4", "foo::bar",
              "http://example.com/acme/app.git", "ftp://example.com/app.git",
              "sftp://example.com/app.git", "ext://example.com/app.git"]


@pytest.mark.parametrize("url", TRANSPORTS)
def test_only_the_sweep_transports_are_accepted(tmp_path: Path, url: str) -> None:
    marker = tmp_path / "pwned"
    config = write_config(tmp_path, [url.format(marker=marker)])
    line = one_line(cli(tmp_path, str(config)))  # a hang fails on cli's timeout
    assert "a sweep fetches only over https, ssh, git, file" in line
    assert not marker.exists()


@pytest.mark.parametrize("url", ["ext::sh -c touch% {marker}", "fd::0", "fd::7,8",
                                 "ext::sh -c 'touch {marker}'"])
def test_gits_own_allow_list_refuses_remote_helpers(tmp_path: Path, url: str) -> None:
    """Past the config check (a URL set by other means), git itself refuses: no
    command runs, no descriptor is waited on."""
    marker = tmp_path / "pwned"
    mirror = Mirror(tmp_path / "cache" / "m.git", url.format(marker=marker))
    with pytest.raises(GitError, match=r"transport '\w+' not allowed"):
        mirror.fetch(timeout=20)  # a descriptor waited on would be a timeout, not this
    assert not marker.exists()


# -- class 5: --every --------------------------------------------------------------------

@pytest.mark.parametrize("every", ["999999999d", "366d", "8785h", "31622401s",
                                   "100000000000000000000h", "9" * 5000 + "s",
                                   "365d1s", "1d999999999999999999999m"])
def test_absurd_intervals_are_a_usage_error(tmp_path: Path, every: str) -> None:
    (tmp_path / "a.log").write_text("quiet\n")
    config = write_config(tmp_path, logs=["a.log"])
    line = one_line(cli(tmp_path, str(config), "--every", every))
    assert "--every must be at most 365d" in line and len(line) < 200
    assert not (tmp_path / "cache").exists()  # refused before any sweep


# -- class 5: corrupt logs state ---------------------------------------------------------

GOOD_FILE = {"path": "x", "size": 10, "offset": 5, "lines": 1, "head": "0" * 64,
             "tail": "0" * 64, "gz": False}
CORRUPT = {
    "garbage": b"\x00\xffnot json at all{",
    "list": b"[1, 2, 3]",
    "string": b'"files"',
    "number": b"42",
    "empty": b"",
    "files-a-list": json.dumps({"files": [], "reported": []}).encode(),
    "numbers-as-strings": json.dumps({"files": {"1:2": {**GOOD_FILE, "size": "10",
                                                        "offset": "5"}}}).encode(),
    "missing-keys": json.dumps({"files": {"1:2": {"path": "x"}}}).encode(),
    "reported-a-string": json.dumps({"files": {}, "reported": "abc"}).encode(),
    "reported-numbers": json.dumps({"files": {}, "reported": [1, 2]}).encode(),
    "bool-as-count": json.dumps({"files": {"1:2": {**GOOD_FILE, "lines": True}}}).encode(),
    "negative-offset": json.dumps({"files": {"1:2": {**GOOD_FILE, "offset": -4}}}).encode(),
    "nested-deep": b"[" * 100_000,
    "not-utf8": b'{"files": {}, "reported": ["\xff"]}',
}


@pytest.mark.parametrize("variant", sorted(CORRUPT))
def test_a_corrupt_logs_state_is_set_aside_once(tmp_path: Path, make_token: Callable[[], str],
                                                variant: str) -> None:
    first, second = make_token(), make_token()
    log = tmp_path / "app.log"
    log.write_text(f"one {first}\n")
    config = write_config(tmp_path, logs=["app.log"])
    status, _, _ = sweep_json(tmp_path, config)
    assert status == 1
    (state,) = state_files(tmp_path)
    state.write_bytes(CORRUPT[variant])
    with open(log, "a") as f:
        f.write(f"two {second}\n")

    status, report, err = sweep_json(tmp_path, config)
    assert status == 1, err
    assert not report["sources"][0]["errors"]
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and "corrupt" in warnings[0] and "set aside" in warnings[0]
    assert sha(second) in {f["secret_sha256"] for f in report["sources"][0]["findings"]}
    aside = state.with_name(state.name + ".corrupt-1")
    assert aside.read_bytes() == CORRUPT[variant]
    json.loads(state.read_text())  # a good state again
    # The next sweep is quiet: no warning, nothing new.
    status, report, err = sweep_json(tmp_path, config)
    assert (status, report["new_findings"], err) == (0, 0, "")
    # Corrupt again: the next free name, the first one kept.
    state.write_bytes(CORRUPT[variant])
    status, _, err = sweep_json(tmp_path, config)
    assert state.with_name(state.name + ".corrupt-2").exists() and aside.exists()
    assert err.count("\n") == 1


# -- class 4: copytruncate behind the same banner -----------------------------------------

@pytest.mark.parametrize("banner_size", [1024, 1500, 4096, 20_000])
@pytest.mark.parametrize("longer", [False, True])
def test_copytruncate_with_the_same_banner_is_detected(
        tmp_path: Path, make_token: Callable[[], str], banner_size: int, longer: bool) -> None:
    old, new = make_token(), make_token()
    banner = ("# app v1.2.3 started; config follows " + "=" * banner_size)[:banner_size - 1]
    banner += "\n"
    log = tmp_path / "app.log"
    log.write_text(banner + "".join(f"10:00:{i:02d} request {i}\n" for i in range(40))
                   + f"10:01:00 auth {old}\n")
    config = write_config(tmp_path, logs=["app.log*"])
    status, report, _ = sweep_json(tmp_path, config)
    assert status == 1 and report["new_findings"] == 1
    size = log.stat().st_size

    # copytruncate: copied aside (a new inode, its tokens already reported), truncated
    # in place, and the application writes the same banner again, then new lines.
    shutil.copyfile(log, tmp_path / "app.log.1")
    with open(log, "r+") as f:
        f.truncate(0)
    lines = "".join(f"11:00:{i:02d} replied {i}\n" for i in range(60 if longer else 40))
    log.write_text(banner + lines + f"11:01:00 auth {new}\n")
    assert log.stat().st_size >= size  # the old offset is still inside the file
    status, report, err = sweep_json(tmp_path, config)
    assert status == 1, err
    found = [f for f in report["sources"][0]["findings"]]
    assert [f["secret_sha256"] for f in found] == [sha(new)]
    assert found[0]["line"] == (62 if longer else 42)


# -- class 5: sparse logs ------------------------------------------------------------------

def test_a_sparse_log_is_read_by_its_data_only(tmp_path: Path,
                                               make_token: Callable[[], str]) -> None:
    early, late = make_token(), make_token()
    log = tmp_path / "big.log"
    head = f"start {early}\n".encode()
    head += b"".join(b"%-63d\n" % i for i in range(8192 // 64))[: 8192 - len(head) - 1] + b"\n"
    hole = 1 << 40  # 1 TiB: read byte by byte it would outlast the CLI's timeout
    with open(log, "wb") as f:  # whole blocks of lines, then a 1 TiB hole, then a line
        f.write(head)
        try:
            f.seek(hole)
            f.write(f"\nend {late}\n".encode())
        except OSError as exc:  # a file system without files this large
            pytest.skip(f"no 1 TiB sparse file here: {exc}")
    with open(log, "rb") as f:
        if len(data_extents(f.fileno(), 0, hole)) != 1:
            pytest.skip("this file system does not report holes (SEEK_DATA)")
    config = write_config(tmp_path, logs=["big.log"])
    status, report, _ = sweep_json(tmp_path, config)  # reading the hole: a timeout
    row = report["sources"][0]
    assert status == 1
    lines = {f["secret_sha256"]: (f["line"], f["offset"]) for f in row["findings"]}
    assert lines[sha(early)] == (1, len("start "))
    assert lines[sha(late)] == (head.count(b"\n") + 2, hole + len("\nend "))
    # Appended after the hole: only the new line is read.
    with open(log, "a") as f:
        f.write("more\n")
    status, report, _ = sweep_json(tmp_path, config)
    assert status == 0 and report["sources"][0]["bytes"] == len("more\n")


# -- class 6: where a finding is ------------------------------------------------------------

def test_text_output_places_findings_as_git_does(tmp_path: Path,
                                                 make_token: Callable[[], str]) -> None:
    in_message, in_file = make_token(), make_token()
    app = Origin(tmp_path, "app")
    app.commit(f"deploy with {in_message}", **{"README": "hi\n"})
    tip = app.commit("config", **{"cfg.env": f"\nTOKEN={in_file}\n"})
    app.push()
    config = write_config(tmp_path, [app.url])
    proc = cli(tmp_path, str(config))
    assert proc.returncode == 1, proc.err  # type: ignore[attr-defined]
    out: str = proc.out  # type: ignore[attr-defined]
    assert "None" not in out
    message_line = next(ln for ln in out.splitlines() if "commit message" in ln)
    assert message_line.strip().startswith("app ") and "cendis_pat_" in message_line
    assert f"app {tip[:12]} cfg.env:2:7" in out
    git = run(["git", str(app.work.path)], env={"HOME": str(tmp_path / "home")})
    assert "commit message" in git.out  # type: ignore[attr-defined]


def test_state_and_json_are_utf8_clean(tmp_path: Path) -> None:
    """A quiet sweep of a log with undecodable bytes in its name writes a state file
    that loads again (no corrupt warning the next time)."""
    name = os.fsdecode(b"app-\xff.log")
    (tmp_path / name).write_text("quiet\n")
    config = write_config(tmp_path, logs=["*.log"])
    assert sweep_json(tmp_path, config)[0] == 0
    status, _, err = sweep_json(tmp_path, config)
    assert status == 0 and err == ""
