"""Hostile pass on the PostgreSQL support (issue 16): a password never shown whatever
the URL's shape, a database of someone else's tables refused in one line, a partner
token with surrounding whitespace revoked, overlapping batches never deadlocking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from receiver import CREDENTIAL

from scanner.incidents.store.common import mask_error, mask_url

#: (URL, the secret that must never be shown): every shape libpq quotes back or accepts.
HOSTILE_URLS = [
    ("Postgresql://hostile:SECRETPW@127.0.0.1/h_a", "SECRETPW"),
    ("POSTGRES://hostile:SECRETPW@127.0.0.1/h_a", "SECRETPW"),
    ("postgresql://hostile:SECRETPW@[::1/x", "SECRETPW"),
    ("postgresql://hostile:SECRET%zzPW@127.0.0.1/hostile", "SECRET%zzPW"),
    ("postgresql://hostile@127.0.0.1/hostile?password=SECRET%zzPW", "SECRET%zzPW"),
    ("postgresql://hostile:SECRET PW@127.0.0.1/hostile", "SECRET PW"),
    ("postgresql://hostile:SECRET#PW@127.0.0.1/hostile", "SECRET#PW"),
    ("postgresql://hostile:SECRET?PW@127.0.0.1/hostile", "SECRET?PW"),
    ("postgresql://hostile:SEC/RET@PW@127.0.0.1/hostile", "SEC/RET@PW"),
    ("postgresql://hostile:SECRET%41PW@127.0.0.1/hostile", "SECRETAPW"),
    ("host=127.0.0.1 user=hostile password=SECRETPW dbname=hostile", "SECRETPW"),
]


def _pieces(secret: str) -> list[str]:
    """The secret and its parts around a separator: none may be shown."""
    from urllib.parse import unquote

    parts = [secret, unquote(secret)]
    for sep in (" ", "#", "?", "/", "@", "%"):
        parts += [p for p in secret.split(sep) if len(p) >= 4 and p != "hostile"]
    return parts


@pytest.mark.parametrize(("url", "secret"), HOSTILE_URLS)
def test_mask_url_and_mask_error_hide_the_password(url: str, secret: str) -> None:
    shown = mask_url(url)
    message = mask_error(f'libpq: bad "{url}" near "{secret}" ({secret.split()[0]})', url)
    for piece in _pieces(secret):
        assert piece not in shown and piece not in message, (piece, shown, message)
    assert "hostile" in shown and "***" in shown


@pytest.mark.parametrize(("url", "secret"), [u for u in HOSTILE_URLS if "://" in u[0]])
@pytest.mark.parametrize("command", [["incidents", "list"], ["db", "migrate"],
                                     ["serve", "--port", "1"]])
def test_a_hostile_url_is_one_line_exit_2_and_no_password(
        cli: Any, tmp_path: Path, url: str, secret: str, command: list[str]) -> None:
    proc = cli([*command, "--db", url], cwd=tmp_path, env={"CENDIS_TOKEN": CREDENTIAL},
               timeout=60)
    assert proc.returncode == 2, proc.err
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.err, proc.err
    for piece in _pieces(secret):
        assert piece not in proc.out + proc.err, (piece, proc.err)


def _foreign(url: str, statement: str) -> None:
    """Someone else's table of one of our names, in the database ``url`` names."""
    if "://" in url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement)
    else:
        import sqlite3

        with sqlite3.connect(url) as conn:
            conn.execute(statement)
        conn.close()


@pytest.mark.parametrize("statement", [
    "create table incidents(id text, foo int)",
    "create table sightings(x int)",
    "create table deliveries(partner text)",
])
@pytest.mark.parametrize("command", [["db", "migrate"], ["incidents", "list"]])
def test_a_database_of_someone_elses_tables_is_refused_in_one_line(
        store_url: str, cli: Any, statement: str, command: list[str]) -> None:
    _foreign(store_url, statement)
    table = statement.split()[2].split("(")[0]
    proc = cli([*command, "--db", store_url])
    assert proc.returncode == 2, proc.err
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.err and "internal" not in proc.err
    assert f"not a cendis-scan database (it has tables of its own: {table})" in lines[0]


@pytest.mark.parametrize(("around", "real"), [
    ("{t}\n", True), (" {t}", True), ("\t{t}\r\n", True), ("\x0b{t}\x0c ", True),
    ("{t}\x00", False), ("\x00{t}", False), ("{t}\u00a0", False), ("{h}\n{r}", False),
    ("{h} {r}", False),
])
def test_a_partner_token_with_whitespace_around_is_the_token(
        make_token: Any, around: str, real: bool) -> None:
    import json
    from datetime import UTC, datetime

    from scanner.server.reports import parse_records
    from scanner.token import secret_sha256

    token = make_token()
    sent = around.format(t=token, h=token[:20], r=token[20:])
    body = json.dumps([{"token": sent, "type": "cendis_pat", "url": "https://x/y"}]).encode()
    report = parse_records(body, partner="github", source="partner:github",
                           received_at=datetime(2026, 3, 1, tzinfo=UTC))
    (ref, _), = report.items
    if real:
        assert ref.sha256 == secret_sha256(token.encode()) and not report.false_positive
    else:
        assert report.false_positive == {ref.sha256}


@pytest.fixture
def restore_loggers() -> Any:
    import logging

    from scanner.server.logs import LIBRARY_LOGGERS, LOGGERS

    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in LOGGERS + LIBRARY_LOGGERS}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.parametrize(("url", "secret"), HOSTILE_URLS)
@pytest.mark.parametrize("logger", ["psycopg.pool", "psycopg"])
def test_psycopg_log_lines_are_json_scrubbed_and_masked(
        restore_loggers: Any, make_token: Any, url: str, secret: str, logger: str) -> None:
    import io
    import json
    import logging

    from scanner.server.logs import setup_logging

    stream = io.StringIO()
    setup_logging(stream, json_lines=True, db=url)
    token = make_token()
    logging.getLogger(logger).warning("error connecting in 'cendis-store': bad %r (%s) %s",
                                      url, secret, token)
    logging.getLogger(logger).info("connection added")  # psycopg's chatter stays out
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["logger"] == logger and entry["level"] == "warning"
    assert "cendis-store" in entry["message"] and token not in lines[0]
    for piece in _pieces(secret):
        assert piece not in lines[0], (piece, lines[0])


@pytest.mark.parametrize("path", ["/incidents", "/incidents/1"])
async def test_readers_get_503_quickly_and_metrics_never_wait_with_the_tables_locked(
        aiohttp_client: Any, aiohttp_server: Any, path: str) -> None:
    """An ACCESS EXCLUSIVE lock held elsewhere (every read waits on it, as on a sick
    server): a reader gets 503 ``database`` within about READ_WAIT, /metrics answers
    within about GAUGE_WAIT with the last gauges; never the pool's or statement's wait."""
    import asyncio

    import psycopg
    from aiohttp.test_utils import TestServer
    from conftest import READY_TIMEOUT
    from pgtools import fresh_schema
    from receiver import PARTNERS, test_config

    from scanner.dev.cendis_api import create_app as standin_app
    from scanner.dev.partner import KEYS_PATH, create_key_app
    from scanner.server.app import create_app

    keys = await aiohttp_server(create_key_app(PARTNERS["public_keys"]["public_keys"]))
    cendis = await aiohttp_server(standin_app(
        tokens=[], service_credentials={CREDENTIAL: ["revoke:tokens"]}))
    with fresh_schema() as url:
        app = create_app(test_config(str(keys.make_url(KEYS_PATH))), db_path=url,
                         cendis_api_url=str(cendis.make_url("")), credential=CREDENTIAL)
        client = await aiohttp_client(TestServer(app))
        auth = {"Authorization": "Bearer reader-token-for-tests-0123"}
        assert (await client.get("/metrics")).status == 200
        with psycopg.connect(url) as admin:
            admin.execute("LOCK TABLE incidents, revoke_queue IN ACCESS EXCLUSIVE MODE")
            # Both answer while the lock is still held: had either waited on it, the
            # wait_for ceiling (far past READ_WAIT and GAUGE_WAIT) would fail the test.
            resp = await asyncio.wait_for(client.get(path, headers=auth), READY_TIMEOUT)
            assert resp.status == 503 and await resp.json() == {"error": "database"}
            scrape = await asyncio.wait_for(client.get("/metrics"), READY_TIMEOUT)
            assert scrape.status == 200
            assert "cendis_revoke_queue_depth 0.0" in await scrape.text()
            admin.rollback()
        assert (await client.get("/incidents", headers=auth)).status == 200


@pytest.mark.parametrize(("size", "rounds"), [(2, 20), (8, 10), (40, 4)])
def test_overlapping_batches_in_opposite_orders_both_commit_on_postgres(
        monkeypatch: pytest.MonkeyPatch, make_token: Any, size: int, rounds: int) -> None:
    """Two receivers write the same tokens in opposite orders at the same moment, with
    no retry allowed: sorted writes take row locks in one order, so neither deadlocks."""
    import threading
    from datetime import UTC, datetime

    from pgtools import fresh_schema

    from scanner.incidents.models import Sighting, TokenRef
    from scanner.incidents.store import postgres
    from scanner.incidents.store.postgres import PostgresStore
    monkeypatch.setattr(postgres, "_RETRIES", 1)  # a deadlock would surface, not retry
    with fresh_schema() as url, PostgresStore.connect(url) as one, \
            PostgresStore.connect(url) as two:
        for turn in range(rounds):
            tokens = [make_token() for _ in range(size)]
            items = [(TokenRef.from_token(t),
                      Sighting(source=f"turn {turn}",
                               received_at=datetime(2026, 3, 1, tzinfo=UTC)))
                     for t in tokens]
            barrier = threading.Barrier(2)
            errors: list[BaseException] = []
            results: dict[str, list[Any]] = {}

            def write(name: str, store: PostgresStore, batch: list[Any],
                      barrier: threading.Barrier = barrier, errors: list[Any] = errors,
                      results: dict[str, list[Any]] = results) -> None:
                try:
                    barrier.wait()
                    results[name] = store.record(batch, revoke=True)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=("a", one, items)),
                       threading.Thread(target=write, args=("b", two, items[::-1]))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not errors, errors
            assert [r.sha256 for r in results["a"]] == [ref.sha256 for ref, _ in items]
            assert [r.sha256 for r in results["b"]] == [ref.sha256 for ref, _ in items[::-1]]
            assert len(one.list_incidents(limit=10000)) == size * (turn + 1)


@pytest.mark.parametrize(("url", "secret"), HOSTILE_URLS)
def test_the_starting_line_names_the_masked_database(
        restore_loggers: Any, url: str, secret: str) -> None:
    """README: the ``starting`` line says which database, its password masked."""
    import io
    import json
    import logging

    from scanner.server.logs import setup_logging

    stream = io.StringIO()
    setup_logging(stream, json_lines=True, db=url)
    logging.getLogger("scanner.cli.serve").info(
        "starting", extra={"host": "127.0.0.1", "port": 8080, "db": mask_url(url)})
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "starting" and entry["db"] == mask_url(url)
    assert "hostile" in entry["db"] and "***" in entry["db"]
    for piece in _pieces(secret):
        assert piece not in entry["db"]
