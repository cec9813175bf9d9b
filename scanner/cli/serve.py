"""``cendis-scan serve`` (the partner receiver) and ``cendis-scan dev send-report`` (a
local signing partner). Registered on the typer app by :func:`register`; aiohttp and
cryptography are imported inside the commands only, never on the scan path."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scanner.errors import EXIT_ERROR, ScanError

DEFAULT_PARTNER_URL = "http://127.0.0.1:8080/partners/github"


def _fail(message: str) -> typer.Exit:
    from scanner.scrub import scrub

    sys.stderr.write(f"cendis-scan: error: {scrub(message, 500)}\n")
    return typer.Exit(EXIT_ERROR)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    db: Annotated[str | None, typer.Option(
        help="Incident database: a file (SQLite) or postgresql://... (default: "
             "$CENDIS_SCAN_DB or ./cendis-incidents.db).")] = None,
    migrate: Annotated[bool, typer.Option(
        help="Migrate the database's schema at start-up (under a lock: replicas starting "
             "at once migrate once); --no-migrate refuses an old schema instead.")] = True,
    config: Annotated[Path | None, typer.Option(
        help="Receiver configuration (TOML): partners, key URLs, secrets, limits.")] = None,
    cendis_api_url: Annotated[str | None, typer.Option(
        help="Cendis API base URL (default: $CENDIS_API_URL or https://api.cendis.ai).")]
    = None,
    github_keys_url: Annotated[str | None, typer.Option(
        help="GitHub's public-key URL (tests and demos use a local one).")] = None,
    gitlab_keys_url: Annotated[str | None, typer.Option(
        help="GitLab's public-key URL (enables POST /partners/gitlab).")] = None,
    token: Annotated[str | None, typer.Option(
        help="Service credential (prefer $CENDIS_TOKEN: argv is visible to others).")] = None,
) -> None:
    """Receive signed leak reports from partners, record them and revoke the tokens.

    Routes: POST /partners/github, /partners/gitlab, /partners/NAME (Standard Webhooks);
    GET /healthz, /readyz, /metrics, /incidents, /incidents/ID (reader token).
    Stops gracefully on SIGTERM. Exit status: 0 stopped, 2 configuration error.

    Example: CENDIS_TOKEN=... cendis-scan serve --port 8080 --config receiver.toml
    """
    from aiohttp import web

    from scanner.cendis.client import api_url_from, credential_from
    from scanner.incidents.pipeline import db_path
    from scanner.server.app import create_app
    from scanner.server.config import load_config
    from scanner.server.logs import setup_logging

    try:
        credential = credential_from(token, os.environ)
        api = api_url_from(cendis_api_url, os.environ)
        settings = load_config(config, os.environ, github_keys_url=github_keys_url,
                               gitlab_keys_url=gitlab_keys_url)
    except ScanError as exc:
        raise _fail(str(exc)) from None
    if not credential.isprintable() or any(ch.isspace() for ch in credential):
        raise _fail("the Cendis credential holds a space or control character "
                    "(a line break copied along?)")
    from scanner.incidents.store import DatabaseUnavailable, database_failure, mask_url
    from scanner.incidents.trail import open_store

    path = db_path(db)
    try:  # before any log line: an unreachable database or a wrong schema is one line
        open_store(path, migrate=migrate).close()
    except DatabaseUnavailable as exc:
        raise _fail(f"cannot open the {exc}") from None
    except ScanError as exc:
        raise _fail(str(exc)) from None
    setup_logging(db=path)
    app = create_app(settings, db_path=path, cendis_api_url=api, credential=credential,
                     migrate=migrate)
    import logging

    logging.getLogger("scanner.server").info(
        "starting", extra={"host": host, "port": port, "db": mask_url(path)})
    for note in settings.notes:  # an optional setting left unset: what it turned off
        logging.getLogger("scanner.server").warning(note)
    try:
        # aiohttp's own errors (a malformed request, quoted) go through our scrubbing
        # formatter: one JSON line, no token, never a multi-line traceback.
        web.run_app(app, host=host, port=port, access_log=None, print=None,
                    shutdown_timeout=10, handle_signals=True,
                    logger=logging.getLogger("scanner.server.http"))
    except ScanError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        if database_failure(exc) is not None:
            from scanner.incidents.store.common import first_line

            raise _fail(f"cannot open the incident database {mask_url(path)}: "
                        f"{first_line(exc, path)}") from None
        if isinstance(exc, OSError | OverflowError):
            raise _fail(f"cannot serve on {host}:{port}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
        raise


def send_report(
    url: Annotated[str, typer.Option(help="The receiver's GitHub route.")]
    = DEFAULT_PARTNER_URL,
    token_file: Annotated[Path | None, typer.Option(
        help="Report the cendis_pat_ tokens in this file (a list, an .env, any text); "
             "with none, each non-empty line (default: one freshly generated token).")]
    = None,
    keys_port: Annotated[int, typer.Option(
        help="Port of this partner's key endpoint (serve --github-keys-url "
             "http://127.0.0.1:PORT/meta/public_keys/secret_scanning).")] = 8090,
    wait: Annotated[float, typer.Option(help="Retry 503 answers for this many seconds.")]
    = 30.0,
) -> None:
    """Act as a secret-scanning partner: serve a GitHub-shaped key endpoint with a fresh
    P-256 key and post one signed report. Prints the redacted tokens and the answer.
    Exit status: 0 accepted (200), 1 refused, 2 error.

    Example: cendis-scan dev send-report --token-file leaked.txt
    """
    import asyncio

    from scanner.dev.partner import send_report as post
    from scanner.token import generate, redact

    if token_file is not None:
        try:
            tokens = tokens_in(token_file.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise _fail(f"{token_file}: {exc.strerror or exc}") from None
    else:
        tokens = [generate()]
    if not tokens:
        raise _fail(f"{token_file}: no tokens")
    try:
        status, answer = asyncio.run(post(url, tokens, keys_port=keys_port, wait=wait,
                                          out=sys.stderr))
    except OSError as exc:
        raise _fail(f"cannot reach {url} or serve keys on {keys_port}: "
                    f"{exc.strerror or exc}") from None
    from scanner.token import secret_sha256

    labels = {}
    if isinstance(answer, list):
        labels = {a.get("token_hash"): a.get("label") for a in answer if isinstance(a, dict)}
    for token in tokens:
        label = labels.get(secret_sha256(token.encode())) or "queued"
        typer.echo(f"{redact(token)}  {label}")
    typer.echo(f"receiver answered {status}")
    if status != 200:
        sys.stderr.write(f"cendis-scan: report refused: {str(answer)[:200]}\n")
        raise typer.Exit(1)


def tokens_in(text: str) -> list[str]:
    """Every distinct ``cendis_pat_`` token-shaped string in ``text`` (so an ``.env`` or a
    log works as it is), else the non-empty, non-comment lines (to report other strings)."""
    import re

    found = re.findall(r"cendis_pat_[0-9A-Za-z]{20,}", text)
    if found:
        return list(dict.fromkeys(found))
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def add_send_report(dev: typer.Typer) -> None:
    """Add ``send-report`` to the ``dev`` group (called by :mod:`scanner.cli.dev`)."""
    dev.command("send-report")(send_report)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
