"""What a Cendis answer must look like (shared/spec/cendis-api.md), checked field by field.

An answer that breaks the contract is never half-used: ``scopes`` given as a string is
not split into characters (a wrong severity), a ``token`` that is a list is not read as
an empty one, a non-string ``owner`` is not stored. It is a :class:`ContractError`, which
the client turns into a :class:`~scanner.cendis.errors.CendisError` with the reason
``contract``: the batch stays queued and is retried with backoff, like any other failure.
Unknown keys are ignored (Cendis may add fields); missing or mistyped ones are not.

``Retry-After`` is parsed here too, into a bounded delay: whatever the header holds
(``1e12``, ``inf``, ``nan``, ``0``, ``-5``, an HTTP-date, garbage), the wait is between
:data:`RETRY_AFTER_MIN` and :data:`RETRY_AFTER_MAX`, so no answer can make the revoker
spin or sleep for ever.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

#: A 429's shortest wait: ``Retry-After: 0`` (or negative, or a past date) must not spin.
RETRY_AFTER_MIN = 1.0
#: A 429's longest wait: a larger value (``100000``, ``1e12``, ``inf``) waits this long.
RETRY_AFTER_MAX = 3600.0
#: Seconds as ``Retry-After`` may give them: ASCII digits with an optional fraction (also
#: a sign, an exponent or ``inf``, which the bounds then clamp); no ``_``, no other digits.
_SECONDS = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|[+-]?inf(?:inity)?|nan",
                      re.ASCII | re.IGNORECASE)

_STATUSES = ("revoked", "already_revoked", "not_found")
_TOKEN_TEXT = ("id", "name", "owner", "org", "created_at", "expires_at")


class ContractError(ValueError):
    """An answer that does not follow cendis-api.md; the message names the field, never
    its value (which is Cendis's, or an impostor's, text)."""


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


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """The wait a ``Retry-After`` header asks for, clamped to [RETRY_AFTER_MIN,
    RETRY_AFTER_MAX]; None when absent or unreadable (``nan``, garbage), so the caller
    uses its own default. Seconds (``120``, also ``1e12`` or ``inf``) or an HTTP-date
    (``Wed, 21 Oct 2026 07:28:00 GMT``, relative to ``now``)."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):  # not float() alone: it reads "1_0" and "١٠" as 10
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=now.tzinfo)
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, seconds))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ContractError(f"{where} is not a string")
    return value


def _texts(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ContractError(f"{where} is not a list of strings")
    return list(value)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where} is not an object")
    return value


def whoami_answer(body: Any) -> WhoAmI:
    """``{"username", "org", "scopes": [str], "token": {"name", "expires_at"}}``;
    ``expires_at`` an RFC 3339 time with its offset."""
    body = _object(body, "the answer")
    token = _object(body.get("token"), "token")
    stamp = _text(token.get("expires_at"), "token.expires_at")
    try:
        expires = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise ContractError("token.expires_at is not an RFC 3339 time") from None
    if expires.tzinfo is None:
        raise ContractError("token.expires_at has no UTC offset")
    return WhoAmI(username=_text(body.get("username"), "username"),
                  org=_text(body.get("org"), "org"),
                  scopes=_texts(body.get("scopes"), "scopes"),
                  token_name=_text(token.get("name"), "token.name"), expires_at=expires)


def revoke_results(body: Any, sha256s: Sequence[str]) -> list[RevokeResult]:
    """``{"results": [...]}``: exactly one result per requested hash, in request order."""
    results = _object(body, "the answer").get("results")
    if not isinstance(results, list):
        raise ContractError("results is not a list")
    if len(results) != len(sha256s):
        raise ContractError(f"{len(results)} results for {len(sha256s)} tokens")
    return [_result(item, sha, f"results[{i}]")
            for i, (item, sha) in enumerate(zip(results, sha256s, strict=True))]


def _result(item: Any, sha256: str, where: str) -> RevokeResult:
    item = _object(item, where)
    if item.get("sha256") != sha256:
        raise ContractError(f"{where}.sha256 does not match the request")
    status = item.get("status")
    if not isinstance(status, str) or status not in _STATUSES:
        raise ContractError(f"{where}.status is not one of {', '.join(_STATUSES)}")
    token = item.get("token")
    if status == "not_found":
        if token is not None:
            raise ContractError(f"{where}.token is given for a token not found")
        return RevokeResult(sha256=sha256, status=status)
    token = _object(token, f"{where}.token")
    text = {key: _text(token.get(key), f"{where}.token.{key}") for key in _TOKEN_TEXT}
    if "last_used_at" not in token or not (token["last_used_at"] is None
                                           or isinstance(token["last_used_at"], str)):
        raise ContractError(f"{where}.token.last_used_at is not a string or null")
    return RevokeResult(sha256=sha256, status=status, owner=text["owner"],
                        token_name=text["name"], org=text["org"],
                        scopes=_texts(token.get("scopes"), f"{where}.token.scopes"))
