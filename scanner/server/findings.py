"""``POST /v1/findings``: new findings from a scanner of ours (``cendis-scan sweep
--report-to``), recorded and queued for revocation exactly as partner reports are.

Authenticated with a bearer token (the receiver's ``report_token``, by default
``$CENDIS_SCAN_REPORT_TOKEN``, the same variable the sweep reads; compared in constant
time); without a configured token the route refuses everything. The body
never carries a token: a scanner's findings are hashed and redacted at birth, so it
sends ``sha256`` and ``redacted``, and a ``redacted`` that is not exactly the shape
:func:`scanner.token.redact` gives is refused. Recording goes through the app's writer
(committed before the 200) and wakes the app's revoker; ``revoke`` in the body asks for
revocation, which the receiver's own ``auto_revoke`` can still veto.

The 200 answer is the acknowledgement: ``recorded`` lists every finding's ``sha256``
(with its incident and status, in input order), ``count`` how many, ``queued`` how many
wait for the revoker. A sweep moves its state only past what is listed there.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from scanner.incidents.findings import queue_split
from scanner.incidents.models import Recorded, Sighting, TokenRef
from scanner.scrub import scrub
from scanner.server.auth import Role, authorize
from scanner.server.errors import Rejected, ReportError, Unavailable
from scanner.server.reports import storable
from scanner.server.state import METRICS, NOW, REVOKER, WRITER
from scanner.server.views import read_body
from scanner.server.writer import Unstorable

log = logging.getLogger(__name__)
PATH = "/v1/findings"
LABEL = "scan"  # the metrics' partner label for these reports
MAX_FINDINGS = 10_000
MAX_LINE = 2**31 - 1  # SQLite's integers end at 2**63; no file has 2**31 lines
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The shapes :func:`scanner.token.redact` gives (4 + 2 body characters, 2, or none):
#: anything else in ``redacted`` (a whole token, one behind a zero-width space or a
#: look-alike, free text) is refused.
_REDACTED = re.compile(r"cendis_pat_(?:[A-Za-z0-9]{4}…[A-Za-z0-9]{2}|[A-Za-z0-9]{2}…|…)")


@dataclass(frozen=True, slots=True)
class _Reported:
    """What :func:`~scanner.incidents.findings.revocable` looks at."""

    rule_id: str
    confidence: str


def add_findings_route(app: web.Application) -> None:
    app.router.add_post(PATH, findings)


def _text(item: dict[str, Any], key: str, limit: int = 1000) -> str | None:
    """A text field, scrubbed: a path or an author holding a token (a careless client)
    is stored with the token redacted, never whole."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not storable(value):
        raise Rejected("bad_finding", f"{key} must be a string of Unicode text")
    return scrub(value[:limit * 4], limit)


def _parse(body: bytes, now: Callable[[], datetime]
           ) -> tuple[bool, list[tuple[TokenRef, Sighting, _Reported]]]:
    """The body, checked whole before anything is recorded (a bad item refuses all)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested too deep
        raise Rejected("bad_json", "the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise Rejected("bad_body", "expected an object with a findings list")
    source = data.get("source")
    if not isinstance(source, str) or not source.startswith("scan:") or len(source) > 500:
        raise Rejected("bad_source", "source must be scan:<repository or path>")
    source = scrub(source)  # a token in the repository URL it names is not stored
    if len(data["findings"]) > MAX_FINDINGS:
        raise Rejected("too_many", f"at most {MAX_FINDINGS} findings per request", status=413)
    received = now()
    items = []
    for item in data["findings"]:
        if not isinstance(item, dict):
            raise Rejected("bad_finding", "each finding must be an object")
        sha = item.get("sha256")
        redacted = item.get("redacted")
        if redacted not in (None, "") and (not isinstance(redacted, str)
                                     or not _REDACTED.fullmatch(redacted)):
            raise Rejected("bad_redacted", "redacted must be a redacted token "
                           "(cendis_pat_ABCD…yz): nothing recorded")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise Rejected("bad_finding", "sha256 must be 64 lowercase hex digits")
        line = item.get("line")
        if line is not None and (isinstance(line, bool) or not isinstance(line, int)
                                 or not 0 <= line <= MAX_LINE):
            raise Rejected("bad_finding", f"line must be an integer from 0 to {MAX_LINE}")
        sighting = Sighting(source=source, received_at=received,
                            repository=_text(data, "repository", 500),
                            url=_text(data, "url", 2000), commit=_text(item, "commit", 64),
                            path=_text(item, "path"), line=line,
                            author=_text(item, "author", 300))
        kind = _Reported(_text(item, "rule_id", 100) or "", _text(item, "confidence", 20) or "")
        items.append((TokenRef(sha, redacted or f"sha256:{sha[:12]}…"), sighting, kind))
    return data.get("revoke") is True, items


async def findings(request: web.Request) -> web.Response:
    """Record the findings (one or two transactions, committed before the answer),
    wake the revoker, answer each finding's incident and status in input order."""
    app = request.app
    metrics = app[METRICS]
    try:
        authorize(request, Role.REPORTER)  # 401, or 403 for another role
        revoke, items = _parse(await read_body(request), app[NOW])
        writer = app[WRITER]
        revoke = revoke and writer.revoke  # the receiver's auto_revoke has the last word
        queued, kept = queue_split(((kind, (ref, s)) for ref, s, kind in items),
                                   revoke=revoke)
        try:
            first = await writer.record(queued) if queued else []
            second = await writer.call(lambda s: s.record(kept, revoke=False)) if kept else []
        except Unstorable as exc:  # validated above: not expected, and not an outage
            raise Rejected(exc.reason, "a finding could not be stored", status=422) from None
        except Exception:  # noqa: BLE001 - any store failure is our outage
            raise Unavailable("database", "the incident store is unavailable",
                              retry_after=5) from None
    except ReportError as exc:
        metrics.rejected.labels(LABEL, exc.reason).inc()
        return web.json_response(exc.to_json(), status=exc.status)
    metrics.child(metrics.reports, LABEL, "accepted").inc()
    metrics.child(metrics.records, LABEL, "accepted").inc(len(items))
    new = sum(1 for r in [*first, *second] if r.new_incident)
    log.info("sweep findings recorded: %d, %d new incidents, %d queued for revocation",
             len(items), new, len(queued), extra={"partner": LABEL, "records": len(items)})
    revoker = app[REVOKER]
    if queued and revoker is not None:
        revoker.wake()
    by_sha: dict[str, Recorded] = {r.sha256: r for r in [*first, *second]}
    recorded = [{"sha256": ref.sha256, "incident_id": by_sha[ref.sha256].incident_id,
                 "status": str(by_sha[ref.sha256].status),
                 "new_incident": by_sha[ref.sha256].new_incident} for ref, _, _ in items]
    # The acknowledgement: a sweep advances only past the sha256s listed here (and the
    # count), so it never mistakes some other 200 answer for "recorded".
    return web.json_response({"recorded": recorded, "count": len(recorded),
                              "queued": sum(r["status"] == "pending" for r in recorded)})
