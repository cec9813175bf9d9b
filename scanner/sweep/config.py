"""The sweep configuration: a TOML file, checked whole before anything runs.

Every problem (an unknown key, a mistyped value, a missing ``url``) is named in one
error, so an operator fixes the file in one go instead of one cron failure at a time.
Credentials never live here: private clones use the environment or git's own
credential helpers, and the Cendis credential comes from ``--token``/``CENDIS_TOKEN``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from scanner.errors import ConfigError, short
from scanner.scrub import escape_controls, scrub

if TYPE_CHECKING:
    from scanner.notify.config import NotifyConfig

DEFAULT_CONCURRENCY = 4
DEFAULT_CACHE = "cendis-sweep-cache"

_SETTINGS = {"database": str, "cache": str, "concurrency": int, "auto_revoke": bool}
_REPO = {"url": str, "name": str, "branches": list, "auto_revoke": bool}
_LOGS = {"paths": list, "auto_revoke": bool}
_ORG = {"github": str, "gitlab": str, "api_url": str, "include_subgroups": bool,
        "include": list, "exclude": list, "archived": bool, "forks": bool,
        "visibility": list, "topics": list, "token_env": str, "branches": list,
        "auto_revoke": bool}
GITHUB_API = "https://api.github.com"
GITLAB_API = "https://gitlab.com/api/v4"
VISIBILITIES = ("public", "private", "internal")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_ACCOUNT = {"github": re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98})"),
            "gitlab": re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}"
                                 r"(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}){0,20}")}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false",
               list: "a list of strings"}


@dataclass(frozen=True, slots=True)
class RepoSource:
    """One ``[[repo]]``: cloned into ``cache`` as a bare mirror, swept by its name."""

    url: str  # as given (a clone URL, file:// URL or a local path)
    name: str  # unique in the file; the shard hash and the incident source use it
    branches: tuple[str, ...] = ()  # glob patterns; empty: every branch and tag
    auto_revoke: bool = False
    #: A discovered repository: the forge's repository id ("github:api.github.com:42"),
    #: which names its mirror, so a rename keeps the mirror and its state.
    ident: str = ""
    #: A discovered repository's clone credential: (variable name, user name) for the
    #: credential helper given per git command (never in the URL or the mirror's config).
    credential: tuple[str, str] | None = None
    #: A discovered repository's default branch as its forge's API names it (presence
    #: checks look there; without it, the origin's HEAD).
    default_branch: str | None = None

    @property
    def key(self) -> str:
        return f"repo:{self.name}"

    @property
    def mirror_name(self) -> str:
        """What the mirror's folder is named after: the id, else the name."""
        return self.ident or self.name

    @property
    def public_url(self) -> str:
        """The URL without any user or password, for sightings and output."""
        return strip_credentials(self.url)


@dataclass(frozen=True, slots=True)
class LogSource:
    """One ``[[logs]]``: files matched by glob patterns, read from where the last sweep
    stopped."""

    paths: tuple[str, ...]
    auto_revoke: bool = False

    @property
    def name(self) -> str:
        """The globs as shown (table, JSON, logs): scrubbed, since a glob may name a
        file after a token (``logs/<token>*.log``)."""
        return scrub(", ".join(self.paths))

    @property
    def key(self) -> str:
        return "logs:" + hashlib.sha256("\0".join(self.paths).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class OrgSource:
    """One ``[[org]]``: a GitHub organisation or user, or a GitLab group, whose
    repositories are listed through the forge's API before each sweep
    (:mod:`scanner.sweep.discovery`) and each swept like a ``[[repo]]``."""

    forge: str  # "github" | "gitlab"
    account: str  # "acme" (GitHub org or user) or "acme/platform" (GitLab group path)
    api_url: str
    include: tuple[str, ...] = ()  # name globs; empty: every name
    exclude: tuple[str, ...] = ()
    archived: bool = False  # sweep archived repositories too
    forks: bool = False  # sweep forks too
    visibility: tuple[str, ...] = VISIBILITIES
    topics: tuple[str, ...] = ()  # empty: any; else at least one of them
    include_subgroups: bool = True  # GitLab only
    token_env: str | None = None  # the variable that holds the API and clone credential
    branches: tuple[str, ...] = ()
    auto_revoke: bool = False

    @property
    def name(self) -> str:
        return f"{self.forge}:{self.account}"

    @property
    def key(self) -> str:
        """The discovery state's file name: forge, API and account (stable)."""
        ident = "\0".join((self.forge, self.api_url, self.account.lower()))
        return "org:" + hashlib.sha256(ident.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SweepConfig:
    path: str
    database: str | None = None  # None: --db, $CENDIS_SCAN_DB or ./cendis-incidents.db
    cache: str = DEFAULT_CACHE
    concurrency: int = DEFAULT_CONCURRENCY
    auto_revoke: bool = False
    repos: tuple[RepoSource, ...] = ()
    logs: tuple[LogSource, ...] = field(default_factory=tuple)
    orgs: tuple[OrgSource, ...] = ()
    #: The ``[notify]`` table: who hears of the incidents this sweep records (the local
    #: database only; with --report-to the receiver's own [notify] decides).
    notify: NotifyConfig | None = None

    @property
    def sources(self) -> tuple[RepoSource | LogSource, ...]:
        return (*self.repos, *self.logs)


#: The transports a sweep fetches over; the same list goes to git's own allow-list
#: (``GIT_ALLOW_PROTOCOL`` in :mod:`scanner.sweep.mirrors`), so neither a config nor a
#: redirect can reach ``ext::`` (runs a command), ``fd::`` (hangs on a descriptor) or
#: any other remote helper.
TRANSPORTS = ("https", "ssh", "git", "file")
_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address>
_SCP = re.compile(r"[\w.-]+@[\w.-]+:")  # git@host:owner/repo.git


def _has_password(url: str) -> bool:
    """``https://user:secret@host``: a secret in the config (``ssh://git@host`` is not)."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


_QP = re.compile(r"=([0-9A-Fa-f]{2})")


def _visible(text: str) -> str:
    """``text`` as a terminal shows it: NFKC-folded (fullwidth letters are letters) with
    the Unicode format characters (zero-width space, joiners, BOM...) taken out."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def holds_token(url: str) -> bool:
    """A token anywhere in the URL (its user name, path or query), as written,
    percent-decoded or quoted-printable, whole or base64, and behind zero-width or other
    format characters or fullwidth forms: refused, since the mirror's config would keep
    it and git would print it. The scrub decides (does :func:`scanner.scrub.scrub`
    change more than control characters?), so what it learns to catch is refused here
    too."""
    for base in (url, unquote(url)):  # "%E2%80%8B" is a zero-width space too
        seen = _visible(base)
        for text in (base, seen, unquote(seen),
                     _QP.sub(lambda m: chr(int(m.group(1), 16)), seen)):
            if scrub(text) != escape_controls(text):
                return True
    return False


def _invisible(url: str) -> bool:
    """Control or format characters: a URL that does not read as what it is."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in url)


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be swept (one line that never quotes it), or None."""
    if holds_token(url):
        return ("holds a token: give credentials through git's credential helpers or "
                "the environment, never in this file (the mirror's config would keep it)")
    if _invisible(url):
        return ("holds control or invisible (zero-width, format) characters: write the "
                "URL as it reads")
    if _has_password(url):
        return ("holds a password or token: give credentials through git's credential "
                "helpers or the environment, never in this file (the mirror's config "
                "would keep them)")
    if _HELPER.match(url):
        return (f"uses a git remote helper ({url.split('::', 1)[0][:20]}::); a sweep "
                f"fetches only over {', '.join(TRANSPORTS)}")
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in TRANSPORTS:
            return (f"uses the {scheme[:20]!r} transport; a sweep fetches only over "
                    f"{', '.join(TRANSPORTS)}")
    return None


def strip_credentials(url: str) -> str:
    """``https://user:secret@host/x`` -> ``https://host/x``: never shown or stored."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def default_name(url: str) -> str:
    """``https://github.com/acme/api.git`` -> ``github.com/acme/api``; a local path or
    ``file://`` URL -> its last folder name without ``.git``."""
    clean = strip_credentials(url).rstrip("/")
    scp = re.fullmatch(r"[\w.-]+@([\w.-]+):(.+)", clean)  # git@host:owner/repo.git
    if scp:
        clean = f"{scp.group(1)}/{scp.group(2)}"
    parts = urlsplit(clean)
    if parts.scheme in ("http", "https", "ssh", "git"):
        clean = parts.netloc.rsplit("@", 1)[-1] + parts.path
    elif parts.scheme == "file" or not parts.scheme:
        clean = os.path.basename(parts.path if parts.scheme else clean)
    return clean.removesuffix(".git") or url


def _typed(value: Any, kind: type) -> bool:
    if kind is int and isinstance(value, bool):  # TOML true is not a number
        return False
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)


def _check(table: dict[str, Any], schema: dict[str, type], where: str,
           problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        kind = schema.get(key)
        if kind is None:
            problems.append(f"unknown key {where}.{key} (known: {', '.join(schema)})")
        elif not _typed(value, kind):
            problems.append(f"{where}.{key} must be {_TYPE_NAMES[kind]}, not "
                            f"{scrub(repr(value), 40)}")
        else:
            out[key] = value
    return out


def _tables(data: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    problems.append(f"{key} must be an array of tables ([[{key}]])")
    return []


def parse(text: str, path: str) -> SweepConfig:
    """Check the whole file; raise one :class:`ConfigError` naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {short(str(exc), 120)}") from None
    problems: list[str] = []
    for key in data:
        if key not in ("settings", "repo", "logs", "org", "notify"):
            problems.append(f"unknown key {key} (known: settings, [[repo]], [[logs]], "
                            f"[[org]], [notify])")
    notify = None
    if "notify" in data:  # the notifier (and aiohttp) loaded only when asked for
        from scanner.notify.config import NotifyConfigError, parse_notify

        try:
            notify = parse_notify(data["notify"], os.environ)
        except NotifyConfigError as exc:
            problems.append(str(exc))
    raw_settings = data.get("settings", {})
    if not isinstance(raw_settings, dict):
        problems.append("settings must be a table ([settings])")
        raw_settings = {}
    settings = _check(raw_settings, _SETTINGS, "settings", problems)
    if "concurrency" in settings and settings["concurrency"] < 1:
        problems.append("settings.concurrency must be at least 1")
    base = Path(path).resolve().parent
    default_revoke = bool(settings.get("auto_revoke", False))
    repos: list[RepoSource] = []
    names: set[str] = set()
    for i, table in enumerate(_tables(data, "repo", problems), 1):
        where = f"repo[{i}]"
        entry = _check(table, _REPO, where, problems)
        url = entry.get("url")
        if not url:
            if "url" not in table:
                problems.append(f"{where}.url is missing")
            continue
        problem = url_problem(url)
        if problem is not None:
            problems.append(f"{where}.url {problem}")
            continue
        if "://" not in url and not _SCP.match(url):
            url = str((base / os.path.expanduser(url)).resolve())  # a local path
        # Shown in the table and JSON, stored as the incident source, hashed into the
        # mirror's folder name: never a token, never a control character.
        name = scrub(entry.get("name") or default_name(url), 200)
        if name in names:
            problems.append(f"{where}.name {name!r} is used twice (names must be unique)")
        names.add(name)
        repos.append(RepoSource(url=url, name=name, branches=tuple(entry.get("branches", ())),
                                auto_revoke=bool(entry.get("auto_revoke", default_revoke))))
    logs: list[LogSource] = []
    for i, table in enumerate(_tables(data, "logs", problems), 1):
        where = f"logs[{i}]"
        entry = _check(table, _LOGS, where, problems)
        if not entry.get("paths"):
            if "paths" not in table:
                problems.append(f"{where}.paths is missing")
            elif "paths" in entry:
                problems.append(f"{where}.paths is empty")
            continue
        paths = tuple(str(base / os.path.expanduser(p)) for p in entry["paths"])
        logs.append(LogSource(paths, bool(entry.get("auto_revoke", default_revoke))))
    orgs = [org for i, table in enumerate(_tables(data, "org", problems), 1)
            if (org := _org(table, f"org[{i}]", default_revoke, problems)) is not None]
    if len({o.key for o in orgs}) < len(orgs):
        problems.append("an [[org]] is listed twice (same forge, api_url and account)")
    if not repos and not logs and not orgs and not problems:
        problems.append("nothing to sweep: add [[repo]], [[org]] or [[logs]] tables")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    database = settings.get("database")
    return SweepConfig(
        path=path,
        database=str(base / os.path.expanduser(database)) if database else None,
        cache=str(base / os.path.expanduser(settings.get("cache", DEFAULT_CACHE))),
        concurrency=settings.get("concurrency", DEFAULT_CONCURRENCY),
        auto_revoke=default_revoke, repos=tuple(repos), logs=tuple(logs),
        orgs=tuple(orgs), notify=notify)


def _api_url(value: str | None, default: str, where: str, problems: list[str]) -> str:
    """An API base URL: https (http only to this machine, for stand-ins), no user,
    password or token in it, no query; kept without a trailing slash."""
    if value is None:
        return default
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        parts, host = urlsplit(""), ""
    if holds_token(value) or _invisible(value) or "@" in parts.netloc:
        problems.append(f"{where}.api_url must not hold a user, password, token or "
                        f"invisible characters (name the credential with token_env)")
    elif not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))) \
            or not host or parts.query or parts.fragment:
        problems.append(f"{where}.api_url must be an https:// URL without a query (http "
                        f"only to this machine), not {scrub(value, 60)!r}")
    return value.rstrip("/")


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _org(table: dict[str, Any], where: str, default_revoke: bool,
         problems: list[str]) -> OrgSource | None:
    """One ``[[org]]`` checked whole: unknown keys, types, one forge, known values."""
    entry = _check(table, _ORG, where, problems)
    forges = [f for f in ("github", "gitlab") if f in table]
    if len(forges) != 1:
        problems.append(f"{where} needs exactly one of github = \"<org or user>\" or "
                        f"gitlab = \"<group path>\"")
        return None
    forge = forges[0]
    account = entry.get(forge, "").strip("/")
    if holds_token(account) or _invisible(account):
        # The account is in every row, log line and API URL (sent to the forge): a
        # token pasted here would be printed whole and sent away; never quoted.
        problems.append(f"{where}.{forge} holds a token or invisible characters: name "
                        "the organisation, user or group (the credential goes in the "
                        "variable token_env names)")
        return None
    if not _ACCOUNT[forge].fullmatch(account):
        problems.append(f"{where}.{forge} is not a {forge} "
                        f"{'organisation or user' if forge == 'github' else 'group path'}: "
                        f"{scrub(repr(account), 60)}")
        return None
    if forge == "github" and "include_subgroups" in table:
        problems.append(f"{where}.include_subgroups is for gitlab groups only")
    visibility = tuple(entry.get("visibility", VISIBILITIES))
    bad = [v for v in visibility if v not in VISIBILITIES]
    if bad or not visibility:
        problems.append(f"{where}.visibility must list some of {', '.join(VISIBILITIES)}"
                        + (f", not {scrub(repr(bad[0]), 30)}" if bad else ""))
    token_env = entry.get("token_env")
    if token_env is not None and holds_token(token_env):
        # A token is a valid variable name (letters, digits, _), and the name is
        # printed ("$NAME is not set"): refused without quoting it.
        problems.append(f"{where}.token_env holds a token: name the environment "
                        "variable that holds it (the credential itself never goes in "
                        "this file)")
        token_env = None
    elif token_env is not None and not _ENV_NAME.fullmatch(token_env):
        problems.append(f"{where}.token_env must name an environment variable (the "
                        f"credential itself never goes in this file)")
        token_env = None
    for key in ("include", "exclude", "topics", "branches"):
        for value in entry.get(key, ()):
            if holds_token(value) or _invisible(value):
                problems.append(f"{where}.{key} holds a token or invisible characters")
    api = _api_url(entry.get("api_url"), GITHUB_API if forge == "github" else GITLAB_API,
                   where, problems)
    return OrgSource(
        forge=forge, account=account, api_url=api, include=tuple(entry.get("include", ())),
        exclude=tuple(entry.get("exclude", ())), archived=entry.get("archived", False),
        forks=entry.get("forks", False), visibility=visibility,
        topics=tuple(entry.get("topics", ())),
        include_subgroups=entry.get("include_subgroups", True), token_env=token_env,
        branches=tuple(entry.get("branches", ())),
        auto_revoke=bool(entry.get("auto_revoke", default_revoke)))


def load(path: str | os.PathLike[str]) -> SweepConfig:
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    return parse(text, name)


def shard_of(source: RepoSource | LogSource, count: int) -> int:
    """A stable shard number in ``0..count-1`` for a source: the same on every machine
    and run (SHA-256 of its name or paths, not Python's salted ``hash``)."""
    ident = source.mirror_name if isinstance(source, RepoSource) else source.key
    return int.from_bytes(hashlib.sha256(ident.encode()).digest()[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with ``0 <= K < N`` (K as a Kubernetes Indexed Job numbers its pods)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise ConfigError(f"--shard wants K/N with 0 <= K < N (e.g. 0/4), not {text!r:.40}")
    return int(match.group(1)), int(match.group(2))
