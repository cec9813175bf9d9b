"""A sweep's report as a person reads it (``cendis-scan sweep``): one row per repository
or log table, then the new findings, placed as ``git`` and ``scan`` place them. The
JSON form is :meth:`scanner.sweep.run.SweepReport.to_dict`."""

from __future__ import annotations

import sys
from typing import Any


def human_size(nbytes: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"


def _revoked(s: Any) -> str:
    """What is true of revocation: revoked here, or (``--report-to``) revoked when the
    receiver answered plus how many it queued for its own revoker."""
    if s.revoked_by == "receiver" and s.queued:
        return f"{s.revoked} (+{s.queued} queued at receiver)"
    return str(s.revoked)


def write_table(report: Any) -> None:
    """The summary (one row per repository or log table), then the new findings; the
    problems on stderr."""
    from rich.console import Console
    from rich.table import Table

    from scanner.report.text import where

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200
    shard = f" (shard {report.shard[0]}/{report.shard[1]})" if report.shard else ""
    table = Table(title=f"sweep{shard}: {report.new_findings} new finding(s) in "
                        f"{report.seconds:.1f} s", title_justify="left")
    for name in ("source", "scanned", "new findings", "revoked", "errors", "seconds"):
        table.add_column(name, justify="left" if name in ("source", "errors") else "right")
    for s in report.sources:
        if s.kind == "org":
            d = s.discovery or {}
            scanned = (f"{d.get('repositories', 0)} repositories"
                       + (" (last known list)" if d.get("stale") else
                          f" ({d.get('requests', 0)} requests, "
                          f"{d.get('not_modified', 0)} unchanged)"))
            table.add_row(s.name, scanned, "", "", "; ".join(s.errors), f"{s.seconds:.2f}")
            continue
        if s.kind == "repo":
            scanned = (f"{s.commits} commit{'s' if s.commits != 1 else ''}"
                       + (" (history)" if s.first else ""))
        else:
            scanned = (f"{human_size(s.bytes)} in {s.files} "
                       f"file{'s' if s.files != 1 else ''}")
        errors = "skipped (shutdown)" if s.skipped else "; ".join(s.errors)
        table.add_row(s.name, scanned, str(len(s.findings)), _revoked(s), errors,
                      f"{s.seconds:.2f}")
    console.print(table)
    for s in report.sources:  # what discovery changed, said once
        d = s.discovery or {}
        for name in d.get("new", ()):
            console.print(f"  {s.name}: new repository {name}", markup=False)
        for move in d.get("renamed", ()):
            console.print(f"  {s.name}: renamed {move['from']} -> {move['to']} (history "
                          f"kept)", markup=False)
        for gone in d.get("retired", ()):
            console.print(f"  {s.name}: retired {gone['name']} ({gone['why']}; its state "
                          f"is kept)", markup=False)
    for s in report.sources:
        for f in s.findings:  # placed as 'cendis-scan git' and 'scan' place them
            console.print(f"  {s.name} {where(f)}  {f.redacted}  ({f.confidence})",
                          soft_wrap=True, markup=False)
    for problem in report.problems:
        sys.stderr.write(f"cendis-scan: error: {problem}\n")
