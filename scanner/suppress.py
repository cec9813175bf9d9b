"""Suppression: which findings a scan keeps.

A finding is dropped when it is below ``--min-confidence``, or when its fingerprint is
listed in the ``--baseline`` report or in a ``.cendis-scan-ignore`` file at a scan root
(or its git work tree). The file scan (:mod:`scanner.scan`) and the git scan
(:mod:`scanner.gitscan`) both apply it, so it lives apart from either entry point.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from scanner.errors import ConfigError
from scanner.finding import CONFIDENCE_RANK, Finding
from scanner.result import ScanOptions
from scanner.sources.files import fingerprint_root

IGNORE_FILE = ".cendis-scan-ignore"


def load_fingerprints(path: str, *, report: bool) -> set[str]:
    """Fingerprints from a JSON report (``--baseline``) or an ignore file."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if not report:
        return {ln.strip() for ln in text.splitlines() if ln.strip() and not
                ln.lstrip().startswith("#")}
    try:
        data = json.loads(text)
        return {str(f["fingerprint"]) for f in data["findings"]}
    except RecursionError:
        raise ConfigError(f"{path}: not a cendis-scan JSON report (nested too deeply)") \
            from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not a cendis-scan JSON report (need findings[].fingerprint)") \
            from None


def filter_findings(findings: list[Finding], options: ScanOptions, roots: Sequence[str]
                    ) -> tuple[list[Finding], int]:
    """Drop what is below ``min_confidence`` or listed in the baseline or an ignore file
    at a scan root (or its git work tree); returns (kept, how many were skipped).

    An entry matches on path, rule and token hash (``path:rule:hash16``, what a file or
    staged finding prints), so it also silences the same token once committed; an
    entry that starts with a commit (``<commit>:path:rule:hash16``) silences that
    commit's finding only. Both sides are scrubbed text, so a path that is not UTF-8
    or holds a newline matches as it was printed."""
    floor = CONFIDENCE_RANK[options.min_confidence]
    skip: set[str] = set()
    if options.baseline:
        skip |= load_fingerprints(options.baseline, report=True)
    for base in {fingerprint_root(r) for r in roots} | {
            os.path.abspath(r) for r in roots if os.path.isdir(r)}:
        ignore = os.path.join(base, IGNORE_FILE)
        if os.path.isfile(ignore):
            skip |= load_fingerprints(ignore, report=False)
    kept = [f for f in findings if CONFIDENCE_RANK[f.confidence] >= floor]
    out = [f for f in kept if f.fingerprint not in skip and f.fingerprint_base not in skip]
    return out, len(kept) - len(out)
