"""The test PostgreSQL: a fresh schema per test in the database ``CENDIS_TEST_PG`` names
(default: the local one ``.ci/run`` creates, when it answers).

Without a server the PostgreSQL cases skip with one line saying how to enable them;
under CI (``CI=true``) that skip is a failure, since a backend never tested is no
backend. Each test gets its own schema (``search_path`` in the URL), dropped after it,
so tests in parallel workers never see each other's rows.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

PG_ENV = "CENDIS_TEST_PG"
LOCAL = "postgresql://cendis:cendis@127.0.0.1:5432/cendis_test"
HOW = (f"PostgreSQL tests skipped: no server at ${PG_ENV} or {LOCAL.replace(':cendis@', ':***@')}"
       f" (set {PG_ENV}=postgresql://USER:PASSWORD@HOST/DB, or run .ci/run's PostgreSQL steps)")


@functools.cache
def base_url() -> str | None:
    """The test database's URL, or None when no server answers."""
    import psycopg

    url = os.environ.get(PG_ENV) or LOCAL
    try:
        with psycopg.connect(url, connect_timeout=3):
            return url
    except psycopg.Error:
        return None


def require() -> str:
    """The base URL, or skip (fail under CI) with one line saying how to enable."""
    url = base_url()
    if url is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{HOW}: required under CI", pytrace=False)
        pytest.skip(HOW)
    return url


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections see ``schema`` first."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL on a new empty schema, dropped afterwards."""
    import psycopg

    base = require()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield with_schema(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
