"""``incidents list|show``, ``revoke`` and ``whoami``: thin typer commands over the library
(the triage commands and ``incidents export`` are :mod:`scanner.cli.triage`).

Off the hook path: sqlite-utils and aiohttp are imported inside each command, never when
``scanner.cli`` is imported. The commands raise the library's errors; the one error
wrapper (:mod:`scanner.cli.errors`) makes each one line on stderr and its exit status.
The trail's output formats are :mod:`scanner.report.incidents`.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from scanner.cli.errors import NotFound
from scanner.cli.options import API_URL, DB, TOKEN, ListFormat, TextOrJson, typer_option
from scanner.cli.trail_args import (
    MAX_LIMIT,
    _parse_ident,
    _parse_limit,
    _parse_since,
    open_reader,
)
from scanner.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, ConfigError, short
from scanner.incidents.models import Severity, Status
from scanner.report.incidents import cell
from scanner.scrub import scrub_json

Db = Annotated[str | None, typer_option(DB)]
Token = Annotated[str | None, typer_option(TOKEN)]
ApiUrl = Annotated[str | None, typer_option(API_URL)]


def list_incidents(
    db: Db = None,
    status: Annotated[Status | None, typer.Option(
        "--status", metavar="S", help="only this status: " + ", ".join(Status))] = None,
    severity: Annotated[Severity | None, typer.Option(
        "--severity", metavar="S", help="only this severity: " + ", ".join(Severity))] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DATE",
        help="only incidents seen since DATE (2026-01-31 or an ISO time)")] = None,
    limit: Annotated[str | None, typer.Option(
        "--limit", metavar="N",
        help=f"at most N incidents, the newest (1 to {MAX_LIMIT}; default: all)")] = None,
    format: Annotated[ListFormat, typer.Option(
        "--format", metavar="FORMAT", help="table (default), json or csv")
    ] = ListFormat.TABLE,
) -> None:
    """List incidents, newest first.

    Example: cendis-scan incidents list --severity critical --format json
    """
    import json

    from scanner.report.incidents import write_csv, write_table

    moment, most = _parse_since(since), _parse_limit(limit)
    store = open_reader(db)
    try:
        rows = store.list_incidents(status=status and status.value,
                                    severity=severity and severity.value,
                                    since=moment, limit=most)
    finally:
        store.close()
    if format is ListFormat.JSON:
        sys.stdout.write(json.dumps(scrub_json(rows), indent=2) + "\n")
    elif format is ListFormat.CSV:
        write_csv(rows)
    else:
        write_table(rows)


def show_incident(
    ident: Annotated[str, typer.Argument(metavar="ID|SHA256-PREFIX")],
    db: Db = None,
    format: Annotated[TextOrJson, typer.Option(
        "--format", metavar="FORMAT", help="text (default) or json")] = TextOrJson.TEXT,
) -> None:
    """Show one incident with its sightings and events (exit 1 if there is none).

    Example: cendis-scan incidents show 3   (or: cendis-scan incidents show 9f2c81)
    """
    import json

    from scanner.report.incidents import write_incident

    wanted = _parse_ident(ident)
    store = open_reader(db)
    try:
        incident = store.get_incident(wanted)
    finally:
        store.close()
    if incident is None:
        raise NotFound(f"no incident {short(ident, 70)!r} (an id, or 4+ hex digits of the "
                       "token's SHA-256)")
    if format is TextOrJson.JSON:
        sys.stdout.write(json.dumps(scrub_json(incident), indent=2) + "\n")
    else:
        write_incident(incident)


def revoke(
    db: Db = None,
    reason: Annotated[str, typer.Option(
        "--reason", metavar="R", help="reason sent to Cendis (default: leaked)")] = "leaked",
    sha256: Annotated[str | None, typer.Option(
        "--sha256", metavar="HASH",
        help="revoke by the token's SHA-256 instead of reading it from stdin")] = None,
    token: Token = None,
    cendis_api_url: ApiUrl = None,
    wait: Annotated[float, typer.Option(
        "--wait", metavar="SECONDS",
        help="how long to keep retrying while Cendis is down (the token stays queued "
             "after; default: 30)")] = 30.0,
) -> None:
    """Revoke leaked tokens now: read from stdin, one a line (never an argument; at
    most 64 KiB, every line a valid token or nothing is sent), each recorded as a
    'manual' incident, revoked through the Cendis API. Not with --sha256 too.

    Example: pbpaste | cendis-scan revoke --reason "pasted in chat"

    Exit status: 0 all revoked or already revoked, 1 one not found, 2 error,
    130 interrupted, 143 terminated.
    """
    import signal

    from scanner.cli.errors import on_sigterm

    previous = signal.signal(signal.SIGTERM, on_sigterm)  # one line, like Ctrl-C
    try:
        code = _revoke(db, reason, sha256, token, cendis_api_url, wait)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def whoami(token: Token = None, cendis_api_url: ApiUrl = None) -> None:
    """Show who the service credential belongs to: username, org, scopes and the days
    until it expires; warn if it carries admin:org.

    Example: CENDIS_TOKEN=... cendis-scan whoami
    """
    raise typer.Exit(_whoami(token, cendis_api_url))


def register(app: typer.Typer) -> None:
    """Add ``incidents`` (``list``, ``show``, the triage commands, ``export``),
    ``revoke`` and ``whoami``."""
    from scanner.cli import triage

    group = typer.Typer(
        name="incidents", no_args_is_help=True, rich_markup_mode=None,
        help="List, inspect, triage and export the incident trail (one incident per "
             "leaked token).  Example: cendis-scan incidents list --status pending")
    group.command("list")(list_incidents)
    group.command("show")(show_incident)
    triage.register(group)
    app.add_typer(group, name="incidents")
    app.command("revoke")(revoke)
    app.command("whoami")(whoami)


MAX_STDIN = 64 * 1024  # bytes of tokens on stdin: ~1,300 tokens, never a device's stream
MAX_TOKENS = 1000  # tokens per revoke run


def _stdin_bytes(*, only_if_ready: bool = False) -> bytes | None:
    """At most :data:`MAX_STDIN` bytes of stdin, never more (``/dev/zero``, a 20 GB file
    and a stream that never ends are one usage error, not unbounded memory); None for a
    terminal, or (``only_if_ready``) for a pipe with nothing written yet."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        return None
    if only_if_ready:
        import select

        try:
            if not select.select([stream], [], [], 0)[0]:
                return None
        except (OSError, ValueError):  # not selectable (no fileno): nothing given
            return None
    raw = getattr(stream, "buffer", None)
    data = raw.read(MAX_STDIN + 1) if raw is not None else \
        stream.read(MAX_STDIN + 1).encode("utf-8", "surrogateescape")
    if len(data) > MAX_STDIN:
        raise ConfigError(f"stdin holds over {MAX_STDIN // 1024} KiB: revoke reads tokens, "
                          "one a line")
    return data


def _read_tokens_from_stdin() -> list[str]:
    """Every token on stdin, one a line (blank lines skipped); at a terminal, one token
    typed without echo. Every line must be a valid token, else nothing is sent."""
    from scanner.token import TokenCheck, check, explain

    data = _stdin_bytes()
    if data is None:
        if sys.stdin is None:
            raise ConfigError("no token on stdin (pipe it in, or pass --sha256)")
        lines = [typer.prompt("Token to revoke", hide_input=True)]
    else:
        if b"\0" in data:
            raise ConfigError("stdin holds NUL bytes: revoke reads tokens, one a line")
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise ConfigError("stdin is not UTF-8 text: revoke reads tokens, one a line"
                              ) from None
    tokens = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        verdict = check(text)
        if verdict is not TokenCheck.VALID:
            where = f"line {number}: " if len(lines) > 1 else ""
            raise ConfigError(f"nothing sent: {where}{explain(verdict, text)}")
        tokens.append(text)
    if not tokens:
        raise ConfigError("no token on stdin (pipe it in, or pass --sha256)")
    if len(tokens) > MAX_TOKENS:
        raise ConfigError(f"over {MAX_TOKENS} tokens on stdin: split them into runs")
    return tokens


def _revoke(db: str | None, reason: str, sha256: str | None, option: str | None,
            api_url: str | None, wait: float) -> int:
    import asyncio
    import math
    import re

    from scanner.cendis.client import api_url_from, credential_from
    from scanner.incidents.models import TokenRef

    if not math.isfinite(wait) or wait < 0:
        raise ConfigError(f"--wait wants a number of seconds, 0 or more, not {wait}")
    credential = credential_from(option, os.environ)
    base = api_url_from(api_url, os.environ)
    if sha256 is not None:
        digest = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError("--sha256 wants 64 hex digits")
        given = _stdin_bytes(only_if_ready=True)
        if given is not None and given.strip():
            raise ConfigError("tokens on stdin and --sha256: give one or the other")
        refs = [TokenRef(sha256=digest, redacted=f"sha256:{digest[:12]}…")]
    else:
        refs = list({ref.sha256: ref for ref in map(TokenRef.from_token,
                                                     _read_tokens_from_stdin())}.values())
    incidents = asyncio.run(_record_and_revoke(db, refs, base, credential, reason, wait))
    codes = [_report_revoke(incident) for incident in incidents]
    return EXIT_ERROR if EXIT_ERROR in codes else max(codes)


async def _record_and_revoke(db: str | None, refs: list[Any], base: str, credential: str,
                             reason: str, wait: float) -> list[dict[str, Any]]:
    """Record each of ``refs`` as a 'manual' incident (creating the database if need be),
    queue them, and revoke them now; the incidents as they then stand."""
    from scanner.incidents.models import Sighting, Status, utcnow
    from scanner.incidents.pipeline import db_path
    from scanner.incidents.trail import ONE_OFF_BACKOFF, open_trail

    async with open_trail(db_path(db), cendis_url=base, credential=credential,
                          revoker_options={**ONE_OFF_BACKOFF, "reason": reason}) as trail:
        recorded = trail.store.record(
            [(ref, Sighting(source="manual", received_at=utcnow())) for ref in refs],
            revoke=True)
        if any(r.status is Status.PENDING for r in recorded):
            await trail.drain(wait)
        return [trail.store.get_incident(r.incident_id) or {} for r in recorded]


def _report_revoke(incident: dict[str, Any]) -> int:
    status = str(incident.get("status"))
    who = incident.get("owner")
    detail = ""
    if who:
        detail = (f": owner {cell(who)} ({cell(incident.get('org'))}), token "
                  f"'{cell(incident.get('token_name'))}', scopes "
                  f"{', '.join(map(cell, incident['scopes'])) or 'none'}; severity "
                  f"{cell(incident['severity'])}")
    name = cell(incident.get("redacted", "token"))
    if status in ("revoked", "already_revoked"):
        sys.stdout.write(f"{status.replace('_', ' ')} {name}{detail}\n")
        return EXIT_CLEAN
    if status == "not_found":
        sys.stdout.write(f"not found {name}: Cendis knows no such token (never issued, or "
                         "mistyped)\n")
        return EXIT_FINDINGS
    error = cell(incident.get("last_error")) or "no answer"
    sys.stderr.write(f"cendis-scan: error: {name} not revoked ({status}, {error}); "
                     f"incident {incident.get('id')} keeps it"
                     f"{' queued for the next run' if status == 'pending' else ''}\n")
    return EXIT_ERROR


def _whoami(option: str | None, api_url: str | None) -> int:
    import asyncio

    from scanner.cendis.client import api_url_from, credential_from

    credential = credential_from(option, os.environ)
    base = api_url_from(api_url, os.environ)
    return asyncio.run(_whoami_call(base, credential))


async def _whoami_call(base: str, credential: str) -> int:
    import aiohttp

    from scanner.cendis.client import REVOKE_SCOPE, CendisClient
    from scanner.cendis.errors import CendisError

    async with aiohttp.ClientSession() as session:
        try:
            me = await CendisClient(session, base, credential).whoami()
        except CendisError as exc:
            if exc.reason == "unauthorized":
                raise ConfigError(
                    "Cendis rejected the credential (401): it is missing, wrong, expired or "
                    "revoked. Regenerate it in Cendis with the scope revoke:tokens and set "
                    "CENDIS_TOKEN (or pass --token)") from None
            raise
    days = me.days_left(datetime.now(UTC))
    out = sys.stdout.write
    out(f"username: {cell(me.username)}\norg: {cell(me.org)}\n"
        f"scopes: {', '.join(map(cell, me.scopes)) or 'none'}\n")
    out(f"credential: {cell(me.token_name)}, expires {me.expires_at.date().isoformat()} "
        f"({days} day{'s' if days != 1 else ''} left)\n")
    if "admin:org" in me.scopes:
        sys.stderr.write("cendis-scan: warning: this credential carries admin:org; Cendis "
                         "advises never to grant admin:org to anything that isn't human. "
                         "Use a token with only revoke:tokens.\n")
    if days < 0 or me.expires_at.date() < date.today():
        raise ConfigError("the credential has expired: regenerate it")
    if REVOKE_SCOPE not in me.scopes:
        raise ConfigError(f"the credential lacks the scope {REVOKE_SCOPE}: Cendis will "
                          "answer 403 to every revoke")
    return EXIT_CLEAN
