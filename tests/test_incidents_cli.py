"""The commands as a user runs them: the installed CLI as a subprocess, against
``cendis-scan dev cendis-api`` started as a real server on loopback."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CLI,
    assert_no_leak,
    free_port,
    http_answers,
    keep_standin_journal,
    run,
    wait_until,
)

from scanner.cendis.client import credential_from
from scanner.dev import seed as seeds
from scanner.errors import ConfigError
from scanner.incidents.models import TokenRef
from scanner.token import generate


@dataclass(repr=False)  # a failing assertion must not print the tokens
class Api:
    url: str
    credential: str
    admin: str  # carries admin:org
    weak: str  # lacks revoke:tokens
    live: list[str]  # tokens the stand-in knows (by hash)
    unknown: str

    def env(self, credential: str | None = None, **extra: str) -> dict[str, str]:
        return {"CENDIS_API_URL": self.url, "CENDIS_TOKEN": credential or self.credential,
                **extra}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, token_registry: set[str],
        captured_dir: Path) -> Iterator[Api]:
    rng = random.Random("incidents-cli")
    made = [generate(rng) for _ in range(7)]
    token_registry.update(made)
    credential, admin, weak, *live, unknown = made
    seed = tmp_path_factory.mktemp("standin") / "seed.json"
    seed.write_text(json.dumps({
        "service": [{"token": credential, "scopes": ["revoke:tokens"],
                     "expires_at": "2099-01-01T00:00:00Z"},
                    {"token": admin, "scopes": ["revoke:tokens", "admin:org"]},
                    {"token": weak, "scopes": ["read:assets"]}],
        "tokens": [{"token": live[0], "owner": "alice", "name": "ci", "org": "acme",
                    "scopes": ["write:assets"]},
                   {"token": live[1], "owner": "carol", "org": "acme",
                    "scopes": ["admin:org"]},
                   {"token": live[2]}]}))
    port = free_port()
    log = (captured_dir / "standin-cli.log").open("wb")
    proc = subprocess.Popen([CLI, "dev", "cendis-api", "--port", str(port), "--seed",
                             str(seed)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(url + "/_calls"), "dev cendis-api", proc=proc,
                   log=captured_dir / "standin-cli.log")
        yield Api(url, credential, admin, weak, live, unknown)
        keep_standin_journal({route: json.loads(urllib.request.urlopen(
            url + route, timeout=5).read()) for route in ("/_requests", "/_calls")})
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_dev_cendis_api_starts_and_answers(api: Api, captured_dir: Path) -> None:
    request = urllib.request.Request(api.url + "/v1/whoami",
                                     headers={"Authorization": f"Bearer {api.credential}"})
    body = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert body["scopes"] == ["revoke:tokens"] and body["token"]["expires_at"].startswith(
        "2099-01-01")
    banner = (captured_dir / "standin-cli.log").read_text()
    assert f"Cendis stand-in on {api.url}: 3 token(s) known" in banner


def _parallel(*calls: tuple[list[str], dict[str, Any]]) -> list[subprocess.CompletedProcess]:
    """Independent CLI runs at once (each start costs ~0.5 s of imports)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: run(call[0], **call[1]), calls))


def test_whoami(api: Api) -> None:
    ok, admin, weak, bad = _parallel(
        (["whoami"], {"env": api.env()}),
        (["whoami", "--token", api.admin], {"env": api.env("ignored-by-the-option")}),
        (["whoami"], {"env": api.env(api.weak)}),
        (["whoami"], {"env": api.env("cendis_pat_not-a-credential")}))
    assert ok.returncode == 0, ok.err
    assert ok.out.startswith("username: cendis-scan-bot\norg: acme\nscopes: revoke:tokens\n")
    assert "expires 2099-01-01 (" in ok.out and "days left)" in ok.out and ok.err == ""
    assert admin.returncode == 0
    assert "warning: this credential carries admin:org" in admin.err
    assert "isn't human" in admin.err
    assert weak.returncode == 2
    assert weak.err.strip().endswith("lacks the scope revoke:tokens: Cendis will answer 403 "
                                     "to every revoke")
    assert bad.returncode == 2 and "(401)" in bad.err and "Regenerate" in bad.err
    assert len(bad.err.splitlines()) == 1 and "Traceback" not in bad.err
    for proc in (ok, admin, weak, bad):
        assert api.credential not in proc.out + proc.err and api.admin not in proc.err
        assert_no_leak(proc.stdout, proc.stderr)


def test_credential_lookup_order() -> None:
    assert credential_from("from-option", {"CENDIS_TOKEN": "from-env"}) == "from-option"
    assert credential_from(None, {"CENDIS_TOKEN": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match="pass --token or set CENDIS_TOKEN"):
        credential_from(None, {"CENDIS_TOKEN": " "})


def test_revoke_then_list_and_show(api: Api, tmp_path: Path) -> None:
    env = api.env(CENDIS_SCAN_DB=str(tmp_path / "trail.db"))
    live, unknown = api.live[0], api.unknown
    ref = TokenRef.from_token(live)
    first, missing, garbage = _parallel(
        (["revoke", "--reason", "pasted in chat"], {"input": live + "\n", "env": env}),
        (["revoke"], {"input": unknown, "env": env}),
        (["revoke"], {"input": live[:-1] + "x", "env": env}))
    assert first.returncode == 0, first.err
    assert first.out == (f"revoked {ref.redacted}: owner alice (acme), token 'ci', scopes "
                         "write:assets; severity high\n")
    assert missing.returncode == 1 and missing.out.startswith("not found ")
    assert garbage.returncode == 2 and "nothing sent" in garbage.err
    assert "checksum mismatch" in garbage.err and live[:-1] not in garbage.err

    again, listed, table, shown, absent, text = _parallel(
        (["revoke", "--sha256", ref.sha256.upper()], {"env": env}),
        (["incidents", "list", "--format", "json", "--since", "2020-01-01"], {"env": env}),
        (["incidents", "list", "--format", "csv", "--severity", "high"], {"env": env}),
        (["incidents", "show", ref.sha256[:8], "--format", "json"], {"env": env}),
        (["incidents", "show", "424242"], {"env": env}),
        (["incidents", "list"], {"env": env}))
    assert (again.returncode, again.out) == (0, first.out)  # known: no second call
    calls = json.loads(urllib.request.urlopen(api.url + "/_calls", timeout=5).read())
    assert sum(ref.sha256 in c["hashes"] for c in calls) == 1  # one revoke call, ever
    assert listed.returncode == 0, listed.err
    rows = sorted(json.loads(listed.out), key=lambda row: row["status"])
    assert [(r["status"], r["severity"], r["owner"]) for r in rows] == [
        ("not_found", "unknown", None), ("revoked", "high", "alice")]
    assert rows[1]["scopes"] == ["write:assets"] and rows[1]["sightings"] == 1
    assert [(r["redacted"], r["owner"], r["scopes"])
            for r in csv.DictReader(io.StringIO(table.out))] == [
        (ref.redacted, "alice", "write:assets")]
    incident = json.loads(shown.out)
    assert [e["kind"] for e in incident["events"]] == [
        "opened", "received", "queued", "revoke_attempted", "revoked", "notified"]
    assert [s["source"] for s in incident["sightings"]] == ["manual"]
    assert absent.returncode == 1 and "no incident '424242'" in absent.err
    assert text.returncode == 0 and text.out.startswith("2 incident(s)")
    assert all(f"│ {row['redacted']} │ {row['status']}" in text.out for row in rows)
    for proc in (first, again, missing, garbage, listed, table, shown, text):
        assert_no_leak(proc.stdout, proc.stderr)


def test_seed_from_a_scanned_directory(tmp_path: Path, token_registry: set[str]) -> None:
    """What the README demo does: the stand-in learns the tokens a scan finds."""
    rng = random.Random("seed-scan")
    token = generate(rng)
    token_registry.add(token)
    (tmp_path / ".env").write_text(f"CENDIS_TOKEN={token}\n")
    loaded = seeds.load(str(tmp_path), rng)
    assert [t.sha256 for t in loaded.tokens] == [TokenRef.from_token(token).sha256]
    assert loaded.tokens[0].owner == "alice" and len(loaded.credentials) == 1
    assert loaded.shown[0].startswith("service credential (scope revoke:tokens): ")
    token_registry.update(loaded.credentials)


def test_scan_and_git_record_and_revoke(api: Api, tmp_path: Path) -> None:
    """``scan --record``, ``scan --revoke`` and ``git --revoke`` feed one trail: the same
    token found by a scan and in a repository is one incident with two sightings."""
    from gitrepo import Repo

    db = tmp_path / "trail.db"
    env = api.env(CENDIS_SCAN_DB=str(db))
    critical, plain = api.live[1], api.live[2]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / ".env").write_text(f"CENDIS_TOKEN={critical}\nOLD={critical[:40]}\n")
    repo = Repo.make(tmp_path)
    repo.commit("config", **{"deploy.yaml": f"token: {critical}\nother: {plain}\n"})

    recorded = run(["scan", str(tree), "--record"], env=env)
    assert recorded.returncode == 1, recorded.err
    assert "recorded 2 findings as 2 incidents" in recorded.err
    assert "revoke" not in recorded.err.splitlines()[-1]
    revoked = run(["scan", str(tree), "--revoke"], env=env)
    assert revoked.returncode == 1, revoked.err
    assert revoked.err.splitlines()[-1].endswith("; revoke: 1 revoked")
    in_git = run(["git", str(repo.path), "--revoke", "--format", "json"],
                 env={**env, **repo.env})
    assert in_git.returncode == 1, in_git.err
    # The trail's status: the scan already revoked the first; the second is revoked now.
    assert in_git.err.splitlines()[-1].endswith("; revoke: 2 revoked")
    listed = run(["incidents", "list", "--format", "json"], env=env)
    rows = {r["redacted"]: r for r in json.loads(listed.out)}
    first = rows[TokenRef.from_token(critical).redacted]
    assert (first["status"], first["severity"], first["owner"]) == (
        "revoked", "critical", "carol")
    assert first["sightings"] == 2  # the scan's, then the repository's (same file twice: one)
    assert rows[TokenRef.from_token(plain).redacted]["status"] == "revoked"
    assert [r["status"] for r in rows.values()].count("recorded") == 1  # the possible one
    calls = json.loads(urllib.request.urlopen(api.url + "/_calls", timeout=5).read())
    sent = [h for c in calls for h in c["hashes"]]
    assert sent.count(first["sha256"]) == 1  # one revoke call per token, ever
    for proc in (recorded, revoked, in_git, listed):
        assert_no_leak(proc.stdout, proc.stderr)


def test_revoke_needs_a_credential_and_a_refused_one_is_exit_2(
        api: Api, tmp_path: Path, make_token: Any) -> None:
    token = make_token()
    (tmp_path / "a.env").write_text(f"T={token}\n")
    env = {"CENDIS_API_URL": api.url, "CENDIS_SCAN_DB": str(tmp_path / "t.db"),
           "CENDIS_TOKEN": ""}
    missing = run(["scan", str(tmp_path / "a.env"), "--revoke"], env=env)
    assert missing.returncode == 2 and missing.out == ""
    assert "--token" in missing.err and "CENDIS_TOKEN" in missing.err
    assert not (tmp_path / "t.db").exists()  # said before the scan, nothing recorded
    refused = run(["scan", str(tmp_path / "a.env"), "--revoke"],
                  env={**env, "CENDIS_TOKEN": api.weak})
    assert refused.returncode == 2, refused.err
    assert "1 pending" in refused.err and "not revoked yet: still queued" in refused.err
    assert api.weak not in refused.err
    assert_no_leak(missing.stdout, missing.stderr, refused.stdout, refused.stderr)
