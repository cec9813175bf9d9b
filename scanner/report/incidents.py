"""The incident trail as a person or a program reads it: a table on the terminal, CSV,
or one incident with its sightings and events (``incidents list`` and ``show``).

Every stored or remote value goes through the one scrub every output uses, so a value
written before the store scrubbed, or a partner's URL holding control characters,
cannot forge a line or recolour the terminal.
"""

from __future__ import annotations

import sys
from typing import IO, Any

#: ``incidents list --format csv``: the columns, in order.
COLUMNS = ("id", "redacted", "status", "severity", "owner", "token_name", "org", "scopes",
           "sightings", "first_seen", "last_seen", "revoke_attempts", "last_error", "sha256")


def cell(value: Any) -> str:
    """A stored or remote value as the terminal shows it: through the one scrub every
    output uses (control characters escaped, so a partner's URL holding ``\\x1b[31m`` or
    ``\\r`` cannot recolour or forge a line; any token form redacted, in case the
    database was written before the store scrubbed)."""
    from scanner.scrub import scrub

    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(scrub(str(v)) for v in value)
    return scrub(str(value))


def write_csv(rows: list[dict[str, Any]], out: IO[str] | None = None) -> None:
    import csv

    from scanner.scrub import spreadsheet_cell

    writer = csv.writer(out or sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:  # a cell that would start a spreadsheet formula gets a leading '
        writer.writerow([spreadsheet_cell(cell(row.get(c))) for c in COLUMNS])


def write_table(rows: list[dict[str, Any]]) -> None:
    """A rich table on stdout; a pipe or a file gets every column whole."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(rows)} incident(s)", title_justify="left")
    for name in ("id", "token", "status", "severity", "owner", "org", "scopes", "seen",
                 "last seen"):
        table.add_column(name, no_wrap=name in ("token", "last seen"))
    for row in rows:  # Text: a stored "[bold]" is shown, not taken as rich markup
        table.add_row(*(Text(cell(v)) for v in (
            row["id"], row["redacted"], row["status"], row["severity"], row.get("owner"),
            row.get("org"), row["scopes"], row["sightings"],
            cell(row["last_seen"])[:19].replace("T", " "))))
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # a pipe or a file gets every column whole
    console.print(table)


def write_incident(incident: dict[str, Any], out: IO[str] | None = None) -> None:
    """One incident as text: its fields, then its sightings and its events."""
    write = (out or sys.stdout).write
    write(f"incident {cell(incident['id'])}: {cell(incident['redacted'])}\n")
    for key in ("sha256", "status", "severity", "confidence", "owner", "token_name", "org",
                "scopes", "first_seen", "last_seen", "revoke_attempts", "last_error",
                "revoked_at", "triage", "triage_reason", "assignee", "triaged_at"):
        value = cell(incident.get(key))
        if value:
            write(f"  {key}: {value}\n")
    for row in incident.get("presence") or ():  # what the last sweep of each repository saw
        checked = cell(row.get("checked_at"))[:19].replace("T", " ")
        write(f"  {cell(row.get('summary'))} (checked {checked})\n")
    write(f"sightings ({len(incident['sightings'])}):\n")
    for s in incident["sightings"]:
        where = " ".join(f"{k}={cell(s[k])}" for k in (
            "partner", "repository", "url", "commit", "path", "line", "author",
            "record_type", "record_source", "delivery_id") if s.get(k) is not None)
        write(f"  {cell(s['received_at'])}  {cell(s['source'])}  {where}\n")
    write(f"events ({len(incident['events'])}):\n")
    for e in incident["events"]:
        detail = f"  {cell(e['detail'])}" if e["detail"] else ""
        actor = f"  by {cell(e['actor'])}" if e.get("actor") else ""
        write(f"  {cell(e['at'])}  {cell(e['kind'])}{actor}{detail}\n")
