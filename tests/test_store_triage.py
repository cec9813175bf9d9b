"""Schema 3 of the incident store (issue 17), on both backends: the migration from a real
schema-2 database, triage and its transitions, a resolved incident reopened by a new
sighting, the notification outbox written with its events (one row per event and
channel, forks one message), claimed under a lease, retried after a failure, the
``revoke_failing`` event once, and the event export paged by keyset.

``tests/data/store-v2.db`` was written by the schema-2 release (main before issue 17;
``tests/data/make_store_v2.py``): three incidents (one revoked after 42 s, one queued,
one recorded), their sightings and events, partner keys and a delivery id. It holds
hashes and redacted forms only, never a token.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pgtools import fresh_schema, require
from standin import FakeTime

from scanner.finding import Finding
from scanner.incidents.findings import record_findings
from scanner.incidents.models import (
    NotifyEvent,
    RevokeOutcome,
    Sighting,
    Status,
    TokenRef,
    TriageError,
)
from scanner.incidents.store import SchemaError, Store
from scanner.incidents.store.copy import copy_trail

V2_FILE = Path(__file__).resolve().parent / "data" / "store-v2.db"
V2_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeRouter:
    """A router that names channels per event kind, and remembers what it was asked."""

    table: dict[str, list[str]] = field(default_factory=lambda: {
        "opened": ["security", "siem"], "possible": ["security"], "revoked": ["siem"],
        "revoke_failing": ["security", "siem"], "reopened": ["security"],
        "triage": ["siem"]})
    revoke_failing_after: float | None = 600.0
    asked: list[NotifyEvent] = field(default_factory=list)

    def channels(self, event: NotifyEvent) -> Sequence[str]:
        self.asked.append(event)
        return self.table.get(event.kind, [])


@pytest.fixture
def time() -> FakeTime:
    return FakeTime(now=(T0 - FakeTime.epoch).total_seconds())


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


@pytest.fixture
def store(store_url: str, time: FakeTime, router: FakeRouter) -> Any:
    db = Store.open(store_url, now=time.wall, router=router)
    yield db
    db.close()


def _seen(source: str = "partner:github", **kw: Any) -> Sighting:
    return Sighting(source=source, received_at=T0, **kw)


def _new(store: Store, make_token: Callable[[], str], *, revoke: bool = False,
         source: str = "partner:github", **kw: Any) -> tuple[TokenRef, int]:
    ref = TokenRef.from_token(make_token())
    recorded = store.record([(ref, _seen(source, **kw))], revoke=revoke)
    return ref, recorded[0].incident_id


def _outbox(store: Store) -> list[dict[str, Any]]:
    return store.dump("outbox")


def _kinds(store: Store, incident_id: int) -> list[str]:
    incident = store.get_incident(incident_id)
    assert incident is not None
    return [e["kind"] for e in incident["events"]]


# -- the migration ------------------------------------------------------------------------

def _v2_database(url: str) -> None:
    """The schema-2 file at ``url`` (SQLite), or its rows in a schema-2 PostgreSQL made
    by that release's own DDL (kept in :mod:`.postgres_schema`)."""
    if not url.startswith("postgresql://"):
        shutil.copy(V2_FILE, url)
        return
    import psycopg

    from scanner.incidents.store import postgres_schema

    source = sqlite3.connect(V2_FILE)
    with psycopg.connect(url, autocommit=True) as conn:
        for script, now in ((postgres_schema.V1, None),
                            (postgres_schema.V1_TO_V2,
                             V2_T0.isoformat())):
            for statement in postgres_schema._statements(script):
                conn.execute(statement, {"now": now} if "%(now)s" in statement else None)
        for table in ("incidents", "sightings", "events", "revoke_queue", "partner_keys",
                      "deliveries"):
            cursor = source.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                columns = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join(["%s"] * len(names))
                conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)
        for table, column in (("incidents", "id"), ("sightings", "id"), ("events", "id"),
                              ("revoke_queue", "seq")):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"(SELECT max({column}) FROM {table}))")
    source.close()


def test_migration_2_to_3_from_a_real_v2_database(store_url: str, cli: Any,
                                                   make_token: Callable[[], str]) -> None:
    _v2_database(store_url)
    with pytest.raises(SchemaError, match="schema 2, this cendis-scan needs 3: run "
                                          "'cendis-scan db migrate'"):
        Store.open(store_url, migrate=False)
    proc = cli(["db", "migrate", "--db", store_url])
    assert proc.returncode == 0 and "migrated to schema 3 (was 2)" in proc.out, proc.err
    router = FakeRouter()
    with Store.open(store_url, migrate=False, now=lambda: V2_T0 + timedelta(hours=1),
                    router=router) as store:
        assert store.schema_version() == 3
        rows = {row["id"]: row for row in store.dump("incidents")}
        assert [(r["status"], r["triage"], r["confidence"], r["assignee"])
                for r in rows.values()] == [
            ("revoked", "open", "confirmed", None), ("pending", "open", "confirmed", None),
            ("recorded", "open", "confirmed", None)]
        assert rows[1]["revoked_at"] == (V2_T0 + timedelta(seconds=42)).isoformat(
            timespec="microseconds")
        assert rows[2]["revoked_at"] is None and rows[1]["severity"] == "critical"
        revoked = store.get_incident(1)
        assert revoked is not None
        assert [(e["kind"], e["actor"]) for e in revoked["events"]] == [
            ("received", None), ("queued", None), ("revoke_attempted", None),
            ("revoked", None), ("notified", None)]  # the log as it was, no event added
        assert store.queue_depth() == 1 and store.outbox_depth() == 0
        assert store.load_partner_keys("github") is not None
        assert store.remember_delivery("github", "d-1") is False
        assert store.triage_counts() == [("critical", "open", 1), ("unknown", "open", 2)]
        # The migrated store works as a new one: triage, events, outbox.
        store.triage(2, "ack", actor="alice")
        assert [o["kind"] for o in _outbox(store)] == ["triage"]
        ref = TokenRef.from_token(make_token())
        store.record([(ref, _seen())], revoke=True)
        assert store.outbox_depth() == 3
    again = cli(["db", "migrate", "--db", store_url])
    assert again.returncode == 0 and "up to date" in again.out


def test_schema_3_has_the_dashboard_and_export_indexes(store: Store) -> None:
    wanted = {"incidents_recent", "incidents_triage", "incidents_status",
              "incidents_severity", "events_at", "outbox_idem_key", "outbox_unsent"}
    if store.backend == "sqlite":
        names = {r[0] for r in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()}
    else:
        names = {r[0] for r in store.db.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()}
    assert wanted <= names


@pytest.mark.parametrize("filters", [{}, {"triage": "open"}, {"status": "pending"},
                                     {"severity": "unknown"}])
def test_a_dashboard_page_reads_an_index_without_sorting(tmp_path: Path,
                                                         filters: dict[str, str]) -> None:
    from scanner.incidents.store.common import incident_list_query

    with Store.open(tmp_path / "i.db") as store:
        sql, params = incident_list_query("?", status=filters.get("status"),
                                          severity=filters.get("severity"), since=None,
                                          limit=50, triage=filters.get("triage"),
                                          before=("2026-03-01T12:00:00.000000+00:00", 9))
        plan = " | ".join(str(r[-1]) for r in store.db.execute(
            "EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert "USING INDEX incidents_" in plan and "TEMP B-TREE" not in plan, plan


# -- triage ---------------------------------------------------------------------------

#: (path from open, action, options) -> the state it ends in.
ALLOWED = [
    ([], "ack", {}, "acknowledged"),
    ([], "resolve", {}, "resolved"),
    (["ack"], "resolve", {"reason": "rotated"}, "resolved"),
    ([], "ignore", {"reason": "test fixture"}, "ignored"),
    (["ack"], "ignore", {"reason": "test fixture"}, "ignored"),
    ([], "false_positive", {"reason": "a sample"}, "false_positive"),
    (["ack"], "false_positive", {"reason": "a sample"}, "false_positive"),
    (["resolve"], "reopen", {}, "open"),
    (["ack"], "reopen", {"reason": "not done"}, "open"),
    (["ignore"], "reopen", {}, "open"),
    (["false_positive"], "reopen", {}, "open"),
    (["resolve"], "ack", {"force": True}, "acknowledged"),
]
#: (path from open, action, options) -> the reason it is refused with.
REFUSED = [
    (["resolve"], "ack", {}, "transition"),
    (["ack"], "ack", {}, "transition"),
    ([], "reopen", {}, "transition"),
    (["ignore"], "resolve", {}, "transition"),
    (["false_positive"], "ack", {}, "transition"),
    (["resolve"], "ignore", {"reason": "late"}, "transition"),
    (["resolve"], "resolve", {"force": True}, "transition"),
    ([], "ignore", {}, "missing"),
    ([], "false_positive", {"reason": "   "}, "missing"),
    ([], "assign", {}, "missing"),
    ([], "note", {"note": ""}, "missing"),
    ([], "delete", {}, "action"),
]
_PATH_OPTIONS = {"ignore": {"reason": "r"}, "false_positive": {"reason": "r"}}


def _walk(store: Store, incident_id: int, path: list[str]) -> None:
    for step in path:
        store.triage(incident_id, step, actor="setup", **_PATH_OPTIONS.get(step, {}))


@pytest.mark.parametrize(("path", "action", "options", "state"), ALLOWED)
def test_an_allowed_transition_is_written_with_its_event_and_message(
        store: Store, make_token: Callable[[], str], time: FakeTime, path: list[str],
        action: str, options: dict[str, Any], state: str) -> None:
    _, ident = _new(store, make_token)
    _walk(store, ident, path)
    before = store.get_incident(ident)
    assert before is not None
    boxed = len(_outbox(store))
    time.now += 60
    after = store.triage(ident, action, actor="alice", **options)
    assert after["triage"] == state and after["triaged_at"] == time.wall().isoformat(
        timespec="microseconds")
    assert after["triage_reason"] == options.get("reason")
    event = after["events"][-1]
    assert (event["kind"], event["actor"]) == ("triage", "alice")
    assert event["detail"] == f"{before['triage']} -> {state}" + (
        f": {options['reason']}" if options.get("reason") else "")
    rows = _outbox(store)[boxed:]
    assert [(r["kind"], r["channel"]) for r in rows] == [("triage", "siem")]


@pytest.mark.parametrize(("path", "action", "options", "reason"), REFUSED)
def test_a_refused_action_changes_nothing(store: Store, make_token: Callable[[], str],
                                          path: list[str], action: str,
                                          options: dict[str, Any], reason: str) -> None:
    _, ident = _new(store, make_token)
    _walk(store, ident, path)
    before = store.get_incident(ident)
    boxed = len(_outbox(store))
    with pytest.raises(TriageError) as caught:
        store.triage(ident, action, actor="alice", **options)
    assert caught.value.reason == reason and str(caught.value)
    assert store.get_incident(ident) == before and len(_outbox(store)) == boxed


@pytest.mark.parametrize("ident", [999, "999", "ffff", "not-an-id"])
def test_triage_of_an_unknown_incident_is_not_found(store: Store, ident: int | str) -> None:
    with pytest.raises(TriageError) as caught:
        store.triage(ident, "ack", actor="alice")
    assert caught.value.reason == "not_found"


def test_assign_and_note_are_events_with_their_actor(
        store: Store, make_token: Callable[[], str]) -> None:
    ref, ident = _new(store, make_token)
    boxed = len(_outbox(store))
    store.triage(ref.sha256[:12], "assign", actor="alice", assignee="bob")
    leaked = make_token()
    incident = store.triage(ident, "note", actor="bob",
                            note=f"rotated; old value was {leaked}\nsee ticket 7")
    assert incident["assignee"] == "bob" and incident["triage"] == "open"
    assert [(e["kind"], e["actor"]) for e in incident["events"][-2:]] == [
        ("assigned", "alice"), ("note", "bob")]
    note = incident["events"][-1]["detail"]
    assert leaked not in note and "see ticket 7" in note and "\n" not in note
    # the assignment is notified, the note is not
    assert [(r["kind"], r["channel"]) for r in _outbox(store)[boxed:]] == [("triage", "siem")]
    store.triage(ident, "assign", actor="alice", assignee="bob")  # the same: nothing new
    assert len(_outbox(store)) == boxed + 1
    acked = store.triage(ident, "ack", actor="carol", assignee="carol", note="on it")
    assert [(e["kind"], e["actor"]) for e in acked["events"][-3:]] == [
        ("triage", "carol"), ("assigned", "carol"), ("note", "carol")]
    assert len(_outbox(store)) == boxed + 2  # one message for one action


@pytest.mark.parametrize("state", ["resolved", "ignored", "false_positive", "acknowledged"])
def test_a_new_sighting_reopens_only_a_resolved_incident(
        store: Store, make_token: Callable[[], str], router: FakeRouter, state: str) -> None:
    ref, ident = _new(store, make_token, url="https://a")
    _walk(store, ident, {"resolved": ["resolve"], "ignored": ["ignore"],
                         "false_positive": ["false_positive"],
                         "acknowledged": ["ack"]}[state])
    boxed = len(_outbox(store))
    store.record([(ref, _seen(url="https://a"))], revoke=False)  # the same sighting again
    assert store.get_incident(ident)["triage"] == state  # type: ignore[index]
    store.record([(ref, _seen("scan:repo", url="https://b")),
                  (ref, _seen("scan:repo", url="https://c"))], revoke=False)
    incident = store.get_incident(ident)
    assert incident is not None
    rows = _outbox(store)[boxed:]
    if state != "resolved":
        assert incident["triage"] == state and rows == []
        assert "reopened" not in _kinds(store, ident)
        return
    assert incident["triage"] == "open"
    assert _kinds(store, ident)[-3:] == ["received", "reopened", "received"]
    assert [(r["kind"], r["channel"]) for r in rows] == [("reopened", "security")]
    assert router.asked[-1] == NotifyEvent("reopened", "unknown", "scan:repo")


# -- the outbox -----------------------------------------------------------------------

def test_one_outbox_row_per_event_and_channel(store: Store, make_token: Callable[[], str],
                                              router: FakeRouter, time: FakeTime) -> None:
    confirmed, truncated = TokenRef.from_token(make_token()), TokenRef.from_token(
        make_token()[:-3])
    recorded = store.record([(confirmed, _seen()), (truncated, _seen("scan:repo"))],
                            revoke=True, possible={truncated.sha256})
    rows = _outbox(store)
    assert [(r["incident_id"], r["kind"], r["channel"]) for r in rows] == [
        (recorded[0].incident_id, "opened", "security"),
        (recorded[0].incident_id, "opened", "siem"),
        (recorded[1].incident_id, "possible", "security")]
    events = {e["id"]: e for e in store.dump("events")}
    for row in rows:
        assert row["idem_key"] == f"evt_{row['event_id']}_{row['channel']}"
        assert events[row["event_id"]]["kind"] == row["kind"]
        assert row["attempts"] == 0 and row["sent_at"] is None
    assert store.get_incident(recorded[1].incident_id)["confidence"] == "possible"  # type: ignore[index]
    assert "opened" not in _kinds(store, recorded[1].incident_id)
    assert router.asked[:2] == [NotifyEvent("opened", "unknown", "partner:github"),
                                NotifyEvent("possible", "unknown", "scan:repo")]
    # Revoked: revoked_at, the seconds since the first report, one message.
    time.now += 90
    entries = store.claim_batch(10, owner="t", lease=60)
    store.apply_outcomes(entries, [RevokeOutcome(
        sha256=confirmed.sha256, status=Status.REVOKED, owner="alice", token_name="ci",
        org="acme", scopes=("admin:org",))], notify_owner=True)
    incident = store.get_incident(recorded[0].incident_id)
    assert incident is not None
    assert incident["revoked_at"] == time.wall().isoformat(timespec="microseconds")
    revoked = [e for e in incident["events"] if e["kind"] == "revoked"]
    assert [float(e["detail"]) for e in revoked] == [90.0]
    assert [(r["kind"], r["channel"]) for r in _outbox(store)[3:]] == [("revoked", "siem")]
    assert router.asked[-1] == NotifyEvent("revoked", "critical", "partner:github")


def test_a_false_positive_by_format_is_opened_but_not_notified(
        store: Store, make_token: Callable[[], str]) -> None:
    ref = TokenRef.from_token("cendis_pat_" + "x" * 10)
    recorded = store.record([(ref, _seen())], revoke=True, false_positive={ref.sha256})
    assert recorded[0].status is Status.FALSE_POSITIVE
    assert _kinds(store, recorded[0].incident_id) == ["opened", "received"]
    assert _outbox(store) == []


def test_without_a_router_there_is_no_outbox_row(store_url: str,
                                                 make_token: Callable[[], str]) -> None:
    with Store.open(store_url) as store:
        _, ident = _new(store, make_token, revoke=True)
        store.triage(ident, "ack", actor="alice")
        assert _kinds(store, ident) == ["opened", "received", "queued", "triage"]
        assert store.outbox_depth() == 0 and store.outbox_oldest_age() is None


@pytest.mark.parametrize("batches", [
    [["partner:github", "partner:gitlab", "scan:fork-a"]],         # one batch of forks
    [["partner:github"], ["partner:gitlab"], ["sweep:fork-b"]],    # one batch each
])
def test_forks_reporting_one_token_make_one_message_per_channel(
        store: Store, make_token: Callable[[], str], batches: list[list[str]]) -> None:
    ref = TokenRef.from_token(make_token())
    for batch in batches:
        store.record([(ref, _seen(source, url=f"https://{source}")) for source in batch],
                     revoke=True)
    assert [(r["kind"], r["channel"]) for r in _outbox(store)] == [
        ("opened", "security"), ("opened", "siem")]


def test_forks_from_concurrent_writers_make_one_opened(
        store_url: str, time: FakeTime, make_token: Callable[[], str]) -> None:
    """Eight writers (each its own store: its own connection) record the same new tokens
    at once: each token is one incident with one ``opened`` and one row per channel."""
    Store.open(store_url).close()
    refs = [TokenRef.from_token(make_token()) for _ in range(20)]
    stores = [Store.open(store_url, now=time.wall, router=FakeRouter()) for _ in range(8)]
    start = threading.Barrier(len(stores))

    def write(index: int) -> None:
        start.wait()
        stores[index].record([(ref, _seen(f"partner:fork{index}", url=f"https://{index}"))
                              for ref in refs], revoke=True)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = _outbox(stores[0])
    opened = [e for e in stores[0].dump("events") if e["kind"] == "opened"]
    for each in stores:
        each.close()
    assert len(opened) == len(refs) and len(rows) == 2 * len(refs)
    assert len({r["idem_key"] for r in rows}) == len(rows)


def test_a_claimed_row_waits_for_its_lease(store: Store, time: FakeTime,
                                           make_token: Callable[[], str]) -> None:
    _new(store, make_token)
    first = store.claim_outbox(10, owner="a", lease=60)
    assert [e.channel for e in first] == ["security", "siem"]
    assert all(e.attempts == 0 and e.created_at == time.wall() for e in first)
    assert store.claim_outbox(10, owner="b", lease=60) == []
    assert store.claim_outbox(10, owner="a", lease=60) == []  # not twice to one owner
    time.now += 59
    assert store.claim_outbox(10, owner="b", lease=60) == []
    time.now += 2
    again = store.claim_outbox(10, owner="b", lease=60, channel="siem")
    assert [(e.id, e.idem_key) for e in again] == [(first[1].id, first[1].idem_key)]
    assert [e.channel for e in store.claim_outbox(10, owner="c", lease=60)] == ["security"]


def test_a_dead_processes_claim_is_free_at_once(store: Store,
                                                make_token: Callable[[], str]) -> None:
    import socket

    _new(store, make_token)
    gone = f"{socket.gethostname()}:99999999:dispatch"  # no such pid
    assert len(store.claim_outbox(10, owner=gone, lease=3600)) == 2
    assert len(store.claim_outbox(10, owner="other-host:1:dispatch", lease=60)) == 2


def test_a_failed_row_is_retried_after_retry_in_and_a_sent_one_never(
        store: Store, time: FakeTime, make_token: Callable[[], str]) -> None:
    _new(store, make_token)
    security, siem = store.claim_outbox(10, owner="a", lease=60)
    store.outbox_failed([security.id], error="connection refused", retry_in=30)
    store.outbox_sent([siem.id], answer="ok")
    assert store.outbox_depth() == 1
    assert store.outbox_oldest_age() == 0.0
    time.now += 29
    assert store.claim_outbox(10, owner="b", lease=60) == []
    assert store.outbox_oldest_age() == 29.0
    time.now += 2
    retried = store.claim_outbox(10, owner="b", lease=60)
    assert [(e.id, e.idem_key, e.attempts) for e in retried] == [
        (security.id, security.idem_key, 1)]
    rows = {r["id"]: r for r in _outbox(store)}
    assert rows[security.id]["last_error"] == "connection refused"
    assert rows[siem.id]["answer"] == "ok" and rows[siem.id]["sent_at"] is not None
    store.outbox_sent([security.id], answer="250 queued")
    time.now += 3600
    assert store.claim_outbox(10, owner="c", lease=60) == []
    assert store.outbox_depth() == 0 and store.outbox_oldest_age() is None


@pytest.mark.parametrize("how", ["attempt_failed", "reject"])
def test_revoke_failing_is_notified_once_after_the_routers_delay(
        store: Store, time: FakeTime, router: FakeRouter, make_token: Callable[[], str],
        how: str) -> None:
    _, ident = _new(store, make_token, revoke=True)

    def fail() -> None:
        entries = store.claim_batch(10, owner="t", lease=60)
        if how == "reject":
            store.reject(entries[0], "bad_request", "refused")
        else:
            store.attempt_failed(entries, "unavailable", answered=True)

    if how == "attempt_failed":
        time.now += 300
        fail()  # too early
        assert "revoke_failing" not in _kinds(store, ident)
        time.now += 300
        fail()
        time.now += 300
        fail()  # once only
    else:
        time.now += 600
        fail()
    kinds = _kinds(store, ident)
    assert kinds.count("revoke_failing") == 1
    failing = [r for r in _outbox(store) if r["kind"] == "revoke_failing"]
    assert [r["channel"] for r in failing] == ["security", "siem"]
    detail = next(e["detail"] for e in store.get_incident(ident)["events"]  # type: ignore[index]
                  if e["kind"] == "revoke_failing")
    assert detail.startswith("600 s since queued")


def test_revoke_failing_never_without_a_delay(store: Store, time: FakeTime,
                                              router: FakeRouter,
                                              make_token: Callable[[], str]) -> None:
    router.revoke_failing_after = None
    _, ident = _new(store, make_token, revoke=True)
    time.now += 86400
    store.attempt_failed(store.claim_batch(10, owner="t", lease=60), "down", answered=False)
    assert "revoke_failing" not in _kinds(store, ident)


def test_record_findings_marks_possible_findings(store: Store,
                                                 make_token: Callable[[], str]) -> None:
    def finding(token: str, confidence: str) -> Finding:
        ref = TokenRef.from_token(token)
        return Finding(rule_id="cendis-pat", confidence=confidence, path=".env", line=1,
                       column=1, offset=0, encoding="plain", redacted=ref.redacted,
                       secret_sha256=ref.sha256)

    recorded = record_findings(store, [finding(make_token(), "confirmed"),
                                       finding(make_token()[:-4], "possible")],
                               "scan:repo", revoke=True)
    incidents = [store.get_incident(r.incident_id) for r in recorded]
    assert [(i["confidence"], i["status"]) for i in incidents] == [  # type: ignore[index]
        ("confirmed", "pending"), ("possible", "recorded")]
    assert [r["kind"] for r in _outbox(store)] == ["opened", "opened", "possible"]


# -- reading: the export, the counts, the dashboard's pages ---------------------------

def test_the_export_pages_every_event_once_by_keyset(
        store: Store, time: FakeTime, make_token: Callable[[], str]) -> None:
    idents = []
    for _ in range(7):
        idents.append(_new(store, make_token, revoke=True)[1])
        time.now += 10
    store.triage(idents[0], "note", actor="alice", note=f"saw {make_token()}")
    every = store.dump("events")
    seen: list[dict[str, Any]] = []
    after_id = 0
    while page := store.list_events(after_id=after_id, limit=4):
        assert len(page) <= 4
        seen += page
        after_id = page[-1]["id"]
    assert [e["id"] for e in seen] == [e["id"] for e in every]
    assert set(seen[0]) == {"id", "incident_id", "sha256", "redacted", "at", "kind",
                            "detail", "actor"}
    assert seen[-1]["actor"] == "alice" and "cendis_pat_" in seen[-1]["detail"]
    assert all(len(e["sha256"]) == 64 and "…" in e["redacted"] for e in seen)
    cut = (T0 + timedelta(seconds=30)).isoformat()
    later = store.list_events(since=cut, limit=1000)
    assert later and all(e["at"] >= cut for e in later)
    assert [e["id"] for e in later] == [e["id"] for e in every if e["at"] >= cut]
    assert store.list_events(after_id=every[-1]["id"]) == []


def test_triage_counts_leave_out_what_triage_closed(
        store: Store, make_token: Callable[[], str]) -> None:
    idents = [_new(store, make_token)[1] for _ in range(5)]
    store.triage(idents[0], "ack", actor="a")
    store.triage(idents[1], "resolve", actor="a")
    store.triage(idents[2], "ignore", actor="a", reason="fixture")
    assert store.triage_counts() == [("unknown", "acknowledged", 1), ("unknown", "open", 2)]


def test_list_incidents_filters_by_triage_and_pages_by_keyset(
        store: Store, time: FakeTime, make_token: Callable[[], str]) -> None:
    for index in range(9):
        ref = TokenRef.from_token(make_token())
        # three share a last_seen: the id breaks the tie
        store.record([(ref, Sighting(source="partner:github", received_at=T0 + timedelta(
            seconds=index // 3)))], revoke=False)
    store.triage(2, "ack", actor="a")
    everything = store.list_incidents()
    pages: list[dict[str, Any]] = []
    before = None
    while page := store.list_incidents(limit=2, before=before):
        pages += page
        before = (page[-1]["last_seen"], page[-1]["id"])
    assert [r["id"] for r in pages] == [r["id"] for r in everything]
    assert [r["id"] for r in everything] == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert [r["id"] for r in store.list_incidents(triage="acknowledged")] == [2]
    assert len(store.list_incidents(triage="open", limit=3, before=(
        everything[2]["last_seen"], 7))) == 3


# -- db copy ---------------------------------------------------------------------------

def test_db_copy_carries_triage_and_the_outbox(tmp_path: Path, time: FakeTime,
                                               make_token: Callable[[], str]) -> None:
    require()
    source = Store.open(tmp_path / "src.db", now=time.wall, router=FakeRouter())
    _, first = _new(source, make_token, revoke=True)
    _, second = _new(source, make_token)
    source.triage(first, "assign", actor="alice", assignee="bob")
    source.triage(second, "resolve", actor="carol", reason="rotated")
    sent = source.claim_outbox(1, owner="a", lease=60)
    source.outbox_sent([sent[0].id], answer="ok")
    with fresh_schema() as url, Store.open(url) as destination:
        assert copy_trail(source, destination)["outbox"] == len(_outbox(source))
        assert copy_trail(source, destination)["outbox"] == 0  # idempotent
        theirs = {e["id"]: e for e in destination.dump("events")}
        ours = {e["id"]: e for e in source.dump("events")}
        for mine, copied in zip(_outbox(source), _outbox(destination), strict=True):
            assert copied["idem_key"] == mine["idem_key"]
            assert (copied["sent_at"], copied["answer"]) == (mine["sent_at"], mine["answer"])
            a, b = ours[mine["event_id"]], theirs[copied["event_id"]]
            assert (a["kind"], a["actor"], a["detail"]) == (b["kind"], b["actor"], b["detail"])
        incidents = {r["sha256"]: r for r in destination.dump("incidents")}
        for row in source.dump("incidents"):
            copied = incidents[row["sha256"]]
            for column in ("triage", "triage_reason", "assignee", "confidence",
                           "revoked_at", "triaged_at"):
                assert copied[column] == row[column]
        assert destination.outbox_depth() == source.outbox_depth()
    source.close()


def test_the_export_scrubs_what_an_older_writer_stored(tmp_path: Path,
                                                       make_token: Callable[[], str]) -> None:
    """A database written before the store scrubbed may hold a token in an event's
    detail or actor: the export never passes it on."""
    path = tmp_path / "i.db"
    with Store.open(path) as store:
        _, ident = _new(store, make_token)
    leaked = make_token()
    raw = sqlite3.connect(path)  # not the store's connection: no scrub on the way in
    raw.execute("INSERT INTO events(incident_id, at, kind, detail, actor) VALUES "
                "(?, ?, 'note', ?, ?)", [ident, T0.isoformat(), f"key {leaked}\x1b[31m",
                                         leaked])
    raw.commit()
    raw.close()
    with Store.open(path) as store:
        events = store.list_events()
    for written in tmp_path.glob("i.db*"):  # the token we wrote must not outlive the test
        written.unlink()
    assert len(events) == 3
    assert leaked not in repr(events) and "\x1b" not in events[-1]["detail"]
    assert events[-1]["detail"].startswith("key cendis_pat_")
