"""An aiohttp client for the two calls this project makes (shared/spec/cendis-api.md).

One :class:`aiohttp.ClientSession` is given by the caller and lives as long as the
command or the service. The credential goes into the Authorization header and nowhere
else: no log line, no error message, no ``repr``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from scanner.cendis.errors import CendisError
from scanner.errors import ConfigError, short

DEFAULT_API_URL = "https://api.cendis.ai"
MAX_BATCH = 100
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


@dataclass(frozen=True)
class WhoAmI:
    username: str
    org: str
    scopes: list[str]
    token_name: str
    expires_at: datetime

    def days_left(self, now: datetime) -> int:
        return (self.expires_at - now).days


@dataclass(frozen=True)
class RevokeResult:
    sha256: str
    status: str  # "revoked" | "already_revoked" | "not_found"
    owner: str | None = None
    token_name: str | None = None
    org: str | None = None
    scopes: list[str] = field(default_factory=list)


class CendisClient:
    """``whoami`` and ``revoke``; every failure is a :class:`CendisError` with a reason."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, credential: str, *,
                 timeout: float = 10) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {credential}",
                         "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:  # never the credential
        return f"CendisClient({self._base!r})"

    async def whoami(self) -> WhoAmI:
        body = await self._call("GET", "/v1/whoami")
        try:
            token = body["token"]
            expires = datetime.fromisoformat(str(token["expires_at"]).replace("Z", "+00:00"))
            return WhoAmI(username=str(body["username"]), org=str(body["org"]),
                          scopes=[str(s) for s in body["scopes"]],
                          token_name=str(token["name"]), expires_at=expires)
        except (KeyError, TypeError, ValueError) as exc:
            raise CendisError("bad_response", f"unexpected whoami answer ({exc!r:.60})",
                              status=200) from None

    async def revoke(self, sha256s: Sequence[str], *, source: str, url: str = "",
                     reason: str = "leaked", notify_owner: bool = True) -> list[RevokeResult]:
        """Revoke 1..100 tokens named by hash; results in request order. Tokens go out
        by hash only, and ``source``, ``url`` and ``reason`` are scrubbed on the way out
        (the store holds them scrubbed already; a caller outside it may not)."""
        from scanner.redaction import scrub

        if not 1 <= len(sha256s) <= MAX_BATCH:
            raise ValueError(f"1 to {MAX_BATCH} tokens per call, not {len(sha256s)}")
        payload = {"tokens": [{"sha256": s} for s in sha256s], "reason": scrub(reason),
                   "source": scrub(source), "url": scrub(url), "notify_owner": notify_owner}
        body = await self._call("POST", "/v1/tokens/revoke", payload)
        try:
            results = [self._result(item) for item in body["results"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CendisError("bad_response", f"unexpected revoke answer ({exc!r:.60})",
                              status=200) from None
        if [r.sha256 for r in results] != list(sha256s):
            raise CendisError("bad_response", "revoke answer does not match the request",
                              status=200)
        return results

    @staticmethod
    def _result(item: Mapping[str, Any]) -> RevokeResult:
        status = str(item["status"])
        if status not in ("revoked", "already_revoked", "not_found"):
            raise ValueError(f"status {short(status, 30)!r}")
        sha = str(item["sha256"])
        token = item.get("token") or {}
        return RevokeResult(sha256=sha, status=status, owner=token.get("owner"),
                            token_name=token.get("name"), org=token.get("org"),
                            scopes=[str(s) for s in token.get("scopes") or []])

    async def _call(self, method: str, path: str,
                    payload: Mapping[str, Any] | None = None) -> Any:
        try:
            async with self._session.request(method, self._base + path, json=payload,
                                             headers=self._headers,
                                             timeout=self._timeout) as resp:
                text = await resp.text()
                if resp.status == 200:
                    try:
                        return json.loads(text)
                    except ValueError:
                        raise CendisError("bad_response", "the answer is not JSON",
                                          status=200) from None
                raise _error_for(resp.status, text, resp.headers.get("Retry-After"))
        except TimeoutError:
            raise CendisError("timeout", f"no answer from {self._base} in time") from None
        except aiohttp.ClientError as exc:
            raise CendisError("connection", f"cannot reach {self._base}: "
                              f"{short(type(exc).__name__, 40)}") from None


def _error_for(status: int, text: str, retry_after: str | None) -> CendisError:
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
    if status == 429:
        wait = None
        try:
            wait = max(0.0, float(retry_after)) if retry_after is not None else None
        except ValueError:
            wait = None
        return CendisError("rate_limited", "Cendis is rate limiting us (429)", status=status,
                           retry_after=wait)
    if status == 400:
        return CendisError("bad_request", f"Cendis refused the request (400){suffix}",
                           status=status)
    if status >= 500:
        return CendisError("server_error", f"Cendis failed ({status})", status=status)
    return CendisError("bad_response", f"unexpected HTTP status {status}", status=status)
