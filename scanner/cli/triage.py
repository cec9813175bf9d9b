"""``incidents ack|assign|resolve|ignore|reopen|note`` and ``incidents export``: thin
over the store's :meth:`triage` and :meth:`list_events`.

Each triage command finds the incident as ``incidents show`` does (an id or a prefix of
the token's SHA-256), checks what it was given once, with the API's rules
(:mod:`scanner.incidents.actions`: every text scrubbed and cut before it is stored),
asks the store for the change, and says what changed in one line. Who acts is
``--by``, else the login name. Exit status: 0 done, 1 no such incident (as ``show``),
2 anything refused (a transition the incident's state does not allow, a missing
reason, a bad argument, the database).

``export`` streams the event log as JSON lines for a SIEM, page by page (keyset on the
event id), so its memory stays the same however long the log is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from scanner.cli.errors import NotFound
from scanner.cli.options import DB, typer_option
from scanner.cli.trail_args import _parse_ident, _parse_since, open_reader, open_store
from scanner.errors import ScanError, UsageError, short
from scanner.report.incidents import cell

if TYPE_CHECKING:
    from scanner.incidents.actions import Action

Db = Annotated[str | None, typer_option(DB)]
By = Annotated[str | None, typer.Option(
    "--by", metavar="NAME", help="who acts, recorded in the event log (default: your "
                                 "login name)")]
Ident = Annotated[str, typer.Argument(metavar="ID|SHA256-PREFIX")]
#: Events per page of ``export``: one query each, memory bounded by this.
EXPORT_PAGE = 1000


class Refused(ScanError):
    """The store refused the change (``transition``: not from the incident's state;
    ``missing``: a reason or an assignee it needs): one line, exit 2."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def login_name() -> str:
    """Who is running this: the login name, or ``unknown`` where there is none (a
    container without a passwd entry for its uid)."""
    import getpass

    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 - OSError, or KeyError on older Pythons
        return "unknown"


def _act(db: str | None, ident: str, action: str, *, by: str | None,
         reason: str | None = None, assignee: str | None = None,
         note: str | None = None, force: bool = False) -> None:
    """Check, change, say: one line on stdout saying what changed."""
    from scanner.incidents.actions import make_action
    from scanner.incidents.models import TriageError

    wanted = make_action(action, by=by if by is not None else login_name(), reason=reason,
                         assignee=assignee, note=note, force=force)
    key = _parse_ident(ident)
    store = open_store(db, must_exist=True)
    try:
        before = store.get_incident(key)
        if before is None:
            raise NotFound(f"no incident {short(ident, 70)!r} (an id, or 4+ hex digits of "
                           "the token's SHA-256)")
        try:
            after = store.triage(before["id"], **wanted.store_kwargs())
        except TriageError as exc:
            if exc.reason == "not_found":
                raise NotFound(str(exc)) from None
            raise Refused(exc.reason, f"incident {before['id']}: {exc}") from None
    finally:
        store.close()
    sys.stdout.write(said(before, after, wanted) + "\n")


def said(before: dict[str, Any], after: dict[str, Any], wanted: Action) -> str:
    """The one line a triage command prints: which incident, what changed, who."""
    head = f"incident {cell(after['id'])} {cell(after.get('redacted'))}:"
    if wanted.action == "assign":
        what = f"assigned to {cell(after.get('assignee'))}"
    elif wanted.action == "note":
        what = "note added"
    else:
        what = f"{cell(before.get('triage', 'open'))} -> {cell(after.get('triage'))}"
        if wanted.reason:
            what += f" ({cell(wanted.reason)})"
    return f"{head} {what}, by {cell(wanted.by)}"


def ack(ident: Ident, db: Db = None, by: By = None) -> None:
    """Acknowledge an incident: someone is on it (open -> acknowledged).

    Example: cendis-scan incidents ack 12 --by alice
    """
    _act(db, ident, "ack", by=by)


def assign(ident: Ident,
           person: Annotated[str, typer.Argument(metavar="PERSON",
                                                 help="who handles it")],
           db: Db = None, by: By = None) -> None:
    """Assign an incident to a person (its triage state stays as it is).

    Example: cendis-scan incidents assign 12 bob
    """
    _act(db, ident, "assign", by=by, assignee=person)


def resolve(ident: Ident, db: Db = None, by: By = None,
            note: Annotated[str | None, typer.Option(
                "--note", metavar="TEXT", help="what was done, kept as a note")] = None,
            force: Annotated[bool, typer.Option(
                "--force", help="resolve even though the last sweep saw the token still "
                                "in a default branch")] = False,
            ) -> None:
    """Resolve an incident (open or acknowledged -> resolved). A new sighting of its
    token later reopens it. Refused while a sweep saw the token still at the tip of a
    repository's default branch, unless --force.

    Example: cendis-scan incidents resolve 12 --note "rotated, CI secrets replaced"
    """
    _act(db, ident, "resolve", by=by, note=note, force=force)


def ignore(ident: Ident,
           reason: Annotated[str, typer.Option(
               "--reason", metavar="TEXT", help="why (required)")],
           db: Db = None, by: By = None,
           false_positive: Annotated[bool, typer.Option(
               "--false-positive", help="not a real token: false_positive, not ignored")
           ] = False) -> None:
    """Ignore an incident, with a reason (open or acknowledged -> ignored, or
    false_positive with --false-positive).

    Example: cendis-scan incidents ignore 12 --reason "test fixture" --false-positive
    """
    _act(db, ident, "false_positive" if false_positive else "ignore", by=by,
         reason=reason)


def reopen(ident: Ident, db: Db = None, by: By = None,
           reason: Annotated[str | None, typer.Option(
               "--reason", metavar="TEXT", help="why (optional)")] = None) -> None:
    """Reopen an incident (acknowledged, resolved, ignored or false_positive -> open).

    Example: cendis-scan incidents reopen 12 --reason "seen again in a fork"
    """
    _act(db, ident, "reopen", by=by, reason=reason)


def note(ident: Ident,
         text: Annotated[str, typer.Argument(metavar="TEXT", help="the note")],
         db: Db = None, by: By = None) -> None:
    """Add a note to an incident's event log (its state stays as it is).

    Example: cendis-scan incidents note 12 "owner says the token was in a CI cache"
    """
    _act(db, ident, "note", by=by, note=text)


class ExportFormat(StrEnum):
    """``incidents export --format``: one today; an enum, so a later one is an addition."""

    JSONL = "jsonl"


def export(
    db: Db = None,
    format: Annotated[ExportFormat, typer.Option(
        "--format", metavar="FORMAT", help="jsonl: one JSON object per event and line "
                                           "(the only one)")] = ExportFormat.JSONL,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DATE", help="only events at or after DATE (2026-01-31 or an "
                                        "ISO time; naive means UTC)")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", help="write to FILE, replaced whole at the end "
                                               "(default: stdout)")] = None,
) -> None:
    """Stream the event log for a SIEM: one JSON object per line (id, incident_id,
    sha256, redacted, at, kind, detail, actor), oldest first, in constant memory.

    Example: cendis-scan incidents export --format jsonl --since 2026-01-31 | siem-ingest
    """
    moment = _parse_since(since)
    store = open_reader(db)
    try:
        if output is None:
            write_events(store, sys.stdout, since=moment)
        else:
            with _replacing(output) as out:
                write_events(store, out, since=moment)
    finally:
        store.close()


@contextlib.contextmanager
def _replacing(output: str) -> Iterator[IO[str]]:
    """``output`` opened for the export: a regular file (or a new one) is written beside
    it under a fresh name and renamed over it at the end (a failed export leaves the old
    file, not half a new one); anything else (``/dev/null``, a FIFO) is written in place."""
    import stat
    import tempfile

    from scanner.atomic import _umask

    try:
        try:
            st: os.stat_result | None = os.stat(output)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(output, "w", encoding="utf-8") as f:
                yield f
            return
        target = os.path.realpath(output)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".",
                                   prefix=".cendis-scan-")
    except OSError as exc:
        raise UsageError(f"cannot write {short(output, 80)}: {exc.strerror or exc}") \
            from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_events(store: Any, out: Any, *, since: Any = None, page: int = EXPORT_PAGE
                 ) -> int:
    """Every event from ``since`` on, a page at a time, each a JSON line (strings
    scrubbed: a database written before the store scrubbed cannot leak a token here);
    flushed after each page. The number written."""
    import json

    from scanner.scrub import scrub

    after, written = 0, 0
    while True:
        rows = store.list_events(since=since, after_id=after, limit=page)
        for row in rows:
            clean = {k: scrub(v) if isinstance(v, str) else
                     (v.isoformat() if hasattr(v, "isoformat") else v)
                     for k, v in row.items()}
            out.write(json.dumps(clean, ensure_ascii=False) + "\n")
        written += len(rows)
        out.flush()
        if len(rows) < page:
            return written
        after = rows[-1]["id"]


def register(group: typer.Typer) -> None:
    """Add the triage commands and ``export`` to the ``incidents`` group."""
    for name, command in (("ack", ack), ("assign", assign), ("resolve", resolve),
                          ("ignore", ignore), ("reopen", reopen), ("note", note),
                          ("export", export)):
        group.command(name)(command)
