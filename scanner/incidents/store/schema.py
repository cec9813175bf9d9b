"""The SQLite schema and its migrations (the PostgreSQL ones are in :mod:`.postgres`).

Version 1 (the first release) had only these two tables and a version row:
  incidents(id, sha256 UNIQUE, redacted, first_seen, last_seen, status)
  sightings(id, incident_id, source, url, "commit", path, line, received_at)
Version 2 adds the API's answer to incidents, richer sightings (deduplicated), the
event log, the durable revoke queue, and the receiver's key cache and delivery ids.
Version 3 adds triage (state, reason, assignee, when), the confidence of the finding
that opened an incident, when it was revoked, the actor of each event, the notification
outbox, and the indexes a dashboard pages 100,000 incidents with (keyset on
``(last_seen, id)``, filtered by triage, status or severity) and an export reads events
with.

Every step runs inside the caller's write transaction (``BEGIN IMMEDIATE``): one process
migrates, the others wait for the write lock and then find the new version.
"""

from __future__ import annotations

import sqlite_utils

from scanner.incidents.store.common import (
    SCHEMA_VERSION,
    SIGHTING_KEY,
    foreign_tables,
    schema_problem,
)

_INCIDENT_V2_COLUMNS = {
    "severity": str, "owner": str, "token_name": str, "org": str, "scopes": str,
    "revoke_attempts": int, "last_error": str, "updated_at": str,
}
_SIGHTING_V2_COLUMNS = {
    "partner": str, "repository": str, "author": str, "record_type": str,
    "record_source": str, "delivery_id": str,
}


def schema_version(db: sqlite_utils.Database) -> int:
    if not db["schema_version"].exists():
        return 0
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite_utils.Database, now: str, *, allowed: bool = True) -> int:
    """Bring the database to SCHEMA_VERSION (in the caller's transaction); returns the
    version found. ``allowed`` False: only check (a wrong version raises)."""
    found = version = schema_version(db)
    problem = (foreign_tables(db.table_names()) if version == 0 else None) or \
        schema_problem(version, migrate=allowed)
    if problem is not None:
        raise problem
    if version == 0:
        _create_v1(db)
        version = 1
    if version == 1:
        _migrate_v1_to_v2(db, now)
        version = 2
    if version == 2:
        for statement in V2_TO_V3:
            db.execute(statement)
        version = 3
    assert version == SCHEMA_VERSION
    return found


def _create_v1(db: sqlite_utils.Database) -> None:
    db.table("schema_version").create({"version": int}, not_null={"version"})
    db.table("incidents").create(
        {"id": int, "sha256": str, "redacted": str, "first_seen": str, "last_seen": str,
         "status": str}, pk="id", not_null={"sha256", "redacted", "status"})
    db.execute("CREATE UNIQUE INDEX incidents_sha256 ON incidents(sha256)")
    db.table("sightings").create(
        {"id": int, "incident_id": int, "source": str, "url": str, "commit": str,
         "path": str, "line": int, "received_at": str},
        pk="id", foreign_keys=[("incident_id", "incidents", "id")])
    db.execute("INSERT INTO schema_version(version) VALUES (1)")


def _migrate_v1_to_v2(db: sqlite_utils.Database, now: str) -> None:
    for name, kind in _INCIDENT_V2_COLUMNS.items():
        db.table("incidents").add_column(name, kind)
    db.execute("UPDATE incidents SET severity = 'unknown', revoke_attempts = 0, "
               "updated_at = last_seen")
    for name, kind in _SIGHTING_V2_COLUMNS.items():
        db.table("sightings").add_column(name, kind)
    # v1 stored repeated sightings; v2 keeps one of each (they were identical).
    db.execute(f"DELETE FROM sightings WHERE id NOT IN "
               f"(SELECT min(id) FROM sightings GROUP BY {SIGHTING_KEY})")
    db.execute(f"CREATE UNIQUE INDEX sightings_identity ON sightings({SIGHTING_KEY})")
    db.execute("CREATE INDEX sightings_incident ON sightings(incident_id)")
    db.table("events").create(
        {"id": int, "incident_id": int, "at": str, "kind": str, "detail": str},
        pk="id", not_null={"incident_id", "at", "kind"},
        foreign_keys=[("incident_id", "incidents", "id")])
    db.execute("CREATE INDEX events_incident ON events(incident_id)")
    db.table("revoke_queue").create(
        {"seq": int, "sha256": str, "incident_id": int, "source": str, "url": str,
         "enqueued_at": str, "next_attempt_at": str, "attempts": int, "uncertain": int,
         "lost": int, "last_error": str, "claimed_by": str, "claimed_until": str},
        pk="seq", not_null={"sha256", "incident_id", "source", "enqueued_at"},
        defaults={"attempts": 0, "uncertain": 0, "lost": 0, "url": ""})
    db.execute("CREATE UNIQUE INDEX revoke_queue_sha256 ON revoke_queue(sha256)")
    db.table("partner_keys").create({"partner": str, "keys": str, "etag": str,
                                     "fetched_at": str}, pk="partner")
    db.table("deliveries").create({"partner": str, "delivery_id": str, "received_at": str},
                                  pk=("partner", "delivery_id"))
    db.table("probe").create({"id": int, "at": str}, pk="id")
    # Incidents a v1 database left pending were never revoked: queue them now.
    db.execute(
        "INSERT INTO revoke_queue(sha256, incident_id, source, url, enqueued_at, "
        "next_attempt_at) SELECT i.sha256, i.id, coalesce((SELECT s.source FROM sightings "
        "s WHERE s.incident_id = i.id ORDER BY s.id LIMIT 1), 'migrated'), '', ?, ? "
        "FROM incidents i WHERE i.status = 'pending'", [now, now])
    db.execute("INSERT INTO events(incident_id, at, kind, detail) SELECT id, ?, "
               "'migrated', 'schema 1 to 2' FROM incidents", [now])
    db.execute("UPDATE schema_version SET version = 2")


#: Schema 2 to 3. Existing incidents are open for triage and confirmed (only confirmed
#: tokens were ever revoked); a revoked one's ``revoked_at`` is its revoke's event.
V2_TO_V3 = (
    "ALTER TABLE incidents ADD COLUMN triage TEXT NOT NULL DEFAULT 'open'",
    "ALTER TABLE incidents ADD COLUMN triage_reason TEXT",
    "ALTER TABLE incidents ADD COLUMN assignee TEXT",
    "ALTER TABLE incidents ADD COLUMN confidence TEXT",
    "ALTER TABLE incidents ADD COLUMN revoked_at TEXT",
    "ALTER TABLE incidents ADD COLUMN triaged_at TEXT",
    "UPDATE incidents SET confidence = 'confirmed'",
    "UPDATE incidents SET revoked_at = (SELECT min(e.at) FROM events e WHERE e.incident_id = "
    "incidents.id AND e.kind IN ('revoked', 'already_revoked')) "
    "WHERE status IN ('revoked', 'already_revoked')",
    "ALTER TABLE events ADD COLUMN actor TEXT",
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY, "
    "event_id INTEGER NOT NULL REFERENCES events(id), "
    "incident_id INTEGER NOT NULL REFERENCES incidents(id), kind TEXT NOT NULL, "
    "channel TEXT NOT NULL, idem_key TEXT NOT NULL, created_at TEXT NOT NULL, "
    "next_attempt_at TEXT, attempts INTEGER NOT NULL DEFAULT 0, claimed_by TEXT, "
    "claimed_until TEXT, sent_at TEXT, last_error TEXT, answer TEXT)",
    "CREATE UNIQUE INDEX outbox_idem_key ON outbox(idem_key)",
    "CREATE INDEX outbox_unsent ON outbox(created_at) WHERE sent_at IS NULL",
    "CREATE INDEX incidents_recent ON incidents(last_seen, id)",
    "CREATE INDEX incidents_triage ON incidents(triage, last_seen, id)",
    "CREATE INDEX incidents_status ON incidents(status, last_seen, id)",
    "CREATE INDEX incidents_severity ON incidents(severity, last_seen, id)",
    "CREATE INDEX incidents_triage_severity ON incidents(triage, severity)",
    "CREATE INDEX events_at ON events(at)",
    "UPDATE schema_version SET version = 3",
)
