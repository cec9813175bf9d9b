"""The notification dispatcher against a real store (SQLite, and PostgreSQL when
CENDIS_TEST_PG is set) and real channels on loopback: a Slack-shaped endpoint, a
Standard Webhooks endpoint verifying every delivery with ``standardwebhooks``, and an
SMTP server (aiosmtpd). Time is injected (tests/standin.py's FakeTime): backoffs and
rate windows pass without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from dispatchtools import Channels, channels
from notifytools import hostile_strings
from privacy import Needles
from standin import FakeTime

from scanner.incidents.models import RevokeOutcome, Sighting, Status, TokenRef
from scanner.incidents.store import Store
from scanner.notify.config import NotifyConfig, as_router
from scanner.notify.dispatch import MAX_DELAY, Dispatcher, digest_key

KINDS = ("opened", "possible", "revoked", "revoke_failing", "triage", "reopened")


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def open_db(store_url: str, time: FakeTime, config: NotifyConfig) -> Store:
    return Store.open(store_url, now=time.wall, router=as_router(config))


@pytest.fixture
def db_factory(store_url: str, time: FakeTime) -> Iterator[Any]:
    opened: list[Store] = []

    def make(config: NotifyConfig) -> Store:
        opened.append(open_db(store_url, time, config))
        return opened[-1]

    yield make
    for db in opened:
        db.close()


def record(db: Store, time: FakeTime, tokens: list[str], *, source: str = "partner:github",
           revoke: bool = True, possible: bool = False, **where: Any) -> list[int]:
    items = [(TokenRef.from_token(t), Sighting(source=source, received_at=time.wall(),
                                               **where)) for t in tokens]
    done = db.record(items, revoke=revoke,
                     possible={ref.sha256 for ref, _ in items} if possible else ())
    return [r.incident_id for r in done]


async def drain(dispatcher: Dispatcher, time: FakeTime, rounds: int = 200) -> None:
    """Steps until nothing is left to send, letting fake time pass for waits."""
    for _ in range(rounds):
        wait = await dispatcher.step()
        if wait is None and not await dispatcher.depth():
            return
        time.now += max(wait or 0.0, 1.0)
    raise AssertionError("the outbox did not drain")


def dispatcher(db: Store, config: NotifyConfig, session: aiohttp.ClientSession,
               time: FakeTime, **kw: Any) -> Dispatcher:
    import random

    # the senders stamp real time (a receiver checks a webhook timestamp against its clock)
    return Dispatcher(db, config, session, clock=time.clock, sleep=time.sleep,
                      rng=random.Random(7), **kw)


def assert_once_each(ch: Channels, sends: int) -> None:
    """Every channel delivered ``sends`` messages, each idempotency key once."""
    assert len(ch.slack.received) == sends
    assert sorted(ch.webhook_keys().values()) == [1] * sends
    assert sorted(ch.mail_keys().values()) == [1] * sends


# -- every event kind reaches every channel, once --------------------------------------

async def test_each_event_kind_reaches_each_channel_once(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any) -> None:
    token = make_token()
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config(digest_after=100)
        db = db_factory(config)
        first = record(db, time, [token])[0]                              # opened
        record(db, time, [make_token()[:30]], source="scan:repo", revoke=False,
               possible=True)                                              # possible
        late = record(db, time, [make_token()])[0]
        head = db.claim_batch(1, owner="t", lease=60)
        db.apply_outcomes(head, [RevokeOutcome(head[0].sha256, Status.REVOKED)],
                          notify_owner=False)
        time.now += 1000                                                  # past 900 s
        waiting = db.claim_batch(10, owner="t", lease=60)
        db.attempt_failed(waiting, "server_error", answered=True, retry_in=1)  # failing
        db.attempt_failed(waiting, "server_error", answered=True, retry_in=1)  # not twice
        db.triage(first, "resolve", actor="alice", reason="rotated")      # triage
        record(db, time, [token], revoke=False, url="https://x.example/again")  # reopened
        await drain(dispatcher(db, config, session, time), time)
        assert late in {e.incident_id for e in waiting}
    wanted = {"opened": 2, "possible": 1, "revoked": 1, "revoke_failing": 1, "triage": 1,
              "reopened": 1}
    got = [t.removeprefix("incident.") for t in ch.webhook_types()]
    assert {k: got.count(k) for k in wanted} == wanted
    assert len(ch.slack.received) == len(got) == len(ch.smtp.mails)
    assert_once_each(ch, len(got))
    assert sum("keeps failing" in s for s in ch.mail_subjects()) == 1


async def test_a_resolved_incident_seen_again_is_reopened_once(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any) -> None:
    token = make_token()
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config(digest_after=100, events=["reopened", "triage"])
        db = db_factory(config)
        ident = record(db, time, [token])[0]
        db.triage(ident, "resolve", actor="bob", reason="rotated")
        time.now += 60
        record(db, time, [token], url="https://github.com/acme/app/blob/again")
        await drain(dispatcher(db, config, session, time), time)
    assert sorted(ch.webhook_types()) == ["incident.reopened", "incident.triage"]
    assert db.get_incident(ident)["triage"] == "open"
    assert_once_each(ch, 2)


# -- a channel down for a while, then back ------------------------------------------------

@pytest.mark.parametrize("down", ["chat", "siem", "mail"])
async def test_a_channel_down_then_back_delivers_each_message_once(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any,
        down: str) -> None:
    failures = 4
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        if down == "chat":
            ch.slack.replies = [(503, "down", {})] * failures
        elif down == "siem":
            ch.webhook.replies = [503] * failures
        else:
            ch.smtp.refuse_rcpt["security@example.com"] = 451
        config = ch.config(digest_after=100, events=["opened"])
        db = db_factory(config)
        record(db, time, [make_token() for _ in range(3)])
        d = dispatcher(db, config, session, time)
        for _ in range(failures):  # the channel is down: retried with backoff
            await d.step()
            time.now += 2 * MAX_DELAY
        ch.smtp.refuse_rcpt.clear()
        await drain(d, time)
        assert await d.depth() == 0
    # The first failing sends reached the stand-in (and were refused); what was
    # delivered after is each message exactly once, on every channel.
    skip = {"chat": failures, "siem": failures}.get(down, 0)
    delivered_slack = ch.slack.received[skip if down == "chat" else 0:]
    delivered_hooks = ch.webhook_keys(skip if down == "siem" else 0)
    assert len(delivered_slack) == 3
    assert sorted(delivered_hooks.values()) == [1, 1, 1]
    assert sorted(ch.mail_keys().values()) == [1, 1, 1]
    assert d.delivered[(down, "failed")] >= 1
    assert d.delivered[(down, "sent")] == 3


async def test_the_backoff_grows_has_jitter_honours_retry_after_and_is_capped(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any) -> None:
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        ch.webhook.replies = [503] * 12
        config = ch.config(events=["opened"])
        config = NotifyConfig(config.base_url, None, {"siem": config.by_name["siem"]})
        db = db_factory(config)
        record(db, time, [make_token()])
        d = dispatcher(db, config, session, time)
        waits = []
        for _ in range(12):
            wait = await d.step()
            assert wait is not None
            waits.append(wait)
            time.now += wait + 0.001
        assert all(b > a for a, b in zip(waits[:6], waits[1:7], strict=True))  # grows
        assert max(waits) <= MAX_DELAY and waits[-1] > MAX_DELAY / 2  # capped
        assert len({round(w / 2 ** i, 6) for i, w in enumerate(waits[:6])}) > 1  # jitter
        # Retry-After: the channel's own wait wins over a shorter backoff.
        ch.webhook.replies = []
        await drain(d, time)
        record(db, time, [make_token()])
        d.base_delay = 1.0
        d.channels["siem"].down_until = 0.0

        async def limited(request: Any) -> Any:
            from aiohttp import web

            await request.read()
            return web.Response(status=429, headers={"Retry-After": "120"})

        server = await aiohttp_server(_app_with(limited))
        d.channels["siem"].sender = type(d.channels["siem"].sender)(
            "siem", str(server.make_url("/hook")), d.channels["siem"].sender.secrets)
        wait = await d.step()
        assert wait is not None and wait >= 120


def _app_with(handler: Any) -> Any:
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/hook", handler)
    return app


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_a_message_refused_for_good_is_kept_retried_at_the_cap_and_counted(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any,
        status: int) -> None:
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        ch.webhook.replies = [status]
        config = ch.config(events=["opened"])
        config = NotifyConfig(config.base_url, None, {"siem": config.by_name["siem"]})
        db = db_factory(config)
        record(db, time, [make_token()])
        d = dispatcher(db, config, session, time)
        await d.step()
        assert d.delivered == {("siem", "rejected"): 1}
        assert await d.depth() == 1  # never dropped
        time.now += MAX_DELAY - 60
        await d.step()
        assert len(ch.webhook.received) == 1  # not before the cap
        time.now += 120
        await d.step()
        assert await d.depth() == 0 and d.delivered[("siem", "sent")] == 1
        assert ch.webhook.received[0][0] == ch.webhook.received[1][0]  # the same key


# -- digests -----------------------------------------------------------------------------

@pytest.mark.parametrize("burst", [6, 40])
async def test_a_burst_above_the_rate_becomes_one_digest_per_channel(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any,
        burst: int) -> None:
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config(digest_after=5, events=["opened"])
        db = db_factory(config)
        record(db, time, [make_token() for _ in range(burst)])
        d = dispatcher(db, config, session, time)
        await drain(d, time)
        assert len(ch.slack.received) == 1 and len(ch.smtp.mails) == 1
        (key, _, body, _), = ch.webhook.received
        assert body["type"] == "incident.digest" and len(body["data"]["events"]) == burst
        assert key.startswith("dig_")
        assert ch.slack_kinds() == [f"cendis-scan: {burst} notifications"]
        assert ch.mail_subjects() == [f"[cendis-scan] {burst} notifications"]
        # Below the rate again (a minute later): one message each.
        time.now += 61
        record(db, time, [make_token() for _ in range(2)])
        await drain(d, time)
        assert [t for t in ch.webhook_types(1)] == ["incident.opened"] * 2
        assert d.messages == 3 * (burst + 2)  # rows delivered, over the three channels


def test_a_digest_key_comes_from_its_rows_keys_in_any_order() -> None:
    keys = [f"evt_{n}_siem" for n in range(1, 8)]
    assert digest_key(keys) == digest_key(list(reversed(keys)))
    assert digest_key(keys) != digest_key(keys[:-1])
    assert digest_key(["evt_3_siem"]) == "evt_3_siem"


async def test_a_send_cut_short_is_sent_again_with_the_same_key_by_another_process(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any) -> None:
    """A dispatcher cancelled mid-send (its process gone): the row is not lost, and the
    next dispatcher (another owner) sends it with the same idempotency key once the
    claim's lease has ended."""
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config(events=["opened"])
        config = NotifyConfig(config.base_url, None, {"siem": config.by_name["siem"]})
        db = db_factory(config)
        record(db, time, [make_token()])
        held = asyncio.Event()

        async def hold(request: Any) -> Any:
            await request.read()
            ch.webhook.received.append((request.headers["webhook-id"], {}, {}, b""))
            held.set()
            await asyncio.sleep(30)

        server = await aiohttp_server(_app_with(hold))
        first = dispatcher(db, config, session, time)
        sender = first.channels["siem"].sender
        first.channels["siem"].sender = type(sender)("siem", str(server.make_url("/hook")),
                                                     sender.secrets)
        task = asyncio.ensure_future(first.step())
        await asyncio.wait_for(held.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await first.depth() == 1
        second = dispatcher(db, config, session, time)
        await second.step()  # the first claim's lease still runs: nothing sent twice
        assert len(ch.webhook.received) == 1
        time.now += first.channels["siem"].lease + 1
        await drain(second, time)
    assert [key for key, *_ in ch.webhook.received] == [ch.webhook.received[0][0]] * 2


# -- hostile content ---------------------------------------------------------------------

async def test_hostile_partner_text_reaches_every_channel_clean(
        aiohttp_server: Any, db_factory: Any, time: FakeTime, make_token: Any) -> None:
    token = make_token()
    strings = hostile_strings(token)
    async with channels(aiohttp_server) as ch, aiohttp.ClientSession() as session:
        config = ch.config(digest_after=100, events=["opened"])
        db = db_factory(config)
        for n, text in enumerate(strings):
            items = [(TokenRef.from_token(make_token()),
                      Sighting(source=f"partner:{text}"[:200], received_at=time.wall(),
                               url=text, repository=text, path=text, record_source=text,
                               author=text, line=n + 1))]
            db.record(items, revoke=True)
        await drain(dispatcher(db, config, session, time), time)
    needles = Needles([token])
    assert len(ch.slack.received) == len(strings) == len(ch.smtp.mails)
    for body in ch.slack.received:
        text = str(body)
        assert not needles.find(text)
        for mention in ("<!channel>", "<!here>", "<@U12345>", "<http://evil"):
            assert mention not in text
    for _, _, _, raw in ch.webhook.received:
        assert not needles.find(raw.decode()) and b"<" not in raw and b">" not in raw
    for mail in ch.smtp.mails:
        parsed = mail.parsed()
        assert parsed["Bcc"] is None and "pwned" not in str(parsed["Subject"])
        assert mail.rcpt_tos == ["security@example.com"]
        assert not needles.find(mail.content.decode("utf-8", "replace"))
