"""Stand-ins for the notification channels, real servers on loopback: a Slack-shaped
incoming webhook, a Standard Webhooks endpoint that verifies every delivery with the
``standardwebhooks`` library (someone else's implementation of the scheme), and a real
SMTP server (aiosmtpd) with STARTTLS, implicit TLS and AUTH on a certificate made at
test time.

Every stand-in keeps what it received in captured/ (``keep_output``), so the privacy
check at the end of the run searches outgoing messages for tokens too.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from conftest import free_port, require_tool
from privacy import keep_output

#: A fresh Standard Webhooks secret for the endpoint (not a token: 24 fixed bytes).
WHSEC = "whsec_" + base64.b64encode(b"notify-test-secret-24byt").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"the-previous-secret-here").decode()


# -- Slack ------------------------------------------------------------------------------

@dataclass
class SlackStandIn:
    """An incoming webhook: records each JSON body, answers from ``replies`` (status,
    text, headers) in order and then ``200 ok``; ``delay`` seconds before answering."""

    received: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/T000/B000/hook", self.handle)
        app.router.add_post("/moved", self.moved)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        keep_output(raw, "notify-slack")
        if self.delay:
            await asyncio.sleep(self.delay)
        self.received.append(json.loads(raw))
        if self.replies:
            status, text, headers = self.replies.pop(0)
            return web.Response(status=status, text=text, headers=headers)
        return web.Response(text="ok")

    async def moved(self, request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPFound("/services/T000/B000/hook")


# -- a Standard Webhooks endpoint -------------------------------------------------------

@dataclass
class WebhookStandIn:
    """Verifies each delivery with ``standardwebhooks`` (401 when it fails) and records
    (webhook-id, headers, parsed JSON, raw body) of the verified ones."""

    secret: str = WHSEC
    received: list[tuple[str, dict[str, str], dict[str, Any], bytes]] = field(
        default_factory=list)
    failures: list[str] = field(default_factory=list)
    replies: list[int] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        raw = await request.read()
        keep_output(raw, "notify-webhook")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(raw, headers)
        except WebhookVerificationError as exc:
            self.failures.append(str(exc))
            return web.Response(status=401, text="bad signature")
        self.received.append((headers["webhook-id"], headers, json.loads(raw), raw))
        if self.replies:
            return web.Response(status=self.replies.pop(0), text="try later")
        return web.Response(status=204)


# -- SMTP -------------------------------------------------------------------------------

@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def parsed(self) -> Any:
        from email import policy
        from email.parser import BytesParser

        return BytesParser(policy=policy.default).parsebytes(self.content)


@dataclass
class SmtpStandIn:
    """What an aiosmtpd server received, and its address."""

    host: str
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse_rcpt: dict[str, int] = field(default_factory=dict)  # address → SMTP code


class _Handler:
    def __init__(self, standin: SmtpStandIn) -> None:
        self.standin = standin

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        code = self.standin.refuse_rcpt.get(address.lower())
        if code:
            return f"{code} {'try later' if code < 500 else 'no such user'}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        keep_output(content, "notify-smtp")
        self.standin.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


USER, PASSWORD = "notifier", "correct horse battery"


def _authenticator(standin: SmtpStandIn) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data.login == USER.encode() and \
            data.password == PASSWORD.encode()
        if ok:
            standin.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def smtp_server(mode: str, cert: tuple[Path, Path] | None = None) -> Iterator[SmtpStandIn]:
    """A real SMTP server on 127.0.0.1: ``plain`` (no TLS, no AUTH), ``starttls``
    (STARTTLS and AUTH required) or ``implicit`` (TLS from the first byte, AUTH)."""
    require_tool("aiosmtpd", module="aiosmtpd")
    from aiosmtpd.controller import Controller

    standin = SmtpStandIn("127.0.0.1", free_port())
    kwargs: dict[str, Any] = {}
    if mode != "plain":
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        kwargs.update(authenticator=_authenticator(standin), auth_required=True)
        if mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            # TLS from the first byte, which aiosmtpd's session does not see as TLS.
            kwargs.update(ssl_context=context, auth_require_tls=False)
    controller = Controller(_Handler(standin), hostname=standin.host, port=standin.port,
                            server_hostname="localhost", **kwargs)
    controller.start()
    try:
        yield standin
    finally:
        controller.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (its own CA) and its key, made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- incidents --------------------------------------------------------------------------

def incident(**changes: Any) -> dict[str, Any]:
    """An incident shaped like ``Store.get_incident()`` (schema 3's columns too)."""
    base: dict[str, Any] = {
        "id": 12, "sha256": "ab" * 32, "redacted": "cendis_pat_WEKi…Xv",
        "first_seen": "2026-03-01T10:00:00+00:00", "last_seen": "2026-03-01T10:00:00+00:00",
        "status": "revoked", "severity": "critical", "owner": "alice", "token_name": "ci",
        "org": "acme", "scopes": ["admin:org", "read:assets"], "revoke_attempts": 1,
        "last_error": None, "triage": "open", "assignee": None,
        "revoked_at": "2026-03-01T10:04:12+00:00",
        "sightings": [{"source": "partner:github", "partner": "github",
                       "repository": "acme/app", "url": "https://github.com/acme/app/blob/x",
                       "commit": "0123456789abcdef0123456789abcdef01234567", "path": "ci.yml",
                       "line": 7, "author": None, "record_type": "cendis_pat",
                       "record_source": "content", "delivery_id": "d1",
                       "received_at": "2026-03-01T10:00:00+00:00"}],
        "events": [{"at": "2026-03-01T10:00:00+00:00", "kind": "opened", "detail": None,
                    "actor": None}],
    }
    base.update(changes)
    return base


def hostile_strings(token: str) -> list[str]:
    """What a partner record may carry: Slack mentions and links, Markdown, CR/LF header
    injections, HTML, and a whole token (plain, in a URL, percent-escaped, base64)."""
    return [
        "<!channel> <!here> <!everyone> <@U12345> <#C999|general>",
        "<http://evil.example/phish|click here> [click](http://evil.example) *bold* _it_",
        "x\r\nBcc: victim@evil.example\r\nSubject: pwned\r\n\r\nbody",
        "<script>alert(1)</script><img src=x onerror=alert(1)>&amp;",
        f"https://evil.example/?access_token={token}",
        quote(token, safe=""),
        base64.b64encode(token.encode()).decode(),
        f"leak {token} here",
    ]
