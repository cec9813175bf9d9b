"""The text report, for people: where, what, and what to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.finding import Finding
    from scanner.result import ScanResult as Result

ROTATE = (
    "revoke it in Cendis now, "
    "create a replacement with the same scopes, update every place that used it "
    "(CI secrets, CENDIS_TOKEN), then remove it from the file"
)
POSSIBLE = (
    "token-shaped but not a valid v1 token (truncated, mistyped or a newer format): "
    "treat it as live until you know otherwise"
)


def where(f: Finding) -> str:
    commit = f"{f.commit[:12]} " if f.commit else ""
    if f.location == "path":
        return f"{commit}{f.path} (in the name)"
    if f.location == "link":
        return f"{f.path} (in the link's target)"
    if f.location == "ref":
        return f"{f.path} (ref name)"
    if f.location in ("author", "committer", "tagger"):
        return f"{commit}{f.location} identity"
    if f.line is None:
        place = f"{f.path}:offset {f.offset}" if f.path else f"offset {f.offset}"
    else:
        place = f"{f.path}:{f.line}:{f.column}"
    if f.commit:
        message = "tag message" if f.location == "tag-message" else "commit message"
        place = f"{f.commit[:12]} {place if f.path else message}"
    return place


def render(result: Result, *, color: bool = False, advice: bool = True) -> str:
    """The findings, then what to do (``advice``; a blocking hook says it itself)."""
    bold, red, yellow, dim, reset = (
        ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m") if color else ("",) * 5
    )
    lines = []
    for f in result.findings:
        tint = red if f.confidence == "confirmed" else yellow
        extra = []
        if f.variable:
            extra.append(f"in {f.variable}")
        if f.encoding != "plain":
            extra.append(f"{f.encoding}-encoded")
        if f.commit:
            extra.append(f"by {f.author_name} <{f.author_email}> on {f.date}")
        detail = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"{bold}{where(f)}{reset}: {tint}{f.confidence}{reset} {f.rule_id} "
                     f"{f.redacted}{detail}")
        if f.confidence == "possible":
            lines.append(f"  {dim}{POSSIBLE}{reset}")
        if f.note:
            lines.append(f"  {dim}note: {f.note}{reset}")
        lines.append(f"  {dim}fingerprint: {f.fingerprint}{reset}")
    if result.findings and advice:
        lines.append("")
        lines.append(f"What to do (Cendis's rotation steps): {ROTATE}.")
    return "\n".join(lines) + ("\n" if lines else "")


def summary_line(result: Result) -> str:
    confirmed = sum(f.confidence == "confirmed" for f in result.findings)
    n = len(result.findings)
    parts = [f"{n} finding{'s' if n != 1 else ''} ({confirmed} confirmed, "
             f"{n - confirmed} possible)"]
    if result.suppressed:
        parts.append(f"{result.suppressed} suppressed by inline marker")
    if result.ignored:
        parts.append(f"{result.ignored} in baseline or ignore file")
    mb = result.bytes / 1e6
    return (f"cendis-scan: {', '.join(parts)}; {result.files} file"
            f"{'s' if result.files != 1 else ''}, {mb:.1f} MB in {result.seconds:.2f} s")
