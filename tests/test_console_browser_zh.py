"""A Qijiang coordinator in real headless Chromium (zh-CN, Beijing time), on a phone and a
desktop: Chinese labels, registry names, local times, the centre's whole queue page by page,
three proposals approved at once and read back from the broker, no sideways scrolling."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from sqlalchemy import Engine, select

from events.app import EngineApp, build_app
from matcher.runner import running
from matcher.services.coordinators import add_coordinator
from matcher.storage.store import unit_of_work
from matcher.storage.tables import proposals
from matcher.web.app import build_web
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.conftest import ENV
from tests.coordination_world import build_world
from tests.kafka_helpers import engine_settings, free_port, produce, read_until, wait_for
from tests.test_console_queue import SETTINGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")  # Debian's package; Playwright's download is not used
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "centre-pass-123"
SHOTS = Path(__file__).resolve().parent.parent / ".data" / "screenshots"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}
NAMES = {f.CENTRE: "綦江区慈善中心", f.WS: "文龙街道慈善工作站",
         f.STUDIO: "双龙社区慈善工作室", f.GRID: "五福社区第5网格", f.GRID2: "五福社区第6网格",
         f.WS_B: "古南街道慈善工作站", f.STUDIO_B: "桥河社区慈善工作室",
         f.GRID_B: "桥河社区第1网格"}
PARTNER_NAME = "爱心协会"
CASES = 32  # more than one page of 25


def need_chromium() -> str:
    """Debian's chromium, or skip (fail on CI, which must have it)."""
    if CHROMIUM is None:
        if ENV.ci:
            pytest.fail("CI must provide Debian's chromium (scripts/lib.sh ensure_chromium)")
        pytest.skip("install Debian's chromium to run the browser tests")
    return CHROMIUM


def named(event: dict[str, Any]) -> dict[str, Any]:
    """A registry event with the Chinese name the district gave the node."""
    event["payload"]["name"] = NAMES[event["payload"]["node_id"]]
    return event


async def feed_qijiang(app: EngineApp, bootstrap: str) -> None:
    """As the registry, a partner and the grid workers would: raw JSON on the real topics."""
    keyed = [(REGISTRY_KEY.encode(), f.encode(named(e))) for e in f.hierarchy()]
    partner = f.partner("p-aixin")
    partner["payload"]["name"] = PARTNER_NAME
    keyed.append((REGISTRY_KEY.encode(), f.encode(partner)))
    await produce(bootstrap, app.topics.registry, keyed)
    await wait_for(lambda: _count(app, "partners") == 1, what="registry applied")
    offer = f.goods_offer("o-rice", "p-aixin", quantity=1000)
    await produce(bootstrap, app.topics.offers, [(b"o-rice", f.encode(offer))])
    cases = [f.case(f"c{n:02d}", grid=f.GRID if n % 2 else f.GRID2,
                    items=[f.item(kind="goods", need="rice", quantity=5, unit="kg",
                                  urgency=1 + n % 5)]) for n in range(CASES)]
    await produce(bootstrap, app.topics.needs,
                  [(e["payload"]["case_id"].encode(), f.encode(e)) for e in cases])
    await wait_for(lambda: _pending(app) == CASES, timeout_s=120, what="a proposal per case")


def _count(app: EngineApp, table: str) -> int:
    with unit_of_work(app.engine.db) as store:
        return store.count(table)


def _pending(app: EngineApp) -> int:
    with unit_of_work(app.engine.db) as store:
        return len(list(store.conn.execute(
            select(proposals.c.proposal_id).where(proposals.c.status == "proposed"))))


async def new_context(browser: Browser, viewport: dict[str, int]) -> BrowserContext:
    """A browser as a coordinator in Qijiang has it: Chinese, Beijing time."""
    return await browser.new_context(viewport=viewport, locale="zh-CN",
                                     timezone_id="Asia/Shanghai")


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/console/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console/queue")


async def fits(page: Page, width: int) -> None:
    """The page scrolls only up and down."""
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide"


async def queue_ids(page: Page) -> list[str]:
    return list(await page.locator("article[data-proposal]").evaluate_all(
        "cards => cards.map(c => c.dataset.proposal)"))


@pytest.mark.kafka
async def test_a_qijiang_coordinator_works_the_queue_on_a_phone_and_a_desktop(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    chromium = need_chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    app = build_app(engine_settings(kafka_bootstrap, tmp_path, session_secret="browser-zh"))
    base = f"http://{app.settings.http_host}:{app.settings.http_port}"
    async with running(app), async_playwright() as playwright:
        await feed_qijiang(app, kafka_bootstrap)
        with unit_of_work(app.engine.db) as store:
            add_coordinator(store, username="centre-lead", display_name="王主任",
                            node_id=f.CENTRE, password=PASSWORD, clock=app.engine.clock)
        browser = await playwright.chromium.launch(executable_path=chromium,
                                                   args=CHROMIUM_ARGS)
        try:
            phone = await (await new_context(browser, PHONE)).new_page()
            await sign_in(phone, base, "centre-lead", PASSWORD)
            assert await phone.get_attribute("html", "lang") == "zh-CN"
            text = await phone.inner_text("body")
            assert "待处理提案" in text and "批准" in text and "北京时间（UTC+8）" in text
            assert f"第 1–25 条，共 {CASES} 条" in text
            assert NAMES[f.GRID] in text and PARTNER_NAME in text
            assert f.GRID not in text  # ids only on hover
            # The deadline was sent as 18:00+08:00; the page reads 18:00 Beijing time.
            assert (await phone.locator("[data-testid=deadline]").first.inner_text()
                    ).endswith("18:00")
            await fits(phone, PHONE["width"])
            await phone.screenshot(path=SHOTS / "queue-375-zh.png")

            # Page through the centre's whole queue.
            seen = await queue_ids(phone)
            await phone.click("[data-testid=next]")
            await phone.wait_for_url("**page=2")
            seen += await queue_ids(phone)
            assert f"第 26–{CASES} 条，共 {CASES} 条" in await phone.inner_text("body")
            assert len(set(seen)) == CASES
            await fits(phone, PHONE["width"])

            # Select three with the keyboard (j moves, x selects) and approve them at once.
            await phone.goto(f"{base}/console/queue")
            chosen = (await queue_ids(phone))[:3]
            for _ in chosen:
                await phone.keyboard.press("j")
                await phone.keyboard.press("x")
            assert await phone.inner_text("#selected-count") == "3"
            await phone.click("[data-testid=approve-selected]")
            await phone.wait_for_selector("[data-testid=flash]")
            assert "已批准 3 条提案。" in await phone.inner_text("[data-testid=flash]")
            assert not set(chosen) & set(await queue_ids(phone))

            for path in ("stats", "unmatched", "rebalance", f"proposals/{seen[-1]}",
                         f"cases/{_case_of(app, seen[-1])}"):
                await phone.goto(f"{base}/console/{path}")
                await fits(phone, PHONE["width"])
            await phone.goto(f"{base}/console/stats")
            await phone.screenshot(path=SHOTS / "stats-375-zh.png", full_page=True)
            await phone.goto(f"{base}/console/proposals/{seen[-1]}")
            await phone.screenshot(path=SHOTS / "proposal-375-zh.png")

            desk = await (await new_context(browser, DESKTOP)).new_page()
            await sign_in(desk, base, "centre-lead", PASSWORD)
            await fits(desk, DESKTOP["width"])
            await desk.locator("details.score summary").first.click()
            assert "符合的规则" in await desk.inner_text("article[data-proposal]")
            await desk.screenshot(path=SHOTS / "queue-1280-zh.png")
        finally:
            await browser.close()

        # Each approval reached the partner as its own event on the real broker.
        def approvals(records: list[Any]) -> set[str]:
            return {json.loads(r.value)["payload"]["proposal_id"] for r in records
                    if json.loads(r.value)["event_type"] == "match.approved"}

        records = await read_until(kafka_bootstrap, app.topics.assignments,
                                   lambda rs: set(chosen) <= approvals(rs))
        assert set(chosen) <= approvals(records)
        assert all(json.loads(r.value)["payload"]["approved_by"] == "centre-lead"
                   for r in records if json.loads(r.value)["payload"]["proposal_id"] in chosen)


def _case_of(app: EngineApp, proposal_id: str) -> str:
    with unit_of_work(app.engine.db) as store:
        proposal = store.proposal(proposal_id)
    assert proposal is not None
    return proposal.case_id


# --- the API's pages offline -----------------------------------------------------------------


@pytest.fixture
def served(sqlite_db: Engine) -> Iterator[str]:
    """The web app on a free local port."""
    server = uvicorn.Server(uvicorn.Config(build_web(build_world(sqlite_db), SETTINGS),
                                           host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


async def test_api_docs_and_asyncapi_pages_work_offline(served: str) -> None:
    chromium = need_chromium()
    fetched_elsewhere: list[str] = []

    async def local_only(route: Route) -> None:
        if route.request.url.startswith(served):
            await route.continue_()
        else:
            fetched_elsewhere.append(route.request.url)
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium,
                                                   args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", local_only)
            await page.goto(f"{served}/api/docs")
            await page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "coordinators' API" in await page.inner_text(".swagger-ui .info .title")
            await page.goto(f"{served}/api/asyncapi")
            await page.wait_for_selector("#asyncapi :text('charity.offers')", timeout=60_000)
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=SHOTS / "asyncapi-offline.png")
        finally:
            await browser.close()
    assert fetched_elsewhere == []

