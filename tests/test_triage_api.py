"""``POST /incidents/{id}/actions`` through a real receiver (aiohttp_client) on both
backends: the flow, the roles, a table of bad requests each answered with its status
and reason and changing nothing, hostile text scrubbed, the metric by action and
outcome."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from receiver import test_config as receiver_config

from scanner.incidents.models import Sighting, TokenRef, utcnow
from scanner.incidents.store import Store
from scanner.server.app import create_app

READER = {"Authorization": "Bearer reader-token-for-tests-0123"}
TRIAGER_TOKEN = "triager-token-for-tests-4567"
TRIAGER = {"Authorization": f"Bearer {TRIAGER_TOKEN}"}
PATH = "/incidents/{}/actions"


class Api:
    """A receiver on loopback over ``store_url``, and that store, for seeding."""

    def __init__(self, client: Any, url: str, sha: str) -> None:
        self.client, self.url, self.sha = client, url, sha

    async def act(self, ident: object, body: Any, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> tuple[int, Any]:
        sent = {"Content-Type": "application/json", **(TRIAGER if headers is None
                                                       else headers)}
        data = raw if raw is not None else json.dumps(body).encode()
        resp = await self.client.post(PATH.format(ident), data=data, headers=sent)
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def state(self) -> Any:
        with Store.open(self.url) as store:
            return store.get_incident(1), store.list_events(limit=10_000)


@pytest.fixture
async def api(aiohttp_client: Any, store_url: str, make_token: Callable[[], str]) -> Api:
    with Store.open(store_url) as store:
        ref = TokenRef.from_token(make_token())
        store.record([(ref, Sighting(source="partner:acme", received_at=utcnow()))],
                     revoke=False)
    config = receiver_config("http://127.0.0.1:9/keys", keyed={}, triager_token=TRIAGER_TOKEN)
    app = create_app(config, db_path=store_url, cendis_api_url="http://127.0.0.1:9",
                     credential=None)
    return Api(await aiohttp_client(app), store_url, ref.sha256)


async def test_the_flow_through_the_api(api: Api) -> None:
    status, body = await api.act(1, {"action": "ack", "by": "alice"})
    assert status == 200, body
    assert body["id"] == 1 and body["triage"] == "acknowledged"
    assert body["events"][-1]["actor"] == "alice" and body["events"][-1]["kind"] == "triage"
    status, body = await api.act(api.sha, {"action": "assign", "by": "alice",
                                           "assignee": "bob"})  # by the token's hash
    assert status == 200 and body["assignee"] == "bob"
    status, body = await api.act(1, {"action": "resolve", "by": "bob", "note": "rotated"})
    assert status == 200 and body["triage"] == "resolved"
    status, body = await api.act(1, {"action": "ack", "by": "bob"})
    assert status == 409 and body["error"] == "transition"
    status, body = await api.act(1, {"action": "reopen", "by": "carol", "reason": "fork"})
    assert status == 200 and body["triage"] == "open"
    status, body = await api.act(1, {"action": "ignore", "by": "carol", "reason": "fixture"})
    assert status == 200 and body["triage"] == "ignored" and body["triage_reason"] == "fixture"
    status, body = await api.act(1, {"action": "reopen", "by": "carol"})
    status, body = await api.act(1, {"action": "false_positive", "by": "dan",
                                     "reason": "a sample", "note": "see the docs"})
    assert status == 200 and body["triage"] == "false_positive"
    status, body = await api.act(1, {"action": "note", "by": "erin", "note": "closed"})
    assert status == 200
    # the triager reads too; the reader reads what was done
    for headers in (TRIAGER, READER):
        resp = await api.client.get("/incidents/1", headers=headers)
        assert resp.status == 200
        events = (await resp.json())["events"]
        assert [e["actor"] for e in events if e["actor"]] == [
            "alice", "alice", "bob", "bob", "carol", "carol", "carol", "dan", "dan", "erin"]
    metrics = await (await api.client.get("/metrics")).text()
    for line in ('cendis_triage_actions_total{action="ack",outcome="ok"} 1.0',
                 'cendis_triage_actions_total{action="ack",outcome="transition"} 1.0',
                 'cendis_triage_actions_total{action="reopen",outcome="ok"} 2.0',
                 'cendis_triage_actions_total{action="note",outcome="ok"} 1.0'):
        assert line in metrics, line


BIG = "x" * 20_000
#: (name, body or raw bytes, content type, status, reason)
BAD: list[tuple[str, Any, str, int, str]] = [
    ("not JSON", b"{nope", "application/json", 400, "bad_json"),
    ("not UTF-8", b'{"action": "\xff"}', "application/json", 400, "bad_json"),
    ("100 kB of [", b"[" * 100_000, "application/json", 413, "body_too_large"),
    ("nested 5000 deep", b"[" * 5000 + b"]" * 5000, "application/json", 400, "bad_json"),
    ("an array", [], "application/json", 400, "bad_body"),
    ("a string", "ack", "application/json", 400, "bad_body"),
    ("no action", {"by": "a"}, "application/json", 400, "bad_action"),
    ("unknown action", {"action": "delete", "by": "a"}, "application/json", 400,
     "bad_action"),
    ("action not a string", {"action": ["ack"], "by": "a"}, "application/json", 400,
     "bad_action"),
    ("no by", {"action": "ack"}, "application/json", 400, "missing"),
    ("blank by", {"action": "ack", "by": " \t "}, "application/json", 400, "missing"),
    ("by a number", {"action": "ack", "by": 7}, "application/json", 400, "bad_field"),
    ("note an object", {"action": "note", "by": "a", "note": {"x": 1}}, "application/json",
     400, "bad_field"),
    ("unknown field", {"action": "ack", "by": "a", "forced": True}, "application/json", 400,
     "unknown_field"),
    ("force on an ack", {"action": "ack", "by": "a", "force": True}, "application/json", 400,
     "bad_field"),
    ("force a string", {"action": "resolve", "by": "a", "force": "yes"}, "application/json",
     400, "bad_field"),
    ("ignore without reason", {"action": "ignore", "by": "a"}, "application/json", 400,
     "missing"),
    ("false_positive with a null reason", {"action": "false_positive", "by": "a",
                                           "reason": None}, "application/json", 400,
     "missing"),
    ("assign without assignee", {"action": "assign", "by": "a"}, "application/json", 400,
     "missing"),
    ("note without text", {"action": "note", "by": "a", "note": ""}, "application/json",
     400, "missing"),
    ("by too long", {"action": "ack", "by": "b" * 201}, "application/json", 400, "too_long"),
    ("reason too long", {"action": "ignore", "by": "a", "reason": "r" * 501},
     "application/json", 400, "too_long"),
    ("body over 16 KiB", {"action": "note", "by": "a", "note": BIG}, "application/json",
     413, "body_too_large"),
    ("form", b"action=ack", "application/x-www-form-urlencoded", 415,
     "wrong_content_type"),
    ("reopen an open incident", {"action": "reopen", "by": "a"}, "application/json", 409,
     "transition"),
]


@pytest.mark.parametrize(("name", "body", "ctype", "status", "reason"), BAD,
                         ids=[case[0] for case in BAD])
async def test_bad_requests_get_their_status_and_change_nothing(
        api: Api, name: str, body: Any, ctype: str, status: int, reason: str) -> None:
    before = api.state()
    raw = body if isinstance(body, bytes) else None
    resp = await api.client.post(PATH.format(1), data=raw if raw is not None else
                                 json.dumps(body).encode(),
                                 headers={"Content-Type": ctype, **TRIAGER})
    assert resp.status == status
    answer = await resp.json()
    assert answer["error"] == reason and len(answer["message"]) <= 200
    assert api.state() == before
    metrics = await (await api.client.get("/metrics")).text()
    assert f'outcome="{reason}"' in metrics


@pytest.mark.parametrize("ident", ["99", "0", "f" * 64, "abcd", "%C2%B2", "not-an-id",
                                   "1" * 65])
async def test_an_unknown_incident_is_404(api: Api, ident: str) -> None:
    status, body = await api.act(ident, {"action": "ack", "by": "a"})
    assert status == 404 and body["error"] == "not_found"


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer wrong-token-0123456789"}, 401, "unauthorized"),
    ({"Authorization": f"Bearer {TRIAGER_TOKEN[:-1]}"}, 401, "unauthorized"),
    ({"Authorization": f"Token {TRIAGER_TOKEN}"}, 401, "unauthorized"),
    (READER, 403, "forbidden"),
])
async def test_only_the_triager_acts(api: Api, headers: dict[str, str], status: int,
                                     reason: str) -> None:
    before = api.state()
    for body in ({"action": "ack", "by": "mallory"}, {"action": "note", "by": "m",
                                                      "note": "x"}):
        got, answer = await api.act(1, body, headers=headers)
        assert got == status and answer["error"] == reason
    assert api.state() == before


async def test_hostile_text_is_scrubbed_before_it_is_stored(
        api: Api, make_token: Callable[[], str]) -> None:
    secret = make_token()
    hostile = [f"alice {secret}", f"x\r\nSet-Cookie: a=b {secret}", "\x1b[2J\x00\ud800",
               base64.b64encode(f"k={secret}".encode()).decode(), "<!channel> [a](http://x)",
               f"%63endis_pat_{secret[11:]}"]
    for text in hostile:
        status, body = await api.act(1, {"action": "note", "by": text, "note": text})
        assert status == 200, body
        last = body["events"][-1]
        assert secret not in json.dumps(body)
        for value in (last["actor"], last["detail"]):
            assert "\r" not in value and "\n" not in value and "\x00" not in value
            assert "\x1b" not in value and "\ud800" not in value
    status, body = await api.act(1, {"action": "assign", "by": "a", "assignee": hostile[1]})
    assert status == 200 and "\\x0d\\x0aSet-Cookie" in body["assignee"]
    incident, events = api.state()
    stored = json.dumps([incident, events])
    assert secret not in stored and secret[11:] not in stored
