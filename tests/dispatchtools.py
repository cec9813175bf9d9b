"""Shared by the dispatcher's tests: the three channel stand-ins of tests/notifytools.py
on loopback at once, a [notify] table naming them, and what each channel delivered
(counted by idempotency key)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from notifytools import WHSEC, SlackStandIn, SmtpStandIn, WebhookStandIn, smtp_server

from scanner.notify.config import NotifyConfig, parse_notify


@dataclass
class Channels:
    """The running stand-ins: Slack-shaped, Standard Webhooks (verifying), SMTP."""

    slack: SlackStandIn
    slack_url: str
    webhook: WebhookStandIn
    webhook_url: str
    smtp: SmtpStandIn

    def table(self, **channel: Any) -> dict[str, Any]:
        """A ``[notify]`` table (as TOML would parse it) naming the three channels;
        ``channel`` settings apply to each (digest_after, events...)."""
        return {"base_url": "https://cendis-scan.example.com",
                "channels": {
                    "chat": {"kind": "slack", "url": self.slack_url, **channel},
                    "siem": {"kind": "webhook", "url": self.webhook_url, "secret": WHSEC,
                             **channel},
                    "mail": {"kind": "email", "host": self.smtp.host, "port": self.smtp.port,
                             "tls": "none", "sender": "cendis-scan@example.com",
                             "to": ["security@example.com"], **channel}}}

    def config(self, revoke_failing_after: float | bool = 900, **channel: Any
               ) -> NotifyConfig:
        return parse_notify({**self.table(**channel),
                             "revoke_failing_after": revoke_failing_after}, {})

    def toml(self, **channel: Any) -> str:
        """The same table as TOML text (for a receiver's or a sweep's file)."""
        table = self.table(**channel)
        lines = ["[notify]", f"base_url = {json.dumps(table['base_url'])}"]
        for name, settings in table["channels"].items():
            lines.append(f"[notify.channels.{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    # -- what arrived --------------------------------------------------------------------

    def slack_kinds(self, skip: int = 0) -> list[str]:
        """Each Slack message's header text (a digest: ``cendis-scan: N notifications``)."""
        return [body["blocks"][0]["text"]["text"] for body in self.slack.received[skip:]]

    def webhook_keys(self, skip: int = 0) -> Counter[str]:
        return Counter(key for key, *_ in self.webhook.received[skip:])

    def webhook_types(self, skip: int = 0) -> list[str]:
        return [body["type"] for _, _, body, _ in self.webhook.received[skip:]]

    def mail_keys(self) -> Counter[str]:
        return Counter(str(m.parsed()["X-Cendis-Idempotency-Key"]) for m in self.smtp.mails)

    def mail_subjects(self) -> list[str]:
        return [str(m.parsed()["Subject"]) for m in self.smtp.mails]


@asynccontextmanager
async def channels(aiohttp_server: Any) -> AsyncIterator[Channels]:
    """The three stand-ins, started; stopped on the way out."""
    slack, webhook = SlackStandIn(), WebhookStandIn()
    slack_server = await aiohttp_server(slack.app())
    webhook_server = await aiohttp_server(webhook.app())
    with smtp_server("plain") as smtp:
        yield Channels(slack, str(slack_server.make_url("/services/T000/B000/hook")),
                       webhook, str(webhook_server.make_url("/hook")), smtp)
