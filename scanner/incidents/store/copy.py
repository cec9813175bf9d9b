"""``db copy``: a whole trail from one store to another (SQLite to PostgreSQL, or any
backend to any), idempotently.

Rows are matched by what identifies them, never by their ids, which each database
assigns itself: an incident by its token hash (its sightings, events and queue entry
follow it to the destination's id), a sighting by the identity both stores keep it
unique by, a queue entry by its token hash, a partner's keys by the partner, a delivery
by (partner, delivery id). Events have no identity of their own, so an incident's events
are compared as a multiset: only those the destination lacks are added. What the
destination already holds is kept as it is. So a second copy adds nothing, and a copy
into a database that already has its own trail merges the two.

The statements are portable SQL (``ON CONFLICT DO NOTHING``, ``RETURNING``) run through
each store's :meth:`copy_transaction`, one transaction for the whole copy: an
interrupted copy leaves the destination as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from scanner.incidents.store import Store
from scanner.incidents.store.common import TABLES

_Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
#: Each table's own id, assigned by the database: never copied.
_OWN_ID = {"incidents": "id", "sightings": "id", "events": "id", "revoke_queue": "seq"}


def copy_trail(source: Store, destination: Store) -> dict[str, int]:
    """Copy every table of :data:`TABLES`; returns the rows added to each."""
    added = dict.fromkeys(TABLES, 0)
    rows = {table: source.dump(table) for table in TABLES}
    with destination.copy_transaction() as run:
        added["incidents"] = sum(_insert(run, "incidents", row) for row in rows["incidents"])
        ids = _id_map(run, rows["incidents"])
        for table in ("sightings", "revoke_queue"):
            added[table] = sum(_insert(run, table, {**row, "incident_id": ids[
                row["incident_id"]]}) for row in rows[table])
        added["events"] = _merge_events(run, rows["events"], ids)
        for table in ("partner_keys", "deliveries"):
            added[table] = sum(_insert(run, table, row) for row in rows[table])
    return added


def _insert(run: _Run, table: str, row: dict[str, Any]) -> int:
    """Insert one row unless its identity is already there; 1 if inserted."""
    values = {k: v for k, v in row.items() if k != _OWN_ID.get(table)}
    columns = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join("?" * len(values))
    return len(run(f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
                   "ON CONFLICT DO NOTHING RETURNING 1", list(values.values())))


def _id_map(run: _Run, incidents: list[dict[str, Any]]) -> dict[int, int]:
    """Source incident id -> destination incident id, through the token hash."""
    theirs = {sha: ident for ident, sha in run("SELECT id, sha256 FROM incidents", [])}
    return {row["id"]: theirs[row["sha256"]] for row in incidents}


def _merge_events(run: _Run, events: list[dict[str, Any]], ids: dict[int, int]) -> int:
    """Add each (incident, at, kind, detail) as many times as the source has it more."""
    have = Counter(tuple(r) for r in run("SELECT incident_id, at, kind, detail FROM events",
                                         []))
    added = 0
    for row in events:
        key = (ids[row["incident_id"]], row["at"], row["kind"], row["detail"])
        if have[key] > 0:
            have[key] -= 1
            continue
        run("INSERT INTO events(incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            list(key))
        added += 1
    return added
