"""The receiver through its real HTTP endpoint (aiohttp_client), with the partners' keys
served by a local key server and the Cendis stand-in on loopback: the published vectors,
a table of bad deliveries that each get their status and change nothing, feedback,
duplicates and replays, Cendis faults, the reader API, health and metrics, privacy."""

from __future__ import annotations

import asyncio
import base64
import json
import time as wall_time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from receiver import (
    PARTNERS,
    WHSEC,
    Rig,
    RigFactory,
    assert_tokens_nowhere,
    snapshot,
)
from standin import FakeTime

from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.partner import STATE as KEYS_STATE
from scanner.dev.partner import PartnerKey, report_body
from scanner.server.config import decode_whsec
from scanner.server.state import STORE
from scanner.server.verify import standard_webhooks_sign

VECTORS = PARTNERS["vectors"]
READER = {"Authorization": "Bearer reader-token-for-tests-0123"}


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """Privacy: whatever a test made the receiver log holds no whole token."""
    from conftest import assert_no_leak

    caplog.set_level("INFO")
    yield
    assert_no_leak(caplog.text)


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    return await rig_factory(known=6)


def _vector_headers(v: dict[str, Any], signature: str | None = None,
                    key_id: str | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Github-Public-Key-Identifier": key_id or v["key_identifier"],
            "Github-Public-Key-Signature": signature or v["signature"]}


async def _raw(rig: Rig, body: bytes, headers: dict[str, str],
               path: str = "/partners/github") -> tuple[int, Any]:
    resp = await rig.client.post(path, data=body, headers=headers)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


async def test_every_vector_is_accepted_and_every_alteration_refused(rig: Rig) -> None:
    other_ids = [k["key_identifier"] for k in PARTNERS["public_keys"]["public_keys"]]
    for v in VECTORS:
        body = v["body"].encode()
        before = snapshot(rig.db)
        flipped = ("N" if v["signature"][0] == "M" else "M") + v["signature"][1:]
        other = next(k for k in other_ids if k != v["key_identifier"])
        for bad_body, headers in [(body + b"\n", _vector_headers(v)),
                                  (body, _vector_headers(v, signature=flipped)),
                                  (body, _vector_headers(v, key_id=other))]:
            status, answer = await _raw(rig, bad_body, headers)
            assert status == 401, (v["name"], answer)
        assert snapshot(rig.db) == before
        status, answer = await _raw(rig, body, _vector_headers(v))
        assert status == 200, (v["name"], answer)
        # the vectors' tokens are not Cendis tokens: false positives, known at once
        records = json.loads(body)
        assert [a["label"] for a in answer] == ["false_positive"] * len(records)
        assert answer[0]["token_type"] == records[0]["type"]
        assert "token" not in answer[0] and "token_raw" not in answer[0]
    assert rig.calls == []  # never sent to the revoke API


async def test_header_names_any_case_and_json_with_charset(rig: Rig) -> None:
    v = VECTORS[0]
    headers = {"content-type": "application/json; charset=utf-8",
               "GITHUB-PUBLIC-KEY-IDENTIFIER": v["key_identifier"],
               "github-public-key-signature": v["signature"]}
    status, _ = await _raw(rig, v["body"].encode(), headers)
    assert status == 200


def _webhook_headers(body: bytes, *, msg_id: str = "msg_1", stamp: int | None = None,
                     secret: str = WHSEC) -> dict[str, str]:
    stamp = int(wall_time.time()) if stamp is None else stamp
    return {"Content-Type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_webhooks_sign(decode_whsec(secret, "t"), msg_id,
                                                        stamp, body)}


SIGNED = "signed"  # sign the case's body with the dev partner's key
BAD_CASES: list[tuple[str, bytes, dict[str, str] | str, int, str, dict[str, Any]]] = [
    ("no signature headers", b"[]", {"Content-Type": "application/json"}, 400,
     "missing_signature_headers", {}),
    ("signature not base64", b"[]", {"sig": "%%% not base64 %%%"}, 401,
     "signature_not_base64", {}),
    ("signature not DER", b"[]", {"sig": base64.b64encode(b"\x30\x01garbage").decode()}, 401,
     "signature_not_der", {}),
    ("[] with a signature of another body", b"[]", {"sig_of": "[ ]"}, 401, "bad_signature",
     {}),
    ("unknown key id after a refetch", b"[]", {"key_id": "f" * 64}, 401, "unknown_key", {}),
    ("{}", b"{}", SIGNED, 400, "not_an_array", {}),
    ("[", b"[", SIGNED, 400, "malformed_json", {}),
    ("not UTF-8", b"[\xff\xfe]", SIGNED, 400, "malformed_json", {}),
    ("a string", b'"cendis"', SIGNED, 400, "not_an_array", {}),
    ("records without token", b'[{"type":"x","url":"u"},{"token":""},{"token":7}]', SIGNED,
     200, "", {}),
    ("records that are not objects", b'[1, "x", null, []]', SIGNED, 200, "", {}),
    ("text/plain", b"[]", {"ctype": "text/plain"}, 415, "wrong_content_type", {}),
    ("form content type", b"[]", {"ctype": "application/x-www-form-urlencoded"}, 415,
     "wrong_content_type", {}),
    ("10 MB body", b"[" + b" " * 10_000_000 + b"]", SIGNED, 413, "body_too_large", {}),
    ("key endpoint down", b"[]", SIGNED, 503, "keys_http_error", {"key_mode": "error"}),
    ("key endpoint returns junk", b"[]", SIGNED, 503, "keys_bad_response",
     {"key_mode": "junk"}),
    ("key endpoint slow", b"[]", SIGNED, 503, "keys_timeout", {"key_mode": "slow"}),
    ("webhook: bad signature", b"[]", {"webhook": "bad"}, 401, "bad_signature", {}),
    ("webhook: stale timestamp", b"[]", {"webhook": "stale"}, 401,
     "timestamp_out_of_window", {}),
    ("webhook: no headers", b"[]", {"webhook": "none"}, 400, "missing_signature_headers", {}),
    ("webhook: a 400-digit timestamp", b"[]", {"webhook": "huge"}, 400, "bad_timestamp", {}),
    # valid JSON nested deep is one malformed record (test_server_isolation); unclosed:
    ("JSON nested 100,000 deep, unclosed", b"[" * 100_000 + b"]" * 99_999, SIGNED, 400,
     "malformed_json", {}),
    ("JSON nested deep, a bracket short", b'[{"a": ' + b"[" * 5000 + b'"]"' + b"]" * 4999,
     SIGNED, 400, "malformed_json", {}),
]


@pytest.mark.parametrize(("body", "how", "status", "reason", "setup"),
                         [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
async def test_bad_delivery_gets_its_status_and_changes_nothing(
        rig_factory: RigFactory, make_token: Any, body: bytes, how: dict[str, str] | str,
        status: int, reason: str, setup: dict[str, Any], time: FakeTime) -> None:
    broken_keys = "key_mode" in setup
    clock = {"monotonic": time.clock} if "key_id" in how else {}
    rig = await rig_factory(known=1, wait_keys=not broken_keys, **clock, **setup)
    if not broken_keys:  # something in the database, so "unchanged" means something
        assert (await rig.report([rig.tokens[0]]))[0] == 200
        await rig.quiet()
    else:
        await rig.settle(lambda: rig.key_cache.fetches >= 1 and
                         rig.key_cache.last_error is not None)
    if "key_id" in how:
        time.now += 0.25  # past the refetch throttle (0.2 s in these tests)
    before = snapshot(rig.db)
    key = rig.partner
    path = "/partners/github"
    if how == SIGNED:
        headers = {"Content-Type": "application/json",
                   "Github-Public-Key-Identifier": key.key_id,
                   "Github-Public-Key-Signature": key.sign(body)}
    elif "webhook" in how:
        path = "/partners/acme"
        headers = _webhook_headers(body)
        if how["webhook"] == "bad":
            headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        elif how["webhook"] == "stale":
            headers = _webhook_headers(body, stamp=int(wall_time.time()) - 600)
        elif how["webhook"] == "huge":
            headers = {**_webhook_headers(body), "webhook-timestamp": "9" * 400}
        else:
            headers = {"Content-Type": "application/json"}
    elif "Content-Type" in how:
        headers = dict(how)
    else:
        headers = {"Content-Type": how.get("ctype", "application/json"),
                   "Github-Public-Key-Identifier": how.get("key_id", key.key_id),
                   "Github-Public-Key-Signature": how.get("sig") or key.sign(
                       how.get("sig_of", "").encode() or body)}
    got, answer = await _raw(rig, body, headers, path)
    assert got == status, answer
    if reason:
        assert answer["error"] == reason
        metrics = await (await rig.client.get("/metrics")).text()
        assert f'reason="{reason}"' in metrics
    else:
        assert answer == []
    assert snapshot(rig.db) == before


async def test_webhook_partner_records_and_drops_redelivery(rig: Rig) -> None:
    token = rig.tokens[0]
    body = report_body([token])
    headers = _webhook_headers(body, msg_id="msg_abc")
    assert (await _raw(rig, body, headers, "/partners/acme"))[0] == 200
    await rig.quiet()
    after_first = snapshot(rig.db)
    status, _ = await _raw(rig, body, headers, "/partners/acme")
    assert status == 200
    await rig.quiet()
    after = snapshot(rig.db)
    assert {k: v for k, v in after.items() if "deliver" not in k} == \
        {k: v for k, v in after_first.items() if "deliver" not in k}
    await rig.settle(lambda: token_hash(token) in rig.revoked())
    found = (await (await rig.client.get(f"/incidents/{token_hash(token)[:12]}",
                                         headers=READER)).json())
    assert found["sightings"][0]["source"] == "partner:acme"
    assert (await _raw(rig, body, headers, "/partners/nobody"))[0] == 404


def token_hash(token: str) -> str:
    from scanner.token import secret_sha256

    return secret_sha256(token.encode())


async def test_duplicates_and_replays_make_one_incident_and_one_revoke(
        rig: Rig, make_token: Any) -> None:
    token = rig.tokens[0]
    body = report_body([token, token])
    signature_headers = {"Content-Type": "application/json",
                         "Github-Public-Key-Identifier": rig.partner.key_id,
                         "Github-Public-Key-Signature": rig.partner.sign(body)}
    for _ in range(4):  # the same captured request, replayed
        assert (await _raw(rig, body, signature_headers))[0] == 200
    assert (await rig.report([token], key=rig.partner))[0] == 200
    other_url = report_body([token], url="https://github.com/fork/repo/blob/x")
    assert (await rig.post(other_url))[0] == 200
    await rig.settle(lambda: token_hash(token) in rig.revoked())
    store = rig.client.app[STORE]  # the revoker saves the answer after the stand-in gave it
    await rig.settle(lambda: store.status_of(token_hash(token)) == "revoked")
    status, answer = await rig.report([token])  # the outcome is known now
    assert answer == [{"token_hash": token_hash(token),
                       "token_type": "cendis_personal_access_token", "label": "true_positive"}]
    listed = await (await rig.client.get("/incidents", headers=READER)).json()
    assert len(listed) == 1
    shown = await (await rig.client.get(f"/incidents/{listed[0]['id']}", headers=READER)).json()
    assert len(shown["sightings"]) == 2  # two urls; replays add no sighting
    sent = Counter(h for call in rig.calls for h in call["hashes"])
    assert sent[token_hash(token)] == 1
    assert len([n for n in rig.notified if n.get("sha256") == token_hash(token)]) <= 1


async def test_cendis_outage_then_recovery_revokes_every_token_once(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(known=12, cendis_timeout=0.2)
    state = rig.standin[STANDIN]
    state.faults.fail_next, state.faults.fail_status = 3, 500
    for chunk in (rig.tokens[:4], rig.tokens[4:8]):
        assert (await rig.report(chunk))[0] == 200
    await rig.settle(lambda: state.faults.fail_next == 0)
    state.faults.rate_limit_next, state.faults.retry_after = 2, 0.2
    assert (await rig.report(rig.tokens[8:10]))[0] == 200
    await rig.settle(lambda: state.faults.rate_limit_next == 0)
    state.faults.delay = 0.5  # longer than the client's timeout
    assert (await rig.report(rig.tokens[10:]))[0] == 200
    await rig.settle(lambda: rig.revoker.errors.get("timeout", 0) >= 2)
    state.faults.delay = 0
    want = {token_hash(t) for t in rig.tokens}
    await rig.settle(lambda: want <= rig.revoked())
    notified = Counter(n.get("sha256") for n in rig.notified)
    assert all(notified[h] == 1 for h in want), notified
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'cendis_revoke_errors_total{reason="server_error"}' in metrics
    assert 'cendis_revoke_errors_total{reason="rate_limited"}' in metrics
    await rig.quiet()
    listed = await (await rig.client.get("/incidents", headers=READER)).json()
    # a call that timed out may have been done by Cendis anyway: the retry says so
    assert {i["status"] for i in listed} <= {"revoked", "already_revoked"}
    assert len(listed) == 12 and {i["owner"] for i in listed} == {"dev-user"}


async def test_reader_api_needs_the_bearer_token(rig: Rig) -> None:
    assert (await rig.report([rig.tokens[0]]))[0] == 200
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Basic cmVhZGVy"}):
        resp = await rig.client.get("/incidents", headers=headers)
        assert resp.status == 401
        assert (await rig.client.get("/incidents/1", headers=headers)).status == 401
    listed = await (await rig.client.get("/incidents", headers=READER)).json()
    assert listed[0]["redacted"].startswith("cendis_pat_") and len(listed) == 1
    assert (await rig.client.get("/incidents/999999", headers=READER)).status == 404


async def test_health_readiness_and_metrics(rig_factory: RigFactory) -> None:
    rig = await rig_factory(known=1)
    assert (await rig.client.get("/healthz")).status == 200
    assert (await (await rig.client.get("/readyz")).json()) == {"ready": True}
    assert (await rig.report(rig.tokens + ["not-a-cendis-token"]))[0] == 200
    text = await (await rig.client.get("/metrics")).text()
    for line in ('cendis_reports_total{outcome="accepted",partner="github"} 1.0',
                 'cendis_records_total{outcome="accepted",partner="github"} 1.0',
                 'cendis_records_total{outcome="false_positive",partner="github"} 1.0',
                 "cendis_revoke_queue_depth", "cendis_revoke_oldest_pending_seconds",
                 'cendis_request_seconds_bucket{le="0.05",route="/partners/github"}'):
        assert line in text, line
    down = await rig_factory(known=0, key_mode="error", wait_keys=False)
    await down.settle(lambda: down.key_cache.last_error is not None)
    resp = await down.client.get("/readyz")
    assert resp.status == 503 and "github_keys_not_loaded" in (await resp.json())["reasons"]


async def test_unhealthy_credential_makes_readyz_fail(rig_factory: RigFactory) -> None:
    rig = await rig_factory(known=2)
    rig.standin[STANDIN].faults.reject_credential = True
    assert (await rig.report(rig.tokens))[0] == 200
    await rig.settle(lambda: not rig.revoker.healthy)
    resp = await rig.client.get("/readyz")
    assert resp.status == 503 and any(r.startswith("revoker_") for r in
                                      (await resp.json())["reasons"])


async def test_key_rotation_and_etag(rig_factory: RigFactory, time: FakeTime) -> None:
    rig = await rig_factory(known=6, monotonic=time.clock)
    state = rig.keys[KEYS_STATE]
    new = PartnerKey.generate()
    state.public_keys.append(new.entry())
    state.etag = '"v2"'
    await rig.settle(lambda: True)
    fetches = rig.key_cache.fetches
    time.now += 0.25  # past the (test-sized) refetch interval, on the injected clock
    assert (await rig.report([rig.tokens[0]], key=new))[0] == 200
    assert rig.key_cache.fetches == fetches + 1
    time.now += 0.25
    assert (await rig.report([rig.tokens[1]], key=PartnerKey.generate()))[0] == 401
    assert state.not_modified >= 1  # the refetch was conditional


async def test_a_1000_record_report_is_acknowledged_before_any_revoke(
        rig: Rig, make_token: Any) -> None:
    """The view verifies, records and answers; revoking is the background revoker's.
    With the revoker stopped, a 1000-record report is still acknowledged and recorded
    whole, and nothing was revoked inline (the bench times it: bench/webhook_load.py)."""
    rig.revoker.stop()
    tokens = [make_token() for _ in range(1000)]
    status, _ = await rig.report(tokens)
    assert status == 200
    listed = await (await rig.client.get("/incidents?limit=1000", headers=READER)).json()
    assert len(listed) == 1000
    assert rig.calls == [] and rig.revoked() == set()
    assert_tokens_nowhere(tokens, rig.db.parent)


async def test_dev_send_report_cli_posts_a_signed_report(rig_factory: RigFactory,
                                                          tmp_path: Path) -> None:
    """The local partner (``cendis-scan dev send-report``, a real process) serves its own
    key; the receiver fetches it on the unknown key id, verifies, records, revokes."""
    from conftest import CLI, assert_no_leak, keep_output

    from scanner.server.state import KEY_CACHES

    port = free_port()
    rig = await rig_factory(known=2, wait_keys=False,
                            keys_url=f"http://127.0.0.1:{port}/meta/public_keys/"
                                     "secret_scanning")
    env_file = tmp_path / ".env"
    env_file.write_text(f"CENDIS_TOKEN={rig.tokens[0]}\n# again: {rig.tokens[0]}\n"
                        f"OTHER={rig.tokens[1]}\n")
    proc = await asyncio.create_subprocess_exec(
        CLI, "dev", "send-report", "--url", str(rig.client.make_url("/partners/github")),
        "--keys-port", str(port), "--token-file", str(env_file), "--wait", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    keep_output(out + b"\n" + err, "send-report")
    assert proc.returncode == 0, err.decode()
    assert "receiver answered 200" in out.decode()
    assert out.decode().count("cendis_pat_") == 2  # two distinct tokens, redacted
    assert_no_leak(out, err)
    await rig.settle(lambda: {token_hash(t) for t in rig.tokens} <= rig.revoked())
    assert rig.client.app[KEY_CACHES]["github"].loaded  # type: ignore[index]


async def test_startup_logs_who_we_are_and_warns_on_admin_org(
        rig_factory: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    await rig_factory(service_scopes=("revoke:tokens", "admin:org"))
    who = [r for r in caplog.records if getattr(r, "username", None) == "cendis-scan-bot"]
    assert who and who[0].org == "acme" and isinstance(who[0].days_left, int)
    assert any(getattr(r, "reason", None) == "admin_org" and r.levelname == "WARNING"
               for r in caplog.records)
    from receiver import CREDENTIAL

    assert CREDENTIAL not in caplog.text


async def test_key_fetch_sends_the_github_token_and_etag(aiohttp_server: Any) -> None:
    import aiohttp

    from scanner.dev.partner import KEYS_PATH, create_key_app
    from scanner.server.keys import http_fetcher

    key = PartnerKey.generate()
    app = create_key_app([key.entry()])
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        fetch = http_fetcher(session, str(server.make_url(KEYS_PATH)), github_token="ghp_t")
        first = await fetch(None)
        assert first.keys and first.etag == app[KEYS_STATE].etag and first.etag != '""'
        again = await fetch(first.etag)
        assert again.keys is None  # 304 Not Modified
    state = app[KEYS_STATE]
    assert state.auth_headers == ["Bearer ghp_t", "Bearer ghp_t"] and state.not_modified == 1


async def test_gitlab_route_uses_gitlab_headers(rig: Rig) -> None:
    body = report_body([rig.tokens[0]], url="https://gitlab.com/g/p/-/blob/main/x",
                       source=None)
    headers = {"Content-Type": "application/json",
               "Gitlab-Public-Key-Identifier": rig.partner.key_id,
               "Gitlab-Public-Key-Signature": rig.partner.sign(body)}
    assert (await _raw(rig, body, headers, "/partners/gitlab"))[0] == 200
    github_headers = {"Content-Type": "application/json",
                      "Github-Public-Key-Identifier": rig.partner.key_id,
                      "Github-Public-Key-Signature": rig.partner.sign(body)}
    status, answer = await _raw(rig, body, github_headers, "/partners/gitlab")
    assert status == 400 and answer["error"] == "missing_signature_headers"
    await rig.settle(lambda: token_hash(rig.tokens[0]) in rig.revoked())


async def test_database_outage_is_503_and_not_ready(rig: Rig) -> None:
    from scanner.server.state import WRITER

    writer = rig.client.app[WRITER]  # type: ignore[index]
    await writer.call(lambda store: store.close())  # the store's connections are gone
    writer._inline.close()
    status, answer = await rig.report([rig.tokens[0]])
    assert status == 503 and answer["error"] == "database"
    resp = await rig.client.get("/readyz")
    assert resp.status == 503 and "database_not_writable" in (await resp.json())["reasons"]
    writer._store = writer._inline = None  # let cleanup close nothing twice
