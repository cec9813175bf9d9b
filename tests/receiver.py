"""Helpers for the receiver's tests: a local key server (the partner-vectors keys plus a
dev partner's own key), the Cendis stand-in, and the receiver app wired to both, all real
HTTP on loopback. Also a database snapshot to prove a refused delivery changed nothing,
and a grep of files for whole tokens."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import READY_TIMEOUT, SPEC, async_wait_until

from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.dev.partner import KEYS_PATH, PartnerKey, create_key_app, report_body
from scanner.dev.partner import STATE as KEYS_STATE
from scanner.server.app import create_app
from scanner.server.config import ServerConfig, WebhookPartner, decode_whsec, load_config
from scanner.server.state import KEY_CACHES, REVOKER, STORE

PARTNERS = json.loads((SPEC / "partner-vectors.json").read_text())
CREDENTIAL = "svc-credential-for-tests-0123456789"
WHSEC = PARTNERS["standard_webhooks_vector"]["secret"]


@dataclass
class Rig:
    """One receiver with its key server and Cendis stand-in."""

    client: TestClient
    keys: web.Application
    standin: web.Application
    partner: PartnerKey
    db: Path
    tokens: list[str] = field(default_factory=list)

    async def post(self, body: bytes, *, key: PartnerKey | None = None,
                   headers: dict[str, str] | None = None, path: str = "/partners/github"
                   ) -> tuple[int, Any]:
        key = key or self.partner
        sent = {"Content-Type": "application/json",
                "Github-Public-Key-Identifier": key.key_id,
                "Github-Public-Key-Signature": key.sign(body)}
        sent.update(headers or {})
        resp = await self.client.post(path, data=body, headers=sent)
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    async def report(self, tokens: list[str], **kw: Any) -> tuple[int, Any]:
        return await self.post(report_body(tokens), **kw)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.standin[STANDIN].calls

    @property
    def notified(self) -> list[dict[str, Any]]:
        return self.standin[STANDIN].notifications

    async def settle(self, done: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Wait (polling, no fixed sleep) until ``done()``: the receiver's background
        tasks do real I/O."""
        await async_wait_until(done, "the receiver", timeout=timeout)

    async def keys_loaded(self) -> None:
        """Until the partner keys are loaded (the receiver's readiness). A first fetch
        that failed on a loaded machine (the tests' fetch timeout is short) is retried
        the way the next delivery would retry it (:meth:`KeyCache.refresh_if_due`),
        not an hour later by the refresh timer."""
        cache = self.key_cache

        def loaded() -> bool:
            cache.refresh_if_due()
            return bool(cache.loaded)

        await self.settle(loaded)

    async def quiet(self) -> None:
        """Until the revoke queue is empty (the revoker writes in the background)."""
        store = self.client.app[STORE]  # type: ignore[index]
        await self.settle(lambda: store.queue_depth() == 0)

    def revoked(self) -> set[str]:
        return set(self.standin[STANDIN].revoked)

    @property
    def revoker(self) -> Any:
        return self.client.app[REVOKER]  # type: ignore[index]

    @property
    def key_cache(self) -> Any:
        return self.client.app[KEY_CACHES]["github"]  # type: ignore[index]


def test_config(keys_url: str, **extra: Any) -> ServerConfig:
    base = load_config(None, {}, github_keys_url=keys_url, gitlab_keys_url=keys_url)
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    fields["webhooks"] = {"acme": WebhookPartner("acme", (decode_whsec(WHSEC, "t"),))}
    fields.update(body_limit=2_000_000, reader_token="reader-token-for-tests-0123",
                  key_fetch_timeout=0.3, key_refetch_interval=0.2, key_miss_ttl=60)
    fields.update(extra)
    return ServerConfig(**fields)


RigFactory = Callable[..., Awaitable[Rig]]


def make_rig_factory(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path,
                     make_token: Callable[[], str]) -> RigFactory:
    async def factory(*, known: int = 0, key_mode: str = "ok", wait_keys: bool = True,
                      scopes: tuple[str, ...] = ("read:assets",), cendis_timeout: float = 2.0,
                      keys_url: str | None = None,
                      service_scopes: tuple[str, ...] = ("revoke:tokens",),
                      monotonic: Callable[[], float] | None = None,
                      **config: Any) -> Rig:
        partner = PartnerKey.generate()
        keys = create_key_app([*PARTNERS["public_keys"]["public_keys"], partner.entry()])
        keys[KEYS_STATE].mode = key_mode
        key_server = await aiohttp_server(keys)
        tokens = [make_token() for _ in range(known)]
        standin = standin_app(tokens=[StandInToken.from_token(t, scopes=scopes)
                                      for t in tokens],
                              service_credentials={CREDENTIAL: list(service_scopes)})
        standin_server = await aiohttp_server(standin)
        db = tmp_path / f"incidents-{len(list(tmp_path.glob('incidents-*.db')))}.db"
        app = create_app(test_config(keys_url or str(key_server.make_url(KEYS_PATH)),
                                     **config),
                         db_path=db, cendis_api_url=str(standin_server.make_url("")),
                         credential=CREDENTIAL, cendis_timeout=cendis_timeout,
                         revoker_options={"base_delay": 0.01, "max_delay": 0.05},
                         **({"monotonic": monotonic} if monotonic else {}))
        client = await aiohttp_client(TestServer(app))
        rig = Rig(client, keys, standin, partner, db, tokens)
        if wait_keys:
            await rig.keys_loaded()
        return rig

    return factory


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the key cache (which a fetch may refresh)."""
    conn = sqlite3.connect(db)
    try:
        names = [r[0] for r in conn.execute(
            "select name from sqlite_master where type='table' and name not like 'sqlite_%'")]
        return {n: sorted(map(repr, conn.execute(f"select * from [{n}]")))  # type: ignore[misc]
                for n in names if "key" not in n}
    finally:
        conn.close()


def assert_tokens_nowhere(tokens: list[str], *paths: Path) -> None:
    """No whole token in any file under ``paths`` (databases, WAL files, logs)."""
    needles = [t.encode() for t in tokens]
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"a whole token is in {path.name}"
