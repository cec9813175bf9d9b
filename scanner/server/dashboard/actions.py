"""Triage from the incident page: acknowledge, assign, resolve, ignore, false positive,
reopen, and notes, as plain forms (POST, then a redirect back: a reload never repeats
an action).

Only a triager's session may act; a reader's forged POST (even with its own valid CSRF
token) is a 403 and writes nothing. The write goes through the receiver's writer thread
(:meth:`BatchWriter.call`), never the event loop; the store records the event with the
session's name as its actor, and refuses a transition the incident's current state does
not allow (two people acting at once: the second sees why).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from scanner.incidents.actions import ActionError, make_action
from scanner.incidents.models import Triage, TriageError
from scanner.incidents.store import Store, database_failure
from scanner.incidents.store.triage import ACTIONS, ALLOWED_FROM, NEEDS_REASON
from scanner.server.dashboard import csrf
from scanner.server.dashboard.signin import read_form
from scanner.server.dashboard.site import signed_in
from scanner.server.dashboard.state import PREFIX
from scanner.server.state import METRICS, WRITER

log = logging.getLogger(__name__)

#: Each action's button text, in the order the page shows them.
LABELS = {"ack": "Acknowledge", "resolve": "Resolve", "reopen": "Reopen",
          "ignore": "Ignore", "false_positive": "Mark false positive", "assign": "Assign",
          "note": "Add note"}
DONE = {"ack": "acknowledged", "resolve": "resolved", "reopen": "reopened",
        "ignore": "ignored", "false_positive": "marked a false positive",
        "assign": "assigned", "note": "note added"}
ERRORS = {
    "transition": "That action is not possible from the incident's current state (someone "
                  "may have acted meanwhile: this page shows the latest).",
    "missing": "That action needs its text: a reason, an assignee or the note.",
    "not_found": "There is no such incident.",
    "action": "There is no such action.",
    "bad_action": "There is no such action.",
    "too_long": "A text is too long (a reason at most 500 characters, a note 4,000).",
    "bad_field": "A field of the form is not text.",
    "still_present": "The last sweep saw the token still in a repository's default branch: "
                     "remove it there first (or resolve with the CLI's --force).",
}


def available(triage: str | None) -> list[str]:
    """The actions the incident's triage state allows, in :data:`LABELS` order."""
    try:
        state = Triage(triage or "open")
    except ValueError:
        return ["note"]
    out = []
    for action in LABELS:
        target = ACTIONS[action]
        if target is None or state in ALLOWED_FROM[target]:
            out.append(action)
    return out


def needs_reason(action: str) -> bool:
    target = ACTIONS.get(action)
    return target is not None and target in NEEDS_REASON


async def act(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await read_form(request)
    csrf.check(request, session, form)
    if session.role != "triager":
        log.warning("dashboard action refused", extra={"reason": "reader_action"})
        raise web.HTTPForbidden(text="refused: the reader role may not act\n")
    ident = request.match_info["ident"]
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        raise web.HTTPNotFound(text="not found\n")
    action = form.get("action", "")
    if action not in LABELS:
        raise web.HTTPBadRequest(text="refused: no such action\n")
    page = f"{PREFIX}/incidents/{int(ident)}"
    metrics = request.config_dict[METRICS]
    try:  # the same checks as the CLI and the JSON API: limits, required texts, scrub
        checked = make_action(action, by=session.actor, reason=form.get("reason"),
                              assignee=form.get("assignee"), note=form.get("note"))
    except ActionError as exc:
        metrics.child(metrics.triage_actions, action, exc.reason).inc()
        raise web.HTTPSeeOther(f"{page}?error={exc.reason}") from None

    def write(store: Store) -> dict[str, Any]:
        return store.triage(int(ident), **checked.store_kwargs())

    try:
        await request.config_dict[WRITER].call(write)
    except TriageError as exc:
        metrics.child(metrics.triage_actions, action, exc.reason).inc()
        raise web.HTTPSeeOther(f"{page}?error={exc.reason}") from None
    except Exception as exc:
        if database_failure(exc) is None:
            raise
        raise web.HTTPServiceUnavailable(text="the incident store is unavailable, try "
                                              "again\n", headers={"Retry-After": "5"}) from None
    metrics.child(metrics.triage_actions, action, "ok").inc()
    log.info("dashboard triage", extra={"incident_id": int(ident), "action": action})
    raise web.HTTPSeeOther(f"{page}?done={action}")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/incidents/{ident}/actions", act)
