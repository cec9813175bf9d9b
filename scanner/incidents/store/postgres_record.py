"""Recording a batch on PostgreSQL: set-based statements, two round trips per batch.

SQLite records item by item (each statement is a function call there). On a server
each statement is a network round trip, and a receiver's group commit or a sweep's
report holds thousands of items: so the batch goes as a few statements over the rows of
one JSON parameter each (:func:`~.postgres_queue.rows_of`), sent in pipeline mode,
with the same result as SQLite's loop: the same rows in the same order, the same
events in the same order, the same :class:`Recorded` for every item.

Round trip 1 (sent together, one wait): the upsert of the distinct tokens in order of
first appearance (so incident ids follow the batch; it returns each token's id, its
status before this batch, and ``xmax = 0`` for a row it inserted), the sightings
(joined to their incidents by hash; ``RETURNING`` names the new ones), the queue rows
(for the tokens not closed), the false positives closed and their queue rows deleted,
and the tokens set pending. What happens to a token is decided by its status before
the batch, at its first item: a later item of the same token finds it done, as on
SQLite. Round trip 2: the events, in item order, with their outbox rows (a new
incident's ``opened`` or ``possible``, a resolved one's ``reopened``), the reopened
incidents set open again, and the commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from scanner.incidents.models import (
    CLOSED,
    NotifyEvent,
    Recorded,
    Router,
    Sighting,
    Status,
    TokenRef,
    Triage,
)
from scanner.incidents.store.common import iso, scrubbed
from scanner.incidents.store.postgres_queue import json_list, json_rows, log_events, rows_of

_CLOSED = sorted(status.value for status in CLOSED)
UPSERT = (
    "INSERT INTO incidents(sha256, redacted, first_seen, last_seen, status, severity, "
    "revoke_attempts, updated_at, confidence) SELECT sha, red, f, l, st, 'unknown', 0, %s, "
    "conf FROM " + rows_of("sha text", "red text", "f text", "l text", "st text",
                           "conf text") + " u ORDER BY n "
    "ON CONFLICT (sha256) DO UPDATE SET "
    "last_seen = greatest(incidents.last_seen, excluded.last_seen), "
    "first_seen = least(incidents.first_seen, excluded.first_seen) "
    "RETURNING sha256, id, status, xmax = 0, triage, severity")
SIGHTINGS = (
    "INSERT INTO sightings(incident_id, source, partner, repository, url, \"commit\", path, "
    "line, author, record_type, record_source, delivery_id, received_at) SELECT i.id, so, "
    "pa, re, ur, co, pt, li, au, rt, rs, de, ra FROM " + rows_of(
        "sha text", "so text", "pa text", "re text", "ur text", "co text", "pt text",
        "li bigint", "au text", "rt text", "rs text", "de text", "ra text")
    + " u JOIN incidents i ON i.sha256 = u.sha ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING incident_id, source, coalesce(url, ''), "
    "coalesce(delivery_id, ''), coalesce(\"commit\", ''), coalesce(path, '')")
QUEUE = (
    "INSERT INTO revoke_queue(sha256, incident_id, source, url, enqueued_at, "
    "next_attempt_at) SELECT i.sha256, i.id, so, ur, %s, %s FROM "
    + rows_of("sha text", "so text", "ur text") + " u JOIN incidents i "
    "ON i.sha256 = u.sha WHERE i.status <> ALL(%s::text[]) ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING sha256")
_LISTED = "sha256 IN (SELECT jsonb_array_elements_text(%s::jsonb))"
PENDING = (f"UPDATE incidents SET status = 'pending', updated_at = %s WHERE {_LISTED} "
           "AND status <> ALL(%s::text[]) AND status <> 'pending'")
FALSE_POSITIVE = (
    "WITH closed AS (UPDATE incidents SET status = 'false_positive', updated_at = %s "
    f"WHERE {_LISTED} AND status <> ALL(%s::text[]) RETURNING sha256) "
    "DELETE FROM revoke_queue WHERE sha256 IN (SELECT sha256 FROM closed)")
REOPEN = ("UPDATE incidents SET triage = 'open', triaged_at = %s, updated_at = %s "
          "WHERE id = ANY(%s) AND triage = 'resolved'")


def record_batch(conn: psycopg.Connection[Any], items: Sequence[tuple[TokenRef, Sighting]],
                 now: str, *, revoke: bool, false_positive: Collection[str],
                 possible: Collection[str] = (), router: Router | None = None
                 ) -> list[Recorded]:
    """Record ``items`` in the connection's transaction (pipeline mode) and commit."""
    seen = [iso(sighting.received_at) for _, sighting in items]
    first: dict[str, int] = {}  # token -> index of its first item
    span: dict[str, list[str]] = {}  # token -> [first_seen, last_seen] in this batch
    for index, (ref, _) in enumerate(items):
        if ref.sha256 not in first:
            first[ref.sha256], span[ref.sha256] = index, [seen[index], seen[index]]
        else:
            when = span[ref.sha256]
            when[0], when[1] = min(when[0], seen[index]), max(when[1], seen[index])
    fps = [sha for sha in first if sha in false_positive]
    candidates = [] if not revoke else [sha for sha in first if sha not in false_positive]
    initial = (Status.PENDING if revoke else Status.RECORDED).value

    cur, sighting_cur, queue_cur, other = (conn.cursor() for _ in range(4))
    cur.execute(UPSERT, [now, json_rows(
        [(sha, items[i][0].redacted, *span[sha],
          Status.FALSE_POSITIVE.value if sha in false_positive else initial,
          "possible" if sha in possible else "confirmed")
         for sha, i in first.items()], 6)])
    rows = [(ref.sha256, s.source, s.partner, s.repository, s.url, s.commit, s.path, s.line,
             s.author, s.record_type, s.record_source, s.delivery_id, seen[index])
            for index, (ref, s) in enumerate(items)]
    values = [scrubbed([row[c] for row in rows]) for c in range(13)]  # as stored
    keys = list(zip(values[0], values[1], [v or "" for v in values[4]],
                    [v or "" for v in values[11]], [v or "" for v in values[5]],
                    [v or "" for v in values[6]], strict=True))
    key_first: dict[tuple[Any, ...], int] = {}
    for index, key in enumerate(keys):
        key_first.setdefault(key, index)
    distinct = list(key_first.values())
    sighting_cur.execute(SIGHTINGS, [json_rows(
        [[column[i] for column in values] for i in distinct], 13)])
    if candidates:
        queue_cur.execute(QUEUE, [now, now, json_rows(
            [(sha, items[first[sha]][1].source, items[first[sha]][1].url or "")
             for sha in candidates], 3), _CLOSED])
        other.execute(PENDING, [now, json_list(candidates), _CLOSED])
    if fps:
        other.execute(FALSE_POSITIVE, [now, json_list(fps), _CLOSED])
    upserted = cur.fetchall()
    before = {sha: (ident, Status(status), bool(inserted))
              for sha, ident, status, inserted, _, _ in upserted}
    triage = {sha: (str(state), str(severity)) for sha, _, _, _, state, severity in upserted}
    sha_of = {ident: sha for sha, (ident, _, _) in before.items()}
    new_sightings = {(sha_of[row[0]], *row[1:]) for row in sighting_cur.fetchall()}
    queued = {row[0] for row in queue_cur.fetchall()} if candidates else set()

    events: list[tuple[Any, ...]] = []
    notify: dict[int, NotifyEvent] = {}
    reopened: list[int] = []
    results: list[Recorded] = []
    for index, (ref, _) in enumerate(items):
        ident, status, inserted = before[ref.sha256]
        state, severity = triage[ref.sha256]
        source = values[1][index]
        is_first = first[ref.sha256] == index
        new_sighting = key_first[keys[index]] == index and keys[index] in new_sightings
        if inserted and is_first:  # a false positive by format: nobody is told
            kind = "possible" if ref.sha256 in possible else "opened"
            if ref.sha256 not in false_positive:
                notify[len(events)] = NotifyEvent(kind, severity, source)
            events.append((ident, now, kind, source))
        if new_sighting:
            events.append((ident, now, "received", source))
            if state == Triage.RESOLVED and ident not in reopened:  # a regression
                reopened.append(ident)
                notify[len(events)] = NotifyEvent("reopened", severity, source)
                events.append((ident, now, "reopened", f"new sighting: {source}"))
        if status not in CLOSED:
            if ref.sha256 in false_positive:
                status = Status.FALSE_POSITIVE
                if is_first:
                    events.append((ident, now, "false_positive", "not a Cendis token by format"))
            elif revoke:
                if is_first and ref.sha256 in queued:
                    events.append((ident, now, "queued", values[1][index]))
                status = Status.PENDING
        results.append(Recorded(incident_id=ident, sha256=ref.sha256, status=status,
                                new_incident=inserted and is_first, new_sighting=new_sighting))
    if reopened:
        other.execute(REOPEN, [now, now, reopened])
    log_events(cur, events, notify, router, now)
    conn.commit()
    return results

