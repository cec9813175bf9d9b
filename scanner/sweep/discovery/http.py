"""The forges' list APIs over HTTP, the way both GitHub and GitLab ask clients to behave.

- Pages are followed through the ``Link: <...>; rel="next"`` header (GitHub's page
  numbers and GitLab's keyset cursors alike), and only to the configured API's origin:
  a link elsewhere would carry the credential there.
- Each page is asked with ``If-None-Match`` and the ETag it had last time: an unchanged
  page is a ``304`` that costs no quota (GitHub) and no body, and its repositories are
  taken from the saved page. So a discovery that finds nothing new costs almost nothing.
- Rate limits are waited out, never hammered: ``Retry-After`` (GitHub's secondary
  limits, GitLab's 429), a primary limit at 0 (``x-ratelimit-remaining`` /
  ``RateLimit-Remaining``) until its reset, and GitHub's secondary limit without a
  header for a minute, as its documentation says. A wait longer than ``max_wait`` ends
  the discovery instead (the caller sweeps the last known list).
- A 5xx, a timeout or a dropped connection is retried with exponential backoff.

The sleep and the clock are parameters: tests run every wait at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from scanner.cendis.contract import retry_after_seconds
from scanner.errors import ScanError, short

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]  # seconds since the epoch (the forges' reset times are)

#: GitHub: "wait for at least one minute" after a secondary limit without a header.
SECONDARY_WAIT = 60.0
#: A page larger than this is refused (100 repositories are ~600 kB on GitHub).
MAX_PAGE = 16 << 20
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


class DiscoveryError(ScanError):
    """A listing could not be had; ``reason`` is a metric label (``rate_limited``,
    ``unauthorized``, ``not_found``, ``http_502``, ``timeout``, ``unreachable``...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    """A forge's rate-limit header names."""

    remaining: str
    reset: str  # epoch seconds when the window starts again
    secondary: bool  # GitHub: a 403 may be a secondary limit


GITHUB = Limits("x-ratelimit-remaining", "x-ratelimit-reset", secondary=True)
GITLAB = Limits("RateLimit-Remaining", "RateLimit-Reset", secondary=False)


@dataclass(slots=True)
class Stats:
    """What a discovery cost: said in the sweep's output and JSON."""

    requests: int = 0
    not_modified: int = 0  # 304s: pages unchanged, no quota spent
    retries: int = 0
    waited: float = 0.0  # seconds slept for rate limits and backoff
    remaining: int | None = None  # the quota left after the last answer

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "not_modified": self.not_modified,
                "retries": self.retries, "waited": round(self.waited, 1),
                "rate_remaining": self.remaining}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 200 or 304
    items: list[Any] = field(default_factory=list)
    etag: str | None = None
    next: str | None = None


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (RFC 8288), or None."""
    for target, params in _LINK.findall(header or ""):
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip('" ').split():
                return target.strip()
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class Fetcher:
    """GET one page at a time from one API, politely (see the module's docstring)."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str,
                 headers: Mapping[str, str], limits: Limits, *, sleep: Sleep,
                 clock: Clock, attempts: int = 5, backoff: float = 1.0,
                 max_wait: float = 900.0, timeout: float = 30.0) -> None:
        self._session = session
        self._origin = _origin(api_url)
        self._headers = dict(headers)
        self._limits = limits
        self._sleep = sleep
        self._clock = clock
        self._attempts = attempts
        self._backoff = backoff
        self._max_wait = max_wait
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.stats = Stats()
        self._reset_at: float | None = None  # the quota is spent until then

    def __repr__(self) -> str:  # never the credential
        return f"Fetcher({'://'.join(self._origin)!r})"

    async def _wait(self, seconds: float, why: str) -> None:
        if seconds > self._max_wait:
            raise DiscoveryError("rate_limited", f"{why}: the API asks to wait "
                                 f"{seconds:.0f} s (more than {self._max_wait:.0f} s)")
        self.stats.waited += seconds
        await self._sleep(seconds)

    async def get(self, url: str, etag: str | None = None) -> Answer:
        """One page: a 200 with its items, or a 304 (unchanged since ``etag``)."""
        if _origin(url) != self._origin:
            raise DiscoveryError("bad_link", "a page link points away from the API "
                                 f"({short(_origin(url)[1], 60)}); not followed")
        if self._reset_at is not None:  # the last answer said the quota is spent
            wait, self._reset_at = self._reset_at - self._clock(), None
            if wait > 0:
                await self._wait(wait + 1, "rate limit reached")
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
        failure = DiscoveryError("error", "no answer")
        limited = 0
        attempt = 0
        while attempt < self._attempts:
            if attempt:
                self.stats.retries += 1
                await self._wait(self._backoff * 2 ** (attempt - 1), str(failure))
            attempt += 1
            try:
                answer = await self._once(url, headers)
            except _Limited as lim:
                limited += 1
                if limited > self._attempts:
                    raise DiscoveryError("rate_limited", "still rate limited after "
                                         f"{limited - 1} waits") from None
                attempt -= 1  # a rate limit waited out is not a failed attempt
                await self._wait(lim.seconds, lim.why)
                continue
            except _Retry as exc:
                failure = exc.error
                continue
            return answer
        raise failure

    async def _once(self, url: str, headers: Mapping[str, str]) -> Answer:
        self.stats.requests += 1
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout,
                                         allow_redirects=False) as resp:
                remaining = _int(resp.headers.get(self._limits.remaining))
                reset = _int(resp.headers.get(self._limits.reset))
                if remaining is not None:
                    self.stats.remaining = remaining
                body = await resp.content.read(MAX_PAGE + 1)
                if len(body) > MAX_PAGE:
                    raise DiscoveryError("too_large", "a page larger than "
                                         f"{MAX_PAGE >> 20} MiB")
                self._check_limits(resp.status, resp.headers, body, remaining, reset)
                if resp.status == 304:
                    self.stats.not_modified += 1
                    return Answer(304, etag=resp.headers.get("ETag"))
                if resp.status == 200:
                    if remaining == 0 and reset is not None:
                        self._reset_at = float(reset)
                    return Answer(200, _items(body), resp.headers.get("ETag"),
                                  next_link(resp.headers.get("Link")))
                raise _status_error(resp.status, body)
        except TimeoutError:
            raise _Retry(DiscoveryError("timeout", "the API did not answer in "
                                        f"{self._timeout.total:.0f} s")) from None
        except aiohttp.ClientError as exc:
            raise _Retry(DiscoveryError("unreachable", "cannot reach the API: "
                                        f"{short(type(exc).__name__, 40)}")) from None

    def _check_limits(self, status: int, headers: Mapping[str, str], body: bytes,
                      remaining: int | None, reset: int | None) -> None:
        """Raise :class:`_Limited` for an answer that says "wait", :class:`_Retry` for
        a server error."""
        if status in (403, 429):
            now = datetime.fromtimestamp(self._clock(), UTC)
            after = retry_after_seconds(headers.get("Retry-After"), now)
            if after is not None:
                raise _Limited(after, f"rate limited ({status}, Retry-After)")
            if remaining == 0 and reset is not None:
                raise _Limited(max(1.0, reset - self._clock() + 1),
                               f"rate limit reached ({status})")
            if status == 429 or (self._limits.secondary and
                                 b"secondary rate limit" in body.lower()):
                raise _Limited(SECONDARY_WAIT, f"secondary rate limit ({status})")
        if status >= 500:
            raise _Retry(DiscoveryError(f"http_{status}", f"the API answered {status}"))


class _Limited(Exception):
    def __init__(self, seconds: float, why: str) -> None:
        self.seconds, self.why = seconds, why


class _Retry(Exception):
    def __init__(self, error: DiscoveryError) -> None:
        self.error = error


def _status_error(status: int, body: bytes) -> DiscoveryError:
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError, RecursionError):
        message = ""
    said = f" ({short(str(message), 100)})" if message else ""
    if 300 <= status < 400:
        return DiscoveryError("redirect", f"the API answered a redirect ({status}); "
                              "redirects are never followed (update api_url or the name)")
    reason = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status,
                                                                          f"http_{status}")
    return DiscoveryError(reason, f"the API answered {status}{said}")


def _items(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise DiscoveryError("bad_answer", "a page is not JSON") from None
    if not isinstance(data, list):
        raise DiscoveryError("bad_answer", "a page is not a JSON list")
    return data
