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
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(ServerConfigError) as exc:
        load_config(path, {})
    assert message in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ServerConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml", {})
