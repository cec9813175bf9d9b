"""Scan findings into the incident trail: what ``scan --record`` / ``git --record`` call.

A finding is already redacted and hashed at birth, so it goes into the store as a
:class:`TokenRef` without any raw token in between. Only confirmed findings of the
built-in ``cendis-pat`` rule name a token Cendis can revoke: a possible one is token-
shaped but not well-formed (truncated, mistyped), so its hash cannot name the real token,
and a user rule's secret is not a Cendis token at all. Those are recorded, never queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from scanner.incidents.models import Recorded, Sighting, TokenRef, utcnow
from scanner.incidents.store import Store

CENDIS_RULE = "cendis-pat"
T = TypeVar("T")


def revocable(finding: object) -> bool:
    """A confirmed ``cendis-pat`` finding: a well-formed v1 token, worth a revoke call."""
    return (getattr(finding, "rule_id", None) == CENDIS_RULE
            and str(getattr(finding, "confidence", "")) == "confirmed")


def queue_split(items: Iterable[tuple[object, T]], *, revoke: bool) -> tuple[list[T], list[T]]:
    """``(queued, kept)``: with ``revoke``, what goes to the revoke queue (each item whose
    finding is :func:`revocable`), and what is only recorded (the rest). The one place
    the rule is applied: a scan, a sweep and the receiver's ``/v1/findings`` all split
    their ``(finding, item)`` pairs here, so they can never disagree."""
    queued: list[T] = []
    kept: list[T] = []
    for finding, item in items:
        (queued if revoke and revocable(finding) else kept).append(item)
    return queued, kept


def record_findings(store: Store, findings: Iterable[object], source: str, *, revoke: bool,
                    now: Callable[[], datetime] = utcnow, repository: str | None = None,
                    url: str | None = None) -> list[Recorded]:
    """Record each finding as a sighting (``source`` is ``scan:<path or repo>``, seen in
    ``repository`` at ``url`` if given); with ``revoke``, queue the revocable ones.
    Results are in the order of ``findings``.

    At most two transactions: the revocable findings, then the others. The caller runs a
    :class:`~scanner.incidents.revoker.Revoker` ``drain()`` afterwards to revoke."""
    received = now()
    items = []
    for index, finding in enumerate(findings):
        sighting = Sighting.from_finding(finding, source, received)
        if repository is not None or url is not None:
            sighting = replace(sighting, repository=repository, url=url)
        items.append((finding, (index, TokenRef.from_finding(finding), sighting)))
    # A possible finding (token-shaped, not well-formed) cannot be revoked by hash: its
    # incident says so, and notifies as ``possible`` (a person must act).
    possible = {ref.sha256 for finding, (_, ref, _) in items
                if str(getattr(finding, "confidence", "")) == "possible"}
    by_index: dict[int, Recorded] = {}
    for batch, queue in zip(queue_split(items, revoke=revoke), (True, False), strict=True):
        if batch:
            recorded = store.record([(ref, sighting) for _, ref, sighting in batch],
                                    revoke=queue, possible=possible)
            by_index.update(zip((index for index, _, _ in batch), recorded, strict=True))
    return [by_index[index] for index in range(len(items))]
