"""Issue 14, class 3 and the receiver's part of 4 and 5, through the real receiver on
loopback: one bad record or delivery never fails another, a write lock held by another
process never stops the event loop, headers are judged before the body is read, the
record cap, whole delivery ids, replays under new ids, withdrawn partner keys, and the
reader API's query parameters."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import READY_TIMEOUT
from receiver import PARTNERS, Rig, RigFactory
from test_server_http import READER, _raw, _webhook_headers, token_hash

from scanner.dev.partner import STATE as KEYS_STATE
from scanner.dev.partner import report_body


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    from conftest import assert_no_leak

    caplog.set_level("INFO")
    yield
    assert_no_leak(caplog.text)


class Clock:
    """An injected monotonic clock: tests move time, nothing sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _signed(rig: Rig, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Github-Public-Key-Identifier": rig.partner.key_id,
            "Github-Public-Key-Signature": rig.partner.sign(body)}


def _sightings(rig: Rig, token: str) -> int:
    import sqlite3

    conn = sqlite3.connect(rig.db)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM sightings s JOIN incidents i ON i.id = s.incident_id "
            "WHERE i.sha256 = ?", [token_hash(token)]).fetchone()[0])
    finally:
        conn.close()


# Each bad record, as raw JSON text (a lone surrogate can only be written escaped).
BAD_RECORDS = {
    "surrogate in url": '{"token": "%s", "type": "t", "url": "https://x/\\ud800"}',
    "surrogate in type": '{"token": "%s", "type": "\\udfff", "url": "u"}',
    "surrogate in source": '{"token": "%s", "type": "t", "url": "u", "source": "\\ud800x"}',
    "surrogate in token": '{"token": "%s\\ud800", "type": "t", "url": "u"}',
    "url a number": '{"token": "%s", "type": "t", "url": 18446744073709551616}',
    "type an object": '{"token": "%s", "type": {"a": 1}, "url": "u"}',
    "source a list": '{"token": "%s", "type": "t", "url": "u", "source": ["x"]}',
    "token a number": '{"token": 9223372036854775808, "type": "t", "x": "%s"}',
    "record a string": '"%s"',
    # Valid JSON that Python's json cannot turn into objects: only this record is malformed.
    "int over the digits limit": '{"token": "%s", "extra": ' + "9" * 4301 + "}",
    "url an int over the limit": '{"token": "%s", "url": -' + "1" * 5000 + "}",
    "nested past the recursion limit": '{"token": "%s", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    "record nested past the limit": "[" * 5000 + '"%s"' + "]" * 5000,
    "brackets in strings, deep": '{"token": "%s", "x": ' + '["]{", ' * 3000 + "1"
                                 + "]" * 3000 + "}",
    "nested past the record bound": '{"token": "%s", "x": ' + '{"a": ' * 100 + "1"
                                    + "}" * 100 + "}",
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
async def test_a_bad_record_is_skipped_and_fails_no_one(
        rig_factory: RigFactory, make_token: Any, case: str) -> None:
    """The bad record is counted as malformed (with its reason), its delivery's other
    records are stored and answered 200, and a concurrent delivery from another partner
    (sharing the group commit) is not failed."""
    rig = await rig_factory(known=0)
    bad_token, good, other = make_token(), make_token(), make_token()
    records = [json.loads(report_body([good]))[0], "BAD", {"token": make_token(), "line": 2**63}]
    text = json.dumps(records).replace('"BAD"', BAD_RECORDS[case] % bad_token)
    body = text.encode()
    acme = report_body([other])
    acme_headers = _webhook_headers(acme, msg_id=f"msg-{case}")
    (status, _), (acme_status, _) = await asyncio.gather(
        _raw(rig, body, _signed(rig, body)),
        _raw(rig, acme, acme_headers, "/partners/acme"))
    assert (status, acme_status) == (200, 200)
    assert _sightings(rig, good) == 1 and _sightings(rig, other) == 1
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'cendis_records_total{outcome="malformed",partner="github"} 1.0' in metrics
    assert "cendis_records_malformed_total{" in metrics
    listed = await (await rig.client.get("/incidents", headers=READER)).json()
    assert len(listed) == 3


async def test_malformed_records_do_not_blame_the_database(
        rig: Rig, caplog: pytest.LogCaptureFixture, make_token: Any) -> None:
    text = json.dumps([json.loads(report_body([make_token()]))[0], "BAD"]).replace(
        '"BAD"', BAD_RECORDS["surrogate in url"] % make_token())
    assert (await _raw(rig, text.encode(), _signed(rig, text.encode())))[0] == 200
    refusals = [r for r in caplog.records if getattr(r, "reason", None) == "database"]
    assert not refusals and "malformed records skipped" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    return await rig_factory(known=0)


@pytest.mark.parametrize("records", [11, 200_000])
async def test_the_record_cap_refuses_fast(rig_factory: RigFactory, make_token: Any,
                                           monkeypatch: pytest.MonkeyPatch,
                                           records: int) -> None:
    """Over the cap, the delivery is refused on the count alone: no record is checked,
    hashed or stored (200,000 records once held the loop 11 s doing that work first),
    the database is unchanged, and a delivery at the cap is stored after it."""
    from receiver import snapshot

    from scanner.server import reports

    rig = await rig_factory(known=0, max_records=10, body_limit=64_000_000)
    token = make_token()
    body = report_body([token] * records)
    before = snapshot(rig.db)
    work: list[str] = []
    for name in ("token_ref", "storable"):
        real = getattr(reports, name)
        monkeypatch.setattr(reports, name, lambda *a, _real=real, _name=name, **kw: (
            work.append(_name), _real(*a, **kw))[1])
    status, answer = await _raw(rig, body, _signed(rig, body))
    assert status == 413 and answer["error"] == "too_many_records"
    assert work == []  # refused before any per-record work
    assert snapshot(rig.db) == before and _sightings(rig, token) == 0
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'cendis_records_total{outcome="accepted"' not in metrics
    ok = report_body([token] * 10)
    assert (await _raw(rig, ok, _signed(rig, ok)))[0] == 200
    assert work.count("token_ref") == 10  # the counter sees per-record work when it is done
    assert _sightings(rig, token) == 1  # stored (one sighting: the same record ten times)


HEADERS_WITHOUT_PROOF: dict[str, tuple[str, dict[str, str], int | tuple[int, ...]]] = {
    "no signature headers": ("/partners/github", {"Content-Type": "application/json"}, 400),
    "signature not base64": ("/partners/github", {
        "Content-Type": "application/json", "Github-Public-Key-Identifier": "abc",
        "Github-Public-Key-Signature": "%%%"}, 401),
    "a key id of control characters": ("/partners/github", {
        "Content-Type": "application/json", "Github-Public-Key-Identifier": "k\xe9y",
        "Github-Public-Key-Signature": "MEUCIQ=="}, 400),
    "an unknown key id": ("/partners/github", {
        "Content-Type": "application/json", "Github-Public-Key-Identifier": "f" * 64,
        "Github-Public-Key-Signature": PARTNERS["vectors"][0]["signature"]}, (401, 503)),
    "wrong content type": ("/partners/github", {
        "Content-Type": "text/plain", "Github-Public-Key-Identifier": "abc",
        "Github-Public-Key-Signature": "MEUCIQ=="}, 415),
    "webhook without headers": ("/partners/acme", {"Content-Type": "application/json"}, 400),
    "webhook with a stale timestamp": ("/partners/acme", {
        "Content-Type": "application/json", "webhook-id": "m", "webhook-timestamp": "1",
        "webhook-signature": "v1,abc"}, 401),
    "findings without a token": ("/v1/findings", {"Content-Type": "application/json"}, 401),
}


@pytest.mark.parametrize("case", sorted(HEADERS_WITHOUT_PROOF))
async def test_headers_are_judged_before_the_body_is_read(rig: Rig, case: str) -> None:
    """A 1.9 MB body (under the test limit) behind headers that prove nothing is answered after
    64 KiB of it:
    the receiver refused without waiting for (or buffering) the rest."""
    path, headers, expected = HEADERS_WITHOUT_PROOF[case]
    server = rig.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1900000\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1") + b"[" + b" " * 65536)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    # an unknown id: 401 after a refetch, or 503 while refetches are throttled
    assert int(answer.split()[1]) in (expected if isinstance(expected, tuple)
                                      else (expected,)), answer
    writer.close()


async def test_content_length_over_the_limit_is_refused_before_the_body(rig: Rig) -> None:
    server = rig.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /partners/github HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 999999999\r\n\r\n[")
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    writer.close()


async def test_delivery_ids_sharing_a_200_character_prefix_are_two_deliveries(
        rig: Rig, make_token: Any) -> None:
    prefix = "d" * 200
    tokens = [make_token() for _ in range(3)]
    for i, token in enumerate(tokens):
        body = report_body([token])
        msg_id = f"{prefix}-{i}"
        status, _ = await _raw(rig, body, _webhook_headers(body, msg_id=msg_id),
                               "/partners/acme")
        assert status == 200
        assert _sightings(rig, token) == 1, f"delivery {i} was dropped"
    # the exact id again is still a redelivery
    body = report_body([tokens[0]])
    again = _webhook_headers(body, msg_id=f"{prefix}-0")
    assert (await _raw(rig, body, again, "/partners/acme"))[0] == 200
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'cendis_reports_total{outcome="redelivery",partner="acme"} 1.0' in metrics


async def test_one_signed_body_replayed_under_new_delivery_ids_is_one_sighting(
        rig: Rig, make_token: Any) -> None:
    token = make_token()
    body = report_body([token])
    for i in range(50):
        headers = {**_signed(rig, body), "X-GitHub-Delivery": f"replay-{i:04d}"}
        assert (await _raw(rig, body, headers))[0] == 200
    assert _sightings(rig, token) == 1


async def test_a_withdrawn_key_stops_verifying_after_the_next_refresh(
        rig_factory: RigFactory, make_token: Any) -> None:
    clock = Clock()
    rig = await rig_factory(known=0, monotonic=clock, key_refresh_interval=300)
    state = rig.keys[KEYS_STATE]
    body = report_body([make_token()])
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    fetches = rig.key_cache.fetches
    state.public_keys = [k for k in state.public_keys
                         if k["key_identifier"] != rig.partner.key_id]
    state.etag = '"withdrawn"'
    clock.t += 100  # not due yet: still verifies, no fetch
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    assert rig.key_cache.fetches == fetches
    clock.t += 250  # due: the next delivery starts the refresh in the background
    await _raw(rig, body, _signed(rig, body))
    await rig.settle(lambda: rig.partner.key_id not in rig.key_cache.keys)
    clock.t += 10  # past the refetch throttle: an unknown id is refetched, then refused
    status, answer = await _raw(rig, body, _signed(rig, body))
    assert status == 401 and answer["error"] == "unknown_key"


def _other_key() -> dict[str, Any]:
    from scanner.dev.partner import PartnerKey

    return PartnerKey.generate().entry()


# issue 14 hostile D1: what a scheduled refresh answers → the next delivery's status
KEY_ANSWERS = {
    "empty list: every key withdrawn": (lambda: [], 401),
    "only another key": (lambda: [_other_key()], 401),
    "only junk entries: kept": (lambda: [{"key_identifier": "x", "key": "junk"}], 200),
    "the same key, not current": (lambda: [dict(_other_key(), is_current=False)], 401),
}


@pytest.mark.parametrize("case", sorted(KEY_ANSWERS))
async def test_an_empty_key_list_is_a_valid_answer(rig_factory: RigFactory,
                                                   make_token: Any, case: str) -> None:
    """A well-formed empty list withdraws every key (it used to be junk, and the
    withdrawn keys kept verifying); a list of only unusable entries is still junk."""
    answer, expected = KEY_ANSWERS[case]
    clock = Clock()
    rig = await rig_factory(known=0, monotonic=clock, key_refresh_interval=300)
    state = rig.keys[KEYS_STATE]
    body = report_body([make_token()])
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    state.public_keys, state.etag = answer(), f'"{case}"'
    clock.t += 350  # due: this delivery starts the refresh in the background
    await _raw(rig, body, _signed(rig, body))
    cache = rig.key_cache
    await rig.settle(lambda: cache._background is not None and cache._background.done())
    assert rig.keys[KEYS_STATE].hits >= 2
    clock.t += 10
    status, reply = await _raw(rig, body, _signed(rig, body))
    assert status == expected, reply
    if expected == 401:
        assert reply["error"] == "unknown_key" and rig.partner.key_id not in cache.keys
    ready = await rig.client.get("/readyz")
    assert "github_keys_not_loaded" not in await ready.text()


@pytest.mark.parametrize("key_id", ["random-id", "0" * 64, "k" * 200])
async def test_an_id_unknown_right_after_a_fresh_fetch_is_401_not_503(
        rig_factory: RigFactory, make_token: Any, key_id: str) -> None:
    """issue 14 hostile D2: within the refetch throttle, an id the list fetched a moment
    ago lacks is refused (401) at once; 503 (retry later) only while the last fetch failed."""
    clock = Clock()
    rig = await rig_factory(known=0, monotonic=clock, key_refresh_interval=300)
    body = report_body([make_token()])
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    await rig.key_cache.refresh()  # a fetch that worked, just now: within the throttle
    headers = {**_signed(rig, body), "Github-Public-Key-Identifier": key_id}
    fetches = rig.key_cache.fetches
    for _ in range(3):
        status, reply = await _raw(rig, body, headers)
        assert (status, reply["error"]) == (401, "unknown_key")
    assert rig.key_cache.fetches == fetches  # no fetch: the throttle still holds
    rig.keys[KEYS_STATE].mode = "error"
    clock.t += 10
    with pytest.raises(Exception):  # noqa: B017, PT011 - Unavailable: the endpoint is down
        await rig.key_cache.refresh()
    status, reply = await _raw(rig, body, {**headers, "Github-Public-Key-Identifier": "b"})
    assert (status, reply["error"]) == (503, "key_refetch_throttled")


async def test_saved_keys_are_refetched_at_restart_and_kept_if_the_endpoint_is_down(
        rig_factory: RigFactory, make_token: Any) -> None:
    from scanner.server.keys import KeyCache

    async def down(etag: str | None) -> Any:
        from scanner.server.errors import Unavailable

        raise Unavailable("keys_unreachable")

    first = await rig_factory(known=0)
    saved = [k.to_json() for k in first.key_cache.keys.values()]
    kept = KeyCache("github", down, initial=saved, etag='"x"')
    assert kept.loaded and kept.due  # trusted, but only until a refresh says otherwise
    await kept._scheduled()  # the endpoint is down: the last known set stays
    assert kept.loaded and first.partner.key_id in kept.keys and kept.last_error


BAD_QUERIES = ["limit=99999999999999999999", "limit=-1", "limit=0", "limit=1001",
               "limit=%C2%B2", "limit=%D9%A1", "limit=1.5", "limit=", "limit=0x10",
               "since=0001-01-01T00:00:00%2B14:00", "since=9999-12-31T23:59:59-14:00",
               "since=yesterday", "since=%D9%A1%D9%A1", "since=99999-01-01",
               # issue 14 hostile C3: only the documented forms, the model's enums, no
               # unknown or repeated parameter (each used to answer 200, filter dropped)
               "since=2026-W05", "since=20260101", "since=%2B2026-01-01", "since=2026-01-01%20",
               "since=2026-01-01T00:00:00%2B0100", "since=2026-01-01%2000:00",
               "since=2026-02-30", "since=2026-01-01&since=x", "since=",
               "status=bogus", "status=", "status=PENDING", "severity=%00", "severity=low",
               "status=pending&status=revoked", "limit=5&limit=6", "foo=bar", "Status=pending",
               "status=pending&x"]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_bad_reader_queries_are_400_never_500(rig: Rig, query: str) -> None:
    resp = await rig.client.get(f"/incidents?{query}", headers=READER)
    text = await resp.text()
    assert resp.status == 400, (query, resp.status, text)
    assert "\n" not in text.strip() and "error" in json.loads(text)


@pytest.mark.parametrize("ident", ["%C2%B2", "%D9%A1", "9" * 30, "-1", "1e5", "%F0%9F%98%80"])
async def test_bad_incident_ids_are_404_never_500(rig: Rig, ident: str) -> None:
    resp = await rig.client.get(f"/incidents/{ident}", headers=READER)
    assert resp.status == 404, (ident, await resp.text())


async def test_good_reader_queries_still_work(rig: Rig, make_token: Any) -> None:
    body = report_body([make_token(), make_token()])
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    for query, count in (("limit=1", 1), ("limit=1000", 2), ("since=2000-01-01", 2),
                         ("since=2999-01-01T00:00:00%2B14:00", 0),
                         ("since=2000-01-01T00:00Z", 2), ("since=2000-01-01T00:00:00.5", 2),
                         ("status=false_positive&severity=unknown&limit=5&since=2000-01-01", 0),
                         ("status=revoked", 0), ("severity=critical", 0)):
        resp = await rig.client.get(f"/incidents?{query}", headers=READER)
        assert resp.status == 200 and len(await resp.json()) == count, query


HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


async def test_a_write_lock_held_by_another_process_stops_nothing(
        rig_factory: RigFactory, make_token: Any) -> None:
    """Another process holds the write lock: /healthz answers, /readyz answers (not
    ready once a commit failed), a delivery gets 503 after the bounded busy timeout, and
    once the lock is released deliveries are stored again."""
    rig = await rig_factory(known=0, db_busy_timeout=0.5)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(rig.db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        token = make_token()
        body = report_body([token])
        delivery = asyncio.ensure_future(_raw(rig, body, _signed(rig, body)))
        await asyncio.sleep(0.05)  # the delivery waits for the lock a real process holds
        assert (await rig.client.get("/healthz")).status == 200
        assert not delivery.done()  # /healthz did not wait behind it
        status, answer = await asyncio.wait_for(delivery, READY_TIMEOUT)  # a ceiling only
        assert status == 503 and answer["error"] == "database_locked"
        # Bounded: the 503 came while the other process still holds the lock (it holds
        # it until told to let go, below), not once the lock was released.
        assert holder.poll() is None
        resp = await asyncio.wait_for(rig.client.get("/readyz"), 5)
        assert resp.status == 503 and "database_not_writable" in (await resp.json())["reasons"]
        listed = await asyncio.wait_for(rig.client.get("/incidents", headers=READER), 5)
        assert listed.status == 200  # reads go on under a write lock (WAL)
    finally:
        holder.communicate(b"", timeout=10)
    assert (await _raw(rig, body, _signed(rig, body)))[0] == 200
    assert _sightings(rig, token) == 1
    assert (await rig.client.get("/readyz")).status == 200


async def test_lifecycle_lines_are_logged(rig_factory: RigFactory, make_token: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    rig = await rig_factory(known=1)
    assert (await rig.report(rig.tokens))[0] == 200
    await rig.settle(lambda: token_hash(rig.tokens[0]) in rig.revoked())
    await rig.settle(lambda: "token revoked" in caplog.text)
    revoked = [r for r in caplog.records if r.getMessage() == "token revoked"]
    assert revoked and getattr(revoked[0], "incident_id", None) is not None
    await rig.client.close()
    assert "shutting down" in caplog.text and "stopped" in caplog.text


def test_a_malformed_request_flood_is_one_warning_per_interval() -> None:
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from scanner.server.logs import MalformedRequestFilter

    clock, counted = Clock(), []
    flt = MalformedRequestFilter(counted.append, interval=10, monotonic=clock)

    def record() -> logging.LogRecord:
        try:
            raise BadHttpMessage("bad")
        except BadHttpMessage:
            return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                     "Error handling request", (), sys.exc_info())

    passed = [r for r in (record() for _ in range(1000)) if flt.filter(r)]
    clock.t += 11
    later = record()
    assert flt.filter(later) and later.levelname == "WARNING" and later.exc_info is None
    assert len(passed) == 1 and passed[0].levelname == "WARNING"
    assert "999 more" in later.getMessage() and len(counted) == 1001
    other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "boom", (), None)
    assert flt.filter(other) and other.levelname == "ERROR"  # real errors pass unchanged
