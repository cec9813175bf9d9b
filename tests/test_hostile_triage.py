"""A hostile user against notifications, triage and the dashboard (issues 17 and 18):
the sign-in limit under attempts sent at once, a whole token stored by an older version
(or by hand) served by no output, CSV cells that would be spreadsheet formulas, caches
on the authenticated JSON answers, and a notify URL Python cannot even split.

Real HTTP on loopback (aiohttp_client, raw sockets for the racing sign-ins), a real
SQLite trail, the installed CLI as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from conftest import run
from dashtools import Clock, bearer, config, csrf_of, make_app, seed, sign_in
from privacy import Needles

from scanner.report.incidents import COLUMNS
from scanner.token import generate


async def _race_sign_ins(host: str, port: int, cookie: str, csrf: str, count: int,
                         sessions: list[tuple[str, str]] | None = None) -> list[int]:
    """``count`` failing sign-ins whose bodies all arrive only after every request has
    started (as an attacker's parallel connections do): the status of each."""
    pending = []
    for index in range(count):
        session_cookie, session_csrf = sessions[index] if sessions else (cookie, csrf)
        body = urlencode({"csrf": session_csrf, "name": "mallory",
                          "token": f"guess-{index}-{bearer()}"}).encode()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /dashboard/signin HTTP/1.1\r\nHost: %s:%d\r\n"
                     b"Cookie: cendis_session=%s\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % (host.encode(), port, session_cookie.encode(), len(body)) + body[:3])
        await writer.drain()
        pending.append((reader, writer, body[3:]))
    await asyncio.sleep(0.2)  # every request is now waiting on its body
    for _, writer, rest in pending:
        writer.write(rest)
    statuses = []
    for reader, writer, _ in pending:
        line = await reader.readline()
        statuses.append(int(line.split()[1]))
        writer.close()
    return statuses


@pytest.mark.parametrize("count", [6, 25])
@pytest.mark.parametrize("one_session", [True, False])
async def test_sign_ins_sent_at_once_are_still_limited(
        aiohttp_client: Any, tmp_path: Path, count: int, one_session: bool) -> None:
    """The limit is 5 failures per address: attempts racing each other (their bodies
    arriving late, one session's CSRF token or one each) get no more guesses."""
    db = tmp_path / "trail.db"
    seed(db, random.Random(1), 1)
    token = bearer()
    client = await aiohttp_client(make_app(db, config(reader_token=token), Clock()))
    sessions = []
    for _ in range(1 if one_session else count):
        resp = await client.get("/dashboard/signin")
        sessions.append((resp.cookies["cendis_session"].value, csrf_of(await resp.text())))
    statuses = await _race_sign_ins(
        client.server.host, client.server.port, *sessions[0], count,
        None if one_session else sessions)
    assert statuses.count(401) <= 5 and set(statuses) <= {401, 429}, statuses
    assert statuses.count(429) == count - 5
    metrics = await (await client.get("/metrics")).text()
    assert 'cendis_dashboard_signin_failures_total{reason="bad_token"} 5.0' in metrics
    # and the right token is refused too until the window passes
    page = await (await client.get("/dashboard/signin")).text()
    resp = await client.post("/dashboard/signin", data={
        "csrf": csrf_of(page), "name": "alice", "token": token})
    assert resp.status == 429


# -- a whole token in the database (an older version's, or written by hand) -------------

def _forms(token: str) -> dict[str, str]:
    return {"whole": token, "base64": base64.b64encode(f"k={token}".encode()).decode(),
            "percent": quote(f"x {token}", safe="")}


@pytest.fixture(params=["whole", "base64", "percent"])
def leaky_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A trail whose stored texts hold a token in one form, written past the store (as
    an old version or a person with sqlite3 could); removed at the end, so the suite's
    own privacy check looks only at what the code wrote."""
    db = tmp_path / "old.db"
    seed(db, random.Random(3), 2, revoke_every=1)
    token = generate(random.Random(request.param))
    text = _forms(token)[request.param]
    with sqlite3.connect(db) as con:
        con.execute("UPDATE incidents SET owner = ?, token_name = ?, assignee = ?, "
                    "last_error = ?", (text, text, text, text))
        con.execute("UPDATE sightings SET source = ?, url = ?, repository = ?", (
            "scan:" + text, "https://git.example/" + text, text))
        con.execute("UPDATE events SET detail = ?, actor = ?", (text, text))
    con.close()
    try:
        yield db, token
    finally:
        for path in tmp_path.glob("old.db*"):
            path.unlink()


def _assert_clean(data: str | bytes, token: str, where: str) -> None:
    found = Needles([token]).find(data)
    assert found is None, f"{where}: {found}"


async def test_no_http_answer_serves_a_stored_token(aiohttp_client: Any,
                                                    leaky_db: tuple[Path, str]) -> None:
    db, token = leaky_db
    tokens = {"reader": bearer(), "triager": bearer()}
    client = await aiohttp_client(make_app(db, config(reader_token=tokens["reader"],
                                                      triager_token=tokens["triager"]),
                                           Clock()))
    auth = {"Authorization": f"Bearer {tokens['triager']}"}
    for path in ("/incidents", "/incidents/1", "/incidents/2"):
        resp = await client.get(path, headers=auth)
        assert resp.status == 200, path
        _assert_clean(await resp.read(), token, path)
    resp = await client.post("/incidents/1/actions", headers=auth,
                             json={"action": "note", "by": "alice", "note": "seen"})
    assert resp.status == 200
    _assert_clean(await resp.read(), token, "POST /incidents/1/actions")
    await sign_in(client, tokens["triager"])
    for path in ("/dashboard/", "/dashboard/incidents", "/dashboard/incidents/1",
                 "/dashboard/incidents.csv"):
        resp = await client.get(path)
        assert resp.status == 200, path
        _assert_clean(await resp.read(), token, path)


@pytest.mark.parametrize("args", [["list", "--format", "json"], ["list", "--format", "csv"],
                                  ["list"], ["show", "1", "--format", "json"], ["show", "1"],
                                  ["export", "--format", "jsonl"]])
def test_no_cli_output_prints_a_stored_token(leaky_db: tuple[Path, str],
                                             args: list[str]) -> None:
    db, token = leaky_db
    proc = run(["incidents", *args, "--db", str(db)])
    assert proc.returncode == 0, proc.err
    _assert_clean(proc.stdout + proc.stderr, token, " ".join(args))
    if args[-1] == "json":
        json.loads(proc.stdout)  # still JSON


# -- CSV cells that a spreadsheet would run -----------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)",
            "\t=1", "\r=1", "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_cli_csv_cells_never_start_a_formula(tmp_path: Path, formula: str) -> None:
    """``incidents list --format csv``: what Cendis returned (owner, a token's name chosen
    by whoever made it, org) and the last error are shown as text in a spreadsheet."""
    db = tmp_path / "formula.db"
    seed(db, random.Random(4), 2, revoke_every=1)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE incidents SET owner = ?, token_name = ?, org = ?, last_error = ?",
                    (formula,) * 4)
    con.close()
    proc = run(["incidents", "list", "--format", "csv", "--db", str(db)])
    assert proc.returncode == 0, proc.err
    rows = list(csv.reader(io.StringIO(proc.out)))
    assert len(rows) == 3
    for row in rows[1:]:
        assert all(cell[:1] not in "=+-@\t\r" for cell in row), row
        if formula[:1] in "=+-@":  # kept, as text (a tab or CR is shown escaped)
            assert row[COLUMNS.index("owner")] == "'" + formula, row


@pytest.mark.parametrize("formula", FORMULAS)
async def test_dashboard_csv_cells_never_start_a_formula(aiohttp_client: Any, tmp_path: Path,
                                                         formula: str) -> None:
    db = tmp_path / "formula.db"
    seed(db, random.Random(5), 2, revoke_every=1)
    with sqlite3.connect(db) as con:  # past the store's scrub: an old database's text
        con.execute("UPDATE incidents SET owner = ?, token_name = ?, assignee = ?",
                    (formula,) * 3)
    con.close()
    token = bearer()
    client = await aiohttp_client(make_app(db, config(reader_token=token), Clock()))
    await sign_in(client, token)
    text = await (await client.get("/dashboard/incidents.csv")).text()
    for row in list(csv.reader(io.StringIO(text)))[1:]:
        assert all(cell[:1] not in "=+-@\t\r" for cell in row), row


# -- the authenticated JSON API is never cached ------------------------------------------

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/incidents", None), ("GET", "/incidents/1", None),
    ("POST", "/incidents/1/actions", {"action": "note", "by": "alice", "note": "n"})])
async def test_authenticated_json_answers_are_not_stored(
        aiohttp_client: Any, tmp_path: Path, method: str, path: str,
        body: dict[str, str] | None) -> None:
    db = tmp_path / "trail.db"
    seed(db, random.Random(6), 1)
    token = bearer()
    client = await aiohttp_client(make_app(db, config(triager_token=token), Clock()))
    resp = await client.request(method, path, json=body,
                                headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"


# -- a notify URL that does not even split -----------------------------------------------

@pytest.mark.parametrize("url", ["http://[::1", "https://[not-an-ip]/x",
                                 "http://127.0.0.1:99999/x", "https://hooks.example:0x1/x",
                                 "https://hooks.example:-1/x"])
@pytest.mark.parametrize("key", ["url", "base_url"])
def test_a_malformed_notify_url_is_one_config_line(tmp_path: Path, url: str, key: str) -> None:
    channel = {"kind": "slack", "url": "http://127.0.0.1:9/x"}
    head = ""
    if key == "url":
        channel["url"] = url
    else:
        head = f"[notify]\nbase_url = {json.dumps(url)}\n"
    conf = tmp_path / "notify.toml"
    conf.write_text(head + "[notify.channels.security]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in channel.items()))
    proc = run(["notify", "test", "security", "--config", str(conf)])
    assert proc.returncode == 2, proc.err
    assert "internal error" not in proc.err and "Traceback" not in proc.err
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1 and "not a valid URL" in lines[0], proc.err
