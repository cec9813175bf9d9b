"""Triage and notification rules both backends share: which triage actions are allowed
from which state, what each writes, and which events go to the outbox.

The backends only run the statements: a triage action is read (the incident, locked),
planned here (:func:`plan_triage`), then written with its events in one transaction;
an event the router names channels for gets one outbox row per channel in that same
transaction (:func:`outbox_rows`), so a crash can never keep the event and lose its
message, or send a message for an event that was rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scanner.incidents.models import NotifyEvent, Router, Triage, TriageError
from scanner.scrub import scrub

#: action -> the triage state it moves to (None: no state change).
ACTIONS: dict[str, Triage | None] = {
    "ack": Triage.ACKNOWLEDGED, "resolve": Triage.RESOLVED, "ignore": Triage.IGNORED,
    "false_positive": Triage.FALSE_POSITIVE, "reopen": Triage.OPEN, "assign": None,
    "note": None}
#: target state -> the states it may be reached from (without ``force``).
ALLOWED_FROM: dict[Triage, frozenset[Triage]] = {
    Triage.ACKNOWLEDGED: frozenset({Triage.OPEN}),
    Triage.RESOLVED: frozenset({Triage.OPEN, Triage.ACKNOWLEDGED}),
    Triage.FALSE_POSITIVE: frozenset({Triage.OPEN, Triage.ACKNOWLEDGED}),
    Triage.IGNORED: frozenset({Triage.OPEN, Triage.ACKNOWLEDGED}),
    Triage.OPEN: frozenset({Triage.ACKNOWLEDGED, Triage.RESOLVED, Triage.FALSE_POSITIVE,
                            Triage.IGNORED}),
}
#: A decision nobody can check later without a reason.
NEEDS_REASON = frozenset({Triage.IGNORED, Triage.FALSE_POSITIVE})
#: How long a person's text may be (the rest is cut, marked with an ellipsis).
TEXT_LIMITS = {"reason": 500, "note": 4000, "assignee": 200, "actor": 200}


@dataclass
class TriagePlan:
    """What one triage action writes: the incident's columns, then its events, each
    ``(kind, detail, notified)``; at most one event of an action is notified."""

    updates: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str | None, bool]] = field(default_factory=list)


def clean(name: str, value: str | None) -> str | None:
    """A person's text as stored: scrubbed, cut to its limit, None when blank."""
    if value is None or not str(value).strip():
        return None
    return scrub(str(value).strip(), TEXT_LIMITS[name])


def plan_triage(action: str, current: str, current_assignee: str | None, *,
                reason: str | None, assignee: str | None, note: str | None, force: bool,
                now: str) -> TriagePlan:
    """The writes of ``action`` on an incident in triage state ``current``; raises
    :class:`TriageError` for an unknown action, a transition not allowed, or a
    reason/assignee/note the action needs but lacks."""
    if action not in ACTIONS:
        raise TriageError("action", f"unknown triage action {scrub(action, 40)!r} (one of: "
                          f"{', '.join(ACTIONS)})")
    reason, assignee, note = clean("reason", reason), clean("assignee", assignee), \
        clean("note", note)
    plan = TriagePlan()
    target = ACTIONS[action]
    if action == "note":
        if note is None:
            raise TriageError("missing", "a note needs its text")
        plan.events.append(("note", note, False))
        return plan
    if action == "assign" and assignee is None:
        raise TriageError("missing", "assign needs an assignee")
    if target is not None:
        state = Triage(current)
        if target in NEEDS_REASON and reason is None:
            raise TriageError("missing", f"{action} needs a reason")
        if state is target or (state not in ALLOWED_FROM[target] and not force):
            raise TriageError("transition", f"cannot {action} an incident that is "
                              f"{state.value}")
        detail = f"{state.value} -> {target.value}" + (f": {reason}" if reason else "")
        plan.updates.update(triage=target.value, triage_reason=reason, triaged_at=now)
        plan.events.append(("triage", detail, True))
    if assignee is not None and assignee != current_assignee:
        plan.updates.update(assignee=assignee, triaged_at=now)
        plan.events.append(("assigned", assignee, not plan.events))
    if note is not None:
        plan.events.append(("note", note, False))
    return plan


def outbox_rows(router: Router | None, event: NotifyEvent, event_id: int,
                incident_id: int, now: str) -> list[tuple[Any, ...]]:
    """The outbox rows of one stored event: one per channel the router names (none
    without a router), each ``(event_id, incident_id, kind, channel, idem_key,
    created_at, next_attempt_at)``. The idempotency key names the event and the channel,
    so a retry after a crash mid-send reuses it."""
    if router is None:
        return []
    rows: list[tuple[Any, ...]] = []
    for channel in dict.fromkeys(router.channels(event)):
        rows.append((event_id, incident_id, event.kind, channel,
                     f"evt_{event_id}_{channel}", now, now))
    return rows


def channels(router: Router | None, event: NotifyEvent) -> Sequence[str]:
    """The distinct channels the router names for ``event`` (none without a router)."""
    return list(dict.fromkeys(router.channels(event))) if router is not None else []


def failing_for(router: Router | None, enqueued_at: str | None, now: datetime) -> float | None:
    """Seconds a token has waited for its revoke when that is at least the router's
    ``revoke_failing_after`` (so a ``revoke_failing`` event is due), else None."""
    if router is None or router.revoke_failing_after is None or not enqueued_at:
        return None
    waited = (now - datetime.fromisoformat(enqueued_at)).total_seconds()
    return waited if waited >= router.revoke_failing_after else None


def seconds_between(start: str | None, end: str) -> float | None:
    """Seconds from one stored timestamp to another (the leak-to-revoke time)."""
    if not start:
        return None
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start))
               .total_seconds())
