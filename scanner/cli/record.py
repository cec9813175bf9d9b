"""``--record`` and ``--revoke`` for ``scan`` and ``git``: findings into the incident trail.

Defined once for both commands (the options themselves: :mod:`scanner.cli.options`).
Nothing here is imported unless one of the options is given, so the hook path never
loads SQLite or aiohttp.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from scanner.errors import EXIT_ERROR, ConfigError
from scanner.result import ScanResult
from scanner.scrub import scrub

if TYPE_CHECKING:
    from scanner.incidents.store import Store
    from scanner.notify.config import NotifyConfig

#: How long the one notification pass at the end of a scan may take (seconds): what is
#: left stays in the outbox for the next run (or a running serve).
NOTIFY_PATIENCE = 30.0


def check(args: argparse.Namespace) -> None:
    """Before the scan: a --revoke without a credential, a bad API URL or a database
    that cannot be opened fails now, not after the scan."""
    from scanner.incidents.pipeline import db_path

    if args.revoke:
        from scanner.cendis.client import api_url_from, credential_from

        credential_from(args.token, os.environ)
        api_url_from(args.cendis_api_url, os.environ)
    notify_config(args)
    _open(db_path(args.db)).close()


def notify_config(args: argparse.Namespace) -> NotifyConfig | None:
    """``--notify-config FILE`` (else ``$CENDIS_SCAN_NOTIFY_CONFIG``): its ``[notify]``
    table, or None (nobody is told). A bad file is one line, exit 2."""
    path = getattr(args, "notify_config", None) or os.environ.get("CENDIS_SCAN_NOTIFY_CONFIG")
    if not path:
        return None
    from scanner.notify.config import load_notify_config

    return load_notify_config(path)


def notify_pass(config: NotifyConfig, patience: float = NOTIFY_PATIENCE) -> Any:
    """The hook a one-off run ends with: one bounded dispatcher pass over the outbox,
    then one line on stderr when something is left in it."""

    async def run(store: Store) -> None:
        from scanner.notify.dispatch import drain_once

        sent, left, error = await drain_once(store, config, patience=patience)
        if left:
            why = f"last error {error}" if error else "a channel rate-limited"
            sys.stderr.write(f"cendis-scan: notified {sent} message{'s' if sent != 1 else ''}"
                             f"; {left} left in the outbox ({why}): sent by the next "
                             "--record, sweep or a running serve\n")

    return run


def _open(db: str) -> Store:
    """The incident store, or one line naming the database and what is wrong."""
    import sqlite3

    from scanner.incidents.store import mask_url
    from scanner.incidents.store.common import mask_error
    from scanner.incidents.trail import open_store

    try:
        return open_store(db)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"incident database {mask_url(db)}: {mask_error(str(exc), db)}"
                          ) from None


def record(result: ScanResult, args: argparse.Namespace, source: str) -> int:
    """Record (and revoke) ``result.findings``; one summary line on stderr. Returns 2
    when a token that should have been revoked was not, else 0."""
    if not (args.record or args.revoke):
        return 0
    from scanner.cendis.client import api_url_from, credential_from
    from scanner.incidents.pipeline import db_path, record_scan

    db = db_path(args.db)
    credential = credential_from(args.token, os.environ) if args.revoke else None
    from scanner.incidents.store import database_failure, mask_url
    from scanner.incidents.store.common import first_line

    notify = notify_config(args)
    try:
        trail = record_scan(result.findings, scrub(source, 200), db=db,
                            revoke=args.revoke, credential=credential,
                            api_url=api_url_from(args.cendis_api_url, os.environ),
                            router=notify,  # type: ignore[arg-type] # a read-only field
                            after=notify_pass(notify) if notify and notify.by_name else None)
    except Exception as exc:  # noqa: BLE001 - the database's failures are one line
        if database_failure(exc) is None:
            raise
        raise ConfigError(f"incident database {mask_url(db)}: {first_line(exc, db)}"
                          ) from None
    line = (f"cendis-scan: recorded {trail.recorded} finding"
            f"{'s' if trail.recorded != 1 else ''} as {trail.incidents} incident"
            f"{'s' if trail.incidents != 1 else ''} in {mask_url(db)}")
    if args.revoke:
        said = ", ".join(f"{n} {status.replace('_', ' ')}"
                         for status, n in sorted(trail.statuses.items()))
        line += f"; revoke: {said or 'nothing to revoke'}"
        if trail.pending:
            line += (f" ({trail.pending} not revoked yet: still queued, sent again by the "
                     "next --revoke or a running serve; see cendis-scan incidents list "
                     "--status pending)")
        if trail.refused:
            line += (f" ({trail.refused} refused by Cendis: see cendis-scan incidents list "
                     "--status error)")
    sys.stderr.write(line + "\n")
    return EXIT_ERROR if trail.failed else 0
