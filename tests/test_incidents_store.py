"""The incident store on both backends (a real SQLite file, a real PostgreSQL schema,
through the ``store_url`` fixture): recording, deduplication, the queue, the receiver's
tables, the migration from schema 1, and two processes sharing one database."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT
from standin import FakeTime

from scanner.errors import ConfigError
from scanner.incidents.models import (
    RevokeOutcome,
    Severity,
    Sighting,
    Status,
    TokenRef,
    severity_of,
)
from scanner.incidents.store import Store, claim_owner

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def time() -> FakeTime:
    """The shared ``store`` fixture's clock, standing still at T0."""
    return FakeTime(now=(T0 - FakeTime.epoch).total_seconds())


def _sighting(source: str = "github", **kw: object) -> Sighting:
    return Sighting(source=source, received_at=T0, **kw)  # type: ignore[arg-type]


def test_pragmas_and_schema(store: Store) -> None:
    assert store.schema_version() == 3
    if store.backend == "postgresql":
        timeout = store.db.execute("SHOW statement_timeout").fetchone()[0]
        assert timeout == "15s"  # every query bounded
        tables = {r[0] for r in store.db.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()").fetchall()}
    else:
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        tables = set(store.db.table_names())
    assert {"incidents", "sightings", "events", "revoke_queue", "partner_keys",
            "deliveries", "schema_version"} <= tables


def test_same_token_is_one_incident_with_more_sightings(
        store: Store, make_token: Callable[[], str]) -> None:
    token = make_token()
    ref = TokenRef.from_token(token)
    assert ref.redacted.endswith(token[-2:]) and len(ref.sha256) == 64
    first = store.record([(ref, _sighting(url="https://a", delivery_id="d1"))], revoke=True)
    again = store.record([(ref, _sighting(url="https://a", delivery_id="d1")),  # replay
                          (ref, _sighting("gitlab", url="https://fork")),       # a fork
                          (ref, _sighting("partner:acme", record_type="pat"))], revoke=True)
    assert first[0].new_incident and first[0].new_sighting
    assert [r.incident_id for r in again] == [first[0].incident_id] * 3
    assert [(r.new_incident, r.new_sighting) for r in again] == [
        (False, False), (False, True), (False, True)]
    assert all(r.status is Status.PENDING for r in first + again)
    incident = store.get_incident(first[0].incident_id)
    assert incident is not None
    assert [s["source"] for s in incident["sightings"]] == ["github", "gitlab", "partner:acme"]
    assert incident["sightings"][2]["record_type"] == "pat"
    assert [e["kind"] for e in incident["events"]] == ["opened", "received", "queued",
                                                       "received", "received"]
    assert store.queue_depth() == 1  # queued once


def test_recorded_false_positive_and_revoke_later(
        store: Store, make_token: Callable[[], str]) -> None:
    a, b = (TokenRef.from_token(make_token()) for _ in range(2))
    recorded = store.record([(a, _sighting("scan:repo")), (b, _sighting("scan:repo"))],
                            revoke=False, false_positive={b.sha256})
    assert [r.status for r in recorded] == [Status.RECORDED, Status.FALSE_POSITIVE]
    assert store.queue_depth() == 0
    # Seen again with auto-revoke: the recorded one is queued, the false positive never.
    later = store.record([(a, _sighting("github")), (b, _sighting("github"))], revoke=True)
    assert [r.status for r in later] == [Status.PENDING, Status.FALSE_POSITIVE]
    assert [e.sha256 for e in store.claim_batch(100, owner="t", lease=60)] == [a.sha256]


def test_outcomes_close_the_queue_and_set_owner_and_severity(
        store: Store, make_token: Callable[[], str]) -> None:
    refs = [TokenRef.from_token(make_token()) for _ in range(3)]
    store.record([(r, _sighting()) for r in refs], revoke=True)
    batch = store.claim_batch(100, owner="t", lease=60)
    statuses = store.apply_outcomes(batch, [
        RevokeOutcome(refs[0].sha256, Status.REVOKED, "alice", "ci", "acme",
                      ("admin:org",)),
        RevokeOutcome(refs[1].sha256, Status.ALREADY_REVOKED, "bob", "laptop", "acme",
                      ("read:assets",)),
        RevokeOutcome(refs[2].sha256, Status.NOT_FOUND)], notify_owner=True)
    assert statuses == [Status.REVOKED, Status.ALREADY_REVOKED, Status.NOT_FOUND]
    assert store.queue_depth() == 0
    first = store.get_incident(refs[0].sha256[:10])
    assert first is not None
    assert (first["owner"], first["scopes"], first["severity"]) == (
        "alice", ["admin:org"], "critical")
    assert [e["kind"] for e in first["events"]][-3:] == ["revoke_attempted", "revoked",
                                                         "notified"]
    assert store.list_incidents(severity="medium")[0]["owner"] == "bob"
    assert store.list_incidents(status="not_found")[0]["severity"] == "unknown"
    # Closed incidents are never queued again, whoever sees them next.
    store.record([(r, _sighting("gitlab")) for r in refs], revoke=True)
    assert store.queue_depth() == 0


def test_claims_keep_two_revokers_from_sending_a_token_twice(
        store_url: str, make_token: Callable[[], str]) -> None:
    clock = [T0]
    store = Store.open(store_url, now=lambda: clock[0])
    refs = [TokenRef.from_token(make_token()) for _ in range(3)]
    store.record([(r, _sighting()) for r in refs], revoke=True)
    mine, other = claim_owner("a"), claim_owner("b")
    assert len(store.claim_batch(2, owner=mine, lease=60)) == 2
    assert [e.sha256 for e in store.claim_batch(100, owner=other, lease=60)] == [
        refs[2].sha256]  # only what nobody holds
    assert store.claim_batch(100, owner=claim_owner("c"), lease=60) == []
    clock[0] = T0 + timedelta(seconds=61)  # a lease ends
    assert len(store.claim_batch(100, owner=other, lease=60)) == 3
    # A crashed process's claim ends at once (same host, its pid is gone).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dead = f"{socket.gethostname()}:{gone}:x"
    store.db.execute("UPDATE revoke_queue SET claimed_by = ?", [dead])
    claimed = store.claim_batch(100, owner=mine, lease=60)
    assert [e.attempts for e in claimed] == [3, 3, 3]
    # A failed call releases its claim.
    store.attempt_failed(claimed, "server_error", answered=True)
    assert len(store.claim_batch(100, owner=other, lease=60)) == 3
    store.close()


@pytest.mark.parametrize(("scopes", "severity"), [
    (["admin:org", "read:assets"], Severity.CRITICAL), (["write:assets"], Severity.HIGH),
    (["approve:assets"], Severity.HIGH), (["read:audit"], Severity.MEDIUM),
    (["read:assets"], Severity.MEDIUM), (["revoke:tokens"], Severity.UNKNOWN),
    ([], Severity.UNKNOWN)])
def test_severity_from_scopes(scopes: list[str], severity: Severity) -> None:
    assert severity_of(scopes) is severity


def test_list_filters_and_lookup(store_url: str, make_token: Callable[[], str]) -> None:
    clock = [T0]
    store = Store.open(store_url, now=lambda: clock[0])
    old, new = TokenRef.from_token(make_token()), TokenRef.from_token(make_token())
    store.record([(old, Sighting("manual", T0 - timedelta(days=10)))], revoke=False)
    store.record([(new, Sighting("manual", T0))], revoke=False)
    assert [i["sha256"] for i in store.list_incidents()] == [new.sha256, old.sha256]
    assert [i["sha256"] for i in store.list_incidents(since="2026-02-25")] == [new.sha256]
    assert len(store.list_incidents(limit=1)) == 1
    assert store.get_incident(new.sha256[:6])["id"] == 2  # type: ignore[index]
    assert store.get_incident("zz") is None and store.get_incident(999) is None
    assert store.status_of(old.sha256) is Status.RECORDED and store.status_of("0" * 64) is None
    store.close()


def test_receiver_tables_and_probes(store: Store, make_token: Callable[[], str]) -> None:
    assert store.load_partner_keys("github") is None
    keys = [{"key_identifier": "k1", "key": "-----BEGIN PUBLIC KEY-----", "is_current": True}]
    store.save_partner_keys("github", keys, '"etag-1"')
    assert store.load_partner_keys("github") == (keys, '"etag-1"', T0)
    assert store.remember_delivery("github", "d-1") is True
    assert store.remember_delivery("github", "d-1") is False
    assert store.remember_delivery("gitlab", "d-1") is True
    assert store.writable() is True
    assert store.oldest_pending_age() is None
    store.record([(TokenRef.from_token(make_token()), _sighting())], revoke=True)
    assert store.oldest_pending_age() == 0.0


def _v1_database(path: Path, pending: str, revoked: str) -> None:
    """A database as the first release wrote it, made by hand."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE incidents (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL,
            redacted TEXT NOT NULL, first_seen TEXT, last_seen TEXT, status TEXT NOT NULL);
        CREATE UNIQUE INDEX incidents_sha256 ON incidents(sha256);
        CREATE TABLE sightings (id INTEGER PRIMARY KEY, incident_id INTEGER
            REFERENCES incidents(id), source TEXT, url TEXT, "commit" TEXT, path TEXT,
            line INTEGER, received_at TEXT);
    """)
    at = T0.isoformat()
    conn.execute("INSERT INTO incidents VALUES (1, ?, 'cendis_pat_AAAA…zz', ?, ?, "
                 "'pending')", [pending, at, at])
    conn.execute("INSERT INTO incidents VALUES (2, ?, 'cendis_pat_BBBB…yy', ?, ?, "
                 "'revoked')", [revoked, at, at])
    for _ in range(2):  # v1 stored a repeated sighting twice
        conn.execute("INSERT INTO sightings(incident_id, source, url, path, received_at) "
                     "VALUES (1, 'github', 'https://x', NULL, ?)", [at])
    conn.execute("INSERT INTO sightings(incident_id, source, url, path, received_at) "
                 "VALUES (2, 'scan:.', NULL, '.env', ?)", [at])
    conn.commit()
    conn.close()


def test_migration_from_version_1(tmp_path: Path, make_token: Callable[[], str]) -> None:
    pending, revoked = (TokenRef.from_token(make_token()) for _ in range(2))
    path = tmp_path / "v1.db"
    _v1_database(path, pending.sha256, revoked.sha256)
    store = Store.open(path, now=lambda: T0)
    assert store.schema_version() == 3
    first = store.get_incident(1)
    assert first is not None and first["severity"] == "unknown"
    assert len(first["sightings"]) == 1  # the repeated v1 sighting kept once
    assert [e["kind"] for e in first["events"]] == ["migrated"]
    # The pending v1 incident was never revoked: it is in the queue now.
    assert [(e.sha256, e.source) for e in store.claim_batch(100, owner="t", lease=60)] == [
        (pending.sha256, "github")]
    again = store.record([(revoked, _sighting("gitlab"))], revoke=True)[0]
    assert (again.incident_id, again.status, again.new_sighting) == (2, Status.REVOKED, True)
    store.close()
    reopened = Store.open(path)  # migrating twice is a no-op
    assert reopened.schema_version() == 3 and reopened.queue_depth() == 1
    reopened.db.execute("UPDATE schema_version SET version = 4")
    reopened.close()
    with pytest.raises(ConfigError, match="newer"):
        Store.open(path)


def test_two_processes_share_one_database(tmp_path: Path, store_url: str,
                                          make_token: Callable[[], str]) -> None:
    """Two writers, 1,000 sightings each of the same 1,000 tokens, plus 100 replays each:
    all 2,000 sightings present, none duplicated."""
    refs = [TokenRef.from_token(make_token()) for _ in range(1000)]
    refs_file = tmp_path / "refs.json"
    refs_file.write_text(json.dumps([[r.sha256, r.redacted] for r in refs]))
    db = store_url
    Store.open(db).close()
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "drivers.py"), "record",
                               db, str(refs_file), source],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for source in ("sweep", "receiver")]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "ready"
    store = Store.open(db)
    rows = store.list_incidents()
    assert len(rows) == 1000
    assert {r["sha256"] for r in rows} == {r.sha256 for r in refs}
    assert all(r["sightings"] == 2 for r in rows)
    total = store.db.execute("SELECT count(*), count(DISTINCT incident_id || source) "
                             "FROM sightings").fetchone()
    assert total == (2000, 2000)
    received = store.db.execute("SELECT count(*) FROM events WHERE kind = 'received'")
    assert received.fetchone()[0] == 2000
    store.close()
