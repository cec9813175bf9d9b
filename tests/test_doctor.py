"""``cendis-scan doctor`` through the real CLI, with HOME, XDG_CONFIG_HOME and
GIT_CONFIG_GLOBAL in a temp folder: each check with a positive and a negative case,
the JSON shape, exit statuses, and hostile homes (unreadable files, a FIFO, a symlink
loop, a huge sparse file) that must neither hang nor trace back."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_no_leak, run
from gitrepo import Repo, isolated_env


def machine(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path / "home")
    env["GIT_CONFIG_GLOBAL"] = str(tmp_path / "home" / ".gitconfig")
    env.pop("CENDIS_TOKEN", None)
    return env


def doctor(env: dict[str, str], *args: str, cwd: Path, token: str | None = None
           ) -> tuple[int, dict[str, Any], str]:
    """doctor --json and doctor (text): both checked for leaks; the JSON returned."""
    full = {**env, "CENDIS_TOKEN": token} if token is not None else env
    base = {k: v for k, v in os.environ.items() if k != "CENDIS_TOKEN"}
    outs = []
    for extra in (["--json"], []):
        proc = subprocess.run(["cendis-scan", "doctor", *extra, *args], cwd=cwd,
                              env={**base, **full}, capture_output=True, timeout=120)
        run_proc = proc  # also kept for the privacy check, like every CLI output
        from privacy import keep_output

        keep_output(run_proc.stdout + b"\n" + run_proc.stderr, "cli")
        assert b"Traceback" not in proc.stderr, proc.stderr
        assert_no_leak(proc.stdout, proc.stderr)
        outs.append(proc)
    assert outs[0].returncode == outs[1].returncode
    return outs[0].returncode, json.loads(outs[0].stdout), outs[1].stdout.decode()


def by_check(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["check"] == name]


def test_json_shape_and_a_clean_machine(tmp_path: Path) -> None:
    env = machine(tmp_path)
    assert run(["install-hook", "--global"], env=env).returncode == 0
    repo = Repo(tmp_path / "repo", env)
    status, report, text = doctor(env, cwd=repo.path)
    assert status == 0, text
    assert report["version"] == 1 and report["status"] == "ok" and report["exit_status"] == 0
    assert set(report["counts"]) == {"ok", "warn", "fail"}
    assert {c["check"] for c in report["checks"]} == {
        "hooks.repository", "hooks.global", "env.CENDIS_TOKEN", "files.home", "files.env"}
    for check in report["checks"]:
        assert set(check) == {"check", "status", "message", "fix", "path", "line",
                              "redacted", "confidence", "secret_sha256"}
        assert check["status"] in ("ok", "warn", "fail")
    assert text.splitlines()[-1].startswith("doctor: ok")


def test_hooks_missing_then_present(tmp_path: Path) -> None:
    env = machine(tmp_path)
    repo = Repo(tmp_path / "repo", env)
    status, report, text = doctor(env, cwd=repo.path)
    assert status == 1
    [commit] = [c for c in by_check(report, "hooks.repository") if "pre-commit" in c["message"]]
    assert commit["status"] == "fail" and "install-hook --global" in commit["fix"]
    assert by_check(report, "hooks.global")[0]["status"] == "warn"
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\ncendis-scan git --staged\n")  # not executable: git skips it
    status, report, _ = doctor(env, cwd=repo.path)
    assert status == 1 and "chmod +x" in by_check(report, "hooks.repository")[0]["fix"]
    assert run(["install-hook", "--global"], env=env).returncode == 0
    status, report, _ = doctor(env, cwd=repo.path)
    assert status == 0
    assert all(c["status"] == "ok" for c in by_check(report, "hooks.repository"))
    assert by_check(report, "hooks.global")[0]["status"] == "ok"


@pytest.mark.parametrize(("kind", "value", "words"), [
    ("whole", "{token}", "well-formed"),
    ("truncated", "{head30}", "truncated"),
    ("placeholder-x", "cendis_pat_xxxxxxxxxxxxxxxxxxxxxxxxxxxx", "placeholder"),
    ("placeholder-short", "cendis_pat_xxx", "placeholder"),
    ("angle", "<token>", "placeholder"),
    ("changeme", "changeme", "placeholder"),
    ("empty", "", "empty"),
    ("quoted", '"{token}"', "not start with"),
    ("checksum", "{mistyped}", "checksum"),
])
def test_cendis_token(tmp_path: Path, make_token: Callable[[], str], kind: str, value: str,
                      words: str) -> None:
    env = machine(tmp_path)
    token = make_token()
    other = "A" if token[-1] != "A" else "B"
    value = value.format(token=token, head30=token[:40], mistyped=token[:-1] + other)
    status, report, text = doctor(env, cwd=tmp_path, token=value)
    [check] = by_check(report, "env.CENDIS_TOKEN")
    assert words in check["message"], check
    assert check["status"] == ("ok" if kind == "whole" else "fail")
    assert token not in text and token[11:40] not in json.dumps(report)


def test_cendis_token_unset_is_fine(tmp_path: Path) -> None:
    env = machine(tmp_path)
    _, report, _ = doctor(env, cwd=tmp_path)
    assert by_check(report, "env.CENDIS_TOKEN")[0]["status"] == "ok"


@pytest.mark.parametrize("place", [".bash_history", ".zsh_history", ".python_history",
                                   ".local/share/fish/fish_history", ".bashrc", ".zprofile",
                                   ".config/fish/config.fish", ".netrc", ".npmrc",
                                   ".docker/config.json", ".config/gh/hosts.yml"])
def test_a_token_left_in_a_home_file(tmp_path: Path, make_token: Callable[[], str],
                                     place: str) -> None:
    env = machine(tmp_path)
    token = make_token()
    target = tmp_path / "home" / place
    target.parent.mkdir(parents=True, exist_ok=True)
    if place.endswith("config.json"):
        import base64

        auth = base64.b64encode(f"ci:{token}".encode()).decode()
        target.write_text(f'{{"auths": {{"registry.example.com": {{"auth": "{auth}"}}}}}}\n')
    else:
        target.write_text(f"ls\nexport CENDIS_TOKEN={token}\n")
    status, report, text = doctor(env, cwd=tmp_path)
    assert status == 1
    [found] = by_check(report, "files.home")
    assert found["status"] == "fail" and found["path"] == f"~/{place}"
    assert found["redacted"] == f"{token[:15]}…{token[-2:]}" and found["fix"]
    assert f"~/{place}:" in text
    target.write_text("ls\nexport CENDIS_TOKEN=$(pass show cendis)\n")
    status, report, _ = doctor(env, cwd=tmp_path)
    assert by_check(report, "files.home")[0]["status"] == "ok"


def test_env_files_git_would_commit(tmp_path: Path, make_token: Callable[[], str]) -> None:
    env = machine(tmp_path)
    repo = Repo(tmp_path / "repo", env)
    token = make_token()
    repo.write(".env", f"CENDIS_TOKEN={token}\n")
    repo.write("svc/.envrc", "export FOO=1\n")
    repo.write("ignored/.env.local", f"CENDIS_TOKEN={token}\n")
    repo.write(".gitignore", "ignored/\n")
    status, report, text = doctor(env, cwd=repo.path)
    assert status == 1
    found = {c["path"]: c for c in by_check(report, "files.env")}
    assert found[f"{repo.path}/.env"]["status"] == "fail"
    assert ".gitignore" in found[f"{repo.path}/.env"]["fix"]
    assert found[f"{repo.path}/svc/.envrc"]["status"] == "warn"
    assert not any("ignored" in p for p in found)
    repo.write(".gitignore", "ignored/\n.env\n.envrc\n")
    status, report, _ = doctor(env, cwd=repo.path)
    assert [c["status"] for c in by_check(report, "files.env")] == ["ok"]


def test_usage_errors(tmp_path: Path) -> None:
    env = machine(tmp_path)
    for args in (["doctor", str(tmp_path / "nowhere")], ["doctor", "--jsno"]):
        proc = run(args, env=env, cwd=tmp_path)
        assert proc.returncode == 2 and proc.err.count("\n") == 1, proc.err


def test_hostile_home_does_not_hang_or_trace_back(tmp_path: Path,
                                                  make_token: Callable[[], str]) -> None:
    env = machine(tmp_path)
    config = tmp_path / "home" / ".config"
    config.mkdir(parents=True)
    os.mkfifo(config / "fifo")
    (config / "loop").symlink_to(config)
    (config / "dev-null").symlink_to("/dev/zero")
    with open(config / "huge", "wb") as f:
        f.truncate(64 << 30)  # sparse: takes no room, would take minutes to read
    locked = config / "app" / "secret.ini"
    locked.parent.mkdir()
    token = make_token()
    locked.write_text(f"token={token}\n")
    visible = config / "tool" / "cred"
    visible.parent.mkdir()
    visible.write_text(f"token={token}\n")
    locked.chmod(0)
    try:
        status, report, text = doctor(env, cwd=tmp_path)
    finally:
        locked.chmod(0o600)
    assert status == 1
    paths = [c["path"] for c in by_check(report, "files.home")]
    assert "~/.config/tool/cred" in paths
    if os.geteuid() != 0:  # root reads anything
        assert any("could not be read" in c["message"] for c in by_check(report, "files.home"))
