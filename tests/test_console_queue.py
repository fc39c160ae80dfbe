"""The console as Qijiang's coordinators use it: Chinese by default, registry names, Beijing
time, plain explanations, a paged queue with filters, and several approvals at once."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from matcher.services.engine import MatchingEngine
from matcher.settings import Settings
from matcher.storage.store import unit_of_work
from matcher.storage.tables import audit_log, nodes, partners
from matcher.web.app import build_web
from tests import factories as f
from tests.coordination_world import NOW, PASSWORD, build_world, propose, status_of
from tests.test_api_authz import sign_in_csrf

SETTINGS = Settings(session_secret="test-secret")
GRID_NAME, GRID2_NAME, GRID_B_NAME = "五福社区第5网格", "五福社区第6网格", "古南街道第1网格"
PARTNER_NAME = "爱心协会"
QUEUE_A = 60  # pending proposals in grid A: more than two pages


@pytest.fixture
def engine(sqlite_db: Engine) -> MatchingEngine:
    """The coordination world with Chinese registry names and a long queue in grid A."""
    engine = build_world(sqlite_db)
    with unit_of_work(sqlite_db) as store:
        for node_id, name in ((f.GRID, GRID_NAME), (f.GRID2, GRID2_NAME),
                              (f.GRID_B, GRID_B_NAME)):
            store.conn.execute(nodes.update().where(nodes.c.node_id == node_id)
                               .values(name=name))
        store.conn.execute(partners.update().where(partners.c.partner_id == "p1")
                           .values(name=PARTNER_NAME))
        for n in range(QUEUE_A):
            propose(store, f"qa-{n:03d}", "case-a", item_id="i2" if n % 2 else "i1",
                    created_at=NOW - timedelta(minutes=n))
        propose(store, "qa2-old", "case-a2", created_at=NOW - timedelta(hours=30))
        propose(store, "qb-1", "case-b")
    return engine


def signed_in(engine: MatchingEngine, username: str, **headers: str) -> TestClient:
    """A console client signed in as a coordinator of the world."""
    client = TestClient(build_web(engine, SETTINGS), headers=headers)
    response = client.post("/console/sign-in", data={"username": username,
                                                     "password": PASSWORD,
                                                     "csrf": sign_in_csrf(client)},
                           follow_redirects=False)
    assert response.status_code == 303
    return client


@pytest.fixture
def centre(engine: MatchingEngine) -> Iterator[TestClient]:
    with signed_in(engine, "c-centre") as client:
        yield client


def cards(html: str) -> list[str]:
    """Proposal ids on a queue page, in order."""
    return re.findall(r'data-proposal="([^"]+)"', html)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_queue_speaks_chinese_with_names_and_beijing_time(centre: TestClient) -> None:
    html = centre.get("/console/queue").text
    assert '<html lang="zh-CN">' in html
    assert "待处理提案" in html and "批准" in html and "北京时间（UTC+8）" in html
    # Names from the registry, ids only on hover.
    assert f'title="{f.GRID}">{GRID_NAME}</span>' in html
    assert f">{PARTNER_NAME}</a>" in html
    assert f'<option value="{f.GRID}" title="{f.GRID}" >{GRID_NAME}</option>' in html
    # Deadlines sent as 18:00+08:00 read 18:00, not the 10:00 of UTC.
    deadlines = re.findall(r'data-testid="deadline">([^<]+)<', html)
    assert deadlines and all(d.endswith("18:00") for d in deadlines)
    assert 'datetime="2030-06-03T18:00+08:00"' in html


def test_english_when_the_browser_or_the_switch_asks(engine: MatchingEngine) -> None:
    with signed_in(engine, "c-centre", **{"Accept-Language": "en-GB,en;q=0.8"}) as client:
        html = client.get("/console/queue").text
        assert '<html lang="en">' in html and "Pending proposals" in html
        assert "Beijing time (UTC+8)" in html
    with signed_in(engine, "c-centre") as client:
        switched = client.get("/console/queue?lang=en")
        assert "Pending proposals" in switched.text
        assert "matcher_lang=en" in switched.headers["set-cookie"]
        assert "Pending proposals" in client.get("/console/queue").text  # remembered
        assert "待处理提案" in client.get("/console/queue?lang=zh-CN").text


def test_each_proposal_reads_as_one_plain_sentence(centre: TestClient) -> None:
    html = centre.get("/console/proposals/qa-001").text
    sentence = re.search(r'data-testid="sentence">([^<]+)<', html)
    assert sentence
    assert sentence.group(1).startswith("ben-case-a（紧急程度 5）将获得爱心协会提供的1 公斤大米")
    assert "距离" in sentence.group(1) and "公里" in sentence.group(1)
    assert "<details class=\"score\">" in html  # the score table waits behind a toggle
    english = centre.get("/console/proposals/qa-001?lang=en").text
    assert "ben-case-a (urgency 5) gets 1 kg of rice from 爱心协会" in english


def test_the_centre_pages_through_its_whole_queue(centre: TestClient) -> None:
    total = QUEUE_A + 2
    first = centre.get("/console/queue").text
    assert f"第 1–25 条，共 {total} 条" in first
    assert "第 1 页，共 3 页" in first
    assert "最久已等待 30 小时" in first  # the oldest pending proposal's age
    seen: list[str] = []
    for page in (1, 2, 3):
        seen += cards(centre.get(f"/console/queue?page={page}").text)
    assert len(seen) == total and len(set(seen)) == total
    assert f"第 51–{total} 条，共 {total} 条" in centre.get("/console/queue?page=3").text


def test_filters_and_orders(centre: TestClient) -> None:
    by_grid = centre.get(f"/console/queue?grid={f.GRID2}").text
    assert cards(by_grid) == ["qa2-old"]
    waited = cards(centre.get("/console/queue?waited=24").text)
    assert waited == ["qa2-old"]
    oldest_first = cards(centre.get("/console/queue?sort=waiting").text)
    assert oldest_first[0] == "qa2-old" and oldest_first[1] == "qa-059"
    urgent = cards(centre.get("/console/queue?urgency=5&size=100").text)
    assert len(urgent) == QUEUE_A // 2
    assert "等待时间筛选只能是" in centre.get("/console/queue?waited=7").text


def test_several_proposals_approved_at_once_each_checked_and_audited(
        engine: MatchingEngine) -> None:
    with signed_in(engine, "c-grid") as grid:
        html = grid.get("/console/queue").text
        chosen = cards(html)[:3]
        response = grid.post("/console/proposals/approve-many", follow_redirects=False,
                             data={"csrf": csrf(html), "proposal": [*chosen, "qb-1"],
                                   "back": "/console/queue"})
        assert response.status_code == 303
        flash = grid.get("/console/queue").text
    assert "已批准 3 条提案。" in flash
    assert "qb-1：这不在您的辖区内。" in flash  # another grid's case: refused, not skipped
    assert [status_of(engine.db, pid) for pid in chosen] == ["approved"] * 3
    assert status_of(engine.db, "qb-1") == "proposed"
    with unit_of_work(engine.db) as store:
        summaries = list(store.conn.execute(select(audit_log.c.summary)).scalars())
    for pid in chosen:
        assert any(f"proposal {pid}" in s and "approved by c-grid" in s for s in summaries)


def test_bulk_approval_needs_the_form_token(engine: MatchingEngine) -> None:
    with signed_in(engine, "c-grid") as grid:
        response = grid.post("/console/proposals/approve-many",
                             data={"csrf": "forged", "proposal": ["qa-000"]})
    assert response.status_code == 422
    assert status_of(engine.db, "qa-000") == "proposed"


def test_unmatched_needs_in_plain_words(engine: MatchingEngine, centre: TestClient) -> None:
    with unit_of_work(engine.db) as store:
        store.set_unmatched("case-b", "i2", code="out_of_reach",
                            reason="no eligible offer within reach of the beneficiary ('rice')")
    html = centre.get("/console/unmatched").text
    assert "大米：附近没有足够近的资源" in html
    assert f">{GRID_B_NAME}</td>" in html


def test_pages_fit_a_phone_and_charts_scale(centre: TestClient) -> None:
    html = centre.get("/console/stats").text
    assert 'viewBox="0 0 ' in html and 'width="100%"' in html
    assert GRID_NAME in html  # bars are labelled by name
    css = centre.get("/console/static/console.css").text
    assert '"Noto Sans CJK SC"' in css and '"PingFang SC"' in css
    assert ".scroll { max-width: 100%; overflow-x: auto;" in css


def test_the_queue_downloads_as_csv_on_beijing_time(centre: TestClient) -> None:
    response = centre.get(f"/console/queue.csv?grid={f.GRID2}")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert rows[0][11] == "截止（北京时间 UTC+8）"
    assert rows[1][0] == "qa2-old" and rows[1][3] == GRID2_NAME
    assert rows[1][11] == "2030-06-03T18:00+08:00"  # ISO with the district's offset


def test_the_header_names_the_coordinators_node(engine: MatchingEngine) -> None:
    with signed_in(engine, "c-grid") as grid:
        html = grid.get("/console/queue").text
    assert f"C-GRID · {GRID_NAME}</span>" in html
