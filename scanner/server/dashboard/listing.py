"""The incident list: filters from the query string, keyset pagination, the CSV export
of the same filter.

Every filter is checked against what it may be (the model's enums, dates, a hash
prefix) before it reaches the store, where it is only ever a bound parameter. A bad
value is a 400 page that says which field, never a filter silently dropped.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from scanner.incidents.models import Severity, Status, TokenRef, Triage
from scanner.incidents.store.browse import Cursor, IncidentFilter
from scanner.scrub import scrub, spreadsheet_cell
from scanner.server.dashboard.site import read, render, signed_in
from scanner.server.dashboard.state import PREFIX
from scanner.server.state import STORE
from scanner.token import PREFIX as TOKEN_PREFIX
from scanner.token import TokenCheck, check

PAGE = 50
#: Rows per store call while a CSV export streams (each call is one short read).
EXPORT_BATCH = 1000
STATUSES = tuple(s.value for s in Status)
TRIAGES = tuple(t.value for t in Triage)
SEVERITIES = tuple(s.value for s in Severity)
_HEX = re.compile(r"[0-9a-f]{4,64}", re.ASCII)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CURSOR = re.compile(r"(\d{4}-\d{2}-\d{2}T[0-9:.]{8,15}\+00:00)\|(\d{1,18})", re.ASCII)
#: The query parameters of the list (and of its CSV), in the form's order.
PARAMS = ("q", "triage", "status", "severity", "source", "repository", "from", "to")


class BadFilter(ValueError):
    """A filter field holds something it may not: ``field`` names it for the page."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Query:
    """The list's request, parsed: the store's filter, the page start, and the form's
    values as given (to fill the form and build the next-page and CSV links)."""

    where: IncidentFilter
    after: Cursor | None
    values: dict[str, str]

    def link(self, path: str = "/incidents", **extra: str) -> str:
        """This filter's URL (under the dashboard), with ``extra`` parameters."""
        params = {k: v for k, v in self.values.items() if v} | extra
        return f"{PREFIX}{path}" + (f"?{urlencode(params)}" if params else "")


def _day(text: str, field: str) -> datetime:
    if not _DAY.fullmatch(text):
        raise BadFilter(field, "a date is YYYY-MM-DD")
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise BadFilter(field, "not a date") from None


def _text(value: str, field: str, limit: int = 200) -> str:
    if len(value) > limit or not value.isprintable():
        raise BadFilter(field, f"at most {limit} printable characters")
    return value


def _search(q: str, where: IncidentFilter) -> IncidentFilter:
    """``q``: a hash prefix (4-64 hex digits) or a redacted form (``cendis_pat_ab…``,
    ``...`` read as ``…``). A whole token is handled before this (never echoed)."""
    text = q.strip()
    if _HEX.fullmatch(text.lower()):
        return replace(where, sha256_prefix=text.lower())
    if text.startswith(TOKEN_PREFIX):
        return replace(where, redacted=_text(text.replace("...", "…"), "q", 80))
    raise BadFilter("q", f"search by a hash prefix (4 to 64 hex digits) or a redacted "
                         f"token ({TOKEN_PREFIX}…)")


def parse(query: MultiMapping[str]) -> Query:
    """The list's query string as a :class:`Query`; :class:`BadFilter` names a bad field."""
    values = {name: query.get(name, "").strip() for name in PARAMS}
    where = IncidentFilter()
    if values["q"]:
        where = _search(values["q"], where)
    for name, allowed in (("triage", TRIAGES), ("status", STATUSES),
                          ("severity", SEVERITIES)):
        if values[name] and values[name] not in allowed:
            raise BadFilter(name, f"one of {', '.join(allowed)}")
    where = replace(where, triage=values["triage"] or None, status=values["status"] or None,
                    severity=values["severity"] or None,
                    source=_text(values["source"], "source") or None,
                    repository=_text(values["repository"], "repository") or None)
    if values["from"]:
        where = replace(where, seen_from=_day(values["from"], "from"))
    if values["to"]:  # the whole day named is included
        where = replace(where, seen_to=_day(values["to"], "to") + timedelta(days=1))
    after = None
    given = query.get("after", "")
    if given:
        match = _CURSOR.fullmatch(given)
        if match is None:
            raise BadFilter("after", "not a page position of this list")
        after = Cursor(match.group(1), int(match.group(2)))
    return Query(where, after, values)


def _whole_token(query: MultiMapping[str]) -> web.HTTPSeeOther | None:
    """A whole token pasted into the search box: the same search by its hash (the page
    never shows the token, and the URL from then on holds only the hash)."""
    q = query.get("q", "").strip()
    if q and check(q) is TokenCheck.VALID:
        params = {k: v for k, v in query.items() if k != "q" and k != "after"}
        params["q"] = TokenRef.from_token(q).sha256
        return web.HTTPSeeOther(f"{PREFIX}/incidents?{urlencode(params)}")
    if q and scrub(q, 10_000) != q:  # a token inside other text: never echoed
        params = {k: v for k, v in query.items() if k != "q" and k != "after"}
        return web.HTTPSeeOther(f"{PREFIX}/incidents?{urlencode(params | {'q': '-'})}")
    return None


async def incident_list(request: web.Request) -> web.Response:
    session = signed_in(request)
    redirect = _whole_token(request.query)
    if redirect is not None:
        raise redirect
    try:
        query = parse(request.query)
    except BadFilter as exc:
        values = {name: request.query.get(name, "") for name in PARAMS}
        return render(request, "list.html", status=400, session=session, rows=[],
                      query=Query(IncidentFilter(), None, values), error=str(exc),
                      error_field=exc.field, next_link=None, title="Incidents",
                      statuses=STATUSES, severities=SEVERITIES, triages=TRIAGES)
    rows = await read(request.config_dict[STORE].browse_incidents, query.where,
                       after=query.after, limit=PAGE + 1)
    next_link = None
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        last = rows[-1]
        next_link = query.link(after=f"{last['last_seen']}|{last['id']}")
    return render(request, "list.html", session=session, rows=rows, query=query,
                  error="", error_field="", next_link=next_link, title="Incidents",
                  statuses=STATUSES, severities=SEVERITIES, triages=TRIAGES)


CSV_COLUMNS = ("id", "redacted", "sha256", "severity", "triage", "assignee", "status",
               "owner", "token_name", "org", "first_seen", "last_seen", "sightings", "source",
               "repository")


async def incident_csv(request: web.Request) -> web.StreamResponse:
    """Every incident the filter matches (not only the page), streamed in keyset
    batches: each batch is one short read off the loop, never the whole trail at once."""
    signed_in(request)
    redirect = _whole_token(request.query)
    if redirect is not None:
        raise redirect
    try:
        query = parse(request.query)
    except BadFilter as exc:
        raise web.HTTPBadRequest(text=f"bad filter {exc.field}: {exc}\n") from None
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="incidents.csv"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    after = query.after
    store = request.config_dict[STORE]
    while True:
        rows = await read(store.browse_incidents, query.where, after=after,
                           limit=EXPORT_BATCH)
        for row in rows:
            # each cell scrubbed once more (a database written before the store scrubbed
            # never serves a whole token) and kept from starting a formula
            writer.writerow([spreadsheet_cell(row.get(column)) for column in CSV_COLUMNS])
        await response.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < EXPORT_BATCH:
            break
        after = Cursor(rows[-1]["last_seen"], rows[-1]["id"])
        await asyncio.sleep(0)
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/incidents", incident_list)
    app.router.add_get("/incidents.csv", incident_csv)
