"""The receiver's configuration: a small TOML file, strict (every unknown key is an error
that names it), with secrets given inline or, better, by the name of an environment
variable, so the file itself can be committed to an ops repository without secrets.

Example (``cendis-scan serve --config receiver.toml``)::

    body_limit = 33554432                 # bytes; 413 above it
    body_timeout = 10                     # seconds for a body to arrive; 408 after
    max_records = 10000                   # records per delivery; 413 above it
    db_busy_timeout = 5                   # seconds to wait for another process's lock; 503
    key_refresh_interval = 600            # partner keys refetched (withdrawn keys dropped)
    reader_token_env = "CENDIS_SCAN_READER_TOKEN"
    report_token_env = "CENDIS_SCAN_REPORT_TOKEN" # sweeps' POST /v1/findings (--report-to)

    [github]
    keys_url = "https://api.github.com/meta/public_keys/secret_scanning"
    token_env = "GITHUB_TOKEN"            # optional: a GitHub token for the key fetch
                                          # (unset: fetched without one, noted in the log)

    [gitlab]
    keys_url = "https://…"                # given to partners privately; off without it

    [partners.acme]                       # POST /partners/acme, Standard Webhooks
    secrets_env = "ACME_WEBHOOK_SECRET"   # whsec_… (space-separated during rotation)
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner import whsec
from scanner.server.errors import ServerConfigError

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
#: aiohttp's default is 1 MiB; a 1,000-record backfill is ~200 kB, a whole push can be more.
DEFAULT_BODY_LIMIT = 32 * 1024 * 1024
#: Records per delivery: parsing and committing are per record, the byte limit alone lets
#: one signed body of 200,000 tiny records hold the receiver for seconds.
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_READER_ENV = "CENDIS_SCAN_READER_TOKEN"
DEFAULT_REPORT_ENV = "CENDIS_SCAN_REPORT_TOKEN"
KEYED = ("github", "gitlab")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")

_TOP = {"body_limit", "reader_token", "reader_token_env", "report_token", "report_token_env",
        "auto_revoke", "github", "gitlab",
        "partners", "key_refetch_interval", "key_miss_ttl", "key_fetch_timeout",
        "body_timeout", "max_records", "db_busy_timeout", "key_refresh_interval"}
_KEYED_KEYS = {"keys_url", "token_env", "enabled"}
_WEBHOOK_KEYS = {"secrets", "secrets_env"}


@dataclass(frozen=True, slots=True)
class KeyedPartner:
    """A partner that signs with ECDSA keys it publishes (GitHub, GitLab)."""

    name: str
    keys_url: str
    header_prefix: str              # "Github" → Github-Public-Key-Identifier / -Signature
    fetch_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class WebhookPartner:
    """A partner that signs with Standard Webhooks HMAC secrets."""

    name: str
    secrets: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    keyed: dict[str, KeyedPartner]
    webhooks: dict[str, WebhookPartner]
    body_limit: int = DEFAULT_BODY_LIMIT
    reader_token: str | None = field(default=None, repr=False)
    report_token: str | None = field(default=None, repr=False)  # POST /v1/findings
    auto_revoke: bool = True
    key_refetch_interval: float = 5.0
    key_miss_ttl: float = 60.0
    key_fetch_timeout: float = 5.0
    body_timeout: float = 10.0  # seconds for a delivery's body to arrive (slowloris)
    max_records: int = DEFAULT_MAX_RECORDS  # records per delivery; 413 above it
    db_busy_timeout: float = 5.0  # seconds a commit waits for another process's lock; 503
    key_refresh_interval: float = 600.0  # partner keys refetched this often (withdrawals)
    #: What an optional setting left unset turned off, for ``serve`` to log at start-up
    #: (one line each): the file starts as written, and says what it is running without.
    notes: tuple[str, ...] = ()


def decode_whsec(secret: str, where: str) -> bytes:
    """``whsec_<base64>`` → the HMAC key bytes (the Standard Webhooks convention)."""
    return whsec.decode_whsec(secret, where, ServerConfigError)


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ServerConfigError(f"{where}: unknown key {key!r}")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ServerConfigError(f"{where}: expected a number")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        raise ServerConfigError(f"{where}: expected {name}, got {type(value).__name__}")
    return value


def _env(name: str, environ: Mapping[str, str], where: str) -> str:
    value = environ.get(name)
    if not value:
        raise ServerConfigError(f"{where}: environment variable {name} is not set")
    return value


def _keyed(name: str, table: Mapping[str, Any], environ: Mapping[str, str],
           url_option: str | None, notes: list[str]) -> KeyedPartner | None:
    where = f"[{name}]"
    _unknown(table, _KEYED_KEYS, where)
    if not _typed(table.get("enabled", True), bool, f"{where} enabled"):
        return None
    url = url_option or table.get("keys_url") or (GITHUB_KEYS_URL if name == "github" else None)
    if url is None:
        return None  # GitLab's key URL is private: no URL, no route
    _typed(url, str, f"{where} keys_url")
    if not url.startswith(("http://", "https://")):
        raise ServerConfigError(f"{where} keys_url: not an http(s) URL")
    token = None
    if "token_env" in table:  # optional: unset means an unauthenticated key fetch
        var = _typed(table["token_env"], str, f"{where} token_env")
        token = environ.get(var) or None
        if token is None:
            notes.append(f"{where} token_env: {var} is not set: the key fetch goes "
                         "without a token")
    return KeyedPartner(name, url, name.capitalize(), token)


def _webhook(name: str, table: Any, environ: Mapping[str, str]) -> WebhookPartner:
    where = f"[partners.{name}]"
    if not _NAME.fullmatch(name) or name in KEYED:
        raise ServerConfigError(f"{where}: a partner name is 1-40 of a-z 0-9 _ - "
                                "and not github or gitlab")
    _typed(table, dict, where)
    _unknown(table, _WEBHOOK_KEYS, where)
    texts: list[str] = []
    if "secrets" in table:
        given = table["secrets"]
        given = [given] if isinstance(given, str) else _typed(given, list, f"{where} secrets")
        texts += [_typed(s, str, f"{where} secrets") for s in given]
    if "secrets_env" in table:
        var = _typed(table["secrets_env"], str, f"{where} secrets_env")
        texts += _env(var, environ, where).split()
    if not texts:
        raise ServerConfigError(f"{where}: needs secrets or secrets_env")
    return WebhookPartner(name, tuple(decode_whsec(t, where) for t in texts))


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str], *,
                github_keys_url: str | None = None,
                gitlab_keys_url: str | None = None) -> ServerConfig:
    """Read and check the file (or the defaults when ``path`` is None); options win."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ServerConfigError(f"{path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ServerConfigError(f"{path}: not valid TOML: {exc}") from None
    _unknown(data, _TOP, "config")
    notes: list[str] = []
    keyed = {}
    for name, option in (("github", github_keys_url), ("gitlab", gitlab_keys_url)):
        partner = _keyed(name, _typed(data.get(name, {}), dict, f"[{name}]"), environ, option,
                         notes)
        if partner is not None:
            keyed[name] = partner
    webhooks = {name: _webhook(name, table, environ)
                for name, table in _typed(data.get("partners", {}), dict, "[partners]").items()}
    reader = _bearer(data, "reader_token", environ, DEFAULT_READER_ENV)
    report = _bearer(data, "report_token", environ, DEFAULT_REPORT_ENV)
    if reader is None:
        var = _bearer_env(data, "reader_token", DEFAULT_READER_ENV)
        notes.append(f"no reader token ({var} is not set): GET /incidents is off "
                     "(401 to every request)")
    if report is None:
        var = _bearer_env(data, "report_token", DEFAULT_REPORT_ENV)
        notes.append(f"no report token ({var} is not set): POST /v1/findings "
                     "(sweep --report-to) is off")
    limit = _typed(data.get("body_limit", DEFAULT_BODY_LIMIT), int, "body_limit")
    if limit < 1024:
        raise ServerConfigError("body_limit: at least 1024 bytes")
    numbers = {}
    for key in ("key_refetch_interval", "key_miss_ttl", "key_fetch_timeout", "body_timeout",
                "db_busy_timeout", "key_refresh_interval"):
        if key in data:
            value = float(_typed(data[key], (int, float), key))
            if not math.isfinite(value) or value < 0:
                raise ServerConfigError(f"{key}: must be a finite number, not negative")
            numbers[key] = value
    defaults = ServerConfig({}, {})  # slots: the class itself holds no defaults
    refetch = numbers.get("key_refetch_interval", defaults.key_refetch_interval)
    if numbers.get("key_refresh_interval", defaults.key_refresh_interval) < refetch:
        # below the throttle the scheduled fetches would keep every new key id throttled
        raise ServerConfigError(f"key_refresh_interval: at least key_refetch_interval "
                                f"({refetch:g} s)")
    max_records = _typed(data.get("max_records", DEFAULT_MAX_RECORDS), int, "max_records")
    if max_records < 1:
        raise ServerConfigError("max_records: at least 1")
    return ServerConfig(keyed=keyed, webhooks=webhooks, body_limit=limit, reader_token=reader,
                        report_token=report, max_records=max_records,
                        auto_revoke=_typed(data.get("auto_revoke", True), bool, "auto_revoke"),
                        notes=tuple(notes), **numbers)


def _bearer(data: Mapping[str, Any], key: str, environ: Mapping[str, str],
            default_env: str) -> str | None:
    """A bearer token the receiver checks (``reader_token`` for /incidents,
    ``report_token`` for sweeps' ``--report-to``): inline, by the name of an environment
    variable (``KEY_env``), or from ``default_env``; None: that route refuses everything.
    Both are optional, so a variable named but not set is the same as none (noted)."""
    token = data.get(key)
    if token is not None:
        _typed(token, str, key)
    else:
        token = environ.get(_bearer_env(data, key, default_env)) or None
    if token is not None and len(token) < 16:
        raise ServerConfigError(f"{key}: use at least 16 characters")
    return token


def _bearer_env(data: Mapping[str, Any], key: str, default_env: str) -> str:
    """The environment variable a bearer token is read from."""
    if f"{key}_env" in data:
        return str(_typed(data[f"{key}_env"], str, f"{key}_env"))
    return default_env
