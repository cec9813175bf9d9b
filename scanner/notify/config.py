"""The ``[notify]`` table: where notifications go, and which events each channel gets.

The same table sits in the receiver's TOML, a sweep's TOML, or a file of its own (for
``scan --record --notify-config FILE`` and ``notify test --config FILE``). It is strict,
like the receiver's configuration: an unknown key is an error that names it, and secrets
(a Slack webhook URL, a ``whsec_`` secret, SMTP credentials) are given by the name of an
environment variable, so the file can be committed without them::

    [notify]
    base_url = "https://cendis-scan.example.com"   # links: {base_url}/incidents/{id}
    revoke_failing_after = 900                      # seconds; false: never

    [notify.channels.security]
    kind = "slack"
    url_env = "SLACK_WEBHOOK_URL"
    events = ["opened", "revoked", "revoke_failing", "possible", "reopened", "triage"]
    severities = ["critical", "high"]
    sources = ["partner:*", "scan:*"]
    digest_after = 5                                # more per minute: one digest

The parsed :class:`NotifyConfig` is the store's :class:`~scanner.notify.events.Router`:
``channels(event)`` names the channels whose rules take that event.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from scanner.errors import ConfigError
from scanner.incidents.models import Severity
from scanner.notify.events import EVENT_KINDS, NotifyEvent, Router
from scanner.whsec import decode_whsec

KINDS = ("slack", "webhook", "email")
TLS_MODES = ("starttls", "implicit", "none")
DEFAULT_REVOKE_FAILING_AFTER = 900.0
DEFAULT_DIGEST_AFTER = 5
DEFAULT_TIMEOUT = 10.0
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
#: An address we send to or from: no display name, quotes, spaces, commas or line breaks.
ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9-]{1,63}"
                     r"(?:\.[A-Za-z0-9-]{1,63})*)")
_DOMAIN = re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+")

_TOP = {"base_url", "revoke_failing_after", "channels"}
_COMMON = {"kind", "events", "severities", "sources", "digest_after", "timeout"}
_KEYS = {
    "slack": _COMMON | {"url", "url_env"},
    "webhook": _COMMON | {"url", "url_env", "secret", "secret_env"},
    "email": _COMMON | {"host", "port", "tls", "username_env", "password_env", "sender", "to",
                        "author_domains", "ca_file"},
}


class NotifyConfigError(ConfigError):
    """A bad ``[notify]`` table (exit 2, one line naming the key)."""

    reason = "notify_config"


@dataclass(frozen=True, slots=True)
class Rule:
    """Which events a channel takes: all three lists must match."""

    events: frozenset[str] = frozenset(EVENT_KINDS)
    severities: frozenset[str] = frozenset(s.value for s in Severity)
    sources: tuple[str, ...] = ("*",)  # fnmatch globs, case-sensitive

    def takes(self, event: NotifyEvent) -> bool:
        return (event.kind in self.events and event.severity in self.severities
                and any(fnmatchcase(event.source, glob) for glob in self.sources))


@dataclass(frozen=True, slots=True)
class SlackSettings:
    url: str = field(repr=False)  # an incoming-webhook URL is a credential


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secrets: tuple[bytes, ...] = field(repr=False)  # one signature each (rotation)


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str
    port: int
    tls: str                     # starttls | implicit | none (loopback hosts only)
    sender: str
    to: tuple[str, ...]
    author_domains: frozenset[str] = frozenset()  # lowercase; exact match only
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None   # a private relay's CA; default: the system's


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    kind: str                    # slack | webhook | email
    rule: Rule
    settings: SlackSettings | WebhookSettings | EmailSettings
    digest_after: int = DEFAULT_DIGEST_AFTER  # more messages per minute: one digest
    timeout: float = DEFAULT_TIMEOUT          # seconds for one delivery


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """The parsed table, and the store's router (no state: a value)."""

    base_url: str | None = None
    revoke_failing_after: float | None = DEFAULT_REVOKE_FAILING_AFTER
    by_name: Mapping[str, ChannelConfig] = field(default_factory=dict)

    def channels(self, event: NotifyEvent) -> Sequence[str]:
        """The names of the channels whose rule takes ``event``, in the file's order."""
        return [name for name, channel in self.by_name.items() if channel.rule.takes(event)]

    def channel(self, name: str) -> ChannelConfig:
        if name not in self.by_name:
            known = ", ".join(self.by_name) or "none"
            raise NotifyConfigError(f"[notify] has no channel {name!r} (channels: {known})")
        return self.by_name[name]


def as_router(config: NotifyConfig | None) -> Router | None:
    """The parsed table as the store's router (None: no outbox rows). A frozen
    dataclass's field is read-only, which the protocol's plain attribute does not say."""
    return cast("Router | None", config)


# -- parsing ----------------------------------------------------------------------------

def load_notify_config(path: str | Path, environ: Mapping[str, str] | None = None
                       ) -> NotifyConfig:
    """The ``[notify]`` table of a TOML file. Other top-level tables (a receiver's or a
    sweep's settings) are left to their own loaders, so either file can be given."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise NotifyConfigError(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NotifyConfigError(f"{path}: not valid TOML: {exc}") from None
    if "notify" not in data:
        raise NotifyConfigError(f"{path}: no [notify] table")
    return parse_notify(data["notify"], os.environ if environ is None else environ)


def parse_notify(table: Any, environ: Mapping[str, str]) -> NotifyConfig:
    """A parsed ``[notify]`` table (from any TOML file) → :class:`NotifyConfig`."""
    where = "[notify]"
    table = _table(table, where)
    _unknown(table, _TOP, where)
    base_url = None
    if "base_url" in table:
        base_url = _url(_typed(table["base_url"], str, f"{where} base_url"),
                        f"{where} base_url", any_http=True).rstrip("/")
    failing: float | None = DEFAULT_REVOKE_FAILING_AFTER
    if "revoke_failing_after" in table:
        value = table["revoke_failing_after"]
        if value is False:
            failing = None
        else:
            failing = float(_typed(value, (int, float), f"{where} revoke_failing_after"))
            if not 0 < failing < 10 ** 9:
                raise NotifyConfigError(f"{where} revoke_failing_after: expected seconds > 0 "
                                        "(or false: never)")
    channels: dict[str, ChannelConfig] = {}
    for name, sub in _table(table.get("channels", {}), f"{where} channels").items():
        if not _NAME.fullmatch(name):
            raise NotifyConfigError(f"[notify.channels] {name!r}: a channel name is "
                                    "[a-z0-9][a-z0-9_-]* (at most 40 characters)")
        channels[name] = _channel(name, _table(sub, f"[notify.channels.{name}]"), environ)
    return NotifyConfig(base_url, failing, channels)


def _channel(name: str, table: Mapping[str, Any], environ: Mapping[str, str]
             ) -> ChannelConfig:
    where = f"[notify.channels.{name}]"
    kind = table.get("kind")
    if kind not in KINDS:
        raise NotifyConfigError(f"{where} kind: expected one of {', '.join(KINDS)}")
    _unknown(table, _KEYS[kind], where)
    rule = Rule(
        events=_choices(table, "events", EVENT_KINDS, where),
        severities=_choices(table, "severities", tuple(s.value for s in Severity), where),
        sources=tuple(_strings(table, "sources", where)) if "sources" in table else ("*",))
    if not rule.sources:
        raise NotifyConfigError(f"{where} sources: an empty list matches nothing")
    digest_after = _typed(table.get("digest_after", DEFAULT_DIGEST_AFTER), int,
                          f"{where} digest_after")
    if not 1 <= digest_after <= 10_000:
        raise NotifyConfigError(f"{where} digest_after: expected 1 to 10000 messages")
    timeout = float(_typed(table.get("timeout", DEFAULT_TIMEOUT), (int, float),
                           f"{where} timeout"))
    if not 0 < timeout <= 600:
        raise NotifyConfigError(f"{where} timeout: expected 0 < seconds <= 600")
    settings: SlackSettings | WebhookSettings | EmailSettings
    if kind == "slack":
        settings = SlackSettings(_url(_secret(table, "url", environ, where), f"{where} url"))
    elif kind == "webhook":
        url = _url(_secret(table, "url", environ, where), f"{where} url")
        texts = _secret(table, "secret", environ, where).split()
        settings = WebhookSettings(url, tuple(decode_whsec(t, f"{where} secret",
                                                           NotifyConfigError) for t in texts))
    else:
        settings = _email(table, environ, where)
    return ChannelConfig(name, kind, rule, settings, digest_after, timeout)


def _email(table: Mapping[str, Any], environ: Mapping[str, str], where: str) -> EmailSettings:
    host = _typed(table.get("host"), str, f"{where} host")
    if not host or any(c in host for c in " /@\r\n"):
        raise NotifyConfigError(f"{where} host: expected a host name")
    tls = table.get("tls", "starttls")
    if tls not in TLS_MODES:
        raise NotifyConfigError(f"{where} tls: expected one of {', '.join(TLS_MODES)}")
    if tls == "none" and not is_loopback(host):
        raise NotifyConfigError(f"{where} tls: \"none\" only to a loopback host "
                                "(credentials and content would cross the network in clear)")
    port = _typed(table.get("port", 465 if tls == "implicit" else 587), int, f"{where} port")
    if not 0 < port < 65536:
        raise NotifyConfigError(f"{where} port: expected 1 to 65535")
    sender = _address(_typed(table.get("sender"), str, f"{where} sender"), f"{where} sender")
    to = tuple(_address(a, f"{where} to") for a in _strings(table, "to", where))
    if not to:
        raise NotifyConfigError(f"{where} to: expected at least one address")
    domains = frozenset(d.lower() for d in _strings(table, "author_domains", where))
    for domain in domains:
        if not _DOMAIN.fullmatch(domain):
            raise NotifyConfigError(f"{where} author_domains: {domain!r} is not a domain")
    username = password = None
    if ("username_env" in table) != ("password_env" in table):
        raise NotifyConfigError(f"{where}: username_env and password_env go together")
    if "username_env" in table:
        username = _env(_typed(table["username_env"], str, f"{where} username_env"),
                        environ, f"{where} username_env")
        password = _env(_typed(table["password_env"], str, f"{where} password_env"),
                        environ, f"{where} password_env")
    ca_file = None
    if "ca_file" in table:
        ca_file = _typed(table["ca_file"], str, f"{where} ca_file")
        if not os.path.isfile(ca_file):
            raise NotifyConfigError(f"{where} ca_file: no such file")
    return EmailSettings(host, port, tls, sender, to, domains, username, password, ca_file)


# -- small checks -----------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(text: str, where: str, *, any_http: bool = False) -> str:
    """https, or http to a loopback host (a local stand-in) unless ``any_http`` (a link,
    which sends nothing); nothing that could break out of a link (``<``, ``>``, ``|``,
    quotes, spaces, control characters)."""
    try:  # "http://[::1" or a port over 65535: a config error, never a traceback
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 (read to validate)
    except ValueError:
        raise NotifyConfigError(f"{where}: not a valid URL") from None
    plain_ok = parts.scheme == "http" and (any_http or is_loopback(parts.hostname or ""))
    if parts.scheme != "https" and not plain_ok:
        raise NotifyConfigError(f"{where}: expected an https:// URL" + (
            "" if any_http else " (http:// only to a loopback host)"))
    if not parts.hostname or re.search(r"[\s<>|\"'`\\]", text.strip()) or not text.isprintable():
        raise NotifyConfigError(f"{where}: not a valid URL")
    return text.strip()


def _address(text: str, where: str) -> str:
    if not ADDRESS.fullmatch(text):
        raise NotifyConfigError(f"{where}: {text[:80]!r} is not a plain e-mail address "
                                "(name@domain, no display name)")
    return text


def _secret(table: Mapping[str, Any], key: str, environ: Mapping[str, str], where: str) -> str:
    """``key`` inline or ``key_env`` (the name of an environment variable): exactly one."""
    inline, by_env = key in table, f"{key}_env" in table
    if inline == by_env:
        raise NotifyConfigError(f"{where}: give {key}_env (an environment variable's name) "
                                f"or {key}, not {'both' if inline else 'neither'}")
    if inline:
        return str(_typed(table[key], str, f"{where} {key}"))
    name = _typed(table[f"{key}_env"], str, f"{where} {key}_env")
    return _env(name, environ, f"{where} {key}_env")


def _env(name: str, environ: Mapping[str, str], where: str) -> str:
    value = environ.get(name)
    if not value:
        raise NotifyConfigError(f"{where}: environment variable {name} is not set")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotifyConfigError(f"{where}: expected a table")
    return value


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise NotifyConfigError(f"{where}: unknown key {key!r}")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if value is None:
        raise NotifyConfigError(f"{where}: missing")
    if isinstance(value, bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        raise NotifyConfigError(f"{where}: expected {name}, got {type(value).__name__}")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NotifyConfigError(f"{where} {key}: expected a list of strings")
    return value


def _choices(table: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str
             ) -> frozenset[str]:
    if key not in table:
        return frozenset(allowed)
    values = _strings(table, key, where)
    for value in values:
        if value not in allowed:
            raise NotifyConfigError(f"{where} {key}: unknown {value!r} "
                                    f"(one of {', '.join(allowed)})")
    return frozenset(values)
