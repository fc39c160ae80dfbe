"""The HTTP doors: every API endpoint and console page checks the coordinator's jurisdiction;
what lies outside it is answered exactly like what does not exist (404, no grid named);
bad input gets a 4xx that says why."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from matcher.services.engine import MatchingEngine
from matcher.settings import Settings
from matcher.storage.store import unit_of_work
from matcher.web.app import build_web
from tests.coordination_world import (
    ALLOWED,
    CASES,
    COORDINATORS,
    MATRIX,
    PASSWORD,
    build_world,
    propose,
    propose_many,
    status_of,
)

SETTINGS = Settings(session_secret="test-secret")
# These tests read the console's English words; Chinese is the default (see test_i18n.py).
ENGLISH = {"Accept-Language": "en"}
# Offer -> coordinators who may open its page: based in their subtree or serving a case in it.
OFFER_VIEWERS = {
    "o-a": {"c-centre", "c-ws", "c-studio", "c-grid"},
    "o-b": {"c-centre", "c-ws-b", "c-grid-b"},
    "o-a2": {"c-centre", "c-ws"},
}


@pytest.fixture
def engine(db: Engine) -> MatchingEngine:
    return build_world(db)


@pytest.fixture
def clients(engine: MatchingEngine) -> Iterator[dict[str, TestClient]]:
    """One signed-in client per coordinator."""
    web = build_web(engine, SETTINGS)
    signed: dict[str, TestClient] = {}
    for username in COORDINATORS:
        client = TestClient(web, headers=ENGLISH)
        response = client.post("/api/session", json={"username": username,
                                                     "password": PASSWORD})
        assert response.status_code == 200, response.text
        signed[username] = client
    yield signed
    for client in signed.values():
        client.close()


@pytest.fixture
def anonymous(engine: MatchingEngine) -> Iterator[TestClient]:
    with TestClient(build_web(engine, SETTINGS), headers=ENGLISH) as client:
        yield client


# Partner -> coordinators who may open its view: attached in their subtree, or with an offer
# they may see (with proposals pa and pb stored).
PARTNER_VIEWERS = {
    "p1": {"c-centre", "c-ws", "c-studio", "c-grid"},
    "p2": {"c-centre", "c-ws"},
    "pb": {"c-centre", "c-ws-b", "c-grid-b"},
}
SECRET_REASON = "family violence reported"


def expect(response_code: int, allowed: bool, ok: int = 200) -> None:
    assert response_code == (ok if allowed else 404)


def assert_not_found_here(response: Any, what: str) -> None:
    """The one refusal for unknown and out-of-jurisdiction ids: no hint which, nor where."""
    assert response.status_code == 404
    assert response.json() == {"error": "not_found",
                               "reason": f"{what} not found in your jurisdiction"}


# --- the authorization matrix -----------------------------------------------------------------


@pytest.mark.parametrize("verb", ["approve", "reject", "alternative"])
def test_api_decisions_inside_the_jurisdiction_only(
        engine: MatchingEngine, clients: dict[str, TestClient], verb: str) -> None:
    ids = propose_many(engine.db, verb)
    for user, case_id, allowed in MATRIX:
        response = clients[user].post(f"/api/proposals/{ids[user, case_id]}/{verb}",
                                      json={"reason": "does not fit this week"})
        assert response.status_code == (200 if allowed else 404), (user, case_id, response.text)
        if not allowed:
            assert_not_found_here(response, f"proposal '{ids[user, case_id]}'")
            assert CASES[case_id] not in response.text
            assert status_of(engine.db, ids[user, case_id]) == "proposed"


def test_api_reads_inside_the_jurisdiction_only(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    ids = propose_many(engine.db, "read")
    for user, case_id, allowed in MATRIX:
        client = clients[user]
        proposal = client.get(f"/api/proposals/{ids[user, case_id]}")
        expect(proposal.status_code, allowed)
        case = client.get(f"/api/cases/{case_id}")
        expect(case.status_code, allowed)
        if allowed:
            assert proposal.json()["explanation"]["rules_passed"]
            assert case.json()["beneficiary"]["sensitive"]["health"] == "diabetic"
        else:
            assert "diabetic" not in case.text and "diabetic" not in proposal.text


def test_offer_pages_only_for_offers_based_in_or_serving_the_jurisdiction(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "pa", "case-a")
        propose(store, "pb", "case-b")
    for offer_id, viewers in OFFER_VIEWERS.items():
        for user, client in clients.items():
            response = client.get(f"/api/offers/{offer_id}")
            expect(response.status_code, user in viewers)
            if user in viewers:
                shown = {p["case_id"] for p in response.json()["proposals"]}
                assert all(user in ALLOWED[case_id] for case_id in shown), (user, offer_id)


def test_partner_views_only_for_partners_attached_in_or_serving_the_jurisdiction(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "pa", "case-a")
        propose(store, "pb", "case-b")
    for partner_id, viewers in PARTNER_VIEWERS.items():
        for user, client in clients.items():
            response = client.get(f"/api/partners/{partner_id}")
            expect(response.status_code, user in viewers)
            if user in viewers:
                shown = set(response.json()["offers"])
                assert all(user in OFFER_VIEWERS[offer_id] for offer_id in shown), user
                assert response.json()["history"], (user, partner_id)


def _shared_offer_with_a_secret(engine: MatchingEngine,
                                clients: dict[str, TestClient]) -> None:
    """Offer o-a serves case-a (branch A) and case-b (branch B); case-b's proposal is
    rejected with a sensitive reason by branch B's grid coordinator."""
    with unit_of_work(engine.db) as store:
        propose(store, "pa", "case-a")
        propose(store, "px", "case-b", offer=("o-a", "p1"))
    rejected = clients["c-grid-b"].post("/api/proposals/px/reject",
                                        json={"reason": SECRET_REASON})
    assert rejected.status_code == 200
    assert clients["c-grid"].post("/api/proposals/pa/approve", json={}).status_code == 200


def test_offer_history_and_proposals_show_only_the_readers_cases(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    _shared_offer_with_a_secret(engine, clients)
    viewers = OFFER_VIEWERS["o-a"] | ALLOWED["case-b"]  # px makes o-a serve case-b too
    for user, client in clients.items():
        for url in ("/api/offers/o-a", "/console/offers/o-a"):
            response = client.get(url)
            expect(response.status_code, user in viewers)
            if user not in viewers:
                continue
            sees_b = user in ALLOWED["case-b"]
            assert (SECRET_REASON in response.text) == sees_b, (user, url)
            assert ("case-b" in response.text) == sees_b, (user, url)
            assert ("case-a" in response.text) == (user in ALLOWED["case-a"]), (user, url)
        view = client.get("/api/offers/o-a")
        if view.status_code == 200:
            entries = [h["summary"] for h in view.json()["history"]]
            entries += [h["summary"] for p in view.json()["proposals"] for h in p["history"]]
            assert entries, user
            for summary in entries:
                named = {case_id for case_id in CASES if f"case {case_id}/" in summary}
                assert all(user in ALLOWED[case_id] for case_id in named), (user, summary)


def test_the_offer_page_shows_the_offer_to_branch_b_only_through_its_own_case(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    _shared_offer_with_a_secret(engine, clients)
    view = clients["c-grid-b"].get("/api/offers/o-a").json()
    assert [p["proposal_id"] for p in view["proposals"]] == ["px"]
    assert all("case-a" not in h["summary"] for h in view["history"])
    centre = clients["c-centre"].get("/api/offers/o-a").json()
    assert {p["proposal_id"] for p in centre["proposals"]} == {"pa", "px"}
    assert any(SECRET_REASON in h["summary"]
               for p in centre["proposals"] for h in p["history"])


def test_lists_show_only_the_jurisdiction(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    propose_many(engine.db, "list")
    with unit_of_work(engine.db) as store:
        for case_id in CASES:
            store.set_unmatched(case_id, "i2", code="no_eligible_offer",
                                reason="no rice within reach")
    for user, client in clients.items():
        mine = {case_id for case_id in CASES if user in ALLOWED[case_id]}
        queue = client.get("/api/proposals").json()
        assert {p["case_id"] for p in queue} == mine
        unmatched = client.get("/api/unmatched").json()
        assert {n["case_id"] for n in unmatched} == mine
        assert all(n["reason"] == "no rice within reach" for n in unmatched)
        stats = client.get("/api/stats").json()
        assert set(stats["pending_by_grid"]) == {CASES[case_id] for case_id in mine}
        assert stats["pending"] == len(queue)


def test_console_pages_and_decisions_inside_the_jurisdiction_only(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    ids = propose_many(engine.db, "console")
    for user, case_id, allowed in MATRIX:
        client = clients[user]
        csrf = _csrf(client)
        pid = ids[user, case_id]
        for url in (f"/console/proposals/{pid}", f"/console/cases/{case_id}"):
            page = client.get(url)
            expect(page.status_code, allowed)
            if not allowed:
                assert "not found in your jurisdiction" in page.text
                assert "diabetic" not in page.text and CASES[case_id] not in page.text
        decided = client.post(f"/console/proposals/{pid}/decide", follow_redirects=False,
                              data={"decision": "approve", "csrf": csrf, "reason": ""})
        assert decided.status_code == (303 if allowed else 404), (user, case_id)
        assert status_of(engine.db, pid) == ("approved" if allowed else "proposed")


def test_sensitive_attributes_show_on_the_case_page_inside_the_jurisdiction(
        clients: dict[str, TestClient]) -> None:
    page = clients["c-grid"].get("/console/cases/case-a")
    assert page.status_code == 200
    assert "diabetic" in page.text


@pytest.mark.parametrize(("language", "shown"), [
    ("zh-CN", "合适的资源已被占用（用于更紧急的个案）"),
    ("en", "the suitable offers are already taken (used for more urgent cases)")])
def test_the_case_page_says_who_took_the_capacity_an_item_needed(
        engine: MatchingEngine, clients: dict[str, TestClient], language: str,
        shown: str) -> None:
    with unit_of_work(engine.db) as store:
        store.set_unmatched("case-a", "i1", code="capacity_taken", reason="taken",
                            taken_by="more_urgent_cases")
    page = clients["c-grid"].get("/console/cases/case-a",
                                 headers={"accept-language": language})
    assert shown in page.text


def _csrf(client: TestClient, url: str = "/console/queue") -> str:
    page = client.get(url)
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start:page.text.index('"', start)]


def sign_in_csrf(client: TestClient) -> str:
    """The CSRF token the sign-in form carries (showing the form sets it)."""
    return _csrf(client, "/console/sign-in")


# --- authentication ----------------------------------------------------------------------------


def test_calls_without_credentials_are_refused_with_401(anonymous: TestClient) -> None:
    response = anonymous.get("/api/proposals")
    assert response.status_code == 401
    assert response.json()["error"] == "sign_in_required"
    page = anonymous.get("/console/queue", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/sign-in")


def test_wrong_password_is_refused(anonymous: TestClient) -> None:
    response = anonymous.post("/api/session", json={"username": "c-grid",
                                                    "password": "wrong"})
    assert response.status_code == 401
    page = anonymous.post("/console/sign-in", data={"username": "c-grid", "password": "x",
                                                    "csrf": sign_in_csrf(anonymous)})
    assert page.status_code == 401
    assert "wrong password" in page.text


def test_http_basic_credentials_work_for_the_api(
        engine: MatchingEngine, anonymous: TestClient) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-b")
    token = base64.b64encode(f"c-grid-b:{PASSWORD}".encode()).decode()
    response = anonymous.get("/api/proposals", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert [p["proposal_id"] for p in response.json()] == ["p1"]


def test_console_sign_in_then_queue(anonymous: TestClient) -> None:
    response = anonymous.post("/console/sign-in", follow_redirects=False,
                              data={"username": "c-ws", "password": PASSWORD,
                                    "next": "https://evil.example/",
                                    "csrf": sign_in_csrf(anonymous)})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/queue"
    assert "C-WS" in anonymous.get("/console/queue").text


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body, why", [
    ({}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": "x" * 501}, "reason"),
    ({"reason": "ok", "force": True}, "force"),
])
def test_a_bad_rejection_body_is_422_saying_why(
        engine: MatchingEngine, clients: dict[str, TestClient], body: dict[str, object],
        why: str) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    response = clients["c-grid"].post("/api/proposals/p1/reject", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert why in response.json()["reason"]
    assert status_of(engine.db, "p1") == "proposed"


@pytest.mark.parametrize("query", ["kind=spaceship", "min_urgency=9", "limit=0"])
def test_bad_filters_are_422(clients: dict[str, TestClient], query: str) -> None:
    response = clients["c-centre"].get(f"/api/proposals?{query}")
    assert response.status_code == 422
    assert response.json()["reason"]


def test_a_body_that_is_not_json_is_422(clients: dict[str, TestClient]) -> None:
    response = clients["c-centre"].post("/api/proposals/p1/approve", content=b"approve!",
                                        headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_unknown_ids_are_404(clients: dict[str, TestClient]) -> None:
    client = clients["c-centre"]
    assert_not_found_here(client.get("/api/proposals/nope"), "proposal 'nope'")
    assert_not_found_here(client.get("/api/cases/nope"), "case 'nope'")
    assert_not_found_here(client.get("/api/offers/nope"), "offer 'nope'")
    assert_not_found_here(client.get("/api/partners/nope"), "partner 'nope'")
    assert_not_found_here(client.post("/api/proposals/nope/approve", json={}),
                          "proposal 'nope'")
    assert client.get("/console/cases/nope").status_code == 404


def test_outside_the_jurisdiction_reads_exactly_like_unknown(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "pb", "case-b")
    client = clients["c-grid"]
    for url, what in [("/api/cases/case-b", "case 'case-b'"),
                      ("/api/proposals/pb", "proposal 'pb'"),
                      ("/api/offers/o-b", "offer 'o-b'"),
                      ("/api/partners/pb", "partner 'pb'")]:
        assert_not_found_here(client.get(url), what)
    # Deciding one outside the jurisdiction says the same, whatever state it is in.
    clients["c-grid-b"].post("/api/proposals/pb/reject", json={"reason": "no"})
    assert_not_found_here(client.post("/api/proposals/pb/approve", json={}), "proposal 'pb'")


def test_a_second_decision_is_409(engine: MatchingEngine,
                                  clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    assert clients["c-grid"].post("/api/proposals/p1/approve", json={}).status_code == 200
    second = clients["c-studio"].post("/api/proposals/p1/reject", json={"reason": "no"})
    assert second.status_code == 409
    assert "approved by c-grid already" in second.json()["reason"]


def test_console_refuses_a_form_without_its_csrf_token(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    response = clients["c-grid"].post("/console/proposals/p1/decide",
                                      data={"decision": "approve", "csrf": "forged"})
    assert response.status_code == 422
    assert status_of(engine.db, "p1") == "proposed"


def test_console_rejection_without_reason_says_why_and_changes_nothing(
        engine: MatchingEngine, clients: dict[str, TestClient]) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    client = clients["c-grid"]
    page = client.post("/console/proposals/p1/decide",
                       data={"decision": "reject", "csrf": _csrf(client), "reason": ""})
    assert page.status_code == 200
    assert "a rejection needs a reason" in page.text
    assert status_of(engine.db, "p1") == "proposed"


def test_console_filters_are_checked(clients: dict[str, TestClient]) -> None:
    page = clients["c-centre"].get("/console/queue?urgency=9")
    assert page.status_code == 422
    assert "urgency filter must be 1..5" in page.text


def test_the_api_is_described_by_openapi(anonymous: TestClient) -> None:
    document = anonymous.get("/api/openapi.json").json()
    assert "/api/proposals/{proposal_id}/reject" in document["paths"]
    assert not any(path.startswith("/console") for path in document["paths"])
