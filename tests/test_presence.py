"""Presence checks (issue 19): after a sweep, is an open incident's token still at the
tip of its repository's default branch, and where, or which commit removed it?

Through the installed CLI on real repositories in temp folders (a work tree pushing to
a bare "server" repository, swept by URL), against a real store on both backends; the
JSON API through a real aiohttp server on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_no_leak, run
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture

from scanner.incidents.models import TriageError
from scanner.incidents.store import Store
from scanner.incidents.store.presence import Presence
from scanner.rules import load as load_rules
from scanner.sweep.mirrors import cache_dir_name
from scanner.sweep.presence import Checked, check_presence

REPO = "acme/api"


def _config(tmp_path: Path, origin: Origin, db: str, name: str = REPO,
            extra: str = "") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text('[settings]\ncache = "cache"\n'
                    f'[[repo]]\nurl = "{origin.url}"\nname = "{name}"\n{extra}\n')
    return path


def _sweep(config: Path, tmp_path: Path, db: str) -> dict[str, Any]:
    proc = run(["sweep", str(config), "--db", db, "--format", "json"], cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.err
    assert "Traceback" not in proc.err
    report: dict[str, Any] = json.loads(proc.out)
    return report


def _show(db: str, ident: str, tmp_path: Path) -> str:
    proc = run(["incidents", "show", ident, "--db", db], cwd=tmp_path)
    assert proc.returncode == 0, proc.err
    out: str = proc.out
    return out


def _incident_id(db: str, token: str) -> int:
    with Store.open(db) as store:
        found = store.get_incident(sha(token)[:16])
        assert found is not None
        return int(found["id"])


def _presence(db: str, token: str) -> list[dict[str, Any]]:
    with Store.open(db) as store:
        found = store.get_incident(sha(token)[:16])
        assert found is not None
        rows: list[dict[str, Any]] = found["presence"]
        return rows


@pytest.fixture
def db(store_url: str, tmp_path: Path) -> str:
    return store_url


# -- still present, then removed --------------------------------------------------------


@pytest.mark.parametrize("encode", [
    pytest.param(lambda t: f"TOKEN={t}\n", id="plain"),
    pytest.param(lambda t: f"TOKEN={base64.b64encode(t.encode()).decode()}\n", id="base64"),
])
def test_still_present_then_removed_in_a_commit(tmp_path: Path, db: str,
                                                make_token: Callable[[], str],
                                                encode: Callable[[str], str]) -> None:
    token = make_token()
    app = Origin(tmp_path, "api")
    app.commit("add config", **{"config__.env": encode(token), "README": "hi\n"})
    app.commit("docs", **{"README": "hello\n"})
    app.push()
    config = _config(tmp_path, app, db)

    first = _sweep(config, tmp_path, db)
    row = next(s for s in first["sources"] if s["name"] == REPO)
    assert row["presence"]["present"] == 1, row
    ident = str(_incident_id(db, token))
    shown = _show(db, ident, tmp_path)
    assert f"still present in {REPO} at main:config/.env" in shown
    assert_no_leak(shown)

    # Nothing moved: no check runs (the row already names this tip), nothing changes.
    before = _presence(db, token)
    again = _sweep(config, tmp_path, db)
    assert "presence" not in next(s for s in again["sources"] if s["name"] == REPO)
    assert _presence(db, token) == before

    # A commit removes it (and an unrelated one follows): the next sweep names it.
    removing = app.commit("remove the token", **{"config__.env": "TOKEN=\n"})
    app.commit("later", **{"src__x.py": "x = 1\n"})
    app.push()
    third = _sweep(config, tmp_path, db)
    assert next(s for s in third["sources"] if s["name"] == REPO)["presence"]["removed"] == 1
    date = app.work.git("log", "-1", "--format=%aI", removing)
    shown = _show(db, ident, tmp_path)
    assert f"removed in {removing[:12]} on {date}" in shown, shown
    [presence] = _presence(db, token)
    assert (presence["present"], presence["removed_in"], presence["removed_at"]) == (
        False, removing, date)
    kinds = [line for line in shown.splitlines() if "presence" in line]
    assert len(kinds) == 2  # two events: present, then removed


def test_a_token_in_several_paths_and_one_removed_later(tmp_path: Path, db: str,
                                                        make_token: Callable[[], str]) -> None:
    """Removed from one of two files: still present (at the other); removed from both:
    the commit that removed the last copy."""
    token = make_token()
    app = Origin(tmp_path, "api")
    app.commit("two copies", **{"a.env": f"T={token}\n", "deploy__b.yaml": f"t: {token}\n"})
    app.push()
    config = _config(tmp_path, app, db)
    _sweep(config, tmp_path, db)
    [row] = _presence(db, token)
    assert row["present"] and row["paths"] == ["a.env", "deploy/b.yaml"]
    assert "(and 1 more path(s))" in row["summary"]

    app.commit("drop one", **{"a.env": "T=\n"})
    app.push()
    _sweep(config, tmp_path, db)
    [row] = _presence(db, token)
    assert row["present"] and row["paths"] == ["deploy/b.yaml"]
    assert row["summary"] == f"still present in {REPO} at main:deploy/b.yaml"

    app.work.git("rm", "-q", "deploy/b.yaml")
    last = app.commit("drop the other")
    app.push()
    _sweep(config, tmp_path, db)
    [row] = _presence(db, token)
    assert not row["present"] and row["removed_in"] == last


def test_removed_before_the_first_check_found_in_history(tmp_path: Path, db: str,
                                                         make_token: Callable[[], str]) -> None:
    """The first sweep finds the token in history but not at the tip: the removing commit
    is found by walking back, even past merges (first-parent) and later commits."""
    token = make_token()
    app = Origin(tmp_path, "api")
    app.commit("add", **{"settings.py": f'KEY = "{token}"\n'})
    removing = app.commit("remove", **{"settings.py": "KEY = None\n"})
    app.work.git("checkout", "-q", "-b", "feature")
    app.commit("feature work", **{"f.txt": "f\n"})
    app.work.git("checkout", "-q", "main")
    app.commit("main work", **{"m.txt": "m\n"})
    app.work.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    for n in range(5):
        app.commit(f"more {n}", **{"n.txt": str(n)})
    app.push("main", "feature")
    _sweep(_config(tmp_path, app, db), tmp_path, db)
    [row] = _presence(db, token)
    assert not row["present"] and row["removed_in"] == removing, row


def test_a_token_only_on_another_branch_was_never_on_main(tmp_path: Path, db: str,
                                                           make_token: Callable[[], str]
                                                           ) -> None:
    token = make_token()
    app = Origin(tmp_path, "api")
    app.commit("init", **{"README": "hi\n"})
    app.work.git("checkout", "-q", "-b", "wip")
    app.commit("wip", **{"wip.env": f"T={token}\n"})
    app.push("main", "wip")
    _sweep(_config(tmp_path, app, db), tmp_path, db)
    [row] = _presence(db, token)
    assert row["present"] is False and row["removed_in"] is None
    assert row["summary"] == f"not present in {REPO} at main: never on main (only on other " \
                             "branches)"


def test_the_default_branch_is_the_origins_head(tmp_path: Path, db: str,
                                                make_token: Callable[[], str]) -> None:
    """A repository whose default branch is not main: its HEAD (ls-remote --symref) is
    the branch checked, not the mirror's own init default."""
    token = make_token()
    app = Origin(tmp_path, "api")
    app.work.git("checkout", "-q", "-b", "trunk")
    app.commit("init", **{"conf.ini": f"token = {token}\n"})
    app.push("trunk")
    app.bare.git("symbolic-ref", "HEAD", "refs/heads/trunk")
    _sweep(_config(tmp_path, app, db), tmp_path, db)
    [row] = _presence(db, token)
    assert row["summary"] == f"still present in {REPO} at trunk:conf.ini"


class _Ticking:
    """A clock that moves 10 s each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


@pytest.mark.parametrize("limits", [
    pytest.param(lambda: {"max_commits": 2}, id="commits"),
    pytest.param(lambda: {"budget": 15.0, "clock": _Ticking()}, id="time"),
])
def test_the_search_is_bounded_and_says_so(tmp_path: Path, store_url: str,
                                           make_token: Callable[[], str],
                                           limits: Callable[[], dict[str, Any]]) -> None:
    """Past its commit limit or its time, the search gives up and the row says what it
    knows: absent from the tip, the removing commit not found."""
    token = make_token()
    app = Origin(tmp_path, "api")
    app.commit("add", **{"k.env": f"T={token}\n"})
    app.commit("remove", **{"k.env": "T=\n"})
    for n in range(4):
        app.commit(f"c{n}", **{"n.txt": str(n)})
    app.push()
    config = _config(tmp_path, app, store_url)
    run(["sweep", str(config), "--db", store_url], cwd=tmp_path)
    ident = _incident_id(store_url, token)
    mirror = tmp_path / "cache" / cache_dir_name(REPO)
    with Store.open(store_url) as store:
        # Forget the answer, then check again with a limit of 2 commits.
        store.set_presence(ident, Presence(REPO, None, "main", None, detail="reset"))
        tip = app.work.head()
        checked = check_presence(store, REPO, mirror, load_rules(), branch="refs/heads/main",
                                 tips={"refs/heads/main": tip}, **limits())
        assert isinstance(checked, Checked) and checked.unknown == 1
        [row] = store.get_incident(ident)["presence"]  # type: ignore[index]
    assert row["present"] is False and row["removed_in"] is None
    assert "not found within" in row["summary"]


# -- resolving while present, the API, triaged incidents --------------------------------


def _present_incident(tmp_path: Path, db: str, token: str) -> tuple[Origin, Path, int]:
    app = Origin(tmp_path, "api")
    app.commit("add config", **{"config__.env": f"TOKEN={token}\n"})
    app.push()
    config = _config(tmp_path, app, db)
    _sweep(config, tmp_path, db)
    return app, config, _incident_id(db, token)


def test_resolving_while_present_is_refused_unless_forced(tmp_path: Path, db: str,
                                                          make_token: Callable[[], str]
                                                          ) -> None:
    token = make_token()
    app, config, ident = _present_incident(tmp_path, db, token)
    with Store.open(db) as store:
        with pytest.raises(TriageError) as refused:
            store.triage(ident, "resolve", actor="alice")
        assert refused.value.reason == "still_present"
        message = str(refused.value)
        assert f"still present in {REPO} at main:config/.env" in message
        assert "--force" in message and "\n" not in message
        assert store.get_incident(ident)["triage"] == "open"  # type: ignore[index]
        # Other actions are not affected; a forced resolve goes through.
        assert store.triage(ident, "ack", actor="alice")["triage"] == "acknowledged"
        assert store.triage(ident, "resolve", actor="alice", force=True)["triage"] == \
            "resolved"

    # Once a sweep saw it removed, a resolve needs no force.
    other = make_token()
    app.commit("another", **{"b.env": f"B={other}\n"})
    app.push()
    _sweep(config, tmp_path, db)
    app.commit("remove it", **{"b.env": "B=\n"})
    app.push()
    _sweep(config, tmp_path, db)
    with Store.open(db) as store:
        second = _incident_id(db, other)
        assert store.triage(second, "resolve", actor="bob")["triage"] == "resolved"


@pytest.mark.parametrize("action,kw", [("resolve", {"force": True}),
                                       ("ignore", {"reason": "test fixture"}),
                                       ("false_positive", {"reason": "not ours"})])
def test_a_closed_incident_is_no_longer_checked(tmp_path: Path, db: str,
                                                make_token: Callable[[], str], action: str,
                                                kw: dict[str, Any]) -> None:
    token = make_token()
    app, config, ident = _present_incident(tmp_path, db, token)
    with Store.open(db) as store:
        store.triage(ident, action, actor="alice", **kw)
    before = _presence(db, token)
    app.commit("remove", **{"config__.env": "TOKEN=\n"})
    app.push()
    report = _sweep(config, tmp_path, db)
    assert "presence" not in next(s for s in report["sources"] if s["name"] == REPO)
    assert _presence(db, token) == before


def test_show_json_carries_presence(tmp_path: Path, make_token: Callable[[], str]) -> None:
    db = str(tmp_path / "incidents.db")
    token = make_token()
    _, _, ident = _present_incident(tmp_path, db, token)
    proc = run(["incidents", "show", str(ident), "--db", db, "--format", "json"],
               cwd=tmp_path)
    [row] = json.loads(proc.stdout)["presence"]
    assert (row["repository"], row["present"], row["ref"], row["path"], row["paths"]) == (
        REPO, True, "main", "config/.env", ["config/.env"])
    assert row["summary"] == f"still present in {REPO} at main:config/.env"


async def test_the_api_shows_presence_and_resolve_asks_for_force(
        aiohttp_client: Any, tmp_path: Path, db: str, make_token: Callable[[], str]) -> None:
    from receiver import test_config as receiver_config

    from scanner.server.app import create_app

    token = make_token()
    _, _, ident = _present_incident(tmp_path, db, token)
    config = receiver_config("http://127.0.0.1:9/keys", keyed={},
                             triager_token="triager-token-for-tests-4567")
    client = await aiohttp_client(create_app(config, db_path=db,
                                             cendis_api_url="http://127.0.0.1:9",
                                             credential=None))
    reader = {"Authorization": "Bearer reader-token-for-tests-0123"}
    triager = {"Authorization": "Bearer triager-token-for-tests-4567",
               "Content-Type": "application/json"}
    answer = await client.get(f"/incidents/{sha(token)[:16]}", headers=reader)
    assert answer.status == 200
    body = await answer.json()
    [row] = body["presence"]
    assert row["present"] is True and row["path"] == "config/.env"
    assert row["summary"] == f"still present in {REPO} at main:config/.env"

    refused = await client.post(f"/incidents/{ident}/actions", headers=triager,
                                data=json.dumps({"action": "resolve", "by": "alice"}))
    assert refused.status == 409
    error = await refused.json()
    assert error["error"] == "still_present" and "force" in json.dumps(error)
    with Store.open(db) as store:
        assert store.get_incident(ident)["triage"] == "open"  # type: ignore[index]
    forced = await client.post(f"/incidents/{ident}/actions", headers=triager,
                               data=json.dumps({"action": "resolve", "by": "alice",
                                                "force": True}))
    assert forced.status == 200 and (await forced.json())["triage"] == "resolved"
    assert_no_leak(json.dumps(body), json.dumps(error))


def test_resolve_on_the_cli_asks_for_force(tmp_path: Path, db: str,
                                           make_token: Callable[[], str]) -> None:
    token = make_token()
    _, _, ident = _present_incident(tmp_path, db, token)
    refused = run(["incidents", "resolve", str(ident), "--db", db, "--by", "alice"],
                  cwd=tmp_path)
    assert refused.returncode == 2 and refused.out == ""
    [line] = refused.err.splitlines()
    assert f"still present in {REPO} at main:config/.env" in line and "--force" in line
    assert "Traceback" not in refused.err
    done = run(["incidents", "resolve", str(ident), "--db", db, "--by", "alice", "--force"],
               cwd=tmp_path)
    assert done.returncode == 0, done.err
    assert "open -> resolved, by alice" in done.out
    assert_no_leak(refused.out, refused.err, done.out, done.err)


@pytest.mark.parametrize("name", [
    pytest.param("{token}.env", id="token-in-name"),
    pytest.param("a\x1b[31mred.env", id="escape-in-name"),
    pytest.param("line\nbreak.env", id="newline-in-name"),
])
def test_hostile_path_names_are_shown_scrubbed(tmp_path: Path, db: str,
                                              make_token: Callable[[], str],
                                              name: str) -> None:
    token = make_token()
    app = Origin(tmp_path, "api")
    app.work.write(name.format(token=make_token()), f"T={token}\n")
    app.commit("add")
    app.push()
    _sweep(_config(tmp_path, app, db), tmp_path, db)
    [row] = _presence(db, token)
    assert row["present"] is True
    shown = _show(db, str(_incident_id(db, token)), tmp_path)
    line = next(ln for ln in shown.splitlines() if "still present" in ln)
    assert "\x1b" not in line and "\n" not in row["summary"]
    assert_no_leak(shown, json.dumps(row))
    assert_no_leak((tmp_path / "cache" / cache_dir_name(REPO) /
                    "cendis-scan-presence.json").read_text())


def test_copy_keeps_presence(tmp_path: Path, make_token: Callable[[], str]) -> None:
    from scanner.incidents.store.copy import copy_trail

    db = str(tmp_path / "incidents.db")
    token = make_token()
    _present_incident(tmp_path, db, token)
    with Store.open(db) as source, Store.open(tmp_path / "copy.db") as destination:
        assert copy_trail(source, destination)["presence"] == 1
        assert copy_trail(source, destination)["presence"] == 0  # idempotent
        copied = destination.get_incident(sha(token)[:16])
        assert copied is not None and copied["presence"][0]["path"] == "config/.env"
