"""Sweeps of real repositories (bare ones served as file:// URLs): the first sweep, the
increments after new commits, a force-push, a deleted branch, an unreachable repository
among good ones, branch patterns, and shards; the state kept as refs in each mirror."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import assert_no_leak, run
from sweeptools import Origin, by_name, hashes, isolated_git, sha, sweep, write_config  # noqa: F401 - the autouse fixture

from scanner.cli.sweep import parse_every
from scanner.errors import ConfigError
from scanner.incidents.store import Store
from scanner.sweep.config import load, parse_shard
from scanner.sweep.mirrors import Mirror, cache_dir_name


def state(tmp_path: Path, name: str) -> dict[str, str]:
    mirror = Mirror(tmp_path / "cache" / cache_dir_name(name), "")
    return mirror.plan().scanned


def test_first_sweep_then_only_what_is_new(tmp_path: Path,
                                           make_token: Callable[[], str]) -> None:
    old, new = make_token(), make_token()
    app = Origin(tmp_path, "app")
    app.commit("add config", **{"config.env": f"TOKEN={old}\n"})
    app.commit("more", **{"README": "hello\n"})
    app.push()
    config = write_config(tmp_path, [app.url])

    first = sweep(config)
    row = by_name(first)["app"]
    assert row.first and row.commits == 2 and not row.errors  # type: ignore[attr-defined]
    assert hashes(first) == {sha(old)}
    finding = row.findings[0]  # type: ignore[attr-defined]
    assert (finding.path, finding.line, finding.author_email) == ("config.env", 1,
                                                                  "ada@example.com")
    assert first.exit_status == 1
    assert state(tmp_path, "app") == {"refs/cendis-scan/scanned/heads/main": app.work.head()}

    again = sweep(config)  # nothing pushed: nothing scanned, nothing reported
    assert again.new_findings == 0 and by_name(again)["app"].commits == 0  # type: ignore
    assert again.exit_status == 0

    # A new commit that keeps the old token in its file and adds a new one elsewhere.
    app.commit("touch config", **{"config.env": f"TOKEN={old}\nDEBUG=1\n"})
    tip = app.commit("add key", **{"src__key.py": f'KEY = "{new}"\n'})
    app.push()
    third = sweep(config)
    assert by_name(third)["app"].commits == 2  # type: ignore[attr-defined]
    assert hashes(third) == {sha(new)}
    assert state(tmp_path, "app") == {"refs/cendis-scan/scanned/heads/main": tip}

    with Store.open(tmp_path / "incidents.db") as store:
        incidents = store.list_incidents()
        assert {i["sha256"] for i in incidents} == {sha(old), sha(new)}
        shown = store.get_incident(sha(new))
        assert shown is not None
        sighting = shown["sightings"][0]
        assert sighting["source"] == "scan:app" and sighting["commit"] == tip
        assert (sighting["path"], sighting["line"]) == ("src/key.py", 1)
        assert sighting["author"] == "Ada Lovelace <ada@example.com>"
        assert sighting["repository"] == "app" and sighting["url"] == app.url
        assert shown["status"] == "recorded"  # auto_revoke is off


def test_force_push_and_deleted_branch(tmp_path: Path, make_token: Callable[[], str]) -> None:
    t1, t2, t3 = make_token(), make_token(), make_token()
    app = Origin(tmp_path, "app")
    base = app.commit("base", **{"a.txt": "a\n"})
    app.commit("leak", **{"b.txt": f"{t1}\n"})
    app.push()
    app.work.git("checkout", "-q", "-b", "feature")
    feature_tip = app.commit("feature work", **{"c.txt": f"{t2}\n"})
    app.push("feature")
    config = write_config(tmp_path, [app.url])
    assert hashes(sweep(config)) == {sha(t1), sha(t2)}

    # Rewrite main: drop "leak", and commit the same token again plus a new one.
    app.work.git("checkout", "-q", "main")
    app.work.git("reset", "-q", "--hard", base)
    app.commit("rewritten", **{"b.txt": f"{t1}\n", "d.txt": f"{t3}\n"})
    app.push(force=True)
    # Delete the branch on the server.
    app.work.git("push", "-q", "origin", "--delete", "feature")
    report = sweep(config)
    assert hashes(report) == {sha(t3)}  # t1 was reported already; t2 is gone, not new
    scanned = state(tmp_path, "app")
    assert scanned["refs/cendis-scan/scanned/heads/main"] == app.work.head()
    assert "refs/cendis-scan/scanned/heads/feature" not in scanned
    # The deleted branch's commits stay known: pushed again, they are not rescanned.
    assert scanned[f"refs/cendis-scan/retired/{feature_tip}"] == feature_tip
    app.work.git("push", "-q", "origin", f"{feature_tip}:refs/heads/feature-again")
    back = sweep(config)
    assert back.new_findings == 0 and by_name(back)["app"].commits == 0  # type: ignore


def test_unreachable_repository_among_good_ones(tmp_path: Path,
                                                make_token: Callable[[], str]) -> None:
    tokens = [make_token() for _ in range(3)]
    origins = []
    for i, token in enumerate(tokens):
        origin = Origin(tmp_path, f"svc{i}")
        origin.commit("leak", **{"app.cfg": f"key={token}\n"})
        origin.push()
        origins.append(origin)
    gone = (tmp_path / "server" / "gone.git").as_uri()
    config = write_config(tmp_path, [origins[0].url, gone, origins[1].url, origins[2].url],
                          settings="concurrency = 3")
    report = sweep(config)
    rows = by_name(report)
    assert rows["gone"].errors and "git" in rows["gone"].errors[0]  # type: ignore
    assert all(not rows[f"svc{i}"].errors for i in range(3))  # type: ignore[attr-defined]
    assert hashes(report) == {sha(t) for t in tokens}
    assert report.exit_status == 2  # a source failed (findings too: 2 wins)
    assert state(tmp_path, "gone") == {}
    # The repository appears (fixed URL, same name): its first sweep is the whole history.
    late = Origin(tmp_path, "gone")
    late_token = make_token()
    late.commit("leak", **{"x": f"{late_token}\n"})
    late.push()
    report = sweep(config)
    assert hashes(report) == {sha(late_token)} and by_name(report)["gone"].first  # type: ignore
    assert report.exit_status == 1


def test_branch_patterns(tmp_path: Path, make_token: Callable[[], str]) -> None:
    on_main, on_release, on_wip = make_token(), make_token(), make_token()
    app = Origin(tmp_path, "app")
    app.commit("m", **{"m.txt": on_main})
    app.push()
    for branch, token in (("release/1.0", on_release), ("wip", on_wip)):
        app.work.git("checkout", "-q", "-b", branch, "main")
        app.commit(branch, **{f"{branch.replace('/', '_')}.txt": token})
        app.push(branch)
    config = write_config(tmp_path, [app.url], repo_extra='branches = ["main", "release/*"]')
    report = sweep(config)
    assert hashes(report) == {sha(on_main), sha(on_release)}
    assert set(state(tmp_path, "app")) == {"refs/cendis-scan/scanned/heads/main",
                                           "refs/cendis-scan/scanned/heads/release/1.0"}


def test_cli_two_shards_cover_every_repository_once(tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    urls = []
    for i in range(4):  # repo0, repo1 and repo3 hash to shard 0, repo2 to shard 1
        origin = Origin(tmp_path, f"repo{i}")
        origin.commit("c", **{"f.txt": f"{make_token()}\n" if i % 2 else "clean\n"})
        origin.push()
        urls.append(origin.url)
    config = write_config(tmp_path, urls)
    env = {"HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1"}
    proc = run(["sweep", str(config), "--shard", "0/2", "--format", "json"], cwd=tmp_path,
               env=env)
    assert_no_leak(proc.stdout, proc.stderr)
    data = json.loads(proc.stdout)
    assert data["shard"] == [0, 2]
    assert proc.returncode == (1 if data["new_findings"] else 0), proc.err
    first = {s["name"] for s in data["sources"]}
    # Shard 1 in text: the summary table names the rest, and only the rest.
    proc = run(["sweep", str(config), "--shard", "1/2"], cwd=tmp_path, env=env)
    assert_no_leak(proc.stdout, proc.stderr)
    second = {f"repo{i}" for i in range(4) if f"repo{i}" in proc.out}
    assert first | second == {f"repo{i}" for i in range(4)} and not first & second
    assert first and second  # with these names both shards get some
    found = data["new_findings"] + int(proc.out.split(" new finding(s)")[0].split()[-1])
    assert found == 2
    assert "(shard 1/2)" in proc.out and "commit (history)" in proc.out


def test_cli_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[settings]\nconcurency = 2\nauto_revoke = "yes"\n'
                   '[[repo]]\nname = "x"\nbranch = ["main"]\n[[logs]]\npaths = "a.log"\n')
    proc = run(["sweep", str(bad)])
    assert proc.returncode == 2 and proc.stdout == b""
    line = proc.err.strip()
    assert "\n" not in line and "Traceback" not in line
    for problem in ("unknown key settings.concurency", "settings.auto_revoke must be true "
                    "or false", "unknown key repo[1].branch", "repo[1].url is missing",
                    "logs[1].paths must be a list of strings"):
        assert problem in line
    good = write_config(tmp_path, [(tmp_path / "x.git").as_uri()])
    for bad_shard in ("2/2", "1", "-1/2", "a/b"):
        with pytest.raises(ConfigError, match="--shard wants K/N with 0 <= K < N"):
            parse_shard(bad_shard)
    assert load(good).repos[0].name == "x"
    for bad_every in ("soon", "15", "0s", "1x"):
        with pytest.raises(ConfigError, match="--every"):
            parse_every(bad_every)
    assert [parse_every(t) for t in ("90s", "15m", "1h30m", "1d")] == [90, 900, 5400, 86400]
    assert parse_shard("3/4") == (3, 4)


def test_every_keeps_sweeping_and_stops_cleanly_on_sigterm(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """--every: one JSON line per sweep; SIGTERM ends it with exit 0, between sweeps."""
    import os
    import signal
    import subprocess

    from conftest import CLI, keep_output

    app = Origin(tmp_path, "app")
    app.commit("leak", **{"k.txt": f"{make_token()}\n"})
    app.push()
    config = write_config(tmp_path, [app.url])
    env = {**os.environ, "HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1"}
    proc = subprocess.Popen([CLI, "sweep", str(config), "--every", "1h", "--format", "json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first sweep, then it waits for the next
        first = json.loads(line)
        assert first["new_findings"] == 1 and first["exit_status"] == 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    keep_output(line + out + err, "cli")
    assert_no_leak(line, out, err)
    assert proc.returncode == 0, err
    assert b"sweep stopped (SIGTERM)" in err and b"Traceback" not in err


def test_an_overlapping_sweep_leaves_a_busy_repository_alone(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    from scanner.sweep.mirrors import exclusive

    token = make_token()
    app = Origin(tmp_path, "app")
    app.commit("leak", **{"k.txt": f"{token}\n"})
    app.push()
    config = write_config(tmp_path, [app.url])
    lock = tmp_path / "cache" / cache_dir_name("app").replace(".git", ".lock")
    with exclusive(lock):  # a slow earlier sweep still holds it
        busy = sweep(config)
    assert busy.sources[0].errors[0].startswith("busy: another sweep")
    assert not (tmp_path / "cache" / cache_dir_name("app")).exists()  # not even fetched
    assert hashes(sweep(config)) == {sha(token)}
