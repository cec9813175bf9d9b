"""Notifications by e-mail against a real SMTP server (aiosmtpd) on loopback: plain to a
loopback relay, STARTTLS and implicit TLS with AUTH on a certificate made at test time;
recipients (fixed, and commit authors on allowed domains only); hostile partner text
never reaches a header. And ``cendis-scan notify test`` through the CLI against every
kind of channel, with its exit statuses.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import free_port, run
from notifytools import (
    PASSWORD,
    USER,
    WHSEC,
    SlackStandIn,
    WebhookStandIn,
    incident,
    self_signed,
    smtp_server,
)
from privacy import Needles
from test_notify import hostile_messages

from scanner.notify import DeliveryError, build_message
from scanner.notify.config import EmailSettings
from scanner.notify.email import EmailSender, build_email

NOW = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
#: aiosmtpd's session does not see implicit TLS as TLS, and warns that AUTH is offered.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
HEADERS = {"From", "To", "Cc", "Subject", "Date", "Message-ID", "X-Cendis-Idempotency-Key",
           "Auto-Submitted", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def settings(server: Any, tls: str, cert: tuple[Path, Path] | None = None,
             **changes: Any) -> EmailSettings:
    auth = {"username": USER, "password": PASSWORD} if tls != "none" else {}
    fields: dict[str, Any] = {
        "host": server.host, "port": server.port, "tls": tls,
        "sender": "cendis-scan@example.com", "to": ("security@example.com",),
        "author_domains": frozenset({"example.com"}),
        "ca_file": str(cert[0]) if cert else None, **auth}
    fields.update(changes)
    return EmailSettings(**fields)


async def send(sender: EmailSender, messages: list[Any], key: str = "evt_5_mail") -> str:
    async with aiohttp.ClientSession() as session:
        return await sender.send(messages, session=session, idem_key=key, now=NOW)


def git_incident(author: str, source: str = "scan:acme/app") -> dict[str, Any]:
    return incident(sightings=[{"source": source, "repository": "acme/app",
                                "commit": "0123456789abcdef0123456789abcdef01234567",
                                "path": ".env", "line": 2, "author": author}])


@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit"])
async def test_the_relay_receives_the_email(mode: str, cert: tuple[Path, Path]) -> None:
    tls = {"plain": "none"}.get(mode, mode)
    with smtp_server(mode, cert) as server:
        sender = EmailSender("mail", settings(server, tls, cert))
        msg = build_message(git_incident("Dev <dev@example.com>"), "opened",
                            "https://cs.example")
        answer = await send(sender, [msg])
        assert answer == "Message accepted for delivery", answer
        (mail,) = server.mails
        assert server.logins == ([] if mode == "plain" else ["PLAIN"])
    assert mail.mail_from == "cendis-scan@example.com"
    assert mail.rcpt_tos == ["security@example.com", "dev@example.com"]
    parsed = mail.parsed()
    assert parsed["Subject"] == f"[cendis-scan] {msg.summary}"
    assert parsed["Cc"] == "dev@example.com"
    assert parsed["Message-ID"] == "<evt_5_mail@example.com>"
    assert parsed["X-Cendis-Idempotency-Key"] == "evt_5_mail"
    body = parsed.get_content()
    for part in ("Token: cendis_pat_WEKi…Xv", "Severity: critical", "Time to revoke",
                 "acme/app · .env:2", "Regenerate the token", "CI secret stores and .env",
                 "Incident: https://cs.example/incidents/12"):
        assert part in body, part


async def test_an_untrusted_certificate_is_refused(cert: tuple[Path, Path]) -> None:
    with smtp_server("starttls", cert) as server:
        sender = EmailSender("mail", settings(server, "starttls", None))  # system CAs only
        with pytest.raises(DeliveryError) as caught:
            await send(sender, [build_message(incident(), "opened", None)])
        assert server.mails == [] and server.logins == []
    assert (caught.value.reason, caught.value.retryable) == ("tls", False)


async def test_bad_credentials_and_refused_recipients(cert: tuple[Path, Path]) -> None:
    msg = build_message(incident(), "opened", None)
    with smtp_server("starttls", cert) as server:
        wrong = EmailSender("mail", settings(server, "starttls", cert, password="nope"))
        with pytest.raises(DeliveryError) as caught:
            await send(wrong, [msg])
        assert (caught.value.reason, caught.value.retryable) == ("auth", False)
        assert "nope" not in caught.value.message
        for code, retry in ((550, False), (451, True)):
            server.refuse_rcpt["security@example.com"] = code
            with pytest.raises(DeliveryError) as caught:
                await send(EmailSender("mail", settings(server, "starttls", cert)), [msg])
            assert (caught.value.reason, caught.value.retryable) == ("recipients_refused",
                                                                      retry)
        assert server.mails == []


async def test_a_relay_that_is_down_is_retryable() -> None:
    sender = EmailSender("mail", EmailSettings("127.0.0.1", free_port(), "none",
                                               "a@example.com", ("b@example.com",)))
    with pytest.raises(DeliveryError) as caught:
        await send(sender, [build_message(incident(), "opened", None)])
    assert (caught.value.reason, caught.value.retryable) == ("unreachable", True)


AUTHORS = [
    ("Dev <dev@example.com>", ["dev@example.com"]),
    ("dev@EXAMPLE.COM", ["dev@EXAMPLE.COM"]),
    ("Dev <dev@sub.example.com>", []),
    ("Dev <dev@example.com.evil.io>", []),
    ("Dev <dev@notexample.com>", []),
    ("dev@example.com, victim@evil.io", []),
    ("Dev <dev@example.com>\r\nBcc: victim@evil.io", []),
    ("Dev <dev@example.com>\nBcc: victim@evil.io", []),
    ('"dev@example.com" <victim@evil.io>', []),
    ("victim@evil.io (dev@example.com)", []),
    ("Dev <victim@evil.io>; dev@example.com", []),
    ("dev@example.com\\x0d\\x0aBcc: victim@evil.io", []),
]


@pytest.mark.parametrize(("author", "cc"), AUTHORS, ids=[a for a, _ in AUTHORS])
def test_only_allowed_author_domains_are_mailed(author: str, cc: list[str]) -> None:
    s = EmailSettings("127.0.0.1", 25, "none", "cs@example.com", ("security@example.com",),
                      frozenset({"example.com"}))
    mail, rcpts = build_email(s, [build_message(git_incident(author), "opened", None)],
                              idem_key="k", now=NOW)
    assert rcpts == ["security@example.com", *cc]
    assert "victim" not in str(mail).split("\r\n\r\n", 1)[0]  # in no header


def test_authors_of_partner_reports_and_of_other_incidents_are_not_mailed() -> None:
    s = EmailSettings("127.0.0.1", 25, "none", "cs@example.com", ("security@example.com",),
                      frozenset({"example.com"}))
    partner = build_message(git_incident("dev@example.com", "partner:github"), "opened", None)
    assert build_email(s, [partner], idem_key="k", now=NOW)[1] == ["security@example.com"]
    mine = build_message(git_incident("a@example.com"), "opened", None)
    theirs = build_message(git_incident("b@example.com"), "opened", None)
    assert build_email(s, [mine, theirs], idem_key="k", now=NOW)[1] == ["security@example.com"]
    assert build_email(s, [mine, mine], idem_key="k", now=NOW)[1] == [
        "security@example.com", "a@example.com"]
    nobody = EmailSettings("127.0.0.1", 25, "none", "cs@example.com", ("security@example.com",))
    assert build_email(nobody, [mine], idem_key="k", now=NOW)[1] == ["security@example.com"]


async def test_hostile_text_reaches_no_header_and_no_token_is_mailed(make_token: Any) -> None:
    token = make_token()
    messages = hostile_messages(token)
    with smtp_server("plain") as server:
        sender = EmailSender("mail", settings(server, "none"))
        for msg in messages:
            await send(sender, [msg])
        await send(sender, messages, key="digest_1")
        mails = list(server.mails)
    assert len(mails) == len(messages) + 1
    for mail in mails:
        assert Needles([token]).find(mail.content) is None
        assert mail.rcpt_tos == ["security@example.com"]
        parsed = mail.parsed()
        assert set(parsed.keys()) <= HEADERS, parsed.keys()
        assert "victim" not in str(parsed["Subject"]) and parsed["Bcc"] is None
        assert Needles([token]).find(parsed.get_content()) is None
        head = mail.content.split(b"\r\n\r\n", 1)[0]
        assert b"evil" not in head and b"<script" not in head
    assert mails[-1].parsed()["Subject"] == "[cendis-scan] 3 notifications"
    assert "Bcc: victim" in mails[0].parsed().get_content()  # shown, in the body, escaped


# -- cendis-scan notify test CHANNEL ---------------------------------------------------------

def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text("[notify]\nbase_url = \"https://cs.example\"\n" + body)
    return path


async def test_notify_test_through_the_cli(aiohttp_server: Any, tmp_path: Path,
                                           cert: tuple[Path, Path]) -> None:
    slack, hook = SlackStandIn(), WebhookStandIn()
    slack_server = await aiohttp_server(slack.app())
    hook_server = await aiohttp_server(hook.app())
    with smtp_server("starttls", cert) as smtp:
        path = write_config(tmp_path, f"""
[notify.channels.security]
kind = "slack"
url_env = "TEST_SLACK_URL"
[notify.channels.siem]
kind = "webhook"
url = "{hook_server.make_url('/hook')}"
secret_env = "TEST_SIEM_WHSEC"
[notify.channels.mail]
kind = "email"
host = "127.0.0.1"
port = {smtp.port}
tls = "starttls"
ca_file = "{cert[0]}"
username_env = "TEST_SMTP_USER"
password_env = "TEST_SMTP_PASSWORD"
sender = "cendis-scan@example.com"
to = ["security@example.com"]
""")
        env = {"TEST_SLACK_URL": str(slack_server.make_url("/services/T000/B000/hook")),
               "TEST_SIEM_WHSEC": WHSEC, "TEST_SMTP_USER": USER, "TEST_SMTP_PASSWORD": PASSWORD}
        said = {}
        for name in ("security", "siem", "mail"):
            proc = await asyncio.to_thread(run, ["notify", "test", name, "--config", str(path)],
                                           env=env)
            assert proc.returncode == 0, proc.err
            said[name] = proc.out
        mails = list(smtp.mails)
    assert said["security"] == "security (slack): delivered: ok\n"
    assert said["siem"] == "siem (webhook): delivered: HTTP 204\n"
    assert said["mail"] == "mail (email): delivered: Message accepted for delivery\n"
    assert slack.received[0]["blocks"][0]["text"]["text"] == "Test notification from cendis-scan"
    (_, headers, body, _), = hook.received
    assert body["type"] == "incident.test" and headers["webhook-id"].startswith("test_")
    assert "links to incidents go to https://cs.example/incidents/ID" in body["data"]["detail"]
    assert mails[0].parsed()["Subject"].startswith("[cendis-scan] Test notification")

    slack.replies.append((404, "no_service", {}))
    proc = await asyncio.to_thread(run, ["notify", "test", "security", "--config", str(path)],
                                   env=env)
    assert proc.returncode == 1 and proc.out == ""
    assert proc.err == ("cendis-scan: error: security (slack): not delivered: slack channel "
                        "security: HTTP 404 no_service [http_404, not retryable]\n")


CONFIG_ERRORS = [
    ('[notify.channels.a]\nkind = "slack"\nurl = "https://h/x"\ncolor = 1\n',
     "[notify.channels.a]: unknown key 'color'"),
    ('[notify.channels.a]\nkind = "webhook"\nurl = "https://h/x"\nsecret = "whsec_???"\n',
     "[notify.channels.a] secret: the secret after whsec_ is not base64"),
    ('[notify.channels.a]\nkind = "slack"\nurl_env = "NO_SUCH_VARIABLE_17"\n',
     "[notify.channels.a] url_env: environment variable NO_SUCH_VARIABLE_17 is not set"),
    ('[notify.channels.b]\nkind = "slack"\nurl = "https://h/x"\n',
     "[notify] has no channel 'a' (channels: b)"),
    ('[notify.channels.a\n', "not valid TOML"),
]


@pytest.mark.parametrize(("body", "line"), CONFIG_ERRORS, ids=[e for _, e in CONFIG_ERRORS])
def test_config_errors_are_one_line_exit_2(tmp_path: Path, body: str, line: str) -> None:
    path = write_config(tmp_path, body)
    proc = run(["notify", "test", "a", "--config", str(path)])
    assert proc.returncode == 2 and proc.out == ""
    assert proc.err.count("\n") == 1 and proc.err.startswith("cendis-scan: error: ")
    assert line in proc.err
    missing = run(["notify", "test", "a", "--config", str(tmp_path / "none.toml")])
    assert missing.returncode == 2 and missing.err.count("\n") == 1
