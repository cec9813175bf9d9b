"""The dashboard in a real browser: Debian's chromium (``/usr/bin/chromium``) driven by
Playwright for Python, against the receiver on loopback over a real SQLite trail.

No browser is downloaded (``playwright install`` is never run): Playwright starts the
system's chromium by ``executable_path``. Without it these tests skip with one line; under
CI (``CI=true``) that is a failure. The screenshots of the overview, the list and an
incident page at 1280 and 390 px are written to the test's temporary folder: a test run
never writes into the repository. With ``CENDIS_UPDATE_SCREENSHOTS=1`` they are written
to ``docs/screenshots/`` instead (the README shows one), to refresh them on purpose.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, require_tool
from dashtools import Clock, bearer, config, make_app, seed

from scanner.incidents.models import Sighting, TokenRef
from scanner.incidents.trail import open_store
from scanner.token import generate

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "docs" / "screenshots"
#: Set to 1 to refresh the screenshots in docs/screenshots/ (otherwise: tmp_path).
UPDATE_SHOTS = "CENDIS_UPDATE_SCREENSHOTS"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _need_browser() -> None:
    require_tool("chromium", how="apt-get install chromium")
    require_tool("playwright", module="playwright.async_api",
                 how="pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():  # another chromium on PATH is not the one we drive
        require_tool(CHROMIUM, how="apt-get install chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    _need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Watch:
    """What a page did that it must not: dialogs opened, requests to another host."""

    def __init__(self, page: Any, host: str) -> None:
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.requests: list[str] = []

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        def on_request(request: Any) -> None:
            self.requests.append(request.url)
            if urlsplit(request.url).hostname not in (host,):
                self.foreign.append(request.url)

        page.on("dialog", on_dialog)
        page.on("request", on_request)


@pytest.fixture
def tokens() -> dict[str, str]:
    return {"reader": bearer(), "triager": bearer()}


@pytest.fixture
async def site(aiohttp_server: Any, tmp_path: Path, tokens: dict[str, str]) -> Any:
    db = tmp_path / "trail.db"
    rng = random.Random(1818)
    seed(db, rng, 45, scopes=("admin:org", "read:audit"))
    seed(db, rng, 20, sources=("partner:acme",), repositories=("acme/payments",),
         scopes=("write:assets",))
    leaked = generate(rng)
    store = open_store(db)
    hostile = store.record([(TokenRef.from_token(generate(rng)), Sighting(
        source="partner:acme", received_at=seeded_now(), partner="acme",
        url="javascript:alert(document.cookie)",
        record_type="<script>alert('type')</script>",
        record_source=f"<!channel> <@U024BE7LH> <https://evil.example|click> {leaked}",
        repository="<img src=https://evil.example/x.png onerror=alert(2)>",
        path="<svg/onload=alert(3)>.env", line=1, commit="\"><script>alert(4)</script>",
        author=f"<a href=javascript:alert(5)>eve</a> {leaked}"))], revoke=False)
    store.close()
    server = await aiohttp_server(make_app(db, config(reader_token=tokens["reader"],
                                                      triager_token=tokens["triager"]),
                                           Clock()))
    server.db, server.hostile, server.leaked = db, hostile[0].incident_id, leaked
    server.base = f"http://{server.host}:{server.port}"
    return server


def seeded_now() -> Any:
    from dashtools import START

    return START


async def sign_in(page: Any, base: str, token: str, name: str = "alice") -> None:
    await page.goto(base + "/dashboard/")
    assert page.url.endswith("/dashboard/signin")
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/dashboard/")


async def test_reader_signs_in_filters_opens_and_signs_out(browser: Any, site: Any,
                                                           tokens: dict[str, str]) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page, site.host)
    await sign_in(page, site.base, tokens["reader"])
    await page.get_by_role("link", name="Incidents", exact=True).click()
    await page.get_by_label("Source or partner").fill("partner:acme")
    await page.get_by_label("Severity").select_option("high")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/dashboard/incidents?*severity=high*")
    rows = page.locator("table.incidents tbody tr")
    assert await rows.count() == 7  # the acme batch's revoked ones (every third of 20)
    assert await page.locator("table.incidents tbody td .sev-high").count() == 7
    await rows.first.get_by_role("link").first.click()
    await page.wait_for_url("**/dashboard/incidents/*")
    assert "acme/payments" in await page.inner_text("main")
    # a reader sees no triage action
    assert await page.locator("form.triage, .actions button").count() == 0
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/dashboard/signin")
    await page.goto(site.base + "/dashboard/incidents")
    assert page.url.endswith("/dashboard/signin")
    assert watch.dialogs == [] and watch.foreign == []


async def test_triager_acknowledges_notes_and_resolves(browser: Any, site: Any,
                                                       tokens: dict[str, str]) -> None:
    import sqlite3

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page, site.host)
    await sign_in(page, site.base, tokens["triager"], "Carol")
    await page.goto(site.base + "/dashboard/incidents?triage=open&severity=critical")
    await page.locator("table.incidents tbody tr").first.get_by_role("link").first.click()
    await page.wait_for_url("**/dashboard/incidents/*")
    ident = int(page.url.rsplit("/", 1)[1])
    await page.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url(f"**/incidents/{ident}?done=ack")
    assert "Done: acknowledged." in await page.inner_text("[role=status]")
    await page.get_by_label("Note").fill("Rotated in CI; checking the audit trail.")
    await page.get_by_role("button", name="Add note").click()
    await page.wait_for_url(f"**/incidents/{ident}?done=note")
    await page.get_by_role("button", name="Resolve").click()
    await page.wait_for_url(f"**/incidents/{ident}?done=resolve")
    timeline = await page.inner_text("table.timeline")
    assert "open -> acknowledged" in timeline and "Carol" in timeline
    assert await page.get_by_role("button", name="Acknowledge").count() == 0
    assert await page.get_by_role("button", name="Reopen").count() == 1
    with sqlite3.connect(site.db) as conn:
        rows = conn.execute("SELECT kind, detail, actor FROM events WHERE incident_id = ? "
                            "AND actor IS NOT NULL ORDER BY id", [ident]).fetchall()
    assert [(kind, actor) for kind, _, actor in rows] == [
        ("triage", "Carol"), ("note", "Carol"), ("triage", "Carol")]
    assert rows[2][1].startswith("acknowledged -> resolved")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/dashboard/signin")
    assert watch.dialogs == [] and watch.foreign == []


async def test_a_hostile_incident_renders_inert(browser: Any, site: Any,
                                                tokens: dict[str, str]) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page, site.host)
    await sign_in(page, site.base, tokens["reader"])
    for path in (f"/dashboard/incidents/{site.hostile}", "/dashboard/incidents",
                 "/dashboard/"):
        await page.goto(site.base + path)
        await page.wait_for_load_state("networkidle")
        html = await page.content()
        assert site.leaked not in html
        assert await page.locator("main script, main img, main iframe").count() == 0
        assert await page.locator("a[href^='javascript'], a[href^='data']").count() == 0
        for link in await page.locator("main a").all():  # only our own pages
            href = await link.get_attribute("href") or ""
            assert href.startswith("/dashboard") or href.startswith("#"), href
        if path.endswith(str(site.hostile)):
            text = await page.inner_text("main")
            assert "javascript:alert(document.cookie)" in text  # shown, as text
            assert "<script>alert('type')</script>" in text and "<!channel>" in text
            assert "<@U024BE7LH>" in text
    assert watch.dialogs == [], watch.dialogs
    assert watch.foreign == [], watch.foreign
    assert all(site.leaked not in url for url in watch.requests)


async def test_keyboard_and_screen_reader_basics(browser: Any, site: Any,
                                                 tokens: dict[str, str]) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(site.base + "/dashboard/signin")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "name"
    await page.keyboard.type("alice")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(tokens["reader"])
    await page.keyboard.press("Enter")
    await page.wait_for_url(site.base + "/dashboard/")
    for path in ("/dashboard/", "/dashboard/incidents", "/dashboard/incidents/1"):
        await page.goto(site.base + path)
        assert await page.locator("h1").count() == 1
        unlabelled = await page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
            ".filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))"
            ".map(e => e.name)")
        assert unlabelled == [], (path, unlabelled)
        assert await page.locator("main#main").count() == 1
        assert await page.locator("svg.chart:not([role=img])").count() == 0


@pytest.mark.parametrize("width", sorted(WIDTHS))
async def test_screenshots_and_no_sideways_scroll(browser: Any, site: Any,
                                                  tokens: dict[str, str], width: str,
                                                  tmp_path: Path) -> None:
    w, h = WIDTHS[width]
    page = await browser.new_page(viewport={"width": w, "height": h})
    await sign_in(page, site.base, tokens["triager"])
    shots = SHOTS if os.environ.get(UPDATE_SHOTS) == "1" else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in (("overview", "/dashboard/"), ("list", "/dashboard/incidents"),
                       ("incident", "/dashboard/incidents/1")):
        await page.goto(site.base + path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, (name, width, overflow)  # wide tables scroll in their box
        shot = shots / f"{name}-{w}.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5000
