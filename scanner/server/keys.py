"""The partners' public-key cache (one :class:`KeyCache` per ECDSA partner).

Keys live in memory and, through the ``persist`` hook, in the database, so a restart
needs no fetch. An unknown key id triggers a refetch, but:

* one fetch at a time (concurrent deliveries with the same new id share it);
* at most one fetch per ``refetch_interval`` seconds (random ids from a stranger must not
  turn us into an amplifier against the partner's rate-limited endpoint);
* an id still unknown after a fetch is remembered for ``miss_ttl`` seconds and rejected
  at once (4xx) without another fetch.

Keys are also refreshed on a schedule (``refresh_interval``, on the injected clock): a
key the partner withdrew stops verifying after the next refresh, since a fetched list
replaces the old one. Keys loaded from the database at a restart are trusted only until
the first refresh succeeds; while the endpoint is down the last known set is kept (a
partner cannot deliver at all without it). A refresh that is due is started in the
background by the next :meth:`get` (the delivery does not wait for it) and by the app's
timer, at most once per ``refetch_interval`` while it fails.

Keys marked ``is_current: false`` are kept and accepted: a delivery signed just before a
rotation still verifies. ``now`` is a parameter (a monotonic clock), so tests need no
fake time. The HTTP fetch itself is :func:`http_fetcher` (ETag, optional GitHub token).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scanner.server.errors import SignatureError, Unavailable
from scanner.server.verify import load_p256_key

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_id: str
    pem: str
    is_current: bool
    key: ec.EllipticCurvePublicKey

    def to_json(self) -> dict[str, Any]:
        return {"key_identifier": self.key_id, "key": self.pem, "is_current": self.is_current}


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch brought: ``keys`` None means 304 Not Modified."""

    keys: list[dict[str, Any]] | None
    etag: str | None


Fetch = Callable[[str | None], Awaitable[Fetched]]
Persist = Callable[[list[dict[str, Any]], str | None], Awaitable[None] | None]


def parse_keys(entries: Any) -> dict[str, PublicKey]:
    """``public_keys`` entries → usable keys; bad entries are skipped, none usable is an
    error (the endpoint answered junk)."""
    if not isinstance(entries, list):
        raise Unavailable("keys_bad_response", "key endpoint: no public_keys list")
    keys = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        key_id, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(key_id, str) or not key_id or not isinstance(pem, str):
            continue
        try:
            key = load_p256_key(pem)
        except (ValueError, TypeError):
            continue
        keys[key_id] = PublicKey(key_id, pem, entry.get("is_current") is not False, key)
    if not keys:
        raise Unavailable("keys_bad_response", "key endpoint: no usable P-256 key")
    return keys


class KeyCache:
    """Keys of one partner; :meth:`get` is the only call on the request path."""

    def __init__(self, partner: str, fetch: Fetch, *, persist: Persist | None = None,
                 initial: list[dict[str, Any]] | None = None, etag: str | None = None,
                 refetch_interval: float = 5.0, miss_ttl: float = 60.0,
                 refresh_interval: float = 600.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.partner = partner
        self._fetch = fetch
        self._persist = persist
        self._now = now
        self.refetch_interval = refetch_interval
        self.miss_ttl = miss_ttl
        self.refresh_interval = max(1.0, refresh_interval)
        self.refreshed_at: float | None = None  # last fetch that worked (None: unconfirmed)
        self._background: asyncio.Task[None] | None = None
        self.keys: dict[str, PublicKey] = {}
        self.etag = etag if initial else None
        self.fetches = 0
        self.last_error: str | None = None
        self._last_attempt: float | None = None
        self._misses: dict[str, float] = {}
        self._lock = asyncio.Lock()
        if initial:
            try:
                self.keys = parse_keys(initial)
            except Unavailable:
                self.etag = None

    @property
    def loaded(self) -> bool:
        return bool(self.keys)

    async def get(self, key_id: str) -> PublicKey:
        """The key for ``key_id``: from memory, or after one (throttled) refetch.

        Raises :class:`SignatureError` ``unknown_key`` (4xx) when the id is still unknown
        after a fetch, and :class:`Unavailable` (503) when no fetch could be made."""
        self.refresh_if_due()
        key = self.keys.get(key_id)
        if key is not None:
            return key
        expiry = self._misses.get(key_id)
        if expiry is not None and expiry > self._now():
            raise SignatureError("unknown_key")
        async with self._lock:
            key = self.keys.get(key_id)
            if key is not None:  # a fetch made while we waited found it
                return key
            now = self._now()
            if self._last_attempt is not None and now - self._last_attempt < \
                    self.refetch_interval:
                if self.last_error is not None and not self.keys:
                    raise Unavailable(self.last_error, "partner keys unavailable",
                                      retry_after=self.refetch_interval)
                raise Unavailable("key_refetch_throttled", "key refetch throttled",
                                  retry_after=self.refetch_interval)
            await self._refresh()
            key = self.keys.get(key_id)
            if key is None:
                if len(self._misses) > 10_000:  # bounded: a flood of ids cannot grow it
                    self._misses.clear()
                self._misses[key_id] = self._now() + self.miss_ttl
                raise SignatureError("unknown_key")
            return key

    async def refresh(self) -> None:
        """Fetch now (conditional on the ETag); keep the old keys if the fetch fails."""
        async with self._lock:
            await self._refresh()

    @property
    def due(self) -> bool:
        """A scheduled refresh is due (never confirmed, or confirmed too long ago), and
        no attempt was made in the last ``refetch_interval`` seconds."""
        now = self._now()
        if self._last_attempt is not None and now - self._last_attempt < \
                self.refetch_interval:
            return False
        return self.refreshed_at is None or now - self.refreshed_at >= self.refresh_interval

    def refresh_if_due(self) -> None:
        """Start a background refresh when one is due; nothing waits for it."""
        if self.due and (self._background is None or self._background.done()):
            self._background = asyncio.ensure_future(self._scheduled())

    async def _scheduled(self) -> None:
        try:
            async with self._lock:
                if self.due:  # a fetch made while we waited for the lock counts
                    await self._refresh()
        except Unavailable as exc:
            log.warning("partner keys not refreshed: the last known keys stay in use",
                        extra={"partner": self.partner, "reason": exc.reason})

    async def close(self) -> None:
        """Cancel a background refresh (at shutdown)."""
        if self._background is not None and not self._background.done():
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background

    async def _refresh(self) -> None:
        self._last_attempt = self._now()
        self.fetches += 1
        try:
            fetched = await self._fetch(self.etag if self.keys else None)
            if fetched.keys is not None:
                keys = parse_keys(fetched.keys)
                withdrawn = sorted(set(self.keys) - set(keys))
                self.keys = keys  # replaced, not merged: a withdrawn key stops verifying
                self.etag = fetched.etag
                if withdrawn:
                    log.info("partner keys withdrawn: %d", len(withdrawn),
                             extra={"partner": self.partner, "reason": "key_withdrawn"})
                if self._persist is not None:
                    saved = self._persist([k.to_json() for k in self.keys.values()],
                                          self.etag)
                    if inspect.isawaitable(saved):  # the app's goes to the writer thread
                        await saved
            self.refreshed_at = self._now()
            self.last_error = None
        except Unavailable as exc:
            self.last_error = exc.reason
            raise


def http_fetcher(session: aiohttp.ClientSession, url: str, *, github_token: str | None = None,
                 timeout: float = 5.0, max_bytes: int = 1 << 20) -> Fetch:
    """A :data:`Fetch` over HTTP: ``If-None-Match`` with the last ETag, the optional
    GitHub token (the endpoint is rate-limited per caller), a short timeout, and junk
    answers turned into ``Unavailable`` with a reason."""
    import aiohttp

    async def fetch(etag: str | None) -> Fetched:
        headers = {"Accept": "application/json", "User-Agent": "cendis-scan-receiver"}
        if etag:
            headers["If-None-Match"] = etag
        if github_token:
            headers["Authorization"] = f"Bearer {github_token}"
        try:
            async with session.get(url, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status == 304:
                    return Fetched(None, etag)
                if resp.status != 200:
                    raise Unavailable("keys_http_error", f"key endpoint answered {resp.status}")
                raw = await resp.content.read(max_bytes + 1)
                if len(raw) > max_bytes:
                    raise Unavailable("keys_bad_response", "key endpoint answer too large")
                new_etag = resp.headers.get("ETag")
        except TimeoutError:
            raise Unavailable("keys_timeout", "key endpoint timed out") from None
        except aiohttp.ClientError as exc:
            raise Unavailable("keys_unreachable",
                              f"key endpoint unreachable: {type(exc).__name__}") from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Unavailable("keys_bad_response", "key endpoint answered non-JSON") from None
        if not isinstance(data, dict):
            raise Unavailable("keys_bad_response", "key endpoint answered no object")
        return Fetched(data.get("public_keys"), new_etag)

    return fetch
