"""E-mail over SMTP: STARTTLS, implicit TLS, or plain to a loopback relay only.

Sent with ``aiosmtplib`` on the event loop (never a blocking ``smtplib`` call on it).
The e-mail is plain text (no HTML: a partner's text cannot become markup). Headers are
built with :class:`email.message.EmailMessage` and checked to hold no CR or LF, and no
partner text reaches them except the subject, which is our words around the scrubbed
(control characters escaped) redacted token. ``Message-ID`` and
``X-Cendis-Idempotency-Key`` carry the outbox row's key: a resend after a crash
mid-send has the same ones, for a mail system or a ticket tool to drop the repeat.

Recipients: the fixed ``to`` addresses, and in copy the commit author of a git
finding when the address's domain is exactly one of ``author_domains`` (no subdomain,
case-insensitive). A digest copies an author only when every incident in it is theirs,
so nobody is mailed another committer's leak.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import aiohttp
import aiosmtplib

from scanner.notify.config import EmailSettings
from scanner.notify.delivery import DeliveryError, short_answer
from scanner.notify.message import Message


def recipients(settings: EmailSettings, messages: Sequence[Message]) -> tuple[list[str], list[str]]:
    """(to, cc): the fixed addresses, and the authors every message names whose domain
    is on the allow-list (exact, case-insensitive), without repeats."""
    to = list(dict.fromkeys(settings.to))
    seen = {a.lower() for a in to}
    if not messages or not settings.author_domains:
        return to, []
    common = set.intersection(*({a.lower() for a in m.author_addresses} for m in messages))
    cc = []
    for address in messages[0].author_addresses:
        low = address.lower()
        domain = low.rpartition("@")[2]
        if low in common and domain in settings.author_domains and low not in seen:
            seen.add(low)
            cc.append(address)
    return to, cc


def subject_of(messages: Sequence[Message]) -> str:
    if len(messages) == 1:
        return "[cendis-scan] " + messages[0].summary
    return f"[cendis-scan] {len(messages)} notifications"


def text_of(messages: Sequence[Message], idem_key: str) -> str:
    """The plain-text body: each message's facts, places, link; what to do."""
    parts: list[str] = []
    for message in messages:
        lines = [message.summary if len(messages) > 1 else message.title, ""]
        lines += [f"{label}: {value}" for label, value in message.facts()]
        places = message.place_lines()
        if places:
            lines += ["", "Where:"] + [f"  - {p}" for p in places]
        if len(messages) == 1 and message.actions:
            lines += ["", "What to do:"]
            lines += [f"  {n}. {a}" for n, a in enumerate(message.actions, 1)]
        if message.link:
            lines += ["", f"Incident: {message.link}"]
        parts.append("\n".join(lines))
    if len(messages) > 1:
        steps = messages[0].actions
        parts.append("What to do for each:\n" + "\n".join(f"  {n}. {a}" for n, a in
                                                          enumerate(steps, 1)))
    parts.append(f"-- \nSent by cendis-scan (notification {idem_key}).")
    return "\n\n".join(parts) + "\n"


def _header(mail: EmailMessage, name: str, value: str) -> None:
    """A header that cannot carry another: CR and LF are refused (the standard library
    refuses them too since 3.11.4; this holds on any version)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: a header value holds a line break")
    mail[name] = value


def build_email(settings: EmailSettings, messages: Sequence[Message], *, idem_key: str,
                now: datetime) -> tuple[EmailMessage, list[str]]:
    """The e-mail and its envelope recipients."""
    to, cc = recipients(settings, messages)
    key = "".join(c for c in idem_key if c.isascii() and (c.isalnum() or c in "._-"))[:100]
    mail = EmailMessage(policy=SMTP)
    _header(mail, "From", settings.sender)
    _header(mail, "To", ", ".join(to))
    if cc:
        _header(mail, "Cc", ", ".join(cc))
    _header(mail, "Subject", subject_of(messages)[:200])
    _header(mail, "Date", format_datetime(now))
    _header(mail, "Message-ID", f"<{key}@{settings.sender.rpartition('@')[2]}>")
    _header(mail, "X-Cendis-Idempotency-Key", key)
    _header(mail, "Auto-Submitted", "auto-generated")  # RFC 3834: no auto-replies
    mail.set_content(text_of(messages, key), cte="quoted-printable")
    return mail, to + cc


@dataclass(frozen=True, slots=True)
class EmailSender:
    name: str
    settings: EmailSettings = field(repr=False)
    timeout: float = 10.0
    kind: str = "email"

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.tls == "none":
            return None
        return ssl.create_default_context(cafile=self.settings.ca_file)

    async def send(self, messages: Sequence[Message], *, session: aiohttp.ClientSession,
                   idem_key: str, now: datetime) -> str:
        """One e-mail; the relay's answer to the message (``250 ...``)."""
        if not messages:
            raise ValueError("nothing to send")
        s = self.settings
        mail, rcpts = build_email(s, messages, idem_key=idem_key, now=now)
        what = f"email channel {self.name}"
        try:
            refused, answer = await aiosmtplib.send(
                mail, sender=s.sender, recipients=rcpts, hostname=s.host, port=s.port,
                username=s.username, password=s.password, timeout=self.timeout,
                use_tls=s.tls == "implicit", start_tls=s.tls == "starttls",
                tls_context=self._tls_context())
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError("recipients_refused", f"{what}: every recipient refused "
                                f"({', '.join(map(str, codes))})",
                                any(400 <= c < 500 for c in codes)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError("auth", f"{what}: authentication refused: {exc.code} "
                                f"{short_answer(exc.message)}", False) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"smtp_{exc.code // 100}xx", f"{what}: {exc.code} "
                                f"{short_answer(exc.message)}", 400 <= exc.code < 500) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryError("not_supported", f"{what}: {short_answer(str(exc))}",
                                False) from None
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryError("timeout", f"{what}: no answer in {self.timeout:g} s",
                                True) from None
        except ssl.SSLError as exc:
            raise DeliveryError("tls", f"{what}: TLS failed: {exc.reason or exc}",
                                False) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPException, OSError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLError):
                raise DeliveryError("tls", f"{what}: TLS failed: {cause.reason or cause}",
                                    False) from None
            # A connection that failed or dropped may work later; any other refusal
            # (no AUTH offered, no STARTTLS) is the relay's setup: not retried blindly.
            down = isinstance(exc, OSError | aiosmtplib.SMTPConnectError
                              | aiosmtplib.SMTPServerDisconnected)
            raise DeliveryError("unreachable" if down else "smtp",
                                f"{what}: {type(exc).__name__}: {short_answer(str(exc))}",
                                down) from None
        said = short_answer(answer)
        if refused:
            said += f" ({len(refused)} of {len(rcpts)} recipients refused)"
        return said
