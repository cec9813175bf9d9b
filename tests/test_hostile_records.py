"""A token a partner or a client quotes beside the one it reports (in a record's url, type
or source; in the source, path or url of ``POST /v1/findings``), in any form: plain, in
an ``?access_token=`` query, base64, percent-encoded, escaped, among control characters.
None of it may reach the SQLite file, the ``/incidents`` JSON, the CLI's ``incidents
show``/``list``, the partner's feedback or the revoke call the Cendis stand-in receives.
And what the terminal shows of stored or remote text has its control characters escaped.

Everything through the real paths: signed reports into the real receiver on loopback,
the installed CLI as a subprocess, the Cendis stand-in over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import assert_no_leak, run
from privacy import Needles
from receiver import CREDENTIAL, RigFactory

from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.cendis_api import ServiceCredential, StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.incidents.models import Sighting, TokenRef
from scanner.incidents.store import Store
from scanner.token import redact

READER = {"Authorization": "Bearer reader-token-for-tests-0123"}
REPORT_TOKEN = "report-token-for-tests-0123456789"


def _b64(token: str, pad: bytes = b"") -> str:
    return base64.b64encode(pad + token.encode()).decode()


def _pct(text: str) -> str:
    """Every character percent-encoded (``quote`` leaves ``_`` and letters alone)."""
    return "".join(f"%{b:02X}" for b in text.encode())


def _fullwidth(text: str) -> str:
    """Fullwidth look-alikes (``ｃｅｎｄｉｓ＿``), which NFKC folds back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


#: Where a hostile record puts the token and how: field -> text holding it.
HOSTILE: dict[str, Callable[[str], dict[str, str]]] = {
    "plain_in_url": lambda t: {"url": f"https://github.com/o/r/blob/main/{t}.env"},
    "access_token_query": lambda t: {"url": f"https://api.example.com/v1?access_token={t}&a=1"},
    "base64_in_source": lambda t: {"source": f"commit {_b64(t)}"},
    "urlsafe_base64_unpadded_in_url": lambda t: {
        "url": "https://x.example/?blob="
               + base64.urlsafe_b64encode(b"ab" + t.encode()).decode().rstrip("=")},
    "percent_encoded_in_type": lambda t: {"type": _pct(t)},
    "underscores_encoded_in_url": lambda t: {"url": "https://x.example/?t="
                                                    + t.replace("_", "%5F")},
    "base64_percent_encoded_in_url": lambda t: {"url": "https://x.example/?t="
                                                       + quote(_b64(t, b"k"), safe="")},
    "double_percent_encoded_in_source": lambda t: {"source": quote(_pct(t), safe="")},
    "backslash_escaped_in_type": lambda t: {"type": t.replace("_", "\\x5f")},
    "control_chars_in_url": lambda t: {"url": f"https://x.example/\x1b[31m{t}\r\n"
                                              f"forged line\x9b2J\x07\u202e"},
    # Invisible format characters, look-alikes and other encodings (issue 14, A1).
    "zero_width_space_in_url": lambda t: {"url": "https://x.example/"
                                                 + t.replace("_pat_", "_pat_\u200b")},
    "joiners_everywhere_in_type": lambda t: {"type": "\u200c".join(t[:12]) + "\u200d"
                                                     + t[12:30] + "\u2060" + t[30:]},
    "soft_hyphen_and_bom_in_source": lambda t: {"source": "\ufeff" + t[:20] + "\u00ad"
                                                          + t[20:]},
    "fullwidth_in_url": lambda t: {"url": "https://x.example/" + _fullwidth(t)},
    "quoted_printable_in_url": lambda t: {"url": "https://x.example/?q="
                                                 + t.replace("_", "=5F")},
    "css_escapes_in_type": lambda t: {"type": t.replace("_", "\\5f ")},
    "hex_in_url": lambda t: {"url": "https://x.example/?h=" + t.encode().hex()},
    "upper_hex_in_source": lambda t: {"source": "dump " + t.encode().hex().upper()},
    "base64_of_percent_encoded_in_source": lambda t: {
        "source": _b64(t.replace("_", "%5F"), b"")},
    "hex_of_base64_in_url": lambda t: {"url": "https://x.example/" + _b64(t).encode().hex()},
    "everywhere": lambda t: {"url": f"https://x.example/?access_token={t}",
                             "type": _b64(t, b"z"), "source": t.replace("_", "%5f")},
}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _cli(*args: str, **kw: Any) -> Any:
    """The installed CLI, off the event loop (the receiver keeps serving meanwhile)."""
    return await asyncio.to_thread(run, list(args), **kw)


def _no_token(needles: Needles, what: str, data: bytes | str) -> None:
    problem = needles.find(data)
    assert problem is None, f"{what}: {problem}"


@pytest.mark.parametrize("variant", sorted(HOSTILE))
async def test_a_token_quoted_in_a_record_or_a_finding_is_stored_and_sent_redacted(
        rig_factory: RigFactory, variant: str) -> None:
    rig = await rig_factory(known=2, report_token=REPORT_TOKEN)
    partner_token, scan_token = rig.tokens
    needles = Needles(rig.tokens)
    fields = HOSTILE[variant]

    # A signed partner report whose record quotes its own token beside it.
    record = {"token": partner_token, "type": "cendis_personal_access_token",
              "url": "https://github.com/o/r/blob/main/a.env", "source": "commit",
              **fields(partner_token)}
    status, feedback = await rig.post(json.dumps([record]).encode())
    assert status == 200, feedback
    _no_token(needles, "the partner's feedback", json.dumps(feedback))

    # A scanner's findings whose source, url and path quote the token found.
    quoted = next(iter(fields(scan_token).values()))
    resp = await rig.client.post("/v1/findings", headers={
        "Authorization": f"Bearer {REPORT_TOKEN}"}, json={
        "source": f"scan:{quoted}", "url": quoted, "repository": quoted, "revoke": True,
        "findings": [{"sha256": _sha(scan_token), "redacted": redact(scan_token),
                      "rule_id": "cendis-pat", "confidence": "confirmed",
                      "path": quoted, "author": quoted, "line": 1}]})
    answer = await resp.text()
    assert resp.status == 200, answer
    _no_token(needles, "the findings answer", answer)

    await rig.quiet()  # both revoked (the revoke calls carried url and source)
    assert rig.revoked() == {_sha(partner_token), _sha(scan_token)}

    # The database (with its WAL) and the reader API.
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{rig.db}{suffix}")
        if path.exists():
            _no_token(needles, f"the database{suffix}", path.read_bytes())
    listed = await rig.client.get("/incidents", headers=READER)
    _no_token(needles, "/incidents", await listed.read())
    shown = {}
    for token in rig.tokens:
        one = await rig.client.get(f"/incidents/{_sha(token)[:16]}", headers=READER)
        assert one.status == 200
        body = await one.read()
        _no_token(needles, "/incidents/ID", body)
        shown[token] = json.loads(body)

    # What was kept is the text with the token redacted, not dropped: the test is not
    # passing on empty fields.
    [partner_sighting] = shown[partner_token]["sightings"]
    kept = " ".join(str(partner_sighting[k]) for k in ("url", "record_type",
                                                       "record_source"))
    assert "cendis_pat_" in kept and ("…" in kept or "[base64" in kept), variant
    [scan_sighting] = shown[scan_token]["sightings"]
    assert scan_sighting["source"].startswith("scan:") and "…" in scan_sighting["source"]

    # What the Cendis stand-in received: the revoke calls and every request whole.
    journal = json.dumps({"calls": rig.calls, "requests": rig.standin[STANDIN].requests,
                          "notifications": rig.notified})
    _no_token(needles, "the stand-in's received requests", journal)
    urls = {call["source"]: call["url"] for call in rig.calls}
    assert urls.keys() == {"github", scan_sighting["source"]}
    if "url" in fields(partner_token):
        assert "cendis_pat_" in urls["github"] or "[base64" in urls["github"]

    # The CLI, as an operator reads the same file.
    env = {"CENDIS_SCAN_DB": str(rig.db)}
    for args in (("incidents", "show", _sha(partner_token)[:12]),
                 ("incidents", "show", _sha(scan_token)[:12]),
                 ("incidents", "show", _sha(partner_token)[:12], "--format", "json"),
                 ("incidents", "list"), ("incidents", "list", "--format", "csv")):
        proc = await _cli(*args, env=env)
        assert proc.returncode == 0, proc.err
        _no_token(needles, " ".join(args), proc.stdout + proc.stderr)
        assert_no_leak(proc.stdout, proc.stderr)
        assert b"\x1b" not in proc.stdout and b"\r" not in proc.stdout


#: Text a hostile partner, a hostile Cendis answer or an old database may hold.
CONTROLS = {
    "ansi_colour": "\x1b[31mRED\x1b[0m",
    "carriage_return": "ok\rFORGED",
    "newline": "one\nincident 99: cendis_pat_fake…zz",
    "c1_csi": "x\x9b2Jy",
    "bell_backspace_del": "a\x07b\x08c\x7f",
    "bidi_override": "abc\u202edcba",
    "line_separator": "a\u2028b",
}


def _raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, besides the newlines between lines."""
    return [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
                                              or c in "\u202e\u2028")]


def _old_database(path: Path, hostile: str) -> None:
    """An incident whose stored texts hold ``hostile`` raw, as a database written before
    the store scrubbed (or by any other writer) may: the CLI must escape on output."""
    with Store.open(path) as store:
        store.record([(TokenRef("ab" * 32, "cendis_pat_abcd…ef"),
                       Sighting(source="github", received_at=datetime.now(UTC)))],
                     revoke=False)
    conn = sqlite3.connect(path)  # plain sqlite3: no scrub on the way in
    with conn:
        conn.execute("UPDATE sightings SET url = ?, record_type = ?, author = ?, path = ?",
                     [hostile] * 4)
        conn.execute("UPDATE incidents SET owner = ?, org = ?, token_name = ?, "
                     "last_error = ?, scopes = ?", [hostile] * 4 + [json.dumps([hostile])])
        conn.execute("INSERT INTO events(incident_id, at, kind, detail) "
                     "VALUES (1, '2026-01-01', ?, ?)", [hostile, hostile])
    conn.close()


@pytest.mark.parametrize("kind", sorted(CONTROLS))
def test_incidents_show_and_list_escape_control_characters(tmp_path: Path,
                                                           kind: str) -> None:
    hostile = CONTROLS[kind]
    db = tmp_path / "old.db"
    _old_database(db, hostile)
    show = run(["incidents", "show", "1", "--db", str(db)])
    table = run(["incidents", "list", "--db", str(db)])
    csv = run(["incidents", "list", "--db", str(db), "--format", "csv"])
    for proc in (show, table, csv):
        assert proc.returncode == 0, proc.err
        assert _raw_controls(proc.out) == [], proc.args
    # Shown escaped, on the line it belongs to: no forged line.
    lines = show.out.splitlines()
    assert [ln for ln in lines if ln.startswith("incident ")] == [lines[0]]
    assert sum("url=" in ln for ln in lines) == 1
    first = next(c for c in hostile if c == "\n" or _raw_controls(c))
    shown = f"\\x{ord(first):02x}" if ord(first) < 0x100 else f"\\u{ord(first):04x}"
    assert shown in show.out
    assert len(csv.out.splitlines()) == 2  # the header and one row


@pytest.mark.parametrize("kind", sorted(CONTROLS))
async def test_whoami_and_revoke_escape_what_cendis_answers(aiohttp_server: Any,
                                                            make_token: Any,
                                                            tmp_path: Path, kind: str) -> None:
    hostile = CONTROLS[kind]
    leaked = make_token()
    standin = standin_app(
        tokens=[StandInToken.from_token(leaked, owner=hostile, name=hostile, org=hostile)],
        service_credentials={CREDENTIAL: ServiceCredential(
            scopes=["revoke:tokens"], username=hostile, org=hostile, name=hostile)})
    server = await aiohttp_server(standin)
    env = {"CENDIS_API_URL": str(server.make_url("")).rstrip("/"),
           "CENDIS_TOKEN": CREDENTIAL, "CENDIS_SCAN_DB": str(tmp_path / "trail.db")}
    who = await _cli("whoami", env=env)
    assert who.returncode == 0, who.err
    assert _raw_controls(who.out) == []
    assert who.out.count("\n") == 4 and who.out.startswith("username: ")
    revoked = await _cli("revoke", input=leaked + "\n", env=env)
    assert revoked.returncode == 0, revoked.err
    assert _raw_controls(revoked.out) == [] and revoked.out.startswith("revoked ")
    assert revoked.out.count("\n") == 1
    shown = await _cli("incidents", "show", "1", env=env)
    assert shown.returncode == 0 and _raw_controls(shown.out) == []
    for proc in (who, revoked, shown):
        assert leaked not in proc.out + proc.err


#: ``redacted`` values a client may not send: anything but the shapes ``redact`` gives.
BAD_REDACTED: dict[str, Callable[[str], object]] = {
    "whole": lambda t: t,
    "zero_width_space": lambda t: t.replace("_pat_", "_pat_\u200b"),
    "soft_hyphen_inside": lambda t: t[:20] + "\u00ad" + t[20:],
    "fullwidth": _fullwidth,
    "quoted_printable": lambda t: t.replace("_", "=5F"),
    "redacted_then_more": lambda t: redact(t) + t[-20:],
    "five_shown": lambda t: t[:16] + "…" + t[-2:],
    "ascii_ellipsis": lambda t: t[:15] + "..." + t[-2:],
    "free_text": lambda t: "see the token",
    "not_a_string": lambda t: 42,
}


@pytest.mark.parametrize("variant", sorted(BAD_REDACTED))
async def test_findings_redacted_must_be_exactly_a_redacted_token(
        rig_factory: RigFactory, variant: str) -> None:
    rig = await rig_factory(known=1, report_token=REPORT_TOKEN)
    [token] = rig.tokens
    headers = {"Authorization": f"Bearer {REPORT_TOKEN}"}

    def body(redacted: object) -> dict[str, Any]:
        return {"source": "scan:repo", "findings": [
            {"sha256": "ab" * 32, "redacted": "cendis_pat_abcd…ef", "path": "a"},
            {"sha256": _sha(token), "redacted": redacted, "path": "b"}]}

    resp = await rig.client.post("/v1/findings", headers=headers,
                                 json=body(BAD_REDACTED[variant](token)))
    answer = await resp.json()
    assert resp.status == 400 and answer["error"] == "bad_redacted", answer
    listed = await rig.client.get("/incidents", headers=READER)
    assert await listed.json() == []  # nothing recorded, not even the good finding
    for good in (redact(token), "cendis_pat_ab…", "cendis_pat_…", None):
        resp = await rig.client.post("/v1/findings", headers=headers, json=body(good))
        assert resp.status == 200, await resp.text()
    shown = await (await rig.client.get("/incidents", headers=READER)).json()
    assert {i["redacted"] for i in shown} == {"cendis_pat_abcd…ef", redact(token)}


#: Bytes that are not UTF-8, as another writer (``sqlite3`` by hand) may store them.
NOT_UTF8 = {"lone_ff": ("X'41ff'", "A\\xff"), "truncated_sequence": ("X'68c3'", "h\\xc3"),
            "surrogate_bytes": ("X'eda080'", "\\xed\\xa0\\x80")}


@pytest.mark.parametrize("kind", sorted(NOT_UTF8))
async def test_a_byte_that_is_not_utf8_in_the_database_does_not_break_reads(
        rig_factory: RigFactory, kind: str) -> None:
    rig = await rig_factory(known=2, report_token=REPORT_TOKEN)
    resp = await rig.client.post("/v1/findings", headers={
        "Authorization": f"Bearer {REPORT_TOKEN}"}, json={
        "source": "scan:repo", "findings": [
            {"sha256": _sha(t), "redacted": redact(t), "path": "a"} for t in rig.tokens]})
    assert resp.status == 200
    blob, shown = NOT_UTF8[kind]
    conn = sqlite3.connect(rig.db)  # as by hand: no scrub, no check on the way in
    with conn:
        conn.execute(f"UPDATE incidents SET owner = CAST({blob} AS TEXT) WHERE id = 2")
        conn.execute(f"UPDATE sightings SET path = CAST({blob} AS TEXT) WHERE id = 2")
    conn.close()

    listed = await rig.client.get("/incidents", headers=READER)
    assert listed.status == 200
    assert shown in [i["owner"] for i in await listed.json()]
    one = await rig.client.get("/incidents/2", headers=READER)
    assert one.status == 200
    detail = await one.json()
    assert detail["owner"] == shown and detail["sightings"][0]["path"] == shown
    env = {"CENDIS_SCAN_DB": str(rig.db)}
    for args in (("incidents", "list"), ("incidents", "list", "--format", "csv"),
                 ("incidents", "show", "2"), ("incidents", "show", "2", "--format", "json")):
        proc = await _cli(*args, env=env)
        assert proc.returncode == 0, proc.err
        assert shown in proc.stdout.decode().replace("\\\\", "\\"), args
