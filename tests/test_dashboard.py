"""The dashboard over real HTTP (aiohttp_client on loopback) and a real SQLite trail:
headers, sessions, CSRF, the sign-in limit, escaping, filters, pages and the CSV."""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from dashtools import Clock, bearer, config, csrf_of, make_app, parse, seed, sign_in

from scanner.incidents.models import Sighting, TokenRef
from scanner.incidents.trail import open_store
from scanner.server.dashboard.present import link_url
from scanner.server.dashboard.site import HEADERS
from scanner.token import generate

PAGES = ["/dashboard/", "/dashboard/incidents", "/dashboard/incidents/1",
         "/dashboard/incidents.csv", "/dashboard/incidents?severity=critical"]


def listed(html: str) -> list[int]:
    """The incident ids of a list page, in its order."""
    return [int(x) for x in re.findall(r'<td><a href="/dashboard/incidents/(\d+)">\d+</a>', html)]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(18)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """120 incidents, seeded once per module (each test gets its own copy)."""
    db = tmp_path_factory.mktemp("template") / "trail.db"
    return db, seed(db, random.Random(18), 120)


@pytest.fixture
def trail(tmp_path: Path, template: tuple[Path, Any]) -> tuple[Path, Any]:
    db = tmp_path / "trail.db"
    shutil.copyfile(template[0], db)  # closed: everything is in the main file
    return db, template[1]


@pytest.fixture
def tokens() -> dict[str, str]:
    return {"reader": bearer(), "triager": bearer()}


@pytest.fixture
async def client(aiohttp_client: Any, trail: tuple[Path, Any], tokens: dict[str, str]
                 ) -> Any:
    clock = Clock()
    app = make_app(trail[0], config(reader_token=tokens["reader"],
                                    triager_token=tokens["triager"]), clock)
    c = await aiohttp_client(app)
    c.clock = clock
    return c


@pytest.mark.parametrize("path", [*PAGES, "/dashboard/signin", "/dashboard/nope",
                                  "/dashboard/static/dashboard.css"])
async def test_every_response_has_the_security_headers(client: Any, tokens: dict[str, str],
                                                       path: str) -> None:
    for signed in (False, True):
        if signed:
            await sign_in(client, tokens["reader"])
        resp = await client.get(path, allow_redirects=False)
        for name, value in HEADERS.items():
            assert resp.headers.get(name) == value, (path, name)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        if "static" not in path:
            assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", PAGES)
async def test_pages_need_a_session(client: Any, path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/signin"
    resp = await client.get(path, allow_redirects=False, cookies={"cendis_session": "x" * 43})
    assert resp.status == 303


async def test_sign_in_gives_a_fresh_strict_httponly_cookie(client: Any,
                                                            tokens: dict[str, str]) -> None:
    page = await client.get("/dashboard/signin")
    before = page.cookies["cendis_session"].value
    resp = await client.post("/dashboard/signin", allow_redirects=False, data={
        "csrf": csrf_of(await page.text()), "name": "alice", "token": tokens["reader"]})
    assert resp.status == 303
    cookie = resp.cookies["cendis_session"]
    assert cookie.value != before  # a new id at sign-in: no session fixation
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/dashboard" and int(cookie["max-age"]) == 8 * 3600
    assert not cookie["secure"]  # plain http on loopback
    assert tokens["reader"] not in str(resp.headers)


async def test_secure_cookie_behind_a_tls_proxy(aiohttp_client: Any, trail: Any,
                                                tokens: dict[str, str]) -> None:
    app = make_app(trail[0], config(reader_token=tokens["reader"],
                                    dashboard_secure_cookie=True), Clock())
    client = await aiohttp_client(app)
    page = await client.get("/dashboard/signin")
    assert page.cookies["cendis_session"]["secure"]


@pytest.mark.parametrize("token", ["", "nope", "x" * 32, "{reader} ", "{reader}x"])
async def test_wrong_tokens_are_refused(client: Any, tokens: dict[str, str], token: str
                                        ) -> None:
    page = await (await client.get("/dashboard/signin")).text()
    resp = await client.post("/dashboard/signin", allow_redirects=False, data={
        "csrf": csrf_of(page), "name": "mallory", "token": token.format(**tokens)})
    assert resp.status in (400, 401) and "Set-Cookie" not in resp.headers or \
        resp.cookies["cendis_session"].value != ""
    assert (await client.get("/dashboard/", allow_redirects=False)).status == 303


async def test_failed_sign_ins_are_limited_and_counted(client: Any,
                                                       tokens: dict[str, str]) -> None:
    for _ in range(5):
        page = await (await client.get("/dashboard/signin")).text()
        resp = await client.post("/dashboard/signin", data={
            "csrf": csrf_of(page), "name": "mallory", "token": "guess-" + bearer()})
        assert resp.status == 401
    page = await (await client.get("/dashboard/signin")).text()
    resp = await client.post("/dashboard/signin", data={
        "csrf": csrf_of(page), "name": "alice", "token": tokens["reader"]})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    metrics = await (await client.get("/metrics")).text()
    assert 'cendis_dashboard_signin_failures_total{reason="bad_token"} 5.0' in metrics
    assert 'cendis_dashboard_signin_failures_total{reason="rate_limited"} 1.0' in metrics
    client.clock.now += 301  # the window passes: the right token works again
    await sign_in(client, tokens["reader"])


async def test_sessions_expire_and_sign_out_ends_them(client: Any,
                                                      tokens: dict[str, str]) -> None:
    csrf = await sign_in(client, tokens["reader"])
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/dashboard/"))
    old = cookie["cendis_session"].value
    resp = await client.post("/dashboard/signout", allow_redirects=False, data={"csrf": csrf})
    assert resp.status == 303 and resp.cookies["cendis_session"].value == ""
    replay = await client.get("/dashboard/", allow_redirects=False,
                              cookies={"cendis_session": old})
    assert replay.status == 303  # the old id is dead on the server, not only in the jar
    await sign_in(client, tokens["reader"])
    client.clock.now += 3601  # idle for an hour
    assert (await client.get("/dashboard/", allow_redirects=False)).status == 303


CSRF_CASES = {
    "missing": ({}, None),
    "wrong": ({"csrf": "A" * 43}, None),
    "other_session": ({"csrf": "OTHER"}, None),
    "cross_site_origin": ({}, {"Origin": "https://evil.example"}),
    "cross_site_fetch": ({}, {"Sec-Fetch-Site": "cross-site"}),
}


@pytest.mark.parametrize("case", sorted(CSRF_CASES))
@pytest.mark.parametrize("path", ["/dashboard/signout", "/dashboard/signin",
                                  "/dashboard/incidents/2/actions"])
async def test_a_post_without_the_csrf_token_is_refused(
        client: Any, aiohttp_client: Any, trail: Any, tokens: dict[str, str], case: str,
        path: str) -> None:
    if path.endswith("signin"):
        csrf = csrf_of(await (await client.get("/dashboard/signin")).text())
    else:
        csrf = await sign_in(client, tokens["triager"])
    fields, headers = CSRF_CASES[case]
    data = {"csrf": csrf, "name": "alice", "token": tokens["reader"], "action": "ack"}
    data.update(fields)
    if case == "missing":
        del data["csrf"]
    if case == "other_session":  # a token valid for another browser's session
        other = await aiohttp_client(client.server)
        data["csrf"] = await sign_in(other, tokens["reader"], "bob")
    resp = await client.post(path, data=data, headers=headers or {},
                             allow_redirects=False)
    assert resp.status == 403, (case, resp.status)
    if not path.endswith("signin"):  # still signed in, and nothing was written
        assert (await client.get("/dashboard/", allow_redirects=False)).status == 200
        assert "acknowledged" not in events_of(trail[0], 2)


HOSTILE_URLS = ["javascript:alert(document.domain)", "JaVaScRiPt:alert(1)",
                " javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
                "vbscript:msgbox(1)", "//evil.example/x", "java\tscript:alert(1)",
                "https://ok.example/a\"onmouseover=\"alert(1)", "/relative/path",
                "https://ok.example/fine?a=1&b=<2>"]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_only_http_urls_become_links(url: str) -> None:
    allowed = link_url(url)
    if allowed is not None:
        assert allowed.lower().startswith(("http://", "https://")) and " " not in allowed
    assert link_url("https://github.com/o/r/blob/x/f.py#L3") is not None
    assert link_url("http://example.com") is not None


async def test_hostile_partner_fields_render_as_text(aiohttp_client: Any, tmp_path: Path,
                                                     rng: random.Random,
                                                     tokens: dict[str, str]) -> None:
    db = tmp_path / "hostile.db"
    leaked = generate(rng)
    store = open_store(db)
    items = []
    for index, url in enumerate(HOSTILE_URLS):
        items.append((TokenRef.from_token(generate(rng)), Sighting(
            source="partner:acme", received_at=tmp_now(), partner="acme", url=url,
            record_type=f"<script>alert({index})</script><!channel> <@U123ABC>",
            record_source=f"<img src=x onerror=alert(1)> {leaked}",
            repository="<b>org</b>/\"repo\"", path="<svg onload=alert(1)>.py", line=3,
            commit="'><script>x</script>", author=f"Eve <eve@example.com> {leaked}")))
    ids = [r.incident_id for r in store.record(items, revoke=True)]
    store.close()
    client = await aiohttp_client(make_app(db, config(reader_token=tokens["reader"]),
                                           Clock()))
    await sign_in(client, tokens["reader"])
    for path in ["/dashboard/incidents", *(f"/dashboard/incidents/{i}" for i in ids)]:
        html = await (await client.get(path)).text()
        assert leaked not in html
        found = parse(html)
        assert "script" not in found.tags and "img" not in found.tags
        assert "svg" not in found.tags or "incidents/" not in path
        assert found.handlers == [] and found.styles == []
        for anchor in found.anchors:
            href = anchor.get("href") or ""
            assert href.startswith(("/dashboard", "#")) or \
                href.startswith(("http://", "https://")), href
            if href.startswith("http"):
                assert anchor.get("rel") == "noopener noreferrer"
                assert link_url(href) == href
        assert not re.search(r"href=\"\s*(javascript|data|vbscript):", html, re.I)


def tmp_now() -> Any:
    from datetime import UTC, datetime
    return datetime.now(UTC)


async def test_pages_walk_every_incident_once_newest_first(client: Any, trail: Any,
                                                           tokens: dict[str, str]) -> None:
    await sign_in(client, tokens["reader"])
    seen: list[int] = []
    url = "/dashboard/incidents"
    while url:
        html = await (await client.get(url)).text()
        ids = listed(html)
        assert 0 < len(ids) <= 50
        seen += ids
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == sorted(trail[1].ids, reverse=True)  # one a minute: newest is highest


FILTERS = [
    ("source=partner:acme", lambda i: i % 3 == 0),
    ("source=acme", lambda i: i % 3 == 0),
    ("source=scan:", lambda i: i % 3 == 2),
    ("repository=org/", lambda i: i % 3 in (0, 1)),
    ("repository=other/tool", lambda i: i % 3 == 2),
    ("status=revoked", lambda i: i % 3 == 0),
    ("status=pending&severity=unknown", lambda i: i % 3 != 0),
    ("severity=critical", lambda i: i % 3 == 0),
    ("from=2026-03-01&to=2026-03-01", lambda i: True),
    ("from=2026-03-02", lambda i: False),
    ("triage=open&severity=critical", lambda i: i % 3 == 0),
    ("triage=acknowledged", lambda i: False),
]


@pytest.mark.parametrize(("query", "keep"), FILTERS)
async def test_filters_and_their_csv(client: Any, trail: Any, tokens: dict[str, str],
                                     query: str, keep: Any) -> None:
    await sign_in(client, tokens["reader"])
    ids = trail[1].ids
    want = sorted((ids[i] for i in range(len(ids)) if keep(i)), reverse=True)
    html = await (await client.get(f"/dashboard/incidents?{query}")).text()
    shown = listed(html)
    assert shown == want[:50]
    resp = await client.get(f"/dashboard/incidents.csv?{query}")
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [int(r["id"]) for r in rows] == want  # the whole filter, not only a page
    assert all(len(r["sha256"]) == 64 and "…" in r["redacted"] for r in rows)


async def test_search_by_hash_prefix_redacted_form_and_whole_token(
        client: Any, trail: Any, tokens: dict[str, str]) -> None:
    await sign_in(client, tokens["reader"])
    token = trail[1].tokens[7]
    ref = TokenRef.from_token(token)
    want = trail[1].ids[7]
    for q in (ref.sha256[:10], ref.sha256.upper()[:12], ref.redacted,
              ref.redacted.replace("…", "...")):
        html = await (await client.get("/dashboard/incidents", params={"q": q})).text()
        assert f'/dashboard/incidents/{want}"' in html, q
    resp = await client.get("/dashboard/incidents", params={"q": token})
    assert resp.status == 200 and "q=" + ref.sha256 in str(resp.url)  # redirected to the hash
    html = await resp.text()
    assert token not in html and f'/dashboard/incidents/{want}"' in html


@pytest.mark.parametrize(("query", "field"), [
    ("status=nope", "status"), ("severity=%3Cscript%3E", "severity"), ("from=2026-13-01", "from"),
    ("to=yesterday", "to"), ("q=ab", "q"), ("q=%3Cscript%3E", "q"), ("after=1", "after"),
    ("source=" + "x" * 300, "source"), ("repository=a%00b", "repository")])
async def test_a_bad_filter_is_a_400_naming_the_field(client: Any, tokens: dict[str, str],
                                                      query: str, field: str) -> None:
    await sign_in(client, tokens["reader"])
    resp = await client.get(f"/dashboard/incidents?{query}")
    html = await resp.text()
    assert resp.status == 400 and f'role="alert">{field}:' in html
    assert "<script>" not in html
    assert (await client.get(f"/dashboard/incidents.csv?{query}")).status == 400


async def test_csv_cells_never_start_a_formula(aiohttp_client: Any, tmp_path: Path,
                                               rng: random.Random,
                                               tokens: dict[str, str]) -> None:
    db = tmp_path / "formula.db"
    seed(db, rng, 4, sources=("=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)"),
         repositories=("=cmd|' /C calc'!A0",))
    client = await aiohttp_client(make_app(db, config(reader_token=tokens["reader"]),
                                           Clock()))
    await sign_in(client, tokens["reader"])
    text = await (await client.get("/dashboard/incidents.csv")).text()
    for row in list(csv.reader(io.StringIO(text)))[1:]:
        assert all(cell[:1] not in "=+-@" or cell == "" for cell in row), row


async def test_overview_shows_the_queue_and_revoke_times(client: Any,
                                                         tokens: dict[str, str]) -> None:
    await sign_in(client, tokens["reader"])
    html = await (await client.get("/dashboard/")).text()
    assert "<dt>Tokens waiting for a revoke call</dt><dd>80</dd>" in html
    # 40 revoked, each 90 s after it was first seen; "now" is a day after the first
    assert re.search(r"Last 7 days</th><td>40</td><td>1\.5 min</td><td>1\.5 min</td>", html)
    assert html.count('<svg class="chart"') == 2 and "<title" in html
    assert '<span class="n">40</span> <span class="label">revoked</span>' in html
    assert re.search(r'<th scope="row">critical</th><td><a href="[^"]+">40</a>', html)
    found = parse(html)
    assert found.styles == [] and found.handlers == [] and "script" not in found.tags


async def test_a_browser_following_a_notification_link_gets_the_page(
        client: Any, tokens: dict[str, str]) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    resp = await client.get("/incidents/3", headers=html, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/incidents/3"
    api = await client.get("/incidents/3", allow_redirects=False)
    assert api.status == 401  # the JSON API still needs its bearer token
    bearer_html = await client.get("/incidents/3", allow_redirects=False, headers={
        **html, "Authorization": f"Bearer {tokens['reader']}"})
    assert bearer_html.status == 200 and (await bearer_html.json())["id"] == 3


async def test_an_unknown_incident_is_a_404_page(client: Any, tokens: dict[str, str]) -> None:
    await sign_in(client, tokens["reader"])
    for ident in ("999999", "abc", "-1", "1e3", "١"):
        resp = await client.get(f"/dashboard/incidents/{ident}")
        assert resp.status == 404, ident
        assert resp.headers["X-Frame-Options"] == "DENY"


async def test_a_big_form_is_refused(client: Any, tokens: dict[str, str]) -> None:
    page = await (await client.get("/dashboard/signin")).text()
    resp = await client.post("/dashboard/signin", data={
        "csrf": csrf_of(page), "name": "a", "token": "x" * 100_000})
    assert resp.status == 413


def events_of(db: Path, incident_id: int) -> str:
    """The incident's events as one text (kind, detail, actor), read from the file."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, detail, actor FROM events WHERE incident_id = ? "
                            "ORDER BY id", [incident_id]).fetchall()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows)


async def act(client: Any, csrf: str, ident: int, action: str, **fields: str) -> Any:
    return await client.post(f"/dashboard/incidents/{ident}/actions", allow_redirects=False,
                             data={"csrf": csrf, "action": action, **fields})


async def test_a_triager_acts_and_the_trail_names_them(client: Any, trail: Any,
                                                       tokens: dict[str, str]) -> None:
    csrf = await sign_in(client, tokens["triager"], "Carol Triager")
    ident = trail[1].ids[4]
    page = await (await client.get(f"/dashboard/incidents/{ident}")).text()
    assert 'value="ack"' in page and 'value="note"' in page and 'value="reopen"' not in page
    for action, fields in (("ack", {}), ("assign", {"assignee": "dave"}),
                           ("note", {"note": "rotated in CI <b>now</b>"}), ("resolve", {})):
        resp = await act(client, csrf, ident, action, **fields)
        assert resp.status == 303, action
        assert resp.headers["Location"] == f"/dashboard/incidents/{ident}?done={action}"
    events = events_of(trail[0], ident)
    assert "open -> acknowledged | Carol Triager" in events
    assert "note | rotated in CI <b>now</b> | Carol Triager" in events
    assert "acknowledged -> resolved | Carol Triager" in events
    metrics = await (await client.get("/metrics")).text()
    assert 'cendis_triage_actions_total{action="ack",outcome="ok"} 1.0' in metrics
    page = await (await client.get(f"/dashboard/incidents/{ident}?done=resolve")).text()
    assert "rotated in CI &lt;b&gt;now&lt;/b&gt;" in page and "Carol Triager" in page
    assert 'value="reopen"' in page and 'value="ack"' not in page
    html = await (await client.get("/dashboard/incidents?triage=resolved")).text()
    assert listed(html) == [ident]


@pytest.mark.parametrize(("action", "fields", "error"), [
    ("ignore", {}, "missing"), ("false_positive", {"reason": "  "}, "missing"),
    ("assign", {}, "missing"), ("note", {}, "missing"), ("reopen", {}, "transition"),
    ("note", {"note": "x" * 4001}, "too_long"), ("ignore", {"reason": "r" * 501}, "too_long")])
async def test_a_refused_action_says_why_and_writes_nothing(
        client: Any, trail: Any, tokens: dict[str, str], action: str,
        fields: dict[str, str], error: str) -> None:
    csrf = await sign_in(client, tokens["triager"])
    ident = trail[1].ids[5]
    before = events_of(trail[0], ident)
    resp = await act(client, csrf, ident, action, **fields)
    assert resp.status == 303 and resp.headers["Location"].endswith(f"?error={error}")
    assert events_of(trail[0], ident) == before
    page = await (await client.get(resp.headers["Location"])).text()
    assert 'class="error" role="alert"' in page


async def test_a_reader_never_acts(client: Any, trail: Any, tokens: dict[str, str]) -> None:
    csrf = await sign_in(client, tokens["reader"])
    ident = trail[1].ids[6]
    page = await (await client.get(f"/dashboard/incidents/{ident}")).text()
    assert "/actions" not in page and 'class="triage' not in page
    before = events_of(trail[0], ident)
    for action in ("ack", "resolve", "note", "unknown"):
        resp = await act(client, csrf, ident, action, note="x", reason="x")
        assert resp.status == 403, action  # a forged form with the reader's own token
    assert events_of(trail[0], ident) == before
    bad = await act(client, "", ident, "ack")
    assert bad.status == 403
