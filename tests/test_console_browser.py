"""A coordinator in a real headless Chromium, on a running engine fed over a real broker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select

from events.app import EngineApp, build_app
from matcher.runner import running
from matcher.services.coordinators import add_coordinator
from matcher.storage.store import unit_of_work
from matcher.storage.tables import audit_log, proposals
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.conftest import ENV
from tests.kafka_helpers import engine_settings, produce, read_until, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")  # Debian's package; Playwright's download is not used
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "studio-pass-123"
INSIDE, OUTSIDE = ("c1", "c2"), "c3"


def keyed(event: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    return key.encode(), f.encode(event)


async def feed_district(app: EngineApp, bootstrap: str) -> None:
    """As the partner systems and grids would: registry, offers and cases as raw JSON."""
    topics = app.topics
    registry = [*f.hierarchy(), f.partner("p1"), f.partner("p2"),
                f.partner("pb", home=f.WS_B)]
    await produce(bootstrap, topics.registry, [keyed(e, REGISTRY_KEY) for e in registry])
    # Topics are consumed independently: offers and cases need the registry applied first.
    await wait_for(lambda: _count(app, "partners") == 3, what="registry applied")
    offers = [f.volunteer_offer("o1", "p1"), f.volunteer_offer("o2", "p2"),
              f.goods_offer("o3", "pb", node_id=f.WS_B)]
    await produce(bootstrap, topics.offers, [keyed(e, e["payload"]["offer_id"]) for e in offers])
    cases = [f.case("c1"), f.case("c2", grid=f.GRID2),
             f.case(OUTSIDE, grid=f.GRID_B, items=[f.item(kind="goods", need="rice",
                                                          quantity=5, unit="kg")])]
    await produce(bootstrap, topics.needs, [keyed(e, e["payload"]["case_id"]) for e in cases])
    await wait_for(lambda: _count(app, "cases") == 3 and _count(app, "offers") == 3,
                   what="district applied")


def _count(app: EngineApp, table: str) -> int:
    with unit_of_work(app.engine.db) as store:
        return store.count(table)


def pending_by_case(app: EngineApp) -> dict[str, list[str]]:
    """Ids of the pending proposals of each case, oldest first."""
    with unit_of_work(app.engine.db) as store:
        rows = store.conn.execute(select(proposals.c.case_id, proposals.c.proposal_id)
                                  .where(proposals.c.status == "proposed")
                                  .order_by(proposals.c.created_at, proposals.c.proposal_id))
        found: dict[str, list[str]] = {}
        for case_id, proposal_id in rows:
            found.setdefault(case_id, []).append(proposal_id)
        return found


async def wait_for_proposals(app: EngineApp) -> dict[str, list[str]]:
    """Until the engine has proposed something for every case."""
    await wait_for(lambda: {*INSIDE, OUTSIDE} <= set(pending_by_case(app)),
                   what="proposals for every case")
    return pending_by_case(app)


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/console/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console/queue")


async def decide(page: Page, proposal_id: str, button: str, reason: str = "") -> str:
    """Fill the reason and click one decision button on the proposal's card; the flash text."""
    card = page.locator(f"article[data-proposal='{proposal_id}']")
    if reason:
        await card.locator("input[name=reason]").fill(reason)
    await card.get_by_role("button", name=button).click()
    await page.wait_for_selector("[data-testid=flash]")
    return await page.inner_text("[data-testid=flash]")


async def test_a_coordinator_approves_and_rejects_in_the_browser(kafka_bootstrap: str,
                                                                 tmp_path: Path) -> None:
    if CHROMIUM is None:
        if ENV.ci:
            pytest.fail("CI must provide Debian's chromium (scripts/lib.sh ensure_chromium)")
        pytest.skip("install Debian's chromium to run the browser test")
    app = build_app(engine_settings(kafka_bootstrap, tmp_path, session_secret="browser-test"))
    base = f"http://{app.settings.http_host}:{app.settings.http_port}"
    async with running(app), async_playwright() as playwright:
        await feed_district(app, kafka_bootstrap)
        pending = await wait_for_proposals(app)
        approve, reject = pending["c1"][0], pending["c2"][0]
        with unit_of_work(app.engine.db) as store:
            add_coordinator(store, username="studio-lead", display_name="Studio lead",
                            node_id=f.STUDIO, password=PASSWORD, clock=app.engine.clock)
        browser: Browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                            args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US")  # the English console
            await sign_in(page, base, "studio-lead", PASSWORD)

            # Only the studio's own queue: both of its grids' cases, not the other branch.
            cards = await page.locator("article[data-proposal]").evaluate_all(
                "cards => cards.map(c => c.dataset.proposal)")
            assert set(cards) == {*pending["c1"], *pending["c2"]}
            content = await page.content()
            assert not any(p in content for p in pending[OUTSIDE])
            await page.locator(f"article[data-proposal='{approve}'] summary").click()
            assert "Rules passed" in await page.inner_text(f"article[data-proposal='{approve}']")

            assert "approved" in await decide(page, approve, "Approve")
            assert "needs a reason" in await decide(page, reject, "Reject")
            assert "rejected" in await decide(page, reject, "Reject",
                                              reason="volunteer too far for weekly visits")

            # A case outside the jurisdiction: a friendly refusal that does not tell it
            # exists, and no sensitive data.
            response = await page.goto(f"{base}/console/cases/{OUTSIDE}")
            assert response is not None and response.status == 404
            assert "not found in your jurisdiction" in await page.content()
            assert "diabetic" not in await page.content()
        finally:
            await browser.close()

        # The approval reaches the partner as an assignment event on the real broker.
        records = await read_until(
            kafka_bootstrap, app.topics.assignments,
            lambda rs: any(json.loads(r.value)["payload"]["proposal_id"] == approve for r in rs))
        assignment = next(json.loads(r.value) for r in records
                          if json.loads(r.value)["payload"]["proposal_id"] == approve)
        assert assignment["event_type"] == "match.approved"
        assert assignment["payload"]["approved_by"] == "studio-lead"
        assert "diabetic" not in json.dumps(assignment)

    with unit_of_work(app.engine.db) as store:
        rejected = store.proposal(reject)
        summaries = list(store.conn.execute(select(audit_log.c.summary)).scalars())
    assert rejected is not None and rejected.status == "rejected"
    assert rejected.decided_by == "studio-lead"
    assert any(f"proposal {reject}" in s and "rejected by studio-lead" in s
               and "volunteer too far" in s for s in summaries)
