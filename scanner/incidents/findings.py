"""Scan findings into the incident trail: what ``scan --record`` / ``git --record`` call.

A finding is already redacted and hashed at birth, so it goes into the store as a
:class:`TokenRef` without any raw token in between. Only confirmed findings of the
built-in ``cendis-pat`` rule name a token Cendis can revoke: a possible one is token-
shaped but not well-formed (truncated, mistyped), so its hash cannot name the real token,
and a user rule's secret is not a Cendis token at all. Those are recorded, never queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from scanner.incidents.models import Recorded, Sighting, TokenRef, utcnow
from scanner.incidents.store import Store

CENDIS_RULE = "cendis-pat"


def revocable(finding: object) -> bool:
    """A confirmed ``cendis-pat`` finding: a well-formed v1 token, worth a revoke call."""
    return (getattr(finding, "rule_id", None) == CENDIS_RULE
            and str(getattr(finding, "confidence", "")) == "confirmed")


def record_findings(store: Store, findings: Iterable[object], source: str, *, revoke: bool,
                    now: Callable[[], datetime] = utcnow) -> list[Recorded]:
    """Record each finding as a sighting (``source`` is ``scan:<path or repo>``); with
    ``revoke``, queue the revocable ones. Results are in the order of ``findings``.

    At most two transactions: the revocable findings, then the others. The caller runs a
    :class:`~scanner.incidents.revoker.Revoker` ``drain()`` afterwards to revoke."""
    received = now()
    items = [(finding, TokenRef.from_finding(finding),
              Sighting.from_finding(finding, source, received)) for finding in findings]
    queued = [(ref, sighting) for finding, ref, sighting in items
              if revoke and revocable(finding)]
    kept = [(ref, sighting) for finding, ref, sighting in items
            if not (revoke and revocable(finding))]
    by_index: list[Recorded] = []
    first = iter(store.record(queued, revoke=True)) if queued else iter(())
    second = iter(store.record(kept, revoke=False)) if kept else iter(())
    for finding, _, _ in items:
        by_index.append(next(first) if revoke and revocable(finding) else next(second))
    return by_index
