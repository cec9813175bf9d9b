"""Where a sweep's new findings go: the local incident store (and its revoke queue), or
a running receiver (``cendis-scan serve``) through its ``POST /v1/findings``.

Either way a sink answers only after the findings are durable (committed to SQLite, or
acknowledged by the receiver), because the sweep state advances right after: a failure
here leaves the repository to be swept again, never a finding lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from scanner.errors import ConfigError, ScanError, short
from scanner.finding import Finding
from scanner.scrub import scrub

if TYPE_CHECKING:
    from scanner.incidents.trail import IncidentTrail
    from scanner.notify.config import NotifyConfig
    from scanner.sweep.presence import PresenceBook

log = logging.getLogger(__name__)

#: How long the revoker keeps retrying through an outage before a sweep gives up waiting
#: (the tokens stay queued: the next sweep, or ``serve``, revokes them).
REVOKE_PATIENCE = 60.0
#: How long the one notification pass at the end of a sweep may take (seconds); what is
#: left stays in the outbox for the next sweep (or a running serve).
NOTIFY_PATIENCE = 30.0
REPORT_TIMEOUT = 60.0
REPORT_TOKEN_ENV = "CENDIS_SCAN_REPORT_TOKEN"


class SinkError(ScanError):
    """The findings could not be made durable (database or receiver)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Place:
    """Where a sweep saw its findings: the incident source and sighting fields."""

    source: str  # "scan:<repository name>" or "scan:<log path>"
    repository: str | None = None
    url: str | None = None


class Sink(Protocol):
    #: Who revokes what this sink queued: "sweep" (this process, before it exits) or
    #: "receiver" (in its background; the sweep knows only what the answer said).
    revoked_by: str
    #: Where presence checks are kept (the local store), or None: a receiver keeps
    #: the incidents, so this sweep checks no presence.
    presence: PresenceBook | None

    def record(self, place: Place, findings: Sequence[Finding], *, revoke: bool) -> int:
        """Make the findings durable; returns how many were queued for revocation."""
        ...

    def finish(self) -> list[str]:
        """Revoke what was queued (where this sink does); return problems, one line each."""
        ...

    def outcome(self, sha256: str) -> str | None:
        """The incident's status as far as this sink knows (revoked, pending...)."""
        ...

    def close(self) -> None: ...


def _author(finding: Finding) -> str | None:
    name, email = finding.author_name, finding.author_email
    return f"{name} <{email}>" if name and email else (name or email or None)


class LocalSink:
    """The incident store in this process; revokes run in a background thread with its
    own event loop while the sweep goes on, so a token found early is revoked early."""

    revoked_by = "sweep"

    def __init__(self, db_path: str, *, api_url: str | None, credential: str | None,
                 now: Callable[[], datetime] | None = None,
                 patience: float = REVOKE_PATIENCE,
                 notify: NotifyConfig | None = None) -> None:
        from scanner.incidents.trail import IncidentTrail
        from scanner.notify.config import as_router

        self.notify = notify
        self.trail = IncidentTrail.open(db_path, now=now, router=as_router(notify))
        self.store = self.trail.store
        self.presence: PresenceBook | None = self.store
        self._revoker: _RevokeThread | None = None
        if credential is not None and api_url is not None:
            self._revoker = _RevokeThread(self.trail, api_url, credential, patience)
        self.queued: set[str] = set()  # hashes this sweep queued (for the summary)
        self._lock = threading.Lock()

    def record(self, place: Place, findings: Sequence[Finding], *, revoke: bool) -> int:
        from scanner.incidents.findings import queue_split

        try:
            recorded = self.trail.record(findings, place.source, revoke=revoke,
                                         repository=place.repository, url=place.url)
        except Exception as exc:  # sqlite3.Error and friends: this source is not advanced
            raise SinkError("database", f"incident database: {short(str(exc), 100)}") \
                from None
        queued, _ = queue_split(zip(findings, recorded, strict=True), revoke=revoke)
        with self._lock:
            self.queued.update(r.sha256 for r in queued)
        if queued and self._revoker is not None:
            self._revoker.kick()
        return len(queued)

    def finish(self) -> list[str]:
        problems: list[str] = []
        if self._revoker is not None:
            problems += self._revoker.flush()
        with self._lock:
            pending = sorted(s for s in self.queued if self.outcome(s) == "pending")
            self.queued.clear()
        if pending and self._revoker is None:
            problems.append(f"{len(pending)} token(s) queued for revocation but no Cendis "
                            "credential (pass --token or set CENDIS_TOKEN)")
        elif pending:
            problems.append(f"{len(pending)} token(s) still queued for revocation (kept "
                            "in the queue: the next sweep or 'serve' retries)")
        self._notify()
        return problems

    def _notify(self) -> None:
        """One bounded pass over the outbox (after the revokes, so a ``revoked`` goes
        too); what is left is said in one line and waits for the next run."""
        if self.notify is None or not self.notify.by_name:
            return
        from scanner.notify.dispatch import drain_once

        try:
            sent, left, error = asyncio.run(drain_once(self.store, self.notify,
                                                       patience=NOTIFY_PATIENCE))
        except Exception as exc:  # noqa: BLE001 - the rows stay in the outbox
            sys.stderr.write(f"cendis-scan: notifications not sent ({_why(exc)}); they stay "
                             "in the outbox for the next run\n")
            return
        if left:
            why = f"last error {error}" if error else "a channel rate-limited"
            sys.stderr.write(f"cendis-scan: notified {sent} message"
                             f"{'s' if sent != 1 else ''}; {left} left in the outbox "
                             f"({why}): sent by the next sweep or a running serve\n")

    def outcome(self, sha256: str) -> str | None:
        status = self.trail.status_of(sha256)
        return None if status is None else str(status)

    def close(self) -> None:
        if self._revoker is not None:
            self._revoker.close()
        self.trail.close()


class _RevokeThread:
    """The durable queue's revoker in a thread with its own event loop, drained whenever
    a source queued something; one drain at a time (a token is sent once)."""

    def __init__(self, trail: IncidentTrail, api_url: str, credential: str,
                 patience: float) -> None:
        self._trail, self._url, self._credential = trail, api_url, credential
        self._patience = patience
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._problems: list[str] = []
        self._thread = threading.Thread(target=self._main, name="cendis-revoker", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - reported in the summary, not a crash
            log.debug("revoker thread failed", exc_info=True)
            self._problems.append(f"revoker: {short(str(exc), 100)}")
        finally:
            self._loop = None
            self._ready.set()

    async def _serve(self) -> None:
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        async with self._trail.revoking(self._url, self._credential,
                                        base_delay=0.5, max_delay=10.0) as revoker:
            self._revoker = revoker
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stopped.wait()

    async def _drain(self) -> None:
        async with self._lock:
            try:
                await self._revoker.drain(patience=self._patience)
            except Exception as exc:  # noqa: BLE001 - the tokens stay queued
                log.debug("revoke drain failed", exc_info=True)
                self._problems.append(f"revoker: {short(str(exc), 100)}")

    def kick(self) -> None:
        """Something was queued: drain soon (without waiting for it)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop)

    def flush(self) -> list[str]:
        """Drain now and wait; the problems seen since the last flush."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
            if not self._revoker.healthy:
                self._problems.append(
                    f"revoker blocked: Cendis refused the credential "
                    f"({self._revoker.unhealthy_reason}); the tokens stay queued")
        problems, self._problems = self._problems, []
        return problems

    def close(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join()


def _why(exc: BaseException) -> str:
    """What went wrong, in words (a timeout's text is empty)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _item_ok(item: Any) -> bool:
    """One recorded item as the receiver writes it: a positive incident id, one of the
    store's statuses, a bool ``new_incident``."""
    from scanner.incidents.models import Status

    if not isinstance(item, dict) or not isinstance(item.get("sha256"), str):
        return False
    ident, status = item.get("incident_id"), item.get("status")
    return (isinstance(ident, int) and not isinstance(ident, bool) and ident > 0
            and isinstance(status, str) and status in set(Status)
            and isinstance(item.get("new_incident"), bool))


def acknowledged(answer: Any, sent: Sequence[str]) -> dict[str, str] | None:
    """Each sent sha256's status, when the receiver's answer names every one of them and
    nothing else (``{"recorded": [{"sha256", "incident_id", "status", "new_incident"},
    ...], "count": n, "queued": q}``) and every field is what the receiver writes; None
    when it is no acknowledgement (``{}``, ``[]``, a list that misses or adds a finding,
    a field of the wrong type or out of range, a count or queued that disagrees with the
    list): the state does not move on an answer that only looks like one."""
    items = answer.get("recorded") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != len(sent):
        return None
    status: dict[str, str] = {}
    for item in items:
        if not _item_ok(item):
            return None
        status[item["sha256"]] = item["status"]
    count = answer.get("count", len(sent))
    pending = sum(1 for s in status.values() if s == "pending")
    queued = answer.get("queued", pending)
    if (set(status) != set(sent) or not _count(count) or count != len(sent)
            or not _count(queued) or queued != pending):
        return None
    return status


def _ipv6_host(netloc: str) -> bool:
    """``[addr]`` or ``[addr]:port`` with a real IPv6 address (``urlsplit`` lets
    ``[::1]x`` through)."""
    import ipaddress
    import re

    match = re.fullmatch(r"\[([^\]]+)\](?::[0-9]*)?", netloc)
    if match is None:
        return False
    try:
        ipaddress.IPv6Address(match.group(1))
    except ValueError:
        return False
    return True


def report_url(url: str) -> str:
    """``--report-to`` checked before anything is swept: an http(s) URL with a host,
    no user name or password (the bearer token comes from the environment), no query,
    and no token in any form (query, path, base64, percent-encoded): it goes on the
    wire and into logs. A :class:`ConfigError` (one line, exit 2) that never quotes a
    token or a password."""
    from urllib.parse import urlsplit

    from scanner.sweep.config import holds_token, strip_credentials

    shown = short(scrub(strip_credentials(url)), 60)
    if holds_token(url):  # not quoted: the scrub may not see every form we refuse
        raise ConfigError("bad --report-to URL: it holds a token: the bearer token comes "
                          f"from ${REPORT_TOKEN_ENV}, never the URL")
    problem = None
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError as exc:
        problem = f"not a valid URL ({short(str(exc), 40)})"
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif parts.username is not None or parts.password is not None:
            problem = (f"it must not hold a user name or password (the bearer token "
                       f"comes from ${REPORT_TOKEN_ENV})")
        elif not parts.hostname:
            problem = "it names no host"
        elif ("[" in parts.netloc or "]" in parts.netloc) and not _ipv6_host(parts.netloc):
            problem = "not a valid URL (a bad IPv6 address in brackets)"
        elif parts.query or parts.fragment:
            problem = "it must not have a query or fragment (/v1/findings is added)"
    if problem is not None:
        raise ConfigError(f"bad --report-to URL {shown!r}: {problem}")
    return url.strip()


class RemoteSink:
    """A receiver's ``POST /v1/findings`` (bearer token from the environment): the
    receiver records the incidents and queues the revokes, as it does partner reports.
    Its 200 answer must name each finding it recorded (by sha256): only then does the
    sweep's state move past them. Redirects are refused."""

    revoked_by = "receiver"
    presence: PresenceBook | None = None  # the receiver's store is not ours to write

    def __init__(self, url: str, token: str | None, *, timeout: float = REPORT_TIMEOUT) -> None:
        url = report_url(url)
        if not token:
            raise ConfigError(f"--report-to needs a bearer token in ${REPORT_TOKEN_ENV}")
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1/findings"):
            self.url += "/v1/findings"
        self._token = token
        self._timeout = timeout
        self._status: dict[str, str] = {}

    def __repr__(self) -> str:  # never the token
        return f"RemoteSink({self.url!r})"

    def record(self, place: Place, findings: Sequence[Finding], *, revoke: bool) -> int:
        if not findings:
            return 0
        sent = list(dict.fromkeys(f.secret_sha256 for f in findings))
        body = json.dumps({
            "source": place.source, "repository": place.repository, "url": place.url,
            "revoke": revoke,
            "findings": [{"sha256": f.secret_sha256, "redacted": f.redacted,
                          "rule_id": f.rule_id, "confidence": str(f.confidence),
                          "commit": f.commit, "path": f.path, "line": f.line,
                          "author": _author(f)} for f in findings]}).encode()
        # Called from the sweep's threads, none of which runs a loop: one short loop per
        # request, as each request was one connection before.
        code, answer = asyncio.run(self._post(body))
        status = acknowledged(answer, sent) if code == 200 else None
        if status is None:
            raise SinkError("unacknowledged", f"{self.url} answered {code} without "
                            f"acknowledging the {len(sent)} finding(s) sent (its answer "
                            "must list each one's sha256): not advanced, sent again next "
                            "time")
        self._status.update(status)
        return sum(1 for s in status.values() if s == "pending")

    async def _post(self, body: bytes) -> tuple[int, Any]:
        """POST ``body``; the status and the JSON answer of a 200, or :class:`SinkError`
        (a redirect is never followed: the bearer token must not reach another host, and
        an answer from elsewhere acknowledges nothing)."""
        import aiohttp

        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self._token}"}
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as session, \
                    session.post(self.url, data=body, headers=headers,
                                 allow_redirects=False) as response:
                code = response.status
                if 300 <= code < 400:
                    raise SinkError("redirect", f"{self.url} answered {code} (a redirect): "
                                    "reports never follow redirects; give --report-to the "
                                    "receiver's own address")
                if code >= 400:
                    reason = "unauthorized" if code in (401, 403) else "receiver"
                    raise SinkError(reason, f"{self.url} answered {code}")
                return code, json.loads(await response.read() or b"null")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError,
                RecursionError) as exc:
            raise SinkError("receiver", f"{self.url}: {short(_why(exc), 80)}") from None

    def finish(self) -> list[str]:
        return []  # the receiver's revoker drains its queue

    def outcome(self, sha256: str) -> str | None:
        return self._status.get(sha256)

    def close(self) -> None:
        pass
