"""Helpers for tests that talk to the Cendis stand-in (scanner.dev.cendis_api).

The stand-in is the real aiohttp app on loopback; faults are set over its HTTP API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from scanner.cendis.client import CendisClient
from scanner.dev.cendis_api import StandInToken, create_app


@dataclass
class FakeTime:
    """An injected clock and sleep: sleeping advances the clock and returns at once.
    ``wall`` is the same time as a date, for the store (whose ``next_attempt_at`` must
    come due as the revoker's sleeps pass)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    hook: Callable[[float], Awaitable[None]] | None = None
    epoch: datetime = datetime(2026, 3, 1, tzinfo=UTC)

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.epoch + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.hook is not None:
            await self.hook(seconds)
        await asyncio.sleep(0)


async def start(aiohttp_client: Any, credential: str, tokens: Iterable[StandInToken],
                scopes: list[str] | None = None, *,
                timeout: float = 5) -> tuple[TestClient, CendisClient]:
    """The stand-in on loopback, and a real client for it with ``credential``."""
    app = create_app(tokens=tokens,
                     service_credentials={credential: scopes or ["revoke:tokens"]})
    http = await aiohttp_client(app)
    base = str(http.make_url("")).rstrip("/")
    return http, CendisClient(http.session, base, credential, timeout=timeout)


async def faults(http: TestClient, **settings: Any) -> None:
    response = await http.post("/_faults", json=settings)
    assert response.status == 200


async def calls(http: TestClient) -> list[dict[str, Any]]:
    response = await http.get("/_calls")
    data: list[dict[str, Any]] = await response.json()
    return data


def revoked_counts(all_calls: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per hash: how many times each answer (revoked, already_revoked, ...) was given."""
    counts: dict[str, dict[str, int]] = {}
    for call in all_calls:
        for sha, status in zip(call["hashes"], call["results"], strict=False):
            per = counts.setdefault(sha, {})
            per[status] = per.get(status, 0) + 1
    return counts
