"""A small charity without a Kafka client, in real headless Chromium (zh-CN, Beijing time, a
375 px phone): it signs in with its key, publishes goods through the form, and sees the offer
and the match the engine made of it; the page never scrolls sideways."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from events.app import build_app
from matcher.runner import running
from matcher.services.partner_door import issue_key
from matcher.storage.database import migrate
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.kafka_helpers import engine_settings, produce, wait_for
from tests.test_console_browser_zh import (
    CHROMIUM_ARGS,
    PARTNER_NAME,
    PHONE,
    SHOTS,
    fits,
    named,
    need_chromium,
    new_context,
)

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]


async def test_a_partner_publishes_goods_from_a_phone_and_sees_the_match(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    chromium = need_chromium()
    settings = engine_settings(kafka_bootstrap, tmp_path, kafka_metadata_max_age_ms=1000)
    app = build_app(settings)
    migrate(app.engine.db)
    with unit_of_work(app.engine.db) as store:
        key = issue_key(store, "p-aixin", at=f.DAY)
    partner = f.partner("p-aixin")
    partner["payload"]["name"] = PARTNER_NAME
    partner["payload"]["default_reach"] = {"mode": "delivery", "km": 8}
    registry = [named(e) for e in f.hierarchy()] + [partner]
    base = f"http://{settings.http_host}:{settings.http_port}"

    def count(table: str) -> int:
        with unit_of_work(app.engine.db) as store:
            return store.count(table)

    async with running(app), async_playwright() as playwright:
        await produce(kafka_bootstrap, app.topics.registry,
                      [(REGISTRY_KEY.encode(), f.encode(e)) for e in registry])
        await wait_for(lambda: count("partners") == 1, what="registry applied")
        browser = await playwright.chromium.launch(executable_path=chromium,
                                                   args=CHROMIUM_ARGS)
        context = await new_context(browser, PHONE)
        page = await context.new_page()
        await page.goto(f"{base}/partner/")
        assert page.url == f"{base}/partner/sign-in"
        assert await page.locator("html").get_attribute("lang") == "zh-CN"
        assert "合作伙伴登录" in await page.locator("h1").inner_text()
        await fits(page, PHONE["width"])
        await page.fill("input[name=partner_id]", "p-aixin")
        await page.fill("input[name=api_key]", "pk_wrong")
        await page.click("button[type=submit]")
        assert "密钥错误" in await page.locator("[role=alert]").inner_text()
        await page.fill("input[name=api_key]", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/partner/")
        assert PARTNER_NAME in await page.locator("h1").inner_text()

        form = page.locator("[data-testid=goods-form]")
        await form.locator("select[name=category]").select_option("rice")
        await form.locator("input[name=quantity]").fill("40")
        await form.locator("select[name=node_id]").select_option(f.WS)
        await form.locator("button[type=submit]").click()
        await page.wait_for_url(f"{base}/partner/")
        assert "已发送" in await page.locator("[data-testid=flash]").inner_text()
        await wait_for(lambda: count("offers") == 1, what="the form's offer applied")

        case = f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5, unit="kg")])
        await produce(kafka_bootstrap, app.topics.needs, [(b"c1", f.encode(case))])
        await wait_for(lambda: count("proposals") == 1, timeout_s=60, what="a proposal")
        await page.reload()
        offers = await page.locator("[data-testid=offers]").inner_text()
        assert "物资" in offers and "p-aixin-goods-" in offers
        # The form's offer says nothing of its reach: the partner's default applies, and says so.
        assert "8 公里内送达（您的默认设置）" in offers
        matches = await page.locator("[data-testid=proposals]").inner_text()
        assert "五福社区第5网格" in matches and "5 公斤" in matches
        await fits(page, PHONE["width"])
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "partner-page-phone-zh.png"), full_page=True)
        await browser.close()
