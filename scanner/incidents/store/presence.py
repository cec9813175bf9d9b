"""Presence checks on both backends: is an open incident's token still at the tip of a
repository's default branch (and where), or which commit removed it.

A sweep (:mod:`scanner.sweep.presence`) works the answer out from the repository's
mirror; this module keeps it: one row per (incident, repository) in the ``presence``
table (created with schema 3), read back by ``get_incident()`` as its ``presence`` list,
each with a one-line ``summary`` that ``incidents show``, the JSON API and a refused
``resolve`` all say the same way. A row per repository, not per incident: forks carry
one token in several repositories, and removing it from one leaves it in the others.

A row that changes meaning (present -> removed, a new removing commit, a new place)
writes a ``presence`` event, so the trail says when the token went away. Resolving an
incident while a row says the token is still present is refused (``still_present``)
unless forced: the leak is not over while the token sits in the default branch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scanner.incidents.models import TriageError
from scanner.incidents.store.common import iso, scrubbed
from scanner.scrub import scrub

#: The table and its index (``sightings_repository``: a sweep looks up the incidents of
#: one repository per repository swept), created by the 2 -> 3 migration of both
#: backends (the same text: every type here means the same on both).
DDL = (
    "CREATE TABLE presence (incident_id BIGINT NOT NULL REFERENCES incidents(id), "
    "repository TEXT NOT NULL, checked_at TEXT NOT NULL, present INTEGER, ref TEXT, "
    "path TEXT, paths TEXT, tip TEXT, removed_in TEXT, removed_at TEXT, detail TEXT, "
    "PRIMARY KEY (incident_id, repository))",
    "CREATE INDEX sightings_repository ON sightings(repository)",
)
#: The most paths one row keeps (a token copied into every fixture of a monorepo).
MAX_PATHS = 50
#: Triage states whose incidents a sweep no longer checks.
DONE = ("resolved", "ignored", "false_positive")

TARGETS = ("SELECT i.id, i.sha256, p.present, p.tip, p.ref, p.removed_in, p.removed_at, "
           "p.detail FROM incidents i LEFT JOIN presence p ON p.incident_id = i.id AND "
           "p.repository = ? WHERE i.id IN (SELECT incident_id FROM sightings WHERE "
           "repository = ?) AND i.triage NOT IN ('resolved', 'ignored', 'false_positive') "
           "ORDER BY i.id")
ROWS = ("SELECT repository, checked_at, present, ref, path, paths, tip, removed_in, "
        "removed_at, detail FROM presence WHERE incident_id = ? ORDER BY repository")
PRESENT = ("SELECT repository, checked_at, present, ref, path, paths, tip, removed_in, "
           "removed_at, detail FROM presence WHERE incident_id = ? AND present = 1 "
           "ORDER BY repository")
UPSERT = ("INSERT INTO presence(incident_id, repository, checked_at, present, ref, path, "
          "paths, tip, removed_in, removed_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
          "?, ?) ON CONFLICT (incident_id, repository) DO UPDATE SET "
          "checked_at = excluded.checked_at, present = excluded.present, "
          "ref = excluded.ref, path = excluded.path, paths = excluded.paths, "
          "tip = excluded.tip, removed_in = excluded.removed_in, "
          "removed_at = excluded.removed_at, detail = excluded.detail")
_COLUMNS = ("repository", "checked_at", "present", "ref", "path", "paths", "tip",
            "removed_in", "removed_at", "detail")


@dataclass(frozen=True, slots=True)
class Presence:
    """What one check of one repository found for one token.

    ``present`` None: the check could not tell (the default branch is not mirrored);
    False with no ``removed_in``: absent, and ``detail`` says why no commit is named
    (never on that branch, or the search ran out of time)."""

    repository: str
    present: bool | None
    ref: str | None = None  # the branch checked, short ("main")
    tip: str | None = None  # the commit the branch had
    paths: tuple[str, ...] = ()  # where the token is at the tip
    removed_in: str | None = None  # the commit that removed it
    removed_at: str | None = None  # that commit's date (ISO 8601, as git gives it)
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """An open incident sighted in a repository, with what the last check found there."""

    incident_id: int
    sha256: str
    present: bool | None = None
    tip: str | None = None
    ref: str | None = None
    removed_in: str | None = None
    removed_at: str | None = None
    detail: str | None = None
    checked: bool = False  # a row exists

    def carried(self, presence: Presence) -> Presence:
        """``presence`` (absent now) with this target's earlier answer about its removal
        kept: a token gone before stays removed in the same commit."""
        return Presence(presence.repository, False, presence.ref, presence.tip, (),
                        self.removed_in, self.removed_at, self.detail)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def target_of(row: Sequence[Any]) -> Target:
    ident, sha, present, tip, ref, removed_in, removed_at, detail = row[:8]
    checked = tip is not None or present is not None or detail is not None
    return Target(int(ident), str(sha), _bool(present), tip, ref, removed_in, removed_at,
                  detail, checked)


def short_commit(commit: str | None) -> str:
    return (commit or "")[:12]


def summary(row: dict[str, Any]) -> str:
    """The one line every surface says for a presence row."""
    repo, ref = row.get("repository") or "?", row.get("ref") or "?"
    paths = row.get("paths") or ([row["path"]] if row.get("path") else [])
    if row.get("present") is True or row.get("present") == 1:
        more = f" (and {len(paths) - 1} more path(s))" if len(paths) > 1 else ""
        return f"still present in {repo} at {ref}:{paths[0] if paths else '?'}{more}"
    if row.get("present") is None:
        return f"presence in {repo} unknown: {row.get('detail') or 'not checked'}"
    if row.get("removed_in"):
        return (f"removed in {short_commit(row['removed_in'])} on {row.get('removed_at')} "
                f"({repo}, {ref})")
    return f"not present in {repo} at {ref}" + (f": {row['detail']}" if row.get("detail")
                                                else "")


def as_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as ``get_incident()`` gives it: ``present`` a bool (None: unknown),
    ``paths`` a list, and the ``summary`` line."""
    out = dict(row)
    out["present"] = _bool(out.get("present"))
    try:
        out["paths"] = json.loads(out["paths"]) if out.get("paths") else []
    except ValueError:
        out["paths"] = [out["path"]] if out.get("path") else []
    out["summary"] = summary(out)
    return out


def rows_of(cursor_rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [as_dict(dict(zip(_COLUMNS, r, strict=True))) for r in cursor_rows]


def still_present(rows: list[dict[str, Any]]) -> TriageError:
    """The refusal of a ``resolve`` while the token is still in a default branch."""
    where = "; ".join(r["summary"] for r in rows[:3])
    return TriageError("still_present", f"{where} (checked {rows[0]['checked_at'][:19]}): "
                       "remove it first, or confirm with --force (API: \"force\": true)")


Run = Callable[[str, Sequence[Any]], Any]


def write(run: Run, incident_id: int, presence: Presence, now: datetime) -> bool:
    """Upsert one row in the caller's transaction (``run(sql, params)`` with qmark
    parameters returns a cursor); a ``presence`` event when its meaning changed.
    Returns whether it changed."""
    stamp = iso(now)
    paths = [scrub(p, 500) for p in presence.paths[:MAX_PATHS]]
    old = run("SELECT present, ref, path, removed_in FROM presence WHERE incident_id = ? "
              "AND repository = ?", [incident_id, presence.repository]).fetchone()
    values = [incident_id, presence.repository, stamp,
              None if presence.present is None else int(presence.present), presence.ref,
              paths[0] if paths else None, json.dumps(paths) if paths else None,
              presence.tip, presence.removed_in, presence.removed_at, presence.detail]
    run(UPSERT, scrubbed(values))
    new = (values[3], presence.ref, values[5], presence.removed_in)
    changed = old is None or tuple(old) != tuple(scrubbed(list(new)))
    if changed:
        row = {**dict(zip(_COLUMNS, values[1:], strict=True)), "paths": paths}
        run("INSERT INTO events(incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            scrubbed([incident_id, stamp, "presence", summary(row)]))
    return changed


class SqlitePresence:
    """Presence on SQLite, mixed into :class:`~.sqlite.SqliteStore`."""

    db: Any
    _lock: Any
    _now: Callable[[], datetime]
    _write: Callable[[], Any]

    def presence_targets(self, repository: str) -> list[Target]:
        """The open incidents sighted in ``repository``, with their last check there."""
        with self._lock:
            rows = self.db.execute(TARGETS, [repository, repository]).fetchall()
        return [target_of(r) for r in rows]

    def set_presence(self, incident_id: int, presence: Presence) -> bool:
        """Keep what a check found (one transaction); True when its meaning changed."""
        with self._write() as db:
            return write(db.execute, incident_id, presence, self._now())

    def presence_of(self, incident_id: int, *, present_only: bool = False
                    ) -> list[dict[str, Any]]:
        with self._lock:
            return rows_of(self.db.execute(PRESENT if present_only else ROWS,
                                           [incident_id]).fetchall())


class PostgresPresence:
    """Presence on PostgreSQL, mixed into :class:`~.postgres.PostgresStore`."""

    _now: Callable[[], datetime]
    _conn: Callable[[], Any]
    _pipeline: Callable[[], Any]

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._pipeline() as conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), scrubbed(list(params)))
            conn.commit()
            return list(cur.fetchall())

    def presence_targets(self, repository: str) -> list[Target]:
        return [target_of(r) for r in self._fetch(TARGETS, [repository, repository])]

    def set_presence(self, incident_id: int, presence: Presence) -> bool:
        with self._conn() as conn, conn.cursor() as cur:
            def run(sql: str, params: Sequence[Any]) -> Any:
                return cur.execute(sql.replace("?", "%s"), list(params))
            return write(run, incident_id, presence, self._now())

    def presence_of(self, incident_id: int, *, present_only: bool = False
                    ) -> list[dict[str, Any]]:
        return rows_of(self._fetch(PRESENT if present_only else ROWS, [incident_id]))
