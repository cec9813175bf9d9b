"""The receiver as a real process (``cendis-scan serve``): kill -9 while reports arrive
loses no acknowledged token, a restart revokes each once, SIGTERM stops it cleanly, logs
are JSON lines when stderr is not a terminal, and no file it wrote holds a whole token."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from conftest import CLI, async_http_answers, async_wait_until, free_port, keep_output
from receiver import CREDENTIAL, PARTNERS, assert_tokens_nowhere

from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.dev.partner import KEYS_PATH, PartnerKey, create_key_app, report_body
from scanner.token import secret_sha256


async def _start(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([CLI, "serve", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"),
                            stdin=subprocess.DEVNULL,
                            env={**__import__("os").environ, "CENDIS_TOKEN": CREDENTIAL})
    url = f"http://127.0.0.1:{port}"
    await async_wait_until(lambda: async_http_answers(url + "/readyz"), "serve /readyz",
                           proc=proc, log=log)
    return proc, url


async def test_kill_9_while_reports_arrive_then_restart(aiohttp_server: Any, tmp_path: Path,
                                                        make_token: Any) -> None:
    tokens = [make_token() for _ in range(90)]
    standin = standin_app(tokens=[StandInToken.from_token(t) for t in tokens],
                          service_credentials={CREDENTIAL: ["revoke:tokens"]})
    state = standin[STANDIN]
    state.faults.fail_next, state.faults.fail_status = 10_000, 503  # Cendis down at first
    cendis = await aiohttp_server(standin)
    partner = PartnerKey.generate()
    keys = await aiohttp_server(create_key_app(
        [*PARTNERS["public_keys"]["public_keys"], partner.entry()]))
    db, log = tmp_path / "incidents.db", tmp_path / "serve.log"
    args = ["--db", str(db), "--cendis-api-url", str(cendis.make_url("")),
            "--github-keys-url", str(keys.make_url(KEYS_PATH))]
    proc, url = await _start(args, log)
    acked: list[str] = []
    batches = [tokens[i:i + 3] for i in range(0, len(tokens), 3)]

    async def sender(session: aiohttp.ClientSession, mine: list[list[str]]) -> None:
        for batch in mine:
            body = report_body(batch)
            headers = {"Content-Type": "application/json",
                       "Github-Public-Key-Identifier": partner.key_id,
                       "Github-Public-Key-Signature": partner.sign(body)}
            try:
                async with session.post(url + "/partners/github", data=body,
                                        headers=headers) as resp:
                    if resp.status == 200:
                        acked.extend(batch)
            except aiohttp.ClientError:
                return  # the server died under us: this report was not acknowledged
            await asyncio.sleep(0.005)  # polled: real deliveries to a real process

    async with aiohttp.ClientSession() as session:
        senders = [asyncio.create_task(sender(session, batches[i::6])) for i in range(6)]
        while len(acked) < 30:
            await asyncio.sleep(0.005)  # polled: real deliveries to a real process
        proc.kill()  # SIGKILL, mid-stream
        proc.wait()
        await asyncio.gather(*senders)
    assert 30 <= len(acked) < len(tokens)
    state.faults.fail_next = 0  # Cendis recovers
    proc, url = await _start(args, log)
    try:
        want = {secret_sha256(t.encode()) for t in acked}
        await async_wait_until(lambda: want <= state.revoked,
                               "every acknowledged token revoked", proc=proc, log=log)
        conn = sqlite3.connect(db)
        stored = {row[0] for row in conn.execute("select sha256 from incidents")}
        conn.close()
        assert want <= stored
        notified = Counter(n["sha256"] for n in state.notifications)
        assert all(notified[h] == 1 for h in want)
        successful = Counter(h for call in state.calls if call["status"] == 200
                             for h in call["hashes"])
        assert all(successful[h] == 1 for h in want)
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=15)
    assert status == 0
    keep_output(log.read_bytes(), "serve")
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(entries) == len(lines), "every log line is one JSON object"
    assert any(e.get("message") == "new incident" and e.get("redacted") for e in entries)
    assert any(e.get("username") == "cendis-scan-bot" for e in entries)
    assert "Traceback" not in log.read_text()
    assert_tokens_nowhere(tokens + [CREDENTIAL], tmp_path)


def test_serve_refuses_bad_setups_in_one_line(tmp_path: Path, cli: Any) -> None:
    """No credential, a bad config, a database it cannot open: exit 2, one line, no
    traceback, never the credential."""
    bad = tmp_path / "receiver.toml"
    bad.write_text("[github]\nkey_url = 'x'\n")
    env_none = {"CENDIS_TOKEN": ""}
    cases = [
        (["serve"], env_none, "pass --token or set CENDIS_TOKEN"),
        (["serve", "--config", str(bad)], {"CENDIS_TOKEN": CREDENTIAL},
         "[github]: unknown key 'key_url'"),
        (["serve", "--port", str(free_port()), "--db", str(tmp_path / "no" / "x.db"),
          "--cendis-api-url", "http://127.0.0.1:9"], {"CENDIS_TOKEN": CREDENTIAL},
         "cannot open the incident database"),
        (["serve", "--port", str(free_port()), "--db", str(tmp_path / "x.db")],
         {"CENDIS_TOKEN": CREDENTIAL + "\nabove>"}, "control character"),
    ]
    for args, env, message in cases:
        proc = cli(args, env=env, timeout=60)
        assert proc.returncode == 2, proc.err
        errors = [line for line in proc.err.splitlines() if "error" in line]
        assert len(errors) == 1 and message in errors[0], proc.err
        assert "Traceback" not in proc.err and CREDENTIAL not in proc.err + proc.out


async def test_hostile_connections_leave_no_token_in_the_log(
        aiohttp_server: Any, tmp_path: Path, make_token: Any) -> None:
    """Malformed requests (aiohttp quotes their bytes in its log) and a body that
    trickles in: every log line stays one scrubbed JSON object, and the slow body is cut
    off with 408 after ``body_timeout``."""
    token = make_token().encode()
    cendis = await aiohttp_server(standin_app(
        tokens=[], service_credentials={CREDENTIAL: ["revoke:tokens"]}))
    keys = await aiohttp_server(create_key_app(PARTNERS["public_keys"]["public_keys"]))
    config = tmp_path / "receiver.toml"
    config.write_text("body_timeout = 1\n")
    log = tmp_path / "serve.log"
    proc, url = await _start(["--db", str(tmp_path / "i.db"), "--config", str(config),
                              "--cendis-api-url", str(cendis.make_url("")),
                              "--github-keys-url", str(keys.make_url(KEYS_PATH))], log)
    port = int(url.rsplit(":", 1)[1])
    attacks = [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + token + b"x" * 9000 + b"\r\n\r\n",
               token + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
               b"GET / HTTP/" + token + b"\r\nHost: x\r\n\r\n",
               b"GET /" + token + b"?" + b"y" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]
    try:
        for attack in attacks:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(attack)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), 10)
            assert answer[:10] in (b"HTTP/1.1 4", b"HTTP/1.0 4")
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        vector = PARTNERS["vectors"][0]  # headers that pass the checks made before the body
        writer.write(b"POST /partners/github HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nGithub-Public-Key-Identifier: "
                     + vector["key_identifier"].encode() + b"\r\nGithub-Public-Key-Signature: "
                     + vector["signature"].encode() + b"\r\nContent-Length: 1000\r\n\r\n[")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 10)  # not held for ever
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    text = log.read_text()
    keep_output(text.encode(), "serve-hostile")
    assert token.decode() not in text and "Traceback" not in text
    assert all(line.startswith("{") for line in text.splitlines())
    # malformed requests are the sender's problem: at most a warning, never an error flood
    levels = Counter(json.loads(line)["level"] for line in text.splitlines())
    assert levels["error"] == 0 and levels["warning"] <= len(attacks), levels
    assert any("stopped" in line for line in text.splitlines())  # the shutdown is logged
    assert_tokens_nowhere([token.decode()], tmp_path)
