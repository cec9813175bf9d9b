"""A throwaway PostgreSQL schema for one bench run (``--db postgresql://...``): created
empty, named by a URL whose connections see it first, dropped afterwards. The base
database is the caller's (use your own, e.g. ``CREATE DATABASE cendis_bench_<you>``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("postgresql://", "postgres://"))


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL on a new empty schema of ``base``, dropped (with its rows) at the end."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
