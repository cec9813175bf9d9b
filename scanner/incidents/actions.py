"""A triage action as a person asks for it (``incidents ack|assign|...`` or
``POST /incidents/{id}/actions``), checked and cleaned once for both surfaces before
the store's :meth:`triage` sees it.

Every text a person types here (who acts, a reason, an assignee, a note) is untrusted:
someone may paste a token into a note, or put a CR/LF or a terminal escape into ``--by``
to forge a line of ``incidents show`` or of a SIEM's log. Each is cut to a length, then
scrubbed (tokens redacted in every form, control characters escaped) before it is
stored, so the event log never holds one whole and every reader gets the same clean
text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanner.errors import UsageError
from scanner.scrub import scrub

#: What ``action`` may be (the store's :meth:`triage` takes the same words).
ACTIONS = ("ack", "assign", "resolve", "ignore", "false_positive", "reopen", "note")
#: The most characters each text may have as given (longer is refused: a person who
#: pastes a whole log into a note should know it was not stored).
LIMITS: Mapping[str, int] = {"by": 200, "reason": 500, "assignee": 200, "note": 4000}
#: The texts each action cannot do without.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "assign": ("assignee",), "ignore": ("reason",), "false_positive": ("reason",),
    "note": ("note",)}
_NEEDS = {"assignee": "an assignee", "reason": "a reason", "note": "the note's text"}


class ActionError(UsageError):
    """A triage request that cannot be done as given; ``reason`` is a metric label
    (``bad_action``, ``bad_field``, ``too_long``, ``missing``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Action:
    """A checked action: every text scrubbed and within its limit."""

    action: str
    by: str
    reason: str | None = None
    assignee: str | None = None
    note: str | None = None
    #: Confirmed: resolve although a sweep saw the token still in a default branch.
    force: bool = False

    def store_kwargs(self) -> dict[str, Any]:
        """The keywords of ``Store.triage`` after the incident: what to do, and who."""
        return {"action": self.action, "actor": self.by, "reason": self.reason,
                "assignee": self.assignee, "note": self.note, "force": self.force}


def clean_text(name: str, value: object) -> str | None:
    """One text field: None or blank is None; anything but a string is
    :class:`ActionError`; longer than its limit too; else stripped and scrubbed."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ActionError("bad_field", f"{name} must be a string")
    text = value.strip()
    if not text:
        return None
    limit = LIMITS[name]
    if len(text) > limit:
        raise ActionError("too_long", f"{name} is over {limit} characters")
    return scrub(text, limit)  # escapes may lengthen it: cut, never over the limit


def make_action(action: object, *, by: object, reason: object = None,
                assignee: object = None, note: object = None,
                force: object = False) -> Action:
    """A checked :class:`Action`, or :class:`ActionError` saying what is wrong.
    ``force`` (a JSON ``true``, not ``"yes"`` or ``1``) confirms a ``resolve`` the
    store would refuse because the token is still present."""
    if not isinstance(action, str) or action not in ACTIONS:
        raise ActionError("bad_action", "action must be one of " + ", ".join(ACTIONS))
    if not isinstance(force, bool):
        raise ActionError("bad_field", "force must be true or false")
    if force and action != "resolve":
        raise ActionError("bad_field", "force confirms a resolve only")
    texts = {"by": clean_text("by", by), "reason": clean_text("reason", reason),
             "assignee": clean_text("assignee", assignee), "note": clean_text("note", note)}
    if texts["by"] is None:
        raise ActionError("missing", "by (who acts) is required")
    for name in REQUIRED.get(action, ()):
        if texts[name] is None:
            raise ActionError("missing", f"{action} needs {_NEEDS[name]}")
    return Action(action, texts["by"] or "", texts["reason"], texts["assignee"],
                  texts["note"], force)


def action_from_json(data: object) -> Action:
    """The body of ``POST /incidents/{id}/actions``: an object with ``action`` and
    ``by``, and ``reason``/``assignee``/``note`` as the action needs; any other key is
    refused (a typo must not be silently dropped)."""
    if not isinstance(data, dict):
        raise ActionError("bad_body", "expected a JSON object")
    unknown = sorted(set(data) - {"action", "force", *LIMITS})
    if unknown:
        raise ActionError("unknown_field", f"unknown field {scrub(str(unknown[0]), 40)!r}")
    return make_action(data.get("action"), by=data.get("by"), reason=data.get("reason"),
                       assignee=data.get("assignee"), note=data.get("note"),
                       force=data.get("force", False))


__all__ = ["ACTIONS", "LIMITS", "REQUIRED", "Action", "ActionError", "action_from_json",
           "clean_text", "make_action"]
