"""The receiver's TOML configuration: defaults, partners, secrets from the environment,
and every unknown or wrong key named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.server.config import GITHUB_KEYS_URL, load_config
from scanner.server.errors import ServerConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_defaults_without_a_file() -> None:
    config = load_config(None, {})
    assert config.keyed["github"].keys_url == GITHUB_KEYS_URL
    assert "gitlab" not in config.keyed  # GitLab's key URL is private: no route without it
    assert config.body_limit > 1 << 20 and config.reader_token is None


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(f"""
body_limit = 2000000
reader_token_env = "READER"
[github]
keys_url = "http://127.0.0.1:1/keys"
token_env = "GH"
[gitlab]
keys_url = "http://127.0.0.1:2/keys"
[partners.acme]
secrets = ["{SECRET}"]
[partners.logs]
secrets_env = "LOGS_SECRET"
""")
    env = {"READER": "r" * 20, "GH": "ghp_x", "LOGS_SECRET": f"{SECRET} {SECRET}"}
    config = load_config(path, env, gitlab_keys_url="http://127.0.0.1:3/keys")
    assert config.body_limit == 2_000_000 and config.reader_token == "r" * 20
    assert config.keyed["github"].fetch_token == "ghp_x"
    assert config.keyed["gitlab"].keys_url.endswith(":3/keys")  # the option wins
    assert len(config.webhooks["logs"].secrets) == 2
    assert "ghp_x" not in repr(config) and "r" * 20 not in repr(config)


@pytest.mark.parametrize(("text", "message"), [
    ("bogus = 1", "config: unknown key 'bogus'"),
    ("[github]\nkey_url = 'x'", "[github]: unknown key 'key_url'"),
    ("[partners.acme]\nsecret = 'x'", "[partners.acme]: unknown key 'secret'"),
    ("[partners.acme]\nsecrets = ['nope']", "starts with whsec_"),
    ("[partners.acme]\nsecrets = ['whsec_***']", "not base64"),
    ("[partners.acme]\nsecrets_env = 'MISSING'", "MISSING is not set"),
    ("[partners.acme]", "needs secrets or secrets_env"),
    ("[partners.github]\nsecrets = []", "not github or gitlab"),
    ("body_limit = 'big'", "body_limit: expected int"),
    ("reader_token = 'short'", "at least 16"),
    ("[github]\nkeys_url = 'ftp://x'", "not an http(s) URL"),
    ("= nonsense", "not valid TOML"),
    # issue 14 hostile D2: a refresh below the refetch throttle kept new ids at 503 forever
    ("key_refresh_interval = 3", "key_refresh_interval: at least key_refetch_interval (5 s)"),
    ("key_refresh_interval = 0", "at least key_refetch_interval"),
    ("key_refetch_interval = 30\nkey_refresh_interval = 20", "(30 s)"),
    ("key_refresh_interval = nan", "must be a finite number"),
    ("key_miss_ttl = inf", "must be a finite number"),
    ("key_refetch_interval = -1", "not negative"),
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(ServerConfigError) as exc:
        load_config(path, {})
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ServerConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml", {})


# ------------------------------------------- the README's example starts as written

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_receiver_toml() -> str:
    """The ``receiver.toml`` example of the README, literally (the first TOML block after
    the sentence that introduces it), so the test follows the README's edits."""
    import re

    text = README.read_text(encoding="utf-8")
    start = text.index("`receiver.toml` (every unknown key")
    block = re.search(r"```toml\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None
    return block.group(1)


OPTIONAL = ("GITHUB_TOKEN", "CENDIS_SCAN_READER_TOKEN", "CENDIS_SCAN_REPORT_TOKEN",
            "CENDIS_SCAN_TRIAGER_TOKEN")


@pytest.mark.parametrize("given", [(), ("GITHUB_TOKEN",), ("CENDIS_SCAN_READER_TOKEN",),
                                   OPTIONAL])
def test_the_readme_example_loads_with_its_optional_variables_unset(
        tmp_path: Path, given: tuple[str, ...]) -> None:
    """Only the partner's secret is required; each optional variable left unset turns
    off what it is for, and says so in one note (logged by ``serve`` at start-up)."""
    path = tmp_path / "receiver.toml"
    path.write_text(readme_receiver_toml())
    # each its own value: the triager's token may not be another role's
    env = {"LOGSCANNER_WEBHOOK_SECRET": SECRET,
           **{name: f"{name.lower()}-value-0123456789" for name in given}}
    config = load_config(path, env)
    assert "logscanner" in config.webhooks
    assert config.keyed["github"].fetch_token == env.get("GITHUB_TOKEN")
    assert config.reader_token == env.get("CENDIS_SCAN_READER_TOKEN")
    for name in OPTIONAL:
        said = [n for n in config.notes if name in n]
        assert len(said) == (0 if name in given else 1), config.notes
    assert all("\n" not in note for note in config.notes)
    if "CENDIS_SCAN_READER_TOKEN" not in given:
        assert any("/incidents is off" in note for note in config.notes)


@pytest.mark.parametrize("text", ["reader_token_env = 'UNSET_READER'",
                                  "report_token_env = 'UNSET_REPORT'",
                                  "[github]\ntoken_env = 'UNSET_GH'",
                                  "[gitlab]\nkeys_url = 'http://127.0.0.1:1/k'\n"
                                  "token_env = 'UNSET_GL'"])
def test_an_optional_variable_unset_is_a_note_not_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    config = load_config(path, {})
    assert any("UNSET_" in note for note in config.notes)


def test_the_readme_example_without_the_partner_secret_is_one_clear_error(
        tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_text(readme_receiver_toml())
    with pytest.raises(ServerConfigError, match="LOGSCANNER_WEBHOOK_SECRET is not set"):
        load_config(path, {})


def test_serve_starts_with_the_readme_example(tmp_path: Path) -> None:
    """A real ``serve`` with the README's file as written (key URLs on loopback, so the
    test needs no network): it runs, /healthz answers, /incidents is refused, and the
    log says in one line each what the unset optional variables turned off."""
    import json
    import os
    import subprocess
    import urllib.error
    import urllib.request

    from conftest import CLI, free_port, http_answers, keep_output, wait_until

    config = tmp_path / "receiver.toml"
    config.write_text(readme_receiver_toml())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in OPTIONAL}
    env.update(LOGSCANNER_WEBHOOK_SECRET=SECRET, CENDIS_TOKEN="x" * 20)
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [CLI, "serve", "--config", str(config), "--port", str(port),
             "--db", str(tmp_path / "i.db"), "--cendis-api-url", "http://127.0.0.1:9",
             "--github-keys-url", "http://127.0.0.1:9/keys"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(url + "/healthz"), "serve /healthz", proc=proc,
                   log=log)
        body = json.loads(urllib.request.urlopen(url + "/healthz", timeout=10).read())
        assert body == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/incidents", timeout=2)
        assert refused.value.code == 401
    finally:
        proc.terminate()
        proc.wait(20)
        keep_output(log.read_bytes(), "serve")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    notes = [line["message"] for line in lines if line.get("level") == "warning"]
    assert sum("CENDIS_SCAN_READER_TOKEN" in n and "/incidents" in n for n in notes) == 1
    assert sum("GITHUB_TOKEN" in n for n in notes) == 1
    assert proc.returncode == 0
