"""A local secret-scanning partner (like PyPI's test partner): it publishes its own P-256
key on a GitHub-shaped key endpoint and posts signed leak reports to a receiver.

Used by ``cendis-scan dev send-report`` (the README demo), by the tests (the key server
with fault modes: down, junk, slow) and by ``bench/webhook_load.py``. It speaks real HTTP
on loopback; nothing here is a mock of the receiver.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEYS_PATH = "/meta/public_keys/secret_scanning"


@dataclass(slots=True)
class PartnerKey:
    """A signing key and the id the key endpoint publishes it under."""

    private: ec.EllipticCurvePrivateKey = field(repr=False)
    key_id: str
    pem: str

    @classmethod
    def generate(cls) -> PartnerKey:
        private = ec.generate_private_key(ec.SECP256R1())
        der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(private, hashlib.sha256(der).hexdigest(), pem.decode("ascii"))

    def sign(self, body: bytes) -> str:
        """Base64 of the DER ECDSA P-256/SHA-256 signature over the exact bytes."""
        der = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode("ascii")

    def entry(self, is_current: bool = True) -> dict[str, Any]:
        return {"key_identifier": self.key_id, "key": self.pem, "is_current": is_current}


@dataclass(slots=True)
class KeyServerState:
    """What the key endpoint serves; tests flip ``mode`` to make it fail."""

    public_keys: list[dict[str, Any]]
    mode: str = "ok"            # ok | junk | error | slow
    delay: float = 0.0
    etag: str = ""  # default: derived from the key ids, as a real endpoint's changes
    hits: int = 0
    not_modified: int = 0
    auth_headers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.etag:
            import hashlib

            ids = ",".join(str(k.get("key_identifier")) for k in self.public_keys)
            self.etag = f'"{hashlib.sha256(ids.encode()).hexdigest()[:16]}"'


STATE = web.AppKey("key_server_state", KeyServerState)


async def _public_keys(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.hits += 1
    state.auth_headers.append(request.headers.get("Authorization", ""))
    if state.mode == "slow" or state.delay:
        await asyncio.sleep(state.delay or 30)
    if state.mode == "error":
        return web.json_response({"message": "Server Error"}, status=500)
    if state.mode == "junk":
        return web.Response(text="<html>rate limited</html>", content_type="text/html")
    if request.headers.get("If-None-Match") == state.etag:
        state.not_modified += 1
        return web.Response(status=304, headers={"ETag": state.etag})
    return web.json_response({"public_keys": state.public_keys}, headers={"ETag": state.etag})


def create_key_app(public_keys: Iterable[dict[str, Any]]) -> web.Application:
    """A GitHub-shaped key endpoint: ``GET /meta/public_keys/secret_scanning``."""
    app = web.Application()
    app[STATE] = KeyServerState(list(public_keys))
    app.router.add_get(KEYS_PATH, _public_keys)
    return app


def report_body(tokens: Sequence[str], *, url: str = "https://github.com/example/repo/blob/"
                "main/config.py", token_type: str = "cendis_personal_access_token",
                source: str | None = "commit") -> bytes:
    """A GitHub-style record array, compact, as the partner would send it."""
    records = []
    for token in tokens:
        record = {"token": token, "type": token_type, "url": url}
        if source is not None:
            record["source"] = source
        records.append(record)
    return json.dumps(records, separators=(",", ":")).encode()


def signed_headers(key: PartnerKey, body: bytes, prefix: str = "Github") -> dict[str, str]:
    return {"Content-Type": "application/json",
            f"{prefix}-Public-Key-Identifier": key.key_id,
            f"{prefix}-Public-Key-Signature": key.sign(body)}


async def send_report(url: str, tokens: Sequence[str], *, keys_host: str = "127.0.0.1",
                      keys_port: int = 8090, wait: float = 30.0,
                      out: Any = None) -> tuple[int, Any]:
    """Serve a fresh key, post one signed report, retry while the receiver says 503
    (it may still be fetching our key), and return (status, answer)."""
    import aiohttp

    key = PartnerKey.generate()
    runner = web.AppRunner(create_key_app([key.entry()]), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, keys_host, keys_port)
    await site.start()
    try:
        body = report_body(tokens)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.post(url, data=body,
                                        headers=signed_headers(key, body)) as resp:
                    status, text = resp.status, await resp.text()
                    retry = resp.headers.get("Retry-After")
                if status != 503 or loop.time() >= deadline:
                    break
                if out is not None:
                    out.write(f"receiver answered 503 ({text.strip()[:80]}); retrying\n")
                await asyncio.sleep(min(float(retry or 1), 5.0))
    finally:
        await runner.cleanup()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
