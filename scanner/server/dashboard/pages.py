"""The overview and the incident page.

Each page's reads run in one worker thread (bounded like every reader's query, 503 when
the database does not answer), and the page is rendered from plain values: the charts
as SVG strings (:mod:`.charts`), every stored text autoescaped by the templates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from scanner.incidents.models import TRIAGE_CLOSED, Severity, Triage
from scanner.incidents.store import Store
from scanner.server.dashboard import actions, charts, present
from scanner.server.dashboard.site import read, render, signed_in
from scanner.server.dashboard.state import DASHBOARD
from scanner.server.state import NOW, STORE

SEVERITIES = tuple(s.value for s in Severity)
TRIAGES = tuple(t.value for t in Triage)
OPEN_TRIAGES = tuple(t.value for t in Triage if t not in TRIAGE_CLOSED)


def overview_data(store: Store, now: datetime) -> dict[str, Any]:
    """Everything the overview shows, read in one go (on a worker thread)."""
    counts = store.incident_counts()
    statuses = {row["status"]: row["n"] for row in store.status_counts()}
    triage = {sev: dict.fromkeys(TRIAGES, 0) for sev in SEVERITIES}
    for row in counts:
        severity = row["severity"] or "unknown"
        triage.setdefault(severity, dict.fromkeys(TRIAGES, 0))
        triage[severity][row["triage"] or "open"] = \
            triage[severity].get(row["triage"] or "open", 0) + row["n"]
    open_by_severity = {sev: sum(triage[sev].get(t, 0) for t in OPEN_TRIAGES)
                        for sev in triage}
    per_day = {row["day"]: row["n"] for row in store.incidents_per_day(now - timedelta(days=30))}
    week_start, day_start = now - timedelta(days=7), now - timedelta(days=1)
    week, day = [], []
    for row in store.revoke_times(week_start):
        seconds = present.seconds_between(row["first_seen"], row["revoked_at"])
        if seconds is None:
            continue
        week.append(seconds)
        if str(row["revoked_at"]) >= day_start.isoformat():
            day.append(seconds)
    return {
        "statuses": statuses, "open_by_severity": open_by_severity,
        "triages": TRIAGES, "triage": triage,
        "outbox_depth": store.outbox_depth(), "outbox_oldest": store.outbox_oldest_age(),
        "total": sum(row["n"] for row in counts),
        "queue_depth": store.queue_depth(), "queue_oldest": store.oldest_pending_age(),
        "per_day": charts.per_day(per_day, now.date()),
        "revoke": {"day": (len(day), present.percentile(day, 50), present.percentile(day, 99)),
                   "week": (len(week), present.percentile(week, 50),
                            present.percentile(week, 99))},
        "histogram": charts.histogram(week),
    }


#: Seconds the overview's numbers are reused (its counts scan the incidents table).
OVERVIEW_TTL = 10.0
#: How long the overview's read may take before a 503 (a big trail's counts are a scan).
OVERVIEW_WAIT = 15.0


async def overview(request: web.Request) -> web.Response:
    session = signed_in(request)
    dash = request.app[DASHBOARD]
    now = request.config_dict[NOW]()
    if dash.overview is not None and dash.monotonic() - dash.overview[0] < OVERVIEW_TTL:
        data = dash.overview[1]
    else:
        data = await read(overview_data, request.config_dict[STORE], now,
                                  wait=OVERVIEW_WAIT)
        dash.overview = (dash.monotonic(), data)
    per_day_chart = charts.bar_chart("per-day", "Incidents per day, last 30 days",
                                     data["per_day"], label_every=5)
    revoke_chart = charts.bar_chart("to-revoke", "Time from first report to revoke, "
                                    "last 7 days", data["histogram"])
    return render(request, "overview.html", session=session, data=data,
                  per_day_chart=per_day_chart, revoke_chart=revoke_chart, title="Overview",
                  now=now)


async def incident_page(request: web.Request) -> web.Response:
    session = signed_in(request)
    ident = request.match_info["ident"]
    found = None
    if ident.isascii() and ident.isdigit() and len(ident) <= 18:
        found = await read(request.config_dict[STORE].get_incident, int(ident))
    if found is None:
        return render(request, "error.html", status=404, session=session, title="Not found",
                      message="There is no incident with this number.")
    sent = await read(request.config_dict[STORE].incident_notifications, found["id"])
    done = actions.DONE.get(request.query.get("done", ""))
    error = actions.ERRORS.get(request.query.get("error", ""))
    return render(request, "incident.html", session=session, incident=found,
                  title=f"Incident {found['id']}", notifications=sent, done=done, error=error,
                  actions=actions.available(found.get("triage")), labels=actions.LABELS,
                  needs_reason=actions.needs_reason)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/incidents/{ident}", incident_page)
