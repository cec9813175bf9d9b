"""What the store asks the notifier: which channels an event goes to.

The plan for issue 17 puts these two in :mod:`scanner.incidents.models` (the store is
given a :class:`Router`); until that branch lands they are defined here, with the same
shape, and this module becomes a re-export of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: The events a channel can be sent (``events = [...]`` in a channel's table).
EVENT_KINDS = ("opened", "possible", "revoked", "revoke_failing", "reopened", "triage")


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    kind: str          # opened | possible | revoked | revoke_failing | reopened | triage
    severity: str      # the incident's severity at that time
    source: str        # the sighting's source ("partner:github", "scan:...", "sweep:...")


class Router(Protocol):
    revoke_failing_after: float | None   # seconds since enqueue; None = never

    def channels(self, event: NotifyEvent) -> Sequence[str]: ...
