"""GitLab's secret detection report (``gl-secret-detection-report.json``).

A CI job that declares it under ``artifacts:reports:secret_detection`` gets its findings
shown in merge requests and the vulnerability report. The shape follows GitLab's
security report schema (version 15): ``scan`` (analyzer, scanner, type, times, status)
and ``vulnerabilities``, each with an id, a severity, a location (file, lines and the
commit, which the secret detection schema requires: ``0000000`` for a finding outside
git, as GitLab's own analyzer writes) and identifiers. Only the redacted form of a token
ever appears; no source extract is included.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.finding import Finding
    from scanner.result import ScanResult as Result

SCHEMA_VERSION = "15.0.7"
NO_COMMIT = "0000000"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def vulnerability(finding: Finding) -> dict[str, Any]:
    where = f"in commit {finding.commit[:8]}" if finding.commit else "in the scanned files"
    place = finding.path or "commit message"
    return {
        "id": hashlib.sha256(finding.fingerprint.encode()).hexdigest(),
        "name": "Cendis personal access token" if finding.rule_id == "cendis-pat"
        else f"Secret ({finding.rule_id})",
        "description": f"{finding.redacted} ({finding.confidence}) has been found {where} "
                       f"at {place}" + (f":{finding.line}" if finding.line else ""),
        "severity": "Critical" if str(finding.confidence) == "confirmed" else "High",
        "solution": "Revoke the token (cendis-scan revoke, or in Cendis), then remove it "
                    "from the code and its history.",
        "location": {
            "file": place,
            "start_line": finding.line or 1,
            "end_line": finding.line or 1,
            "commit": {"sha": finding.commit or NO_COMMIT,
                       **({"author": f"{finding.author_name} <{finding.author_email}>"}
                          if finding.author_name else {}),
                       **({"date": finding.date} if finding.date else {})},
        },
        "identifiers": [{"type": "cendis_scan_rule_id",
                         "name": f"cendis-scan rule {finding.rule_id}",
                         "value": finding.rule_id}],
    }


def render(result: Result, *, color: bool = False, now: datetime | None = None) -> str:
    from scanner import __version__

    end = now or datetime.now(UTC)
    tool = {"id": "cendis-scan", "name": "cendis-scan", "version": __version__,
            "vendor": {"name": "cendis-scan"}}
    data = {
        "version": SCHEMA_VERSION,
        "scan": {"analyzer": tool, "scanner": tool, "type": "secret_detection",
                 "start_time": _time(end - timedelta(seconds=result.seconds)),
                 "end_time": _time(end),
                 "status": "success" if result.complete else "failure",
                 **({"messages": [{"level": "warn", "value": e.message}
                                  for e in result.errors[:20]]} if result.errors else {})},
        "vulnerabilities": [vulnerability(f) for f in result.findings],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
