"""An aiohttp client for the two calls this project makes (shared/spec/cendis-api.md).

One :class:`aiohttp.ClientSession` is given by the caller and lives as long as the
command or the service. The credential goes into the Authorization header and nowhere
else: no log line, no error message, no ``repr``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from scanner.cendis.contract import (
    ContractError,
    RevokeResult,
    WhoAmI,
    retry_after_seconds,
    revoke_results,
    whoami_answer,
)
from scanner.cendis.errors import CendisError
from scanner.errors import ConfigError, short

DEFAULT_API_URL = "https://api.cendis.ai"
MAX_BATCH = 100
#: The largest answer read (100 results are ~50 KiB); a longer one breaks the contract.
MAX_ANSWER = 1 << 20
#: The scope revoking other people's tokens needs (and all the service should have).
REVOKE_SCOPE = "revoke:tokens"

__all__ = ["DEFAULT_API_URL", "REVOKE_SCOPE", "CendisClient", "CendisError", "RevokeResult",
           "WhoAmI", "api_url_from", "credential_from"]


def credential_from(option: str | None, environ: Mapping[str, str]) -> str:
    """Cendis's own lookup order: ``--token``, then ``CENDIS_TOKEN``, else exit 2."""
    for value in (option, environ.get("CENDIS_TOKEN")):
        if value and value.strip():
            return value.strip()
    raise ConfigError("no Cendis credential: pass --token or set CENDIS_TOKEN")


def api_url_from(option: str | None, environ: Mapping[str, str]) -> str:
    """``--cendis-api-url``, then ``CENDIS_API_URL``, else the public API."""
    from urllib.parse import urlsplit

    url = (option or environ.get("CENDIS_API_URL") or DEFAULT_API_URL).strip()
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError:
        problem = "not a valid URL"
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
        elif parts.username is not None or parts.password is not None:
            problem = "it must not hold a user name or password (the credential is --token)"
        elif parts.query or parts.fragment:
            problem = "it must not have a query or fragment"
    if problem:
        raise ConfigError(f"bad Cendis API URL {short(url, 60)!r}: {problem}")
    return url.rstrip("/")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CendisClient:
    """``whoami`` and ``revoke``; every failure is a :class:`CendisError` with a reason.

    Every answer is checked against the contract (see :mod:`scanner.cendis.contract`);
    redirects are never followed (a 3xx is the error ``redirect``): the credential goes
    to the configured host only, and an answer from anywhere else is never believed.
    ``now`` (wall clock) reads a ``Retry-After`` given as an HTTP-date."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, credential: str, *,
                 timeout: float = 10, now: Callable[[], datetime] = _utcnow) -> None:
        self._session = session
        self._now = now
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {credential}",
                         "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:  # never the credential
        return f"CendisClient({self._base!r})"

    async def whoami(self) -> WhoAmI:
        body = await self._call("GET", "/v1/whoami")
        try:
            return whoami_answer(body)
        except ContractError as exc:
            raise _broken("whoami", exc) from None

    async def revoke(self, sha256s: Sequence[str], *, source: str, url: str = "",
                     reason: str = "leaked", notify_owner: bool = True) -> list[RevokeResult]:
        """Revoke 1..100 tokens named by hash; results in request order. Tokens go out
        by hash only, and ``source``, ``url`` and ``reason`` are scrubbed on the way out
        (the store holds them scrubbed already; a caller outside it may not)."""
        from scanner.scrub import scrub

        if not 1 <= len(sha256s) <= MAX_BATCH:
            raise ValueError(f"1 to {MAX_BATCH} tokens per call, not {len(sha256s)}")
        payload = {"tokens": [{"sha256": s} for s in sha256s], "reason": scrub(reason),
                   "source": scrub(source), "url": scrub(url), "notify_owner": notify_owner}
        body = await self._call("POST", "/v1/tokens/revoke", payload)
        try:
            return revoke_results(body, sha256s)
        except ContractError as exc:
            raise _broken("revoke", exc) from None

    async def _call(self, method: str, path: str,
                    payload: Mapping[str, Any] | None = None) -> Any:
        try:
            async with self._session.request(method, self._base + path, json=payload,
                                             headers=self._headers, timeout=self._timeout,
                                             allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    raise CendisError("redirect", f"Cendis answered a redirect "
                                      f"({resp.status}); redirects are never followed",
                                      status=resp.status)
                data = await _read_bounded(resp)
                if resp.status == 200:
                    if len(data) > MAX_ANSWER:
                        raise _broken(path, ContractError("the answer is too large"))
                    try:
                        return json.loads(data.decode("utf-8"))
                    except (ValueError, RecursionError):  # bad UTF-8; nested too deep
                        raise _broken(path, ContractError("the answer is not JSON")) \
                            from None
                text = data[:MAX_ANSWER].decode("utf-8", "replace")
                wait = retry_after_seconds(resp.headers.get("Retry-After"), self._now())
                raise _error_for(resp.status, text, wait)
        except TimeoutError:
            raise CendisError("timeout", f"no answer from {self._base} in time") from None
        except aiohttp.ClientError as exc:
            raise CendisError("connection", f"cannot reach {self._base}: "
                              f"{short(type(exc).__name__, 40)}") from None


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """The body, but never more than MAX_ANSWER + 1 bytes of it."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            break
    return b"".join(chunks)


def _broken(call: str, exc: ContractError) -> CendisError:
    return CendisError("contract", f"Cendis's {call.rsplit('/', 1)[-1]} answer breaks the "
                       f"API contract: {short(str(exc), 100)}", status=200)


def _error_for(status: int, text: str, retry_after: float | None) -> CendisError:
    detail = ""
    missing = None
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("error") or "")
            missing = body.get("missing_scope")
    except ValueError:
        pass
    suffix = f": {short(detail, 80)}" if detail else ""
    if status == 401:
        return CendisError("unauthorized", "Cendis rejected the credential (401): it is "
                           "missing, wrong, expired or revoked", status=status)
    if status == 403:
        scope = str(missing) if missing else "revoke:tokens"
        return CendisError("forbidden", f"the credential lacks the scope {scope} (403)",
                           status=status, missing_scope=scope)
    if status == 429:  # retry_after is already bounded (contract.retry_after_seconds)
        return CendisError("rate_limited", "Cendis is rate limiting us (429)", status=status,
                           retry_after=retry_after)
    if status == 400:
        return CendisError("bad_request", f"Cendis refused the request (400){suffix}",
                           status=status)
    if status >= 500:
        return CendisError("server_error", f"Cendis failed ({status})", status=status)
    return CendisError("bad_response", f"unexpected HTTP status {status}", status=status)
