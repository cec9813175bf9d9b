"""A real ``cendis-scan serve`` process with a ``[notify]`` table, killed with SIGKILL
while a notification is on the wire (the channel holds the request open): the next
process sends it again with the same idempotency key, and nothing is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from notifytools import WHSEC
from privacy import keep_output
from receiver import CREDENTIAL, PARTNERS, assert_tokens_nowhere
from test_server_process import _start

from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.dev.partner import KEYS_PATH, PartnerKey, create_key_app, report_body


class HoldingEndpoint:
    """A Standard Webhooks endpoint that holds its first delivery open (never answers)
    and verifies and accepts every later one."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.held = asyncio.Event()
        self.accepted: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        from standardwebhooks.webhooks import Webhook

        raw = await request.read()
        keep_output(raw, "notify-webhook")
        headers = {k.lower(): v for k, v in request.headers.items()}
        Webhook(WHSEC).verify(raw, headers)
        self.ids.append(headers["webhook-id"])
        if len(self.ids) == 1:
            self.held.set()
            await asyncio.sleep(120)  # on the wire until the sender dies
        self.accepted.append(json.loads(raw))
        return web.Response(status=204)


async def until(check: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)  # polled: a real serve process at work
    raise AssertionError("timed out")


async def test_kill_9_mid_send_then_restart_resends_with_the_same_key(
        aiohttp_server: Any, tmp_path: Path, make_token: Any) -> None:
    token = make_token()
    cendis = await aiohttp_server(standin_app(
        tokens=[StandInToken.from_token(token)],
        service_credentials={CREDENTIAL: ["revoke:tokens"]}))
    partner = PartnerKey.generate()
    keys = await aiohttp_server(create_key_app(
        [*PARTNERS["public_keys"]["public_keys"], partner.entry()]))
    endpoint = HoldingEndpoint()
    hook = await aiohttp_server(endpoint.app())
    config = tmp_path / "receiver.toml"
    config.write_text(f"[notify]\n[notify.channels.siem]\nkind = \"webhook\"\n"
                      f"url = \"{hook.make_url('/hook')}\"\nsecret = \"{WHSEC}\"\n"
                      "events = [\"opened\"]\n")
    db, log = tmp_path / "incidents.db", tmp_path / "serve.log"
    args = ["--db", str(db), "--cendis-api-url", str(cendis.make_url("")),
            "--github-keys-url", str(keys.make_url(KEYS_PATH)), "--config", str(config)]
    proc, url = await _start(args, log)
    body = report_body([token])
    headers = {"Content-Type": "application/json",
               "Github-Public-Key-Identifier": partner.key_id,
               "Github-Public-Key-Signature": partner.sign(body)}
    async with aiohttp.ClientSession() as session, session.post(
            url + "/partners/github", data=body, headers=headers) as resp:
        assert resp.status == 200
    await asyncio.wait_for(endpoint.held.wait(), 20)
    proc.kill()  # SIGKILL with the notification on the wire
    proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                            ).fetchone()[0] == 1
    proc, url = await _start(args, log)
    try:
        await until(lambda: len(endpoint.accepted) == 1)
        with sqlite3.connect(db) as conn:
            await until(lambda: conn.execute(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0)
            answer = conn.execute("SELECT answer FROM outbox").fetchone()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=15)
    assert status == 0
    assert len(endpoint.ids) == 2 and endpoint.ids[0] == endpoint.ids[1]  # the same key
    assert endpoint.ids[0].startswith("evt_") and answer == "HTTP 204"
    assert endpoint.accepted[0]["type"] == "incident.opened"
    keep_output(log.read_bytes(), "serve")
    assert "Traceback" not in log.read_text()
    assert_tokens_nowhere([token, CREDENTIAL], tmp_path)
