"""What both backends share: the schema version, timestamps as text, the queue's claim
owners, the scrub of every bound parameter, and the one way a database URL is shown.

Timestamps are stored as ISO-8601 text in UTC with microseconds on both backends: they
compare as strings, and a trail copied from one backend to the other is byte-identical.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

from scanner.errors import ConfigError
from scanner.scrub import is_clean, scrub

#: The schema both backends are at after ``db migrate``.
SCHEMA_VERSION = 3
#: The furthest ahead a queue timestamp is set (a lease, a backoff, a Retry-After):
#: any delay, even 1e12 or inf, becomes a date that exists.
MAX_AHEAD = 366 * 86400.0
#: A queued token this close to its next_attempt_at is due (a timer may fire a tick early).
DUE_SLACK = 0.001
#: The tables of a trail, in the order a copy writes them (parents first).
TABLES = ("incidents", "sightings", "events", "revoke_queue", "partner_keys", "deliveries",
          "outbox")
#: What makes two sightings "the same sighting" (stored once), on both backends.
SIGHTING_KEY = ("incident_id, source, coalesce(url, ''), coalesce(delivery_id, ''), "
                "coalesce(\"commit\", ''), coalesce(path, '')")


class SchemaError(ConfigError):
    """The database's schema is not the one this cendis-scan runs on (newer, or older
    with migration off): one line naming ``db migrate``, exit 2."""

    reason = "schema_version"
    found = 0  # the version the database is at


class DatabaseUnavailable(ConfigError):
    """The database cannot be reached or opened (a server down, a wrong password, a
    file that is not a database): one line with the masked URL, exit 2."""

    reason = "database_unavailable"


class ForeignTables(SchemaError):
    """A database without our ``schema_version`` table but with tables of our names
    (someone else's ``incidents``): never migrated over, never read as ours."""

    reason = "foreign_tables"


def foreign_tables(present: Collection[str]) -> ForeignTables | None:
    """The one-line refusal when a database with no ``schema_version`` already has
    tables named like ours (``present``: the names it has), else None."""
    ours = [name for name in TABLES if name in {p.lower() for p in present}]
    if not ours:
        return None
    return ForeignTables("not a cendis-scan database (it has tables of its own: "
                         f"{', '.join(ours)})")


def schema_problem(found: int, *, migrate: bool) -> SchemaError | None:
    """The one-line error for a database at schema ``found``, or None when usable."""
    error = _schema_problem(found, migrate=migrate)
    if error is not None:
        error.found = found
    return error


def _schema_problem(found: int, *, migrate: bool) -> SchemaError | None:
    if found == SCHEMA_VERSION:
        return None
    if found > SCHEMA_VERSION:
        return SchemaError(f"incident database schema {found} is newer than this "
                           f"cendis-scan ({SCHEMA_VERSION}): upgrade cendis-scan (then "
                           "'cendis-scan db migrate' is a no-op)")
    if not migrate:
        return SchemaError(f"incident database schema {found}, this cendis-scan needs "
                           f"{SCHEMA_VERSION}: run 'cendis-scan db migrate'")
    return None


_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | os.PathLike[str]) -> bool:
    """A ``postgresql://`` or ``postgres://`` URL (a plain path is SQLite); the scheme
    in any case (libpq wants it lowercase: :func:`libpq_url` lowers it)."""
    text = os.fspath(target)
    return isinstance(text, str) and text.lower().startswith(_SCHEMES)


def libpq_url(target: str | os.PathLike[str]) -> str:
    """The URL as libpq accepts it: the scheme lowercased (``Postgresql://`` would be
    refused with a message quoting the whole URL, password included)."""
    text = os.fspath(target)
    for scheme in _SCHEMES:
        if text.lower().startswith(scheme):
            return scheme + text[len(scheme):]
    return text


_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)([^&#]*)")
_KV_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _secrets(text: str) -> list[str]:
    """Every string that may be the password in ``text`` (a URL or a conninfo), raw and
    percent-decoded, longest first. Generous on purpose: libpq accepts ``#``, ``?``,
    ``/``, ``@`` and spaces inside a password, so the authority's password is taken as
    everything from the first ``:`` after ``//`` to the LAST ``@`` (and to the first)."""
    from urllib.parse import unquote

    found: list[str] = []
    if is_postgres(text):
        rest = text.split("//", 1)[1]
        colon = rest.find(":")
        for at in {rest.find("@"), rest.rfind("@")}:
            if 0 <= colon < at:
                found.append(rest[colon + 1:at])
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(text)]
    found += [m.group(2).strip("'") for m in _KV_PASSWORD.finditer(text)]
    found += [unquote(value) for value in found]
    found += [part for value in found for part in value.split() if len(part) >= 4]
    return sorted({value for value in found if value}, key=len, reverse=True)


def _hide(message: str, secret: str) -> str:
    if len(secret) >= 4:
        return message.replace(secret, "***")
    # a very short password: only where it stands alone, so the message stays readable
    return re.sub(rf"(?<![\w%]){re.escape(secret)}(?![\w%])", "***", message)


def mask_error(message: str, target: str | os.PathLike[str] | None) -> str:
    """A database error message as it may be shown: the whole URL, any part of it that
    holds the password, and the password itself (raw or percent-decoded) become the
    masked URL or ``***`` wherever they appear (libpq quotes URLs and tokens of them
    in its own messages), then the scrub. Every caller showing a database error uses it."""
    text = str(message)
    if target is not None:
        url = os.fspath(target)
        shown = _masked(url)
        if url and url in text:
            text = text.replace(url, shown)
        for secret in _secrets(url):
            text = _hide(text, secret)
    return scrub(text, 1000)


def _masked(text: str) -> str:
    for secret in _secrets(text):
        text = _hide(text, secret)
    text = _QUERY_PASSWORD.sub(r"\1***", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def mask_url(target: str | os.PathLike[str]) -> str:
    """A database URL or path as it may be shown (errors, logs, the start-up line):
    the password (in the authority, a ``password=`` parameter or a conninfo string)
    becomes ``***``, and the rest goes through the scrub (tokens, control characters)."""
    return scrub(_masked(os.fspath(target)), 300)


def first_line(exc: BaseException, target: str | os.PathLike[str] | None) -> str:
    """The first line of a database error, masked (:func:`mask_error`)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return mask_error(first, target)


def scrubbed(parameters: Any) -> Any:
    """Statement parameters with every text scrubbed (tokens in any form redacted,
    control characters escaped). Idempotent, so a stored value looked up again matches."""
    values = parameters.values() if isinstance(parameters, dict) else parameters
    texts = [v for v in values if isinstance(v, str)]
    joined = "\n".join(texts)  # one check for the whole statement: nearly always clean
    if joined.count("\n") == len(texts) - 1 and is_clean(joined) or not texts:
        return parameters
    if isinstance(parameters, dict):
        return {k: scrub(v) if isinstance(v, str) else v for k, v in parameters.items()}
    return [scrub(v) if isinstance(v, str) else v for v in parameters]


def iso(moment: datetime) -> str:
    """One textual form, so timestamps compare as strings."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def after(moment: datetime, seconds: float) -> str:
    """``moment`` plus a delay, as stored text. The delay is bounded first (nan and
    negatives are 0, the rest at most MAX_AHEAD): no delay can overflow a datetime."""
    bounded = min(seconds, MAX_AHEAD) if seconds > 0 else 0.0  # nan > 0 is False
    return iso(moment + timedelta(seconds=bounded))


def since_text(since: datetime | date | str) -> str:
    if isinstance(since, datetime):
        return iso(since)
    if isinstance(since, date):
        return iso(datetime(since.year, since.month, since.day, tzinfo=UTC))
    return since_text(datetime.fromisoformat(since))


def incident_list_query(mark: str, *, status: str | None, severity: str | None,
                        since: datetime | date | str | None, limit: int | None,
                        triage: str | None = None,
                        before: tuple[str, int] | None = None) -> tuple[str, list[Any]]:
    """The one ``list_incidents`` query, newest first (by last sighting) with the number
    of sightings, for either backend: ``mark`` is its placeholder (``?`` or ``%s``).
    ``before`` (a row's ``(last_seen, id)``) is the keyset cursor of the next page: the
    indexes ``incidents(last_seen, id)`` and ``incidents(<filter>, last_seen, id)`` read
    a page of 100,000 incidents without a sort."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("severity", severity), ("triage", triage)):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(str(value))
    if since is not None:
        where.append(f"last_seen >= {mark}")
        params.append(since_text(since))
    if before is not None:
        # a row value: both backends read it as one range of the (…, last_seen, id) index
        where.append(f"(last_seen, id) < ({mark}, {mark})")
        params += [str(before[0]), int(before[1])]
    sql = ("SELECT i.*, (SELECT count(*) FROM sightings s WHERE s.incident_id = i.id) "
           "AS sightings FROM incidents i")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY last_seen DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {mark}"
        params.append(int(limit))
    return sql, params


def event_list_query(mark: str, *, since: datetime | date | str | None, after_id: int,
                     limit: int) -> tuple[str, list[Any]]:
    """The one ``list_events`` query (``incidents export``), for either backend: events
    in id order after ``after_id`` (the keyset cursor), each with its token's hash and
    redacted form only."""
    sql = ("SELECT e.id, e.incident_id, i.sha256, i.redacted, e.at, e.kind, e.detail, "
           f"e.actor FROM events e JOIN incidents i ON i.id = e.incident_id WHERE e.id > {mark}")
    params: list[Any] = [int(after_id)]
    if since is not None:
        sql += f" AND e.at >= {mark}"
        params.append(since_text(since))
    sql += f" ORDER BY e.id LIMIT {mark}"
    params.append(max(0, int(limit)))
    return sql, params


def exported(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of ``list_events`` as it may leave: its people's texts (detail, actor)
    scrubbed again, in case a database written before the store scrubbed holds a token
    there. One check for the whole page (nearly always clean); the hash, the redacted
    form, the time and the kind are the store's own."""
    for column in ("detail", "actor"):
        values = [row[column] for row in rows]
        clean = scrubbed(values)
        if clean is not values:
            for row, value in zip(rows, clean, strict=True):
                row[column] = value
    return rows


#: ``triage_counts``: open incidents (not closed by triage) by severity and state.
#: (The states not closed, named: ``incidents_triage_severity`` answers it alone.)
TRIAGE_COUNTS = ("SELECT severity, triage, count(*) FROM incidents WHERE triage IN "
                 "('open', 'acknowledged') GROUP BY triage, severity "
                 "ORDER BY severity, triage")


def claim_owner(tag: str) -> str:
    """A revoker's name in the queue's claims: this host and process, and a tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}"


def claim_alive(owner: str | None) -> bool:
    """False when the claim's process is known to be gone (same host, no such pid)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's: trust its lease
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def seconds_until(text: str | None, now: datetime) -> float:
    """Seconds from ``now`` to a stored timestamp (0 when past)."""
    if not text:
        return 0.0
    return max(0.0, (datetime.fromisoformat(text) - now).total_seconds())


def database_failure(exc: BaseException) -> str | None:
    """The reason when ``exc`` is the database's failure (locked, unreachable, I/O,
    closed, a timeout), None when it is the data's (a value the database refuses). Both
    backends; psycopg is only looked at when it is loaded."""
    import sqlite3
    import sys

    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "database_locked" if "locked" in text or "busy" in text else "database"
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.DatabaseError) and not \
            isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return "database"
    if "psycopg" in sys.modules:
        import psycopg
        import psycopg_pool

        if isinstance(exc, psycopg_pool.PoolTimeout):
            return "database_busy"
        if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
            return "database_timeout"
        if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
            return None
        if isinstance(exc, psycopg.Error | psycopg_pool.PoolClosed):
            return "database"
    if isinstance(exc, SchemaError | DatabaseUnavailable):
        return exc.reason
    return None
