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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scanner.finding import Finding
from scanner.incidents.findings import record_findings, revocable
from scanner.incidents.models import Status
from scanner.incidents.store import Store

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
    def failed(self) -> int:
        """Revocable tokens not closed: still pending (Cendis down, our credential
        refused) or refused with an error."""
        return self.statuses.get(Status.PENDING, 0) + self.statuses.get(Status.ERROR, 0)


async def _drain(store: Store, base: str, credential: str, patience: float) -> None:
    import aiohttp

    from scanner.cendis.client import CendisClient
    from scanner.incidents.revoker import Revoker

    async with aiohttp.ClientSession() as session:
        revoker = Revoker(store, CendisClient(session, base, credential),
                          base_delay=0.5, max_delay=5.0)
        await revoker.drain(patience=patience)


def record_scan(findings: Sequence[Finding], source: str, *, db: str,
                revoke: bool = False, credential: str | None = None,
                api_url: str | None = None, patience: float = PATIENCE) -> Trail:
    """Record ``findings`` (source ``scan:<path or repo>``) in the database at ``db``;
    with ``revoke``, queue the revocable ones and revoke them now."""
    import asyncio

    store = Store.open(db)
    try:
        recorded = record_findings(store, findings, source, revoke=revoke)
        wanted = {r.sha256 for f, r in zip(findings, recorded, strict=True) if revocable(f)}
        if revoke and wanted and credential is not None and api_url is not None:
            asyncio.run(_drain(store, api_url, credential, patience))
        statuses = Counter(str(store.status_of(sha)) for sha in wanted)
    finally:
        store.close()
    return Trail(len(recorded), len({r.incident_id for r in recorded}), dict(statuses))
