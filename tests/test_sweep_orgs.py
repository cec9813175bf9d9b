"""Sweeps of discovered repositories: the ``[[org]]`` listed by the forge stand-in (real
HTTP on loopback), each repository a real bare repository (file:// clone URLs), swept
by the installed CLI. A rename keeps the mirror and its history, a deletion and an
archived repository are retired with their mirror kept, a failed listing sweeps the last
known list; the clone credential goes through git's credential protocol and is never
written or printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_no_leak, run
from standin import FakeTime
from sweeptools import Origin, isolated_git, sha, sweep  # noqa: F401 - the autouse fixture

from scanner.dev.forges import Fault, Forge, Served, create_app, github_repo, gitlab_project
from scanner.sweep.config import load
from scanner.sweep.discovery import clone_env


@pytest.fixture
def forge() -> Iterator[tuple[Forge, str]]:
    state = Forge()
    served = Served(create_app(state))
    try:
        yield state, served.url
    finally:
        served.close()


def org_config(tmp_path: Path, url: str, kind: str = "github", extra: str = "") -> Path:
    api = f"{url}/github" if kind == "github" else f"{url}/gitlab/api/v4"
    account = "acme" if kind == "github" else "acme/platform"
    path = tmp_path / "sweep.toml"
    path.write_text(f'[settings]\ndatabase = "incidents.db"\ncache = "cache"\n'
                    f'concurrency = 2\n[[org]]\n{kind} = "{account}"\napi_url = "{api}"\n'
                    f'{extra}\n')
    return path


def cli_sweep(config: Path, fmt: str = "json", **env: str) -> tuple[int, Any, str]:
    proc = run(["sweep", str(config), "--format", fmt],
               env={**os.environ, **env})
    assert_no_leak(proc.stdout, proc.stderr)
    out = proc.stdout.decode()
    assert out, proc.stderr.decode()[-2000:]
    return proc.returncode, json.loads(out) if fmt == "json" else out, proc.stderr.decode()


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["sources"]}


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_discovered_repositories_are_swept_renamed_and_retired(
        kind: str, tmp_path: Path, forge: tuple[Forge, str],
        make_token: Callable[[], str]) -> None:
    state, url = forge
    t1, t2 = make_token(), make_token()
    origins = {}
    for name in ("app", "lib", "tool"):
        origins[name] = Origin(tmp_path, name)
        origins[name].commit("init", **{"README": f"{name}\n"})
    origins["app"].commit("leak", **{"config.env": f"TOKEN={t1}\n"})
    for origin in origins.values():
        origin.push()
    make = github_repo if kind == "github" else gitlab_project
    prefix = "acme" if kind == "github" else "acme/platform"

    def listing(names: dict[str, tuple[int, str]], **kw: dict[str, Any]) -> None:
        items = [make(ident, f"{prefix}/{name}", origin_url, **kw.get(name, {}))
                 for name, (ident, origin_url) in names.items()]
        if kind == "github":
            state.github["acme"] = items
        else:
            state.gitlab = items

    ids = {"app": (11, origins["app"].url), "lib": (12, origins["lib"].url),
           "tool": (13, origins["tool"].url)}
    listing(ids)
    config = org_config(tmp_path, url, kind)
    status, first, _ = cli_sweep(config)
    assert status == 1, first
    by = rows(first)
    org_row = by[f"{kind}:{prefix}"]
    assert org_row["kind"] == "org" and org_row["discovery"]["repositories"] == 3
    app = next(n for n in by if n.endswith(f"{prefix}/app"))
    assert by[app]["first"] and by[app]["new_findings"] == 1
    assert [f["secret_sha256"] for f in by[app]["findings"]] == [sha(t1)]
    mirrors = sorted(p.name for p in (tmp_path / "cache").glob("*.git"))
    assert len(mirrors) == 3

    # Rename app (same id, new name and URL) with a new commit; delete lib; archive tool.
    moved = tmp_path / "server" / "app-renamed.git"
    shutil.move(str(origins["app"].bare.path), moved)
    origins["app"].work.git("remote", "set-url", "origin", str(moved))
    origins["app"].commit("more", **{"src.py": f'KEY = "{t2}"\n'})
    origins["app"].push()
    listing({"app-renamed": (11, moved.as_uri()), "tool": ids["tool"]},
            tool={"archived": True})
    status, text, _ = cli_sweep(config, "text")
    assert status == 1
    assert f"renamed {prefix}/app -> {prefix}/app-renamed (history kept)" in text
    assert f"retired {prefix}/lib (deleted or moved away; its state is kept)" in text
    assert f"retired {prefix}/tool (archived; its state is kept)" in text
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.git")) == mirrors  # kept

    status, again, _ = cli_sweep(config)  # nothing new; said once
    assert status == 0
    d = rows(again)[f"{kind}:{prefix}"]["discovery"]
    assert (d["repositories"], d["renamed"], d["retired"]) == (1, [], [])
    renamed = next(r for r in again["sources"] if r["name"].endswith("app-renamed"))
    assert renamed["commits"] == 0 and not renamed["first"]  # the history was kept

    # The rename's sweep scanned only the new commit, into the same mirror.
    from scanner.incidents.store import Store

    with Store.open(tmp_path / "incidents.db") as store:
        assert {i["sha256"] for i in store.list_incidents()} == {sha(t1), sha(t2)}


def test_a_failed_listing_sweeps_the_last_known_list(
        tmp_path: Path, forge: tuple[Forge, str], make_token: Callable[[], str]) -> None:
    state, url = forge
    origin = Origin(tmp_path, "svc")
    origin.commit("init", **{"README": "x\n"})
    origin.push()
    state.github["acme"] = [github_repo(5, "acme/svc", origin.url)]
    config = org_config(tmp_path, url)
    assert sweep(config).exit_status == 0
    token = make_token()
    origin.commit("leak", **{"k.env": f"K={token}\n"})
    origin.push()
    state.faults = [Fault(502)] * 5
    fake = FakeTime()
    report = sweep(config, sleep=fake.sleep, clock=fake.clock)
    org_row = next(s for s in report.sources if s.kind == "org")
    assert org_row.errors[0].startswith("http_502") and "last known list (1" in \
        org_row.errors[0]
    assert {f.secret_sha256 for s in report.sources for f in s.findings} == {sha(token)}
    assert report.exit_status == 2  # the discovery failed: said in the status too
    assert fake.sleeps == [1.0, 2.0, 4.0, 8.0]


def test_no_fetch_uses_the_saved_list(tmp_path: Path, forge: tuple[Forge, str]) -> None:
    state, url = forge
    origin = Origin(tmp_path, "svc")
    origin.commit("init", **{"README": "x\n"})
    origin.push()
    state.github["acme"] = [github_repo(5, "acme/svc", origin.url)]
    config = org_config(tmp_path, url)
    assert sweep(config).exit_status == 0
    calls = len(state.calls)
    report = sweep(config, fetch=False)
    assert len(state.calls) == calls and report.exit_status == 0
    assert [s.kind for s in report.sources] == ["org", "repo"]


def _helper_answer(env: dict[str, str], host: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "credential", "fill"], env=env, capture_output=True,
                          input=f"protocol=https\nhost={host}\n\n".encode(), timeout=30)


def test_clone_credential_through_gits_credential_protocol(tmp_path: Path) -> None:
    """git asks the helper (the credential protocol's ``get``) and gets the variable's
    value; another host gets nothing; the user's own helper is not asked first; the
    value is in no argument, no config file."""
    secret = "ghp_" + "Q" * 36
    home = Path(os.environ["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / ".git-credentials").write_text("https://u:other@git.example.com\n")
    subprocess.run(["git", "config", "--global", "credential.helper", "store"], check=True)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "MY_FORGE_TOKEN": secret,
           **clone_env("https://git.example.com/acme/api.git",
                       ("MY_FORGE_TOKEN", "x-access-token"), os.environ)}
    assert all(secret not in v for k, v in env.items() if k != "MY_FORGE_TOKEN")
    answer = _helper_answer(env, "git.example.com")
    assert answer.returncode == 0, answer.stderr
    assert b"username=x-access-token\n" in answer.stdout
    assert f"password={secret}\n".encode() in answer.stdout
    other = _helper_answer(env, "elsewhere.example.com")
    assert secret.encode() not in other.stdout + other.stderr
    assert clone_env("file:///srv/x.git", ("MY_FORGE_TOKEN", "u"), os.environ) == {}
    assert clone_env("http://example.com/x.git", ("MY_FORGE_TOKEN", "u"), os.environ) == {}


def test_the_token_is_never_written_or_printed(tmp_path: Path, forge: tuple[Forge, str]
                                               ) -> None:
    state, url = forge
    secret = "glpat-" + "Z" * 20
    state.token = secret
    origin = Origin(tmp_path, "svc")
    origin.commit("init", **{"README": "x\n"})
    origin.push()
    state.gitlab = [gitlab_project(5, "acme/platform/svc", origin.url)]
    config = org_config(tmp_path, url, "gitlab", 'token_env = "GL_TOKEN"')
    assert load(config).orgs[0].token_env == "GL_TOKEN"
    status, report, err = cli_sweep(config, GL_TOKEN=secret)
    assert status == 0, (report, err)
    assert state.calls[0].authorization == "set"
    status, unset, err = cli_sweep(config)  # unset: said, and the saved list is swept
    assert status == 2
    assert rows(unset)["gitlab:acme/platform"]["errors"][0].startswith(
        "config: $GL_TOKEN is not set")
    assert any(r["name"].endswith("acme/platform/svc") for r in unset["sources"])
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
