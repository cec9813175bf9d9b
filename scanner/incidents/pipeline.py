"""Findings of a one-off scan into the incident trail, and revoked now if asked.

What ``scan --record`` / ``git --record`` and ``--revoke`` run: the same store and the
same durable queue as the receiver and the sweeps, so a token a scan found and a partner
reported is one incident. Revoking drains the queue through the Cendis API until it is
empty, blocked on our credential, or out of patience; what is left stays queued for the
next run (or a running ``serve``), never dropped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.finding import Finding
from scanner.incidents.findings import queue_split
from scanner.incidents.models import Router, Status

if TYPE_CHECKING:
    from scanner.incidents.store import Store

#: What runs at the end, on the open store (the CLI's notification pass).
AfterHook = Callable[["Store"], Awaitable[None]]

DEFAULT_DB = "cendis-incidents.db"
#: How long a one-off revoke keeps retrying while Cendis is down (seconds).
PATIENCE = 30.0


def db_path(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--db``, else ``CENDIS_SCAN_DB``, else ``./cendis-incidents.db``."""
    return option or environ.get("CENDIS_SCAN_DB") or DEFAULT_DB


@dataclass(frozen=True, slots=True)
class Trail:
    """What recording (and revoking) did, for the one summary line."""

    recorded: int  # findings recorded as sightings
    incidents: int  # distinct incidents they belong to
    statuses: dict[str, int]  # of the revocable ones, after revoking: status -> count

    @property
    def pending(self) -> int:
        """Still queued: Cendis was down, or our credential was refused."""
        return self.statuses.get(Status.PENDING, 0)

    @property
    def refused(self) -> int:
        """Refused by Cendis as malformed (400): recorded, not retried unchanged."""
        return self.statuses.get(Status.ERROR, 0)

    @property
    def failed(self) -> int:
        return self.pending + self.refused


async def _record(findings: Sequence[Finding], source: str, *, db: str, revoke: bool,
                  credential: str | None, api_url: str | None, patience: float,
                  router: Router | None, after: AfterHook | None) -> Trail:
    from scanner.incidents.trail import open_trail

    async with open_trail(db, cendis_url=api_url if revoke else None,
                          credential=credential, router=router) as trail:
        recorded = trail.record(findings, source, revoke=revoke)
        revocable, _ = queue_split(zip(findings, recorded, strict=True), revoke=True)
        wanted = {r.sha256 for r in revocable}
        # The whole queue, not only this scan's tokens: what an earlier run left pending
        # (Cendis down, a credential since fixed, a killed process) goes out now too.
        await trail.drain(patience)
        statuses = Counter(str(trail.status_of(sha)) for sha in wanted)
        if after is not None:
            await after(trail.store)
    return Trail(len(recorded), len({r.incident_id for r in recorded}), dict(statuses))


def record_scan(findings: Sequence[Finding], source: str, *, db: str,
                revoke: bool = False, credential: str | None = None,
                api_url: str | None = None, patience: float = PATIENCE,
                router: Router | None = None, after: AfterHook | None = None) -> Trail:
    """Record ``findings`` (source ``scan:<path or repo>``) in the database at ``db``;
    with ``revoke``, queue the revocable ones and revoke them now. ``router``: the
    channels that hear of the new events (outbox rows); ``after`` runs last on the open
    store (the CLI's one bounded notification pass)."""
    import asyncio

    return asyncio.run(_record(findings, source, db=db, revoke=revoke, credential=credential,
                               api_url=api_url, patience=patience, router=router,
                               after=after))
