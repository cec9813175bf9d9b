"""Signature checks and the key cache, with the partners' published vectors
(shared/spec/partner-vectors.json) and a key cache driven by an injected clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import SPEC

pytest.importorskip("cryptography")

from scanner.dev.partner import PartnerKey  # noqa: E402
from scanner.server.errors import SignatureError, Unavailable  # noqa: E402
from scanner.server.keys import Fetched, KeyCache, parse_keys  # noqa: E402
from scanner.server.verify import (  # noqa: E402
    standard_webhooks_sign,
    verify_ecdsa,
    verify_hmac,
)

PARTNERS = json.loads((SPEC / "partner-vectors.json").read_text())
KEYS = parse_keys(PARTNERS["public_keys"]["public_keys"])
VECTORS = PARTNERS["vectors"]


def _flip_first(sig: str) -> str:
    return ("N" if sig[0] == "M" else "M") + sig[1:]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies_and_every_alteration_fails(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    key = KEYS[vector["key_identifier"]].key
    verify_ecdsa(key, vector["signature"], body)
    with pytest.raises(SignatureError) as exc:
        verify_ecdsa(key, vector["signature"], body + b"\n")
    assert exc.value.reason == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify_ecdsa(key, _flip_first(vector["signature"]), body)
    assert exc.value.reason in {"bad_signature", "signature_not_der"}
    for other_id, other in KEYS.items():
        if other_id != vector["key_identifier"]:
            with pytest.raises(SignatureError):
                verify_ecdsa(other.key, vector["signature"], body)


def test_non_base64_and_non_der_signatures_have_their_reasons() -> None:
    key = next(iter(KEYS.values())).key
    with pytest.raises(SignatureError) as exc:
        verify_ecdsa(key, "not base64!!", b"[]")
    assert exc.value.reason == "signature_not_base64"
    with pytest.raises(SignatureError) as exc:
        verify_ecdsa(key, base64.b64encode(b"hello, not DER").decode(), b"[]")
    assert exc.value.reason == "signature_not_der"


def test_is_current_false_keys_are_kept() -> None:
    assert {k for k, v in KEYS.items() if not v.is_current} == {
        e["key_identifier"] for e in PARTNERS["public_keys"]["public_keys"]
        if not e["is_current"]}


def test_standard_webhooks_vector() -> None:
    v = PARTNERS["standard_webhooks_vector"]
    from scanner.server.config import decode_whsec

    secret = decode_whsec(v["secret"], "test")
    body = v["body"].encode()
    stamp = int(v["webhook-timestamp"])
    assert standard_webhooks_sign(secret, v["webhook-id"], stamp, body) == v["webhook-signature"]
    args = (v["webhook-id"], v["webhook-timestamp"])
    verify_hmac([secret], *args, v["webhook-signature"], body, now=stamp + 299)
    # rotation: several signatures, several secrets; one good pair is enough
    other = b"x" * 32
    verify_hmac([other, secret], *args, "v1,AAAA " + v["webhook-signature"], body, now=stamp)
    for signature, now, reason in [
        (v["webhook-signature"], stamp + 301, "timestamp_out_of_window"),
        (v["webhook-signature"], stamp - 301, "timestamp_out_of_window"),
        ("v1," + "A" * 44, stamp, "bad_signature"),
        ("v2," + v["webhook-signature"][3:], stamp, "bad_signature"),
    ]:
        with pytest.raises(SignatureError) as exc:
            verify_hmac([secret], *args, signature, body, now=now)
        assert exc.value.reason == reason
    with pytest.raises(SignatureError) as exc:
        verify_hmac([secret], *args, v["webhook-signature"], body + b"\n", now=stamp)
    assert exc.value.reason == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify_hmac([other], *args, v["webhook-signature"], body, now=stamp)
    assert exc.value.reason == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify_hmac([secret], v["webhook-id"], None, v["webhook-signature"], body, now=stamp)
    assert exc.value.reason == "missing_signature_headers"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Endpoint:
    """An in-memory fetch function for the cache's logic (the HTTP fetch is tested through
    the real endpoint in test_server_http.py)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.calls: list[str | None] = []
        self.fail: str | None = None

    async def __call__(self, etag: str | None) -> Fetched:
        self.calls.append(etag)
        if self.fail:
            raise Unavailable(self.fail)
        if etag == f'"{len(self.entries)}"':
            return Fetched(None, etag)
        return Fetched(list(self.entries), f'"{len(self.entries)}"')


async def test_key_cache_refetch_throttle_and_negative_cache() -> None:
    a, b = PartnerKey.generate(), PartnerKey.generate()
    endpoint, clock, saved = Endpoint([a.entry()]), Clock(), []
    cache = KeyCache("github", endpoint, persist=lambda k, e: saved.append((k, e)),
                     refetch_interval=5, miss_ttl=60, now=clock)
    assert (await cache.get(a.key_id)).key_id == a.key_id
    assert endpoint.calls == [None] and saved and saved[-1][1] == '"1"'
    await cache.get(a.key_id)
    assert len(endpoint.calls) == 1  # memory hit, no fetch
    # an unknown id within the interval, after a fetch that worked: no fetch, and 4xx
    # (the list fetched a moment ago lacks it), not 503 forever (issue 14 hostile D2)
    with pytest.raises(SignatureError) as exc0:
        await cache.get("random-id")
    assert exc0.value.reason == "unknown_key" and len(endpoint.calls) == 1
    # after a fetch that failed, within the interval: 503 so the sender retries
    clock.t += 6
    endpoint.fail = "keys_unreachable"
    with pytest.raises(Unavailable):
        await cache.refresh()
    endpoint.fail = None
    with pytest.raises(Unavailable) as exc:
        await cache.get("random-id")
    assert exc.value.reason == "key_refetch_throttled" and len(endpoint.calls) == 2
    clock.t += 6
    with pytest.raises(SignatureError) as exc2:
        await cache.get("random-id")  # refetched (conditional), still unknown: 4xx
    assert exc2.value.reason == "unknown_key" and endpoint.calls[-1] == '"1"'
    clock.t += 6
    with pytest.raises(SignatureError):
        await cache.get("random-id")  # remembered miss: no fetch at all
    assert len(endpoint.calls) == 3
    # a rotation: the new key appears at the endpoint and is found by one refetch
    endpoint.entries = [b.entry(), dict(a.entry(), is_current=False)]
    assert (await cache.get(b.key_id)).key_id == b.key_id
    assert len(endpoint.calls) == 4 and (await cache.get(a.key_id)).is_current is False


async def test_key_cache_restores_from_persisted_keys_without_fetching() -> None:
    a = PartnerKey.generate()
    endpoint = Endpoint([])
    endpoint.fail = "keys_unreachable"
    cache = KeyCache("github", endpoint, initial=[a.entry()], etag='"x"', now=Clock())
    assert cache.loaded and (await cache.get(a.key_id)).key_id == a.key_id
    assert endpoint.calls == []


async def test_key_cache_endpoint_down_is_unavailable() -> None:
    endpoint, clock = Endpoint([]), Clock()
    endpoint.fail = "keys_unreachable"
    cache = KeyCache("github", endpoint, now=clock)
    for _ in range(3):
        with pytest.raises(Unavailable) as exc:
            await cache.get("k")
        assert exc.value.reason == "keys_unreachable"
    assert len(endpoint.calls) == 1  # throttled: one attempt per interval


def test_parse_keys_skips_bad_entries_and_rejects_all_bad() -> None:
    a = PartnerKey.generate()
    keys = parse_keys([{"key_identifier": "x", "key": "junk"}, "nope", a.entry()])
    assert list(keys) == [a.key_id]
    with pytest.raises(Unavailable) as exc:
        parse_keys([{"key_identifier": "x", "key": "junk"}])
    assert exc.value.reason == "keys_bad_response"
    assert parse_keys([]) == {}  # every key withdrawn: a valid answer (hostile 14 D1)
    for junk in (None, {}, "[]", 0):
        with pytest.raises(Unavailable):
            parse_keys(junk)


def test_fast_token_verdict_agrees_with_check(vectors: dict[str, Any],
                                              make_token: Any) -> None:
    from scanner.server.reports import is_cendis_token, token_ref
    from scanner.token import TokenCheck, check

    samples = [v["token"] for v in vectors["valid"]]
    samples += [v["token"] if isinstance(v, dict) else v for v in vectors["invalid"]]
    fresh = [make_token() for _ in range(50)]
    samples += fresh + [t[:-1] + ("A" if t[-1] != "A" else "B") for t in fresh]
    samples += [t + "x" for t in fresh[:5]] + ["cendis_pat_" + "A" * 36, "some_token", ""]
    for text in samples:
        if isinstance(text, str) and text == text.strip():
            assert is_cendis_token(text) == (check(text) is TokenCheck.VALID), text[:14]
    assert token_ref("some_token").redacted == "so…"  # not dressed up as ours
    for v in vectors["valid"]:
        assert token_ref(v["token"]).sha256 == v["sha256"]
