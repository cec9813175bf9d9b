"""Notifications end to end through the receiver: a signed partner report goes in, the
Cendis stand-in revokes, and the three channels (Slack-shaped, Standard Webhooks
verified by ``standardwebhooks``, SMTP by aiosmtpd) receive ``opened`` and ``revoked``
with the leak-to-revoke time. Forks re-reporting one token make one ``opened``. The
receiver's /metrics holds every series deploy/prometheus/alerts.yml alerts on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dispatchtools import Channels, channels
from privacy import Needles

from scanner.dev.partner import report_body
from scanner.server.state import DISPATCHER

ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


async def until(rig: Any, ch: Channels, sends: int) -> None:
    """Until every channel received ``sends`` messages (the dispatcher runs in the
    receiver's background)."""
    await rig.settle(lambda: min(len(ch.slack.received), len(ch.webhook.received),
                                 len(ch.smtp.mails)) >= sends, timeout=15)


async def test_a_partner_report_opens_then_revokes_on_every_channel(
        rig_factory: Any, aiohttp_server: Any) -> None:
    async with channels(aiohttp_server) as ch:
        rig = await rig_factory(known=1, scopes=("admin:org",),
                                notify=ch.config(digest_after=100))
        token = rig.tokens[0]
        status, _ = await rig.report([token])
        assert status == 200
        await until(rig, ch, 2)
        await rig.quiet()
        metrics = await (await rig.client.get("/metrics")).text()
    types = sorted(t for t in ch.webhook_types())
    assert types == ["incident.opened", "incident.revoked"]
    revoked = next(body for _, _, body, _ in ch.webhook.received
                   if body["type"] == "incident.revoked")["data"]
    assert revoked["status"] == "revoked" and revoked["severity"] == "critical"
    assert revoked["revoke_seconds"] is not None and revoked["revoke_seconds"] >= 0
    assert revoked["link"].startswith("https://cendis-scan.example.com/incidents/")
    assert any("Time to revoke" in m.content.decode() for m in ch.smtp.mails)
    assert any("Time to revoke" in str(b) for b in ch.slack.received)
    assert len(ch.slack.received) == len(ch.smtp.mails) == 2
    assert "cendis_leak_to_revoke_seconds_count 1.0" in metrics
    for channel in ("chat", "siem", "mail"):
        assert (f'cendis_notifications_delivered_total{{channel="{channel}",'
                f'outcome="sent"}} 2.0') in metrics
    needles = Needles([token])
    for output in [str(b) for b in ch.slack.received] + [m.content.decode() for m in
                                                         ch.smtp.mails]:
        assert needles.find(output) is None


@pytest.mark.parametrize("forks", [2, 5])
async def test_forks_reporting_one_token_make_one_opened_message(
        rig_factory: Any, aiohttp_server: Any, forks: int) -> None:
    async with channels(aiohttp_server) as ch:
        rig = await rig_factory(known=1, notify=ch.config(digest_after=100,
                                                          events=["opened"]))
        token = rig.tokens[0]
        for n in range(forks):
            status, _ = await rig.post(report_body(
                [token], url=f"https://github.com/fork{n}/repo/blob/main/ci.yml"))
            assert status == 200
        await until(rig, ch, 1)
        await rig.quiet()
        dispatcher = rig.client.app[DISPATCHER]
        await rig.settle(lambda: dispatcher.delivered.get(("mail", "sent")) == 1)
        assert await dispatcher.depth() == 0
    assert ch.webhook_types() == ["incident.opened"]
    assert len(ch.slack.received) == len(ch.smtp.mails) == 1


async def test_every_series_the_alert_rules_use_is_in_metrics(
        rig_factory: Any, aiohttp_server: Any) -> None:
    """Parse each ``expr`` of alerts.yml for its metric names; a real receiver (with
    notifications on, so the outbox series exist) exposes every ``cendis_`` one."""
    exprs = re.findall(r"^\s*expr:\s*(.+)$", ALERTS.read_text(), flags=re.M)
    names = {n for e in exprs for n in re.findall(r"\b(cendis_[a-z_]+)\b", e)}
    assert {"cendis_outbox_depth", "cendis_outbox_oldest_pending_seconds",
            "cendis_ready", "cendis_revoker_healthy"} <= names
    async with channels(aiohttp_server) as ch:
        rig = await rig_factory(notify=ch.config())
        metrics = await (await rig.client.get("/metrics")).text()
    exposed = set(re.findall(r"^([a-z_]+)(?:\{|\s)", metrics, flags=re.M))
    assert names <= exposed, names - exposed
    assert "cendis_ready 1.0" in metrics
    for name in ("cendis_leak_to_revoke_seconds_bucket", "cendis_open_incidents",
                 "cendis_notifications_delivered"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in metrics


async def test_open_incidents_by_severity_and_triage(
        rig_factory: Any, aiohttp_server: Any) -> None:
    rig = await rig_factory(known=2, scopes=("read:assets",))
    assert (await rig.report(rig.tokens))[0] == 200
    await rig.quiet()
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'cendis_open_incidents{severity="medium",triage="open"} 2.0' in metrics
    assert "cendis_outbox_depth 0.0" in metrics  # no [notify]: no outbox rows
