"""Repository discovery against the forge stand-in (scanner/dev/forges.py: the real
aiohttp app on loopback, in GitHub's and GitLab's documented shapes): pages, ETags and
304s, rate limits (primary, secondary with and without Retry-After, GitLab's 429), a
502 then success, a failure that keeps the last known list, the filters, renames,
deletions and archiving, and the ``[[org]]`` configuration's errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run
from standin import FakeTime

from scanner.dev.forges import Fault, Forge, Served, create_app, github_repo, gitlab_project
from scanner.errors import ConfigError
from scanner.sweep.config import OrgSource, parse
from scanner.sweep.discovery import OrgResult, discover


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(now=1_772_000_000.0)


@pytest.fixture
def forge(clock: FakeTime) -> Iterator[tuple[Forge, str]]:
    state = Forge(clock=clock.clock)
    served = Served(create_app(state))
    try:
        yield state, served.url
    finally:
        served.close()


def org(url: str, forge: str = "github", account: str = "acme", **kw: Any) -> OrgSource:
    api = f"{url}/github" if forge == "github" else f"{url}/gitlab/api/v4"
    return OrgSource(forge=forge, account=account, api_url=api, **kw)


def once(source: OrgSource, cache: Path, clock: FakeTime, **kw: Any) -> OrgResult:
    return discover([source], cache, sleep=clock.sleep, clock=clock.clock, environ={},
                    **kw)[0]


def gh_repos(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [github_repo(i, f"acme/svc-{i}", f"file:///srv/git/svc-{i}.git")
            for i in range(start, start + n)]


def names(result: OrgResult) -> set[str]:
    return {r.name.rsplit("/", 1)[1] for r in result.repos}


def test_github_pages_then_etags_cost_no_quota(forge: tuple[Forge, str], tmp_path: Path,
                                               clock: FakeTime) -> None:
    state, url = forge
    state.github["acme"] = gh_repos(250)
    first = once(org(url), tmp_path, clock)
    assert first.listed == 250 and len(first.repos) == 250 and not first.errors
    assert [(c.query.get("per_page"), c.query.get("type"), c.query.get("page"), c.status)
            for c in state.calls] == [("100", "all", None, 200), ("100", "all", "2", 200),
                                      ("100", "all", "3", 200)]
    assert first.stats["requests"] == 3 and first.stats["rate_remaining"] == 4997

    state.calls.clear()
    again = once(org(url), tmp_path, clock)  # nothing changed: three 304s, no quota
    assert [c.status for c in state.calls] == [304, 304, 304]
    assert all(c.if_none_match for c in state.calls)
    assert state.remaining == 4997 and again.stats["not_modified"] == 3
    assert {r.ident for r in again.repos} == {r.ident for r in first.repos}
    assert not (again.new or again.renamed or again.retired)

    state.calls.clear()  # one repository added at the end: only the last page changes
    state.github["acme"] += gh_repos(1, start=251)
    third = once(org(url), tmp_path, clock)
    assert [c.status for c in state.calls] == [304, 304, 200]
    assert third.new == ["acme/svc-251"] and len(third.repos) == 251


def test_github_user_fallback(forge: tuple[Forge, str], tmp_path: Path,
                              clock: FakeTime) -> None:
    state, url = forge
    state.users["ada"] = [github_repo(7, "ada/notes", "file:///srv/notes.git")]
    result = once(org(url, account="ada"), tmp_path, clock)
    assert names(result) == {"notes"}
    assert [(c.path, c.status) for c in state.calls] == [
        ("/github/orgs/ada/repos", 404), ("/github/users/ada/repos", 200)]


def test_gitlab_keyset_pages_and_subgroups(forge: tuple[Forge, str], tmp_path: Path,
                                           clock: FakeTime) -> None:
    state, url = forge
    state.gitlab = [gitlab_project(i, f"acme/platform{'/core' * (i % 2)}/p{i}",
                                   f"file:///srv/p{i}.git") for i in range(1, 231)]
    state.gitlab.append(gitlab_project(999, "acme/other/x", "file:///srv/x.git"))
    result = once(org(url, "gitlab", "acme/platform"), tmp_path, clock)
    assert result.listed == 230 and not result.errors
    assert [c.query.get("id_after") for c in state.calls] == [None, "100", "200"]
    assert all(c.query["pagination"] == "keyset" and c.query["order_by"] == "id" and
               c.query["include_subgroups"] == "true" and c.query["per_page"] == "100"
               for c in state.calls)
    assert state.calls[0].path == "/gitlab/api/v4/groups/acme%2Fplatform/projects" or \
        state.calls[0].path == "/gitlab/api/v4/groups/acme/platform/projects"
    state.calls.clear()
    again = once(org(url, "gitlab", "acme/platform"), tmp_path, clock)
    assert [c.status for c in state.calls] == [304, 304, 304] and len(again.repos) == 230
    direct = once(org(url, "gitlab", "acme/platform", include_subgroups=False),
                  tmp_path / "direct", clock)
    assert direct.listed == 115  # the even ids: not in the subgroup


RATE_CASES = {
    "github 502 then success": ("github", [Fault(502)], [1.0]),
    "github 503 twice": ("github", [Fault(503), Fault(503)], [1.0, 2.0]),
    "github secondary limit, Retry-After": (
        "github", [Fault(403, {"Retry-After": "42"},
                         {"message": "You have exceeded a secondary rate limit."})], [42.0]),
    "github secondary limit, no header": (
        "github", [Fault(403, {}, {"message": "You have exceeded a secondary rate "
                                              "limit. Please wait a few minutes."})], [60.0]),
    "github 429 Retry-After": ("github", [Fault(429, {"Retry-After": "5"})], [5.0]),
    "github primary limit at 0": (
        "github", [Fault(403, {"x-ratelimit-remaining": "0",
                               "x-ratelimit-reset": "1772000120"},
                         {"message": "API rate limit exceeded"})], [121.0]),
    "gitlab 429 Retry-After": ("gitlab", [Fault(429, {"Retry-After": "9"})], [9.0]),
    "gitlab 429 RateLimit-Reset": (
        "gitlab", [Fault(429, {"RateLimit-Remaining": "0",
                               "RateLimit-Reset": "1772000030"})], [31.0]),
    "gitlab 502 then success": ("gitlab", [Fault(502)], [1.0]),
}


@pytest.mark.parametrize("case", RATE_CASES)
def test_rate_limits_and_server_errors_are_waited_out(
        case: str, forge: tuple[Forge, str], tmp_path: Path, clock: FakeTime) -> None:
    kind, faults, sleeps = RATE_CASES[case]
    state, url = forge
    state.github["acme"] = gh_repos(150)
    state.gitlab = [gitlab_project(i, f"acme/p{i}", f"file:///srv/p{i}.git")
                    for i in range(1, 151)]
    state.faults = list(faults)
    result = once(org(url, kind), tmp_path, clock)
    assert not result.errors and not result.stale and len(result.repos) == 150
    assert clock.sleeps == sleeps
    assert result.stats["requests"] == 2 + len(faults)


def test_primary_quota_spent_waits_for_the_reset(forge: tuple[Forge, str], tmp_path: Path,
                                                 clock: FakeTime) -> None:
    """A 200 that says remaining 0: the next page waits for the reset, not a 403."""
    state, url = forge
    state.github["acme"] = gh_repos(150)
    state.remaining, state.window = 1, 60.0
    reset = state.reset
    result = once(org(url), tmp_path, clock)
    assert clock.sleeps == [reset - 1_772_000_000.0 + 1]  # until the window's reset
    assert [c.status for c in state.calls] == [200, 200] and len(result.repos) == 150
    state.remaining, state.window = 1, 3600.0  # a reset an hour away: not waited for
    state.github["acme"] = gh_repos(250)
    late = once(org(url), tmp_path / "late", clock)
    assert late.errors[0].startswith("rate_limited") and "more than 900 s" in late.errors[0]


def test_failure_keeps_the_last_known_list(forge: tuple[Forge, str], tmp_path: Path,
                                           clock: FakeTime) -> None:
    state, url = forge
    state.github["acme"] = gh_repos(120)
    good = once(org(url), tmp_path, clock)
    state.github["acme"] = gh_repos(3)  # never seen: the API fails from now on
    state.faults = [Fault(502)] * 5
    bad = once(org(url), tmp_path, clock)
    assert bad.stale and {r.ident for r in bad.repos} == {r.ident for r in good.repos}
    assert bad.errors and bad.errors[0].startswith("http_502")
    assert "swept the last known list (120 repositories)" in bad.errors[0]
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # backoff between the five attempts
    assert not bad.retired  # a failed listing retires nothing
    state.faults = []
    back = once(org(url), tmp_path, clock)
    assert len(back.repos) == 3 and len(back.retired) == 117


def test_unreachable_api_and_unset_token(tmp_path: Path, clock: FakeTime) -> None:
    from conftest import free_port

    dead = org(f"http://127.0.0.1:{free_port()}")
    result = once(dead, tmp_path, clock)
    assert result.stale and result.errors[0].startswith("unreachable")
    assert "no list known yet" in result.errors[0] and result.repos == []
    unset = once(org("http://127.0.0.1:9", token_env="NO_SUCH_TOKEN_VAR"), tmp_path, clock)
    assert unset.errors[0].startswith("config: $NO_SUCH_TOKEN_VAR is not set")


def test_the_token_goes_to_the_api_and_a_foreign_link_is_not_followed(
        forge: tuple[Forge, str], tmp_path: Path, clock: FakeTime,
        make_token: Any) -> None:
    state, url = forge
    secret = "ghp_" + "x" * 36
    state.token = secret
    state.github["acme"] = gh_repos(5)
    denied = once(org(url), tmp_path, clock)
    assert denied.errors[0].startswith("unauthorized")
    ok = discover([org(url, token_env="GH_TOKEN")], tmp_path, sleep=clock.sleep,
                  clock=clock.clock, environ={"GH_TOKEN": secret})[0]
    assert len(ok.repos) == 5 and not ok.errors
    assert ok.repos[0].credential == ("GH_TOKEN", "x-access-token")
    for path in tmp_path.iterdir():  # the state holds no credential
        assert secret not in path.read_text(errors="replace")


FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"api-core", "api-edge", "web", "internal-tool"}),
    ({"archived": True}, {"api-core", "api-edge", "web", "internal-tool", "old"}),
    ({"forks": True}, {"api-core", "api-edge", "web", "internal-tool", "fork-of-x"}),
    ({"include": ("api-*",)}, {"api-core", "api-edge"}),
    ({"include": ("acme/api-*",), "exclude": ("*-edge",)}, {"api-core"}),
    ({"visibility": ("public",)}, {"api-core", "web"}),
    ({"visibility": ("internal",)}, {"internal-tool"}),
    ({"topics": ("payments",)}, {"api-edge"}),
    ({"topics": ("PAYMENTS", "frontend")}, {"api-edge", "web"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTERS)
@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_filters(kind: str, filters: dict[str, Any], expected: set[str],
                 forge: tuple[Forge, str], tmp_path: Path, clock: FakeTime) -> None:
    state, url = forge
    rows = [("api-core", {}), ("api-edge", {"visibility": "private",
                                            "topics": ["payments"]}),
            ("web", {"topics": ["frontend"]}), ("internal-tool", {"visibility": "internal"}),
            ("old", {"archived": True}), ("fork-of-x", {"fork": True})]
    make = github_repo if kind == "github" else gitlab_project
    items = [make(i, f"acme/{n}", f"file:///srv/{n}.git",
                  **{"visibility": "public", **kw}) for i, (n, kw) in enumerate(rows, 1)]
    state.github["acme"] = items
    state.gitlab = items
    assert names(once(org(url, kind, **filters), tmp_path, clock)) == expected


def test_rename_delete_archive(forge: tuple[Forge, str], tmp_path: Path,
                               clock: FakeTime) -> None:
    state, url = forge
    state.github["acme"] = [github_repo(1, "acme/a", "file:///srv/a.git"),
                            github_repo(2, "acme/b", "file:///srv/b.git"),
                            github_repo(3, "acme/c", "file:///srv/c.git")]
    first = once(org(url), tmp_path, clock)
    idents = {r.name: r.ident for r in first.repos}
    state.github["acme"] = [github_repo(1, "acme/a2", "file:///srv/a2.git"),
                            github_repo(3, "acme/c", "file:///srv/c.git", archived=True)]
    after = once(org(url), tmp_path, clock)
    assert after.renamed == [("acme/a", "acme/a2")]
    assert after.repos[0].ident == idents[first.repos[0].name]  # the same mirror
    assert after.repos[0].name.endswith("/acme/a2")
    assert sorted(after.retired) == [("acme/b", "deleted or moved away"),
                                     ("acme/c", "archived")]
    quiet = once(org(url), tmp_path, clock)  # said once
    assert not (quiet.renamed or quiet.retired or quiet.new)
    state.github["acme"].append(github_repo(2, "acme/b", "file:///srv/b.git"))
    back = once(org(url), tmp_path, clock)
    assert back.new == ["acme/b"] and len(back.repos) == 2


BAD_CONFIGS = [
    ('github = "acme"\nfrobnicate = 1', "unknown key org[1].frobnicate"),
    ('github = "acme"\ngitlab = "acme"', "exactly one of github"),
    ('api_url = "https://x"', "exactly one of github"),
    ('github = "acme"\nvisibility = ["secret"]', "org[1].visibility must list"),
    ('github = "acme"\narchived = "no"', "org[1].archived must be true or false"),
    ('github = "acme"\ntoken_env = "ghp_abc def"', "org[1].token_env must name"),
    ('github = "acme"\napi_url = "http://ghe.example.com/api/v3"', "must be an https://"),
    ('github = "acme"\napi_url = "https://u:p@ghe.example.com/api/v3"', "must not hold"),
    ('github = "acme"\ninclude_subgroups = true', "for gitlab groups only"),
    ('github = "../etc"', "org[1].github is not a github"),
    ('gitlab = "acme//x y"', "org[1].gitlab is not a gitlab group path"),
]


@pytest.mark.parametrize(("field", "form"), [
    ("github", "{t}"), ("github", "acme-{t}"), ("gitlab", "acme/{t}"), ("gitlab", "{t}/x"),
    ("github", "{t_zw}"), ("token_env", "{t}"), ("token_env", "X_{t}"),
])
def test_org_config_holding_a_token_is_refused_unquoted(field: str, form: str, tmp_path: Path,
                                                        make_token: Any) -> None:
    """A token pasted as the organisation, the group or the variable's name is refused
    in one line that never shows it (it was printed whole in every row and JSON line,
    and the account went to the forge's API in the URL)."""
    token = make_token()
    value = form.format(t=token, t_zw=token[:15] + "\u200b" + token[15:])
    table = f'{field} = "{value}"' if field != "token_env" else \
        f'github = "acme"\ntoken_env = "{value}"'
    path = tmp_path / "sweep.toml"
    path.write_text(f'[settings]\ncache = "c"\n[[org]]\n{table}\n')
    for args in (["sweep", str(path)], ["sweep", str(path), "--format", "json"]):
        proc = run(args, cwd=tmp_path, env={"X": "1"})
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert [line for line in err.splitlines() if line] == [err.strip()]
        assert f"org[1].{field} holds a token" in err
        assert token not in err + proc.stdout.decode()
        assert token[15:] not in err
    assert not (tmp_path / "c").exists()  # refused before anything is swept or fetched


@pytest.mark.parametrize(("table", "message"), BAD_CONFIGS)
def test_org_config_errors(table: str, message: str, tmp_path: Path) -> None:
    text = f"[[org]]\n{table}\n"
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(text, str(tmp_path / "sweep.toml"))
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    proc = run(["sweep", str(path)], cwd=tmp_path)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_org_config_defaults_and_values(tmp_path: Path) -> None:
    conf = parse('[[org]]\ngithub = "acme"\n[[org]]\ngitlab = "acme/platform"\n'
                 'api_url = "https://gitlab.example.com/api/v4/"\ntopics = ["x"]\n'
                 'visibility = ["private"]\ntoken_env = "GITLAB_TOKEN"\n'
                 'include_subgroups = false\n', str(tmp_path / "s.toml"))
    gh, gl = conf.orgs
    assert (gh.api_url, gh.archived, gh.forks, gh.visibility) == (
        "https://api.github.com", False, False, ("public", "private", "internal"))
    assert (gl.api_url, gl.topics, gl.visibility, gl.token_env, gl.include_subgroups) == (
        "https://gitlab.example.com/api/v4", ("x",), ("private",), "GITLAB_TOKEN", False)
