"""``cendis-scan serve``: the partner receiver, a thin typer command over
:mod:`scanner.server`. Registered on the typer app by :func:`register`; aiohttp and
cryptography are imported inside the command only, never on the scan path."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from scanner.cli.options import API_URL, DB, TOKEN, typer_option
from scanner.errors import ConfigError

log = logging.getLogger(__name__)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    db: Annotated[str | None, typer_option(DB)] = None,
    migrate: Annotated[bool, typer.Option(
        help="Migrate the database's schema at start-up (under a lock: replicas starting "
             "at once migrate once); --no-migrate refuses an old schema instead.")] = True,
    config: Annotated[Path | None, typer.Option(
        help="Receiver configuration (TOML): partners, key URLs, secrets, limits.")] = None,
    cendis_api_url: Annotated[str | None, typer_option(API_URL)] = None,
    github_keys_url: Annotated[str | None, typer.Option(
        help="GitHub's public-key URL (tests and demos use a local one).")] = None,
    gitlab_keys_url: Annotated[str | None, typer.Option(
        help="GitLab's public-key URL (enables POST /partners/gitlab).")] = None,
    token: Annotated[str | None, typer_option(TOKEN)] = None,
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
    from scanner.incidents.store import DatabaseUnavailable, database_failure, mask_url
    from scanner.incidents.trail import open_store
    from scanner.server.app import create_app
    from scanner.server.config import load_config
    from scanner.server.logs import HTTP_LOGGERS, setup_logging

    credential = credential_from(token, os.environ)
    api = api_url_from(cendis_api_url, os.environ)
    settings = load_config(config, os.environ, github_keys_url=github_keys_url,
                           gitlab_keys_url=gitlab_keys_url)
    if not credential.isprintable() or any(ch.isspace() for ch in credential):
        raise ConfigError("the Cendis credential holds a space or control character "
                          "(a line break copied along?)")
    path = db_path(db)
    try:  # before any log line: an unreachable database or a wrong schema is one line
        open_store(path, migrate=migrate).close()
    except DatabaseUnavailable as exc:
        raise ConfigError(f"cannot open the {exc}") from None
    setup_logging(db=path)
    app = create_app(settings, db_path=path, cendis_api_url=api, credential=credential,
                     migrate=migrate)
    log.info("starting", extra={"host": host, "port": port, "db": mask_url(path)})
    for note in settings.notes:  # an optional setting left unset: what it turned off
        log.warning(note)
    try:
        # aiohttp's own errors (a malformed request, quoted) go through our scrubbing
        # formatter: one JSON line, no token, never a multi-line traceback.
        web.run_app(app, host=host, port=port, access_log=None, print=None,
                    shutdown_timeout=10, handle_signals=True,
                    logger=logging.getLogger(HTTP_LOGGERS[0]))
    except Exception as exc:
        if database_failure(exc) is not None:
            from scanner.incidents.store.common import first_line

            raise ConfigError(f"cannot open the incident database {mask_url(path)}: "
                              f"{first_line(exc, path)}") from None
        if isinstance(exc, OSError | OverflowError):
            raise ConfigError(f"cannot serve on {host}:{port}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        raise


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
