"""Helpers for the dashboard's tests: a trail seeded through the real store, the receiver
app with its clocks injected, and a signed-in client that reads each form's CSRF token
from the page as a browser would."""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from scanner.incidents.models import RevokeOutcome, Sighting, Status, TokenRef
from scanner.incidents.trail import open_store
from scanner.server.app import create_app
from scanner.server.config import ServerConfig
from scanner.token import generate

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    """The dashboard's monotonic clock, stepped by tests (no sleeps)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Seeded:
    tokens: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def seed(db: Path, rng: random.Random, count: int, *, start: datetime = START,
         sources: Sequence[str] = ("partner:acme", "github", "scan:repo"),
         repositories: Sequence[str] = ("org/api", "org/web", "other/tool"),
         revoke_every: int = 3, scopes: Sequence[str] = ("admin:org",),
         extra: dict[str, Any] | None = None) -> Seeded:
    """``count`` incidents, one a minute from ``start``, through the real store: sources
    and repositories in turn; every ``revoke_every``-th is revoked (severity from
    ``scopes``, the revoke a minute and a half after it was first seen)."""
    out = Seeded()
    clock = [start]
    store = open_store(db, now=lambda: clock[0])
    try:
        for index in range(count):
            token = generate(rng)
            seen = start + timedelta(minutes=index)
            clock[0] = seen
            source = sources[index % len(sources)]
            sighting = Sighting(source=source, received_at=seen,
                                partner=source.split(":", 1)[1] if source.startswith(
                                    "partner:") else None,
                                repository=repositories[index % len(repositories)],
                                url=f"https://git.example/{index}", **(extra or {}))
            recorded = store.record([(TokenRef.from_token(token), sighting)], revoke=True)
            out.tokens.append(token)
            out.ids.append(recorded[0].incident_id)
            if revoke_every and index % revoke_every == 0:
                clock[0] = seen + timedelta(seconds=90)
                entries = store.claim_batch(1, owner="seed", lease=60,
                                            only=TokenRef.from_token(token).sha256)
                store.apply_outcomes(entries, [RevokeOutcome(
                    e.sha256, Status.REVOKED, owner="dev@example.com", token_name="ci",
                    org="example", scopes=tuple(scopes)) for e in entries],
                    notify_owner=False)
    finally:
        store.close()
    return out


def config(**kw: Any) -> ServerConfig:
    return ServerConfig({}, {}, **kw)


def make_app(db: Path, cfg: ServerConfig, clock: Clock, *, now: datetime | None = None
             ) -> web.Application:
    moment = now or START + timedelta(days=1)
    return create_app(cfg, db_path=db, cendis_api_url="http://127.0.0.1:9", credential=None,
                      monotonic=clock, now=lambda: moment,
                      randbytes=random.Random(7).randbytes)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def sign_in(client: TestClient, token: str, name: str = "alice") -> str:
    """Sign in as a browser does; returns the signed-in page's CSRF token."""
    page = await (await client.get("/dashboard/signin")).text()
    resp = await client.post("/dashboard/signin", data={"csrf": csrf_of(page), "name": name,
                                                       "token": token})
    assert resp.status == 200 and resp.url.path == "/dashboard/", resp.status
    return csrf_of(await resp.text())


def bearer() -> str:
    return secrets.token_urlsafe(24)


class Links(HTMLParser):
    """Every ``<a>``'s attributes, every tag name, and every ``on*`` attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "a":
            self.anchors.append(values)
        self.handlers += [name for name in values if name.startswith("on")]
        if "style" in values:
            self.styles.append(tag)


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links
