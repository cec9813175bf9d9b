"""``db copy``: a whole trail from one store to another (SQLite to PostgreSQL, or any
backend to any), idempotently.

Rows are matched by what identifies them, never by their ids, which each database
assigns itself: an incident by its token hash (its sightings, events and queue entry
follow it to the destination's id), a sighting by the identity both stores keep it
unique by, a queue entry by its token hash, a partner's keys by the partner, a delivery
by (partner, delivery id). Events have no identity of their own, so an incident's events
are compared as a multiset: only those the destination lacks are added. An outbox row
follows its event (matched the same way) and keeps its idempotency key, so a message
already sent is never sent again under a new key; a row whose key the destination
already holds is kept as it is. What the destination already holds is kept as it is.
So a second copy adds nothing, and a copy into a database that already has its own
trail merges the two.

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
_OWN_ID = {"incidents": "id", "sightings": "id", "events": "id", "revoke_queue": "seq",
           "outbox": "id"}
#: What an event is, for the multiset match: its own id aside, everything it holds.
_EVENT = ("incident_id", "at", "kind", "detail", "actor")


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
        if rows["outbox"]:
            events = _event_map(run, rows["events"], ids)
            added["outbox"] = sum(_insert(run, "outbox", {
                **row, "incident_id": ids[row["incident_id"]],
                "event_id": events[row["event_id"]]}) for row in rows["outbox"])
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


def _key(row: dict[str, Any], ids: dict[int, int]) -> tuple[Any, ...]:
    return (ids[row["incident_id"]], *(row.get(name) for name in _EVENT[1:]))


def _merge_events(run: _Run, events: list[dict[str, Any]], ids: dict[int, int]) -> int:
    """Add each (incident, at, kind, detail, actor) as many times as the source has it
    more."""
    have = Counter(tuple(r) for r in run(f"SELECT {', '.join(_EVENT)} FROM events", []))
    added = 0
    for row in events:
        key = _key(row, ids)
        if have[key] > 0:
            have[key] -= 1
            continue
        run(f"INSERT INTO events({', '.join(_EVENT)}) VALUES (?, ?, ?, ?, ?)", list(key))
        added += 1
    return added


def _event_map(run: _Run, events: list[dict[str, Any]], ids: dict[int, int]
               ) -> dict[int, int]:
    """Source event id -> destination event id: equal events matched in id order on
    both sides (after :func:`_merge_events`, the destination holds each of them)."""
    theirs: dict[tuple[Any, ...], list[int]] = {}
    for ident, *values in run(f"SELECT id, {', '.join(_EVENT)} FROM events ORDER BY id", []):
        theirs.setdefault(tuple(values), []).append(ident)
    taken: Counter[tuple[Any, ...]] = Counter()
    mapped: dict[int, int] = {}
    for row in sorted(events, key=lambda r: r["id"]):
        key = _key(row, ids)
        mapped[row["id"]] = theirs[key][taken[key]]
        taken[key] += 1
    return mapped
