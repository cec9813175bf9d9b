"""``cendis-scan db migrate|copy``: the incident database's schema and moving a trail
between databases. Thin over :mod:`scanner.incidents.store`; a library error is one
line and exit 2, and a database URL is only ever shown with its password masked."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from scanner.cli.options import DB, typer_option
from scanner.errors import ConfigError


def migrate(db: Annotated[str | None, typer_option(DB)] = None) -> None:
    """Create the incident database or bring its schema up to date (idempotent).

    Safe while receivers run: PostgreSQL migrates under an advisory lock, SQLite under
    its write lock. `serve` also migrates at start-up. Exit status: 0 done, 2 error.

    Example: cendis-scan db migrate --db postgresql://cendis@db.internal/cendis
    """
    from scanner.incidents.pipeline import db_path
    from scanner.incidents.store import SCHEMA_VERSION, SchemaError, mask_url, open_store

    target = db_path(db)
    try:
        open_store(target, migrate=False).close()
        said = f"schema {SCHEMA_VERSION} (up to date)"
    except SchemaError as exc:
        if exc.found > SCHEMA_VERSION:
            raise
        open_store(target, migrate=True).close()
        said = f"migrated to schema {SCHEMA_VERSION} (was {exc.found or 'empty'})"
    sys.stdout.write(f"{mask_url(target)}: {said}\n")


def copy(source: str = typer.Argument(..., metavar="SRC", help="the database to read"),
         destination: str = typer.Argument(..., metavar="DST",
                                           help="the database to add the trail to")) -> None:
    """Copy a whole incident trail (incidents, sightings, events, revoke queue, partner
    keys, delivery ids) from SRC to DST, each a path or a postgresql:// URL.

    Idempotent: rows DST already has are kept, so running it twice adds nothing, and
    ids are mapped through the token hashes. DST is created or migrated first; SRC is
    only read. Stop the receivers writing to SRC first. Exit status: 0 done, 2 error.

    Example: cendis-scan db copy cendis-incidents.db postgresql://cendis@db.internal/cendis
    """
    from scanner.incidents.store import is_postgres, mask_url, open_store
    from scanner.incidents.store.copy import copy_trail

    if not is_postgres(source) and not os.path.isfile(source):
        raise ConfigError(f"no incident database at {mask_url(source)}")
    with open_store(source, migrate=False) as src, open_store(destination) as dst:
        added = copy_trail(src, dst)
    said = ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in added.items())
    sys.stdout.write(f"copied {mask_url(source)} to {mask_url(destination)}: added {said}\n")


def register(app: typer.Typer) -> None:
    """Add the ``db`` group to the application."""
    group = typer.Typer(name="db", no_args_is_help=True, rich_markup_mode=None,
                        help="The incident database: migrate its schema, copy a trail.  "
                             "Example: cendis-scan db migrate --db postgresql://...")
    group.command("migrate")(migrate)
    group.command("copy")(copy)
    app.add_typer(group, name="db")
