"""Notifications (issue 17): the [notify] table and its router, the message, and the
Slack and Standard Webhooks senders against real servers on loopback.

The webhook endpoint verifies every delivery with the ``standardwebhooks`` library; the
Slack-shaped endpoint records the Block Kit JSON. Hostile partner text (mentions, links,
Markdown, CR/LF, HTML, a whole token in several encodings) reaches no channel in a form
that acts or leaks: tests/test_notify_email.py does the same for e-mail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from notifytools import WHSEC, WHSEC_OLD, SlackStandIn, WebhookStandIn, hostile_strings, incident
from privacy import Needles

from scanner.notify import DeliveryError, NotifyConfigError, build_message, parse_notify
from scanner.notify.config import NotifyConfig
from scanner.notify.events import NotifyEvent
from scanner.notify.message import MAX_PLACES, Message
from scanner.notify.slack import SlackSender
from scanner.notify.webhook import WebhookSender
from scanner.whsec import decode_whsec

NOW = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)


def config(channels: dict[str, Any], environ: dict[str, str] | None = None,
           **top: Any) -> NotifyConfig:
    return parse_notify({**top, "channels": channels}, environ or {})


# -- the [notify] table ------------------------------------------------------------------

def test_a_full_table_parses_and_routes() -> None:
    env = {"SLACK_URL": "https://hooks.slack.com/services/T/B/x", "SIEM_WHSEC": WHSEC,
           "SMTP_USER": "u", "SMTP_PASSWORD": "p"}
    parsed = config({
        "security": {"kind": "slack", "url_env": "SLACK_URL", "severities": ["critical"],
                     "sources": ["partner:*"], "digest_after": 3},
        "siem": {"kind": "webhook", "url": "https://siem.example/hook",
                 "secret_env": "SIEM_WHSEC", "events": ["opened", "revoked"]},
        "mail": {"kind": "email", "host": "smtp.example.com", "port": 587, "tls": "starttls",
                 "username_env": "SMTP_USER", "password_env": "SMTP_PASSWORD",
                 "sender": "cendis-scan@example.com", "to": ["security@example.com"],
                 "author_domains": ["Example.com"], "events": ["possible"]},
    }, env, base_url="https://cendis-scan.example.com/", revoke_failing_after=600)
    assert parsed.base_url == "https://cendis-scan.example.com"
    assert parsed.revoke_failing_after == 600
    assert parsed.by_name["security"].digest_after == 3
    assert parsed.by_name["mail"].settings.author_domains == frozenset({"example.com"})
    route = parsed.channels
    assert route(NotifyEvent("opened", "critical", "partner:github")) == ["security", "siem"]
    assert route(NotifyEvent("opened", "high", "partner:github")) == ["siem"]
    assert route(NotifyEvent("revoked", "critical", "scan:repo")) == ["siem"]
    assert route(NotifyEvent("possible", "unknown", "scan:repo")) == ["mail"]
    assert route(NotifyEvent("triage", "medium", "sweep:x")) == []
    assert "SLACK_URL" not in repr(parsed) and "hooks.slack" not in repr(parsed)


def test_defaults_take_every_event_and_never_can_be_said() -> None:
    parsed = config({"a": {"kind": "slack", "url": "https://hooks.slack.com/x"}},
                    revoke_failing_after=False)
    assert parsed.revoke_failing_after is None
    for kind in ("opened", "possible", "revoked", "revoke_failing", "reopened", "triage"):
        assert parsed.channels(NotifyEvent(kind, "unknown", "anything")) == ["a"]
    assert parse_notify({}, {}).revoke_failing_after == 900


SLACK = {"kind": "slack", "url": "https://hooks.slack.com/x"}
BAD_TABLES = [
    ({"channels": {"a": {**SLACK, "colour": "red"}}}, "[notify.channels.a]: unknown key 'colour'"),
    ({"base_urll": "x"}, "[notify]: unknown key 'base_urll'"),
    ({"channels": {"a": {"kind": "sms"}}}, "[notify.channels.a] kind: expected one of"),
    ({"channels": {"Bad Name": SLACK}}, "'Bad Name': a channel name is"),
    ({"channels": {"a": {"kind": "slack", "url_env": "MISSING_URL"}}},
     "[notify.channels.a] url_env: environment variable MISSING_URL is not set"),
    ({"channels": {"a": {"kind": "slack"}}}, "give url_env"),
    ({"channels": {"a": {**SLACK, "url_env": "X"}}}, "not both"),
    ({"channels": {"a": {"kind": "slack", "url": "http://hooks.slack.com/x"}}},
     "expected an https:// URL (http:// only to a loopback host)"),
    ({"channels": {"a": {"kind": "slack", "url": "https://h/x|<!channel>"}}}, "not a valid URL"),
    ({"channels": {"a": {**SLACK, "events": ["opened", "exploded"]}}}, "unknown 'exploded'"),
    ({"channels": {"a": {**SLACK, "severities": ["urgent"]}}}, "unknown 'urgent'"),
    ({"channels": {"a": {**SLACK, "sources": []}}}, "an empty list matches nothing"),
    ({"channels": {"a": {**SLACK, "digest_after": 0}}}, "digest_after: expected 1 to 10000"),
    ({"channels": {"a": {**SLACK, "digest_after": True}}}, "digest_after: expected int"),
    ({"channels": {"w": {"kind": "webhook", "url": "https://h/", "secret": "abc"}}},
     "[notify.channels.w] secret: a Standard Webhooks secret starts with whsec_"),
    ({"channels": {"w": {"kind": "webhook", "url": "https://h/", "secret": "whsec_!!"}}},
     "the secret after whsec_ is not base64"),
    ({"channels": {"w": {"kind": "webhook", "url": "https://h/", "secret": "whsec_YWJj"}}},
     "shorter than 16 bytes"),
    ({"channels": {"m": {"kind": "email", "host": "smtp.example.com", "tls": "none",
                         "sender": "a@example.com", "to": ["b@example.com"]}}},
     "tls: \"none\" only to a loopback host"),
    ({"channels": {"m": {"kind": "email", "host": "h", "sender": "A <a@example.com>",
                         "to": ["b@example.com"]}}}, "is not a plain e-mail address"),
    ({"channels": {"m": {"kind": "email", "host": "h", "sender": "a@example.com",
                         "to": ["b@example.com\r\nBcc: c@evil.example"]}}},
     "is not a plain e-mail address"),
    ({"channels": {"m": {"kind": "email", "host": "h", "sender": "a@example.com",
                         "to": []}}}, "to: expected at least one address"),
    ({"channels": {"m": {"kind": "email", "host": "h", "sender": "a@example.com",
                         "to": ["b@example.com"], "author_domains": ["*.example.com"]}}},
     "author_domains: '*.example.com' is not a domain"),
    ({"channels": {"m": {"kind": "email", "host": "h", "sender": "a@example.com",
                         "to": ["b@example.com"], "username_env": "U"}}},
     "username_env and password_env go together"),
    ({"revoke_failing_after": -1}, "revoke_failing_after: expected seconds > 0"),
]


@pytest.mark.parametrize(("table", "message"), BAD_TABLES,
                         ids=[m[:40] for _, m in BAD_TABLES])
def test_a_bad_table_is_one_error_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        parse_notify(table, {"X": "y"})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_status == 2


def test_a_secret_is_never_quoted_in_an_error() -> None:
    secret = "whsec_" + "A" * 10 + "!"
    with pytest.raises(NotifyConfigError) as caught:
        parse_notify({"channels": {"w": {"kind": "webhook", "url": "https://h/",
                                         "secret": secret}}}, {})
    assert secret not in str(caught.value) and "AAAAAAAAAA" not in str(caught.value)


# -- the message -------------------------------------------------------------------------

def test_the_message_holds_what_the_issue_lists() -> None:
    msg = build_message(incident(), "revoked", "https://cs.example")
    facts = dict(msg.facts())
    assert facts["Token"] == "cendis_pat_WEKi…Xv"
    assert facts["Severity"] == "critical" and facts["Status"] == "revoked"
    assert facts["Owner"] == "alice, token 'ci', acme"
    assert facts["Scopes"] == "admin:org, read:assets"
    assert facts["Time to revoke"] == "4 min 12 s"
    assert msg.revoke_seconds == 252
    assert msg.link == "https://cs.example/incidents/12"
    place = msg.place_lines()[0]
    for part in ("partner:github", "https://github.com/acme/app/blob/x", "acme/app",
                 "ci.yml:7", "commit 0123456789abcdef"):
        assert part in place
    text = " ".join(msg.actions)
    for step in ("Regenerate the token", "CI secret stores and .env files",
                 "audit trail for its use since 2026-03-01T10:00:00+00:00"):
        assert step in text
    possible = build_message(incident(status="recorded", revoked_at=None), "possible", None)
    assert "cannot be revoked by its hash" in possible.actions[0]
    assert possible.link is None and possible.revoke_seconds is None


def test_many_sightings_are_counted_not_listed() -> None:
    sightings = [{"source": f"partner:fork{i}", "url": f"https://h/{i}"} for i in range(40)]
    msg = build_message(incident(sightings=sightings), "opened", None)
    assert len(msg.places) == MAX_PLACES and msg.more_places == 40 - MAX_PLACES
    assert msg.place_lines()[-1] == f"and {40 - MAX_PLACES} more places"


def hostile_incident(token: str) -> dict[str, Any]:
    bad = hostile_strings(token)
    sightings = [{"source": f"partner:{b}", "url": b, "repository": b, "path": b,
                  "line": 3, "commit": b, "author": b, "record_type": b,
                  "record_source": b, "received_at": "2026-03-01T10:00:00+00:00"}
                 for b in bad[:MAX_PLACES]]
    return incident(owner=bad[0], token_name=bad[2], org=bad[4], scopes=bad[5:],
                    last_error=bad[7], sightings=sightings,
                    events=[{"kind": "triage", "detail": " ".join(bad), "actor": bad[1]}])


def hostile_messages(token: str) -> list[Message]:
    inc = hostile_incident(token)
    return [build_message(inc, kind, "https://cs.example")
            for kind in ("opened", "revoke_failing", "triage")]


def test_every_message_field_is_scrubbed(make_token: Any) -> None:
    token = make_token()
    for msg in hostile_messages(token):
        values = list(strings(msg.to_json())) + [msg.summary, *msg.place_lines()]
        for value in values:
            assert Needles([token]).find(value) is None, value
            assert "\r" not in value and "\n" not in value
        assert any("\\x0d\\x0aBcc" in v for v in values)  # shown escaped, not hidden


# -- stand-ins ---------------------------------------------------------------------------

@pytest.fixture
async def slack(aiohttp_server: Any) -> Any:
    standin = SlackStandIn()
    server = await aiohttp_server(standin.app())
    standin.url = str(server.make_url("/services/T000/B000/hook"))  # type: ignore[attr-defined]
    standin.moved = str(server.make_url("/moved"))  # type: ignore[attr-defined]
    return standin


@pytest.fixture
async def hook(aiohttp_server: Any) -> Any:
    standin = WebhookStandIn()
    server = await aiohttp_server(standin.app())
    standin.url = str(server.make_url("/hook"))  # type: ignore[attr-defined]
    return standin


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


# -- Slack -------------------------------------------------------------------------------

async def test_slack_receives_block_kit(slack: Any, session: Any) -> None:
    sender = SlackSender("security", slack.url)
    msg = build_message(incident(), "opened", "https://cs.example")
    assert await sender.send([msg], session=session, idem_key="evt_1_security", now=NOW) == "ok"
    body = slack.received[0]
    assert body["text"] == msg.summary.replace("<", "&lt;")
    assert body["unfurl_links"] is False and body["unfurl_media"] is False
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "section", "actions"]
    assert body["blocks"][-1]["elements"][0]["url"] == "https://cs.example/incidents/12"
    assert "Token: cendis_pat_WEKi…Xv" in [f["text"] for f in body["blocks"][1]["fields"]]
    assert "mrkdwn" not in json.dumps(body)


async def test_slack_hostile_text_stays_literal(slack: Any, session: Any,
                                               make_token: Any) -> None:
    token = make_token()
    sender = SlackSender("security", slack.url)
    messages = hostile_messages(token)
    for msg in messages:
        await sender.send([msg], session=session, idem_key="k", now=NOW)
    await sender.send(messages, session=session, idem_key="digest", now=NOW)
    assert len(slack.received) == len(messages) + 1
    for body in slack.received:
        raw = json.dumps(body, ensure_ascii=False)
        assert Needles([token]).find(raw) is None
        assert "mrkdwn" not in raw  # partner text only in plain_text: no *bold*, no links
        for text in strings(body):
            assert "<" not in text and ">" not in text, text  # <!channel>, <url|x> inert
        for block in body["blocks"]:
            for obj in [block.get("text"), *block.get("fields", [])]:
                assert obj is None or (obj["type"] == "plain_text" and obj["emoji"] is False)
    shown = json.dumps(slack.received[0], ensure_ascii=False)
    assert "&lt;!channel&gt;" in shown and "&lt;http://evil.example/phish|click here&gt;" in shown
    assert "&amp;amp;" in shown  # an & of the partner's is escaped too


async def test_slack_digest_is_one_message_within_limits(slack: Any, session: Any) -> None:
    messages = [build_message(incident(id=i), "opened", "https://cs.example")
                for i in range(1, 31)]
    await SlackSender("s", slack.url).send(messages, session=session, idem_key="d", now=NOW)
    (body,) = slack.received
    assert len(body["blocks"]) <= 50
    assert body["blocks"][0]["text"]["text"] == "cendis-scan: 30 notifications"
    assert body["blocks"][-1]["elements"][0]["text"] == "and 10 more"
    assert body["blocks"][1]["accessory"]["url"] == "https://cs.example/incidents/1"


SLACK_ANSWERS = [
    (429, "rate_limited", {"Retry-After": "7"}, "http_429", True, 7.0),
    (400, "invalid_payload", {}, "http_400", False, None),
    (403, "action_prohibited", {}, "http_403", False, None),
    (404, "no_service", {}, "http_404", False, None),
    (410, "channel_is_archived", {}, "http_410", False, None),
    (500, "rollup_error", {}, "http_5xx", True, None),
    (503, "", {}, "http_5xx", True, None),
]


@pytest.mark.parametrize(("status", "text", "headers", "reason", "retry", "after"),
                         SLACK_ANSWERS, ids=[f"{a[0]}-{a[1]}" for a in SLACK_ANSWERS])
async def test_slack_answers_say_whether_to_retry(slack: Any, session: Any, status: int,
                                                  text: str, headers: dict[str, str],
                                                  reason: str, retry: bool,
                                                  after: float | None) -> None:
    slack.replies.append((status, text, headers))
    sender = SlackSender("security", slack.url)
    msg = build_message(incident(), "opened", None)
    with pytest.raises(DeliveryError) as caught:
        await sender.send([msg], session=session, idem_key="k", now=NOW)
    err = caught.value
    assert (err.reason, err.retryable, err.retry_after) == (reason, retry, after)
    assert f"HTTP {status}" in err.message and text in err.message
    assert "/services/" not in err.message  # the webhook URL is a credential
    assert await sender.send([msg], session=session, idem_key="k", now=NOW) == "ok"


async def test_slack_timeout_unreachable_and_redirects(slack: Any, session: Any) -> None:
    from conftest import free_port

    msg = build_message(incident(), "opened", None)
    slack.delay = 1.0
    with pytest.raises(DeliveryError) as caught:
        await SlackSender("s", slack.url, timeout=0.2).send([msg], session=session,
                                                           idem_key="k", now=NOW)
    assert (caught.value.reason, caught.value.retryable) == ("timeout", True)
    slack.delay = 0
    down = f"http://127.0.0.1:{free_port()}/services/x"
    with pytest.raises(DeliveryError) as caught:
        await SlackSender("s", down).send([msg], session=session, idem_key="k", now=NOW)
    assert (caught.value.reason, caught.value.retryable) == ("unreachable", True)
    before = len(slack.received)
    with pytest.raises(DeliveryError) as caught:
        await SlackSender("s", slack.moved).send([msg], session=session,
                                                          idem_key="k", now=NOW)
    assert (caught.value.reason, caught.value.retryable) == ("http_302", False)
    assert len(slack.received) == before  # not followed


# -- the webhook -------------------------------------------------------------------------

async def test_webhook_deliveries_verify_with_standardwebhooks(hook: Any, session: Any) -> None:
    sender = WebhookSender("siem", hook.url, (decode_whsec(WHSEC, "t"),))
    msg = build_message(incident(), "opened", "https://cs.example")
    now = datetime.now(UTC)  # the library checks the timestamp against its own clock
    answer = await sender.send([msg], session=session, idem_key="evt_7_siem", now=now)
    assert answer == "HTTP 204"
    again = await sender.send([msg], session=session, idem_key="evt_7_siem", now=now)
    assert again == "HTTP 204"
    assert hook.failures == []
    (id1, headers, body, _), (id2, _, _, _) = hook.received
    assert id1 == id2 == "evt_7_siem"  # a retry reuses the key: the receiver drops it
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert body["type"] == "incident.opened"
    assert body["timestamp"] == now.isoformat()
    assert body["data"]["redacted"] == "cendis_pat_WEKi…Xv"
    assert body["data"]["places"][0]["path"] == "ci.yml"
    assert body["data"]["link"] == "https://cs.example/incidents/12"


async def test_webhook_digest_and_secret_rotation(hook: Any, session: Any) -> None:
    hook.secret = WHSEC_OLD  # the endpoint still has the old secret; we sign with both
    sender = WebhookSender("siem", hook.url, (decode_whsec(WHSEC, "t"),
                                              decode_whsec(WHSEC_OLD, "t")))
    messages = [build_message(incident(id=i), k, None)
                for i, k in ((1, "opened"), (2, "revoked"), (3, "possible"))]
    await sender.send(messages, session=session, idem_key="digest_1", now=datetime.now(UTC))
    (_, headers, body, _), = hook.received
    assert len(headers["webhook-signature"].split()) == 2
    assert body["type"] == "incident.digest"
    assert [(e["type"], e["data"]["incident_id"]) for e in body["data"]["events"]] == [
        ("incident.opened", 1), ("incident.revoked", 2), ("incident.possible", 3)]


async def test_webhook_forged_or_stale_is_refused_by_the_library(hook: Any,
                                                                 session: Any) -> None:
    """The endpoint's check is real: a wrong secret and an old timestamp fail there."""
    msg = build_message(incident(), "opened", None)
    wrong = WebhookSender("siem", hook.url, (decode_whsec(WHSEC_OLD, "t"),))
    with pytest.raises(DeliveryError) as caught:
        await wrong.send([msg], session=session, idem_key="k", now=datetime.now(UTC))
    assert (caught.value.reason, caught.value.retryable) == ("http_401", False)
    right = WebhookSender("siem", hook.url, (decode_whsec(WHSEC, "t"),))
    with pytest.raises(DeliveryError):
        await right.send([msg], session=session, idem_key="k",
                         now=datetime(2020, 1, 1, tzinfo=UTC))
    assert len(hook.failures) == 2 and hook.received == []


async def test_webhook_5xx_is_retryable(hook: Any, session: Any) -> None:
    hook.replies.append(503)
    sender = WebhookSender("siem", hook.url, (decode_whsec(WHSEC, "t"),))
    with pytest.raises(DeliveryError) as caught:
        await sender.send([build_message(incident(), "opened", None)], session=session,
                          idem_key="k", now=datetime.now(UTC))
    assert (caught.value.reason, caught.value.retryable) == ("http_5xx", True)


async def test_webhook_hostile_text_is_plain_json(hook: Any, session: Any,
                                                  make_token: Any) -> None:
    token = make_token()
    sender = WebhookSender("siem", hook.url, (decode_whsec(WHSEC, "t"),))
    messages = hostile_messages(token)
    for msg in messages:
        await sender.send([msg], session=session, idem_key="k", now=datetime.now(UTC))
    await sender.send(messages, session=session, idem_key="d", now=datetime.now(UTC))
    assert hook.failures == [] and len(hook.received) == len(messages) + 1
    for _, _, body, raw in hook.received:
        assert Needles([token]).find(raw) is None
        assert not set(b"<>&\r") & set(raw)  # no markup byte, no CR: all \u escapes
        assert all("\r" not in s and "\n" not in s for s in strings(body))
    shown = json.dumps(hook.received[0][2], ensure_ascii=False)
    assert "<!channel>" in shown and "<script>" in shown  # kept as plain text, not lost


def test_the_message_from_a_real_store_with_the_router(tmp_path: Any, make_token: Any) -> None:
    """The store's own incident dict (schema 3) builds the message, and the parsed table
    is the router the store calls: a hostile partner url arrives scrubbed."""
    from scanner.incidents.models import Sighting, TokenRef
    from scanner.incidents.store import open_store

    token = make_token()
    router = config({"sec": {"kind": "slack", "url": "https://hooks.slack.com/x",
                             "events": ["opened"]},
                     "all": {"kind": "slack", "url": "https://hooks.slack.com/y"}})
    with open_store(str(tmp_path / "t.db"), router=router) as store:
        (rec,) = store.record([(TokenRef.from_token(token), Sighting(
            "partner:github", NOW, partner="github",
            url=f"https://x/<!channel>?t={token}", path="a.env", line=2))], revoke=False)
        got = store.get_incident(rec.incident_id)
        entries = store.claim_outbox(10, owner="t", lease=30)
    assert got is not None
    assert sorted(e.channel for e in entries) == ["all", "sec"]
    msg = build_message(got, entries[0].kind, "https://cs.example")
    assert msg.redacted == TokenRef.from_token(token).redacted
    assert msg.places[0].url and "<!channel>" in msg.places[0].url
    assert Needles([token]).find(json.dumps(msg.to_json())) is None
