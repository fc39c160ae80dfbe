"""The HTTP side resists guessing and theft: throttled sign-ins, revocable server-side
sessions, API tokens, CSRF on sign-in, security headers and Secure cookies over HTTPS."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from matcher.services import desk as desk_module
from matcher.services.engine import MatchingEngine
from matcher.settings import Settings
from matcher.storage.coordination import coordinator_sessions
from matcher.storage.store import unit_of_work
from matcher.web.app import build_web
from matcher.web.throttle import SignInThrottle, TooManySignIns, VerifiedCredentials
from tests.coordination_world import PASSWORD, build_world, propose

SETTINGS = Settings(session_secret="test-secret")


@pytest.fixture
def engine(db: Engine) -> MatchingEngine:
    return build_world(db)


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Usernames whose password argon2 verified, in order (counts the expensive calls)."""
    checked: list[str] = []
    real = desk_module.authenticate

    def counting(store: Any, username: str, password: str) -> Any:
        checked.append(username)
        return real(store, username, password)

    monkeypatch.setattr(desk_module, "authenticate", counting)
    return checked


def client_for(engine: MatchingEngine, settings: Settings = SETTINGS,
               base_url: str = "http://testserver") -> TestClient:
    return TestClient(build_web(engine, settings), base_url=base_url)


@pytest.fixture
def client(engine: MatchingEngine) -> Iterator[TestClient]:
    with client_for(engine) as anonymous:
        yield anonymous


def form_csrf(client: TestClient, url: str = "/console/sign-in") -> str:
    page = client.get(url)
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start:page.text.index('"', start)]


def console_sign_in(client: TestClient, username: str, password: str) -> Any:
    return client.post("/console/sign-in", follow_redirects=False,
                       data={"username": username, "password": password,
                             "csrf": form_csrf(client)})


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- throttling ---------------------------------------------------------------------------------


def test_after_ten_wrong_passwords_even_the_right_one_is_429(
        client: TestClient, password_checks: list[str]) -> None:
    for _ in range(10):
        wrong = client.post("/api/session", json={"username": "c-grid", "password": "guess"})
        assert wrong.status_code == 401
    right = client.post("/api/session", json={"username": "c-grid", "password": PASSWORD})
    assert right.status_code == 429
    assert right.json()["error"] == "too_many_sign_ins"
    assert 1 <= int(right.headers["retry-after"]) <= 60
    assert len(password_checks) == 10  # the refused attempt never reached argon2


def test_one_address_guessing_many_accounts_is_throttled(client: TestClient) -> None:
    accounts = ["c-centre", "c-ws", "c-studio", "c-grid", "c-ws-b"]
    for i in range(10):
        client.post("/api/session", json={"username": accounts[i % 5], "password": "guess"})
    fresh = client.post("/api/session", json={"username": "c-grid-b", "password": PASSWORD})
    assert fresh.status_code == 429


def test_the_console_sign_in_is_throttled_with_a_page(client: TestClient) -> None:
    for _ in range(10):
        assert console_sign_in(client, "c-ws", "guess").status_code == 401
    page = console_sign_in(client, "c-ws", PASSWORD)
    assert page.status_code == 429
    assert "too many failed sign-ins" in page.text
    assert "retry-after" in page.headers


def test_parallel_bad_logins_run_argon2_at_most_ten_times(
        client: TestClient, password_checks: list[str]) -> None:
    statuses: list[int] = []

    def guess() -> None:
        response = client.get("/api/proposals", headers=basic("c-centre", "guess"))
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(password_checks) <= 10
    assert statuses.count(429) >= 20 and set(statuses) <= {401, 429}


def test_a_success_does_not_count_and_failures_age_out_of_the_window() -> None:
    now = [0.0]
    throttle = SignInThrottle(window_s=60, max_failures=3, clock=lambda: now[0])
    for _ in range(5):
        throttle.succeeded(["a"], throttle.begin(["a"]))
    for _ in range(3):
        throttle.begin(["a"])
    with pytest.raises(TooManySignIns) as refused:
        throttle.begin(["a"])
    assert refused.value.retry_after_s == pytest.approx(60)
    throttle.begin(["b"])  # another key is not affected
    now[0] = 60.5
    throttle.begin(["a"])


# --- sessions and tokens ------------------------------------------------------------------------


def test_a_copied_session_cookie_stops_working_after_sign_out(
        engine: MatchingEngine, client: TestClient) -> None:
    assert console_sign_in(client, "c-grid", PASSWORD).status_code == 303
    stolen = client.cookies["matcher_session"]
    assert client.get("/api/me").json()["username"] == "c-grid"
    with client_for(engine) as thief:
        thief.cookies.set("matcher_session", stolen)
        assert thief.get("/api/me").status_code == 200
        client.post("/console/sign-out", data={"csrf": form_csrf(client, "/console/queue")})
        assert thief.get("/api/me").status_code == 401
        page = thief.get("/console/queue", follow_redirects=False)
        assert page.status_code == 303 and "/console/sign-in" in page.headers["location"]


def test_api_sign_out_revokes_the_session_everywhere(
        engine: MatchingEngine, client: TestClient) -> None:
    assert client.post("/api/session", json={"username": "c-ws",
                                             "password": PASSWORD}).status_code == 200
    stolen = client.cookies["matcher_session"]
    assert client.delete("/api/session").status_code == 204
    with client_for(engine) as thief:
        thief.cookies.set("matcher_session", stolen)
        assert thief.get("/api/me").status_code == 401


def test_an_api_token_works_without_a_password_and_is_stored_hashed(
        engine: MatchingEngine, client: TestClient, password_checks: list[str]) -> None:
    signed = client.post("/api/session", json={"username": "c-ws", "password": PASSWORD})
    token = signed.json()["token"]
    assert signed.json()["token_type"] == "bearer"
    with client_for(engine) as caller:
        for _ in range(5):
            me = caller.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["username"] == "c-ws"
        assert password_checks == ["c-ws"]  # argon2 ran once, at sign-in
        with unit_of_work(engine.db) as store:
            stored = set(store.conn.execute(select(coordinator_sessions.c.token_hash)).scalars())
        assert hashlib.sha256(token.encode()).hexdigest() in stored
        assert token not in stored
        caller.delete("/api/session", headers={"Authorization": f"Bearer {token}"})
        revoked = caller.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_http_basic_is_verified_once_then_remembered(
        client: TestClient, password_checks: list[str]) -> None:
    for _ in range(5):
        assert client.get("/api/me", headers=basic("c-grid", PASSWORD)).status_code == 200
    assert password_checks == ["c-grid"]
    assert client.get("/api/me", headers=basic("c-grid", "wrong")).status_code == 401
    assert password_checks == ["c-grid", "c-grid"]


def test_remembered_credentials_expire_and_stay_bounded() -> None:
    now = [0.0]
    verified = VerifiedCredentials(ttl_s=10, size=2, clock=lambda: now[0])
    verified.remember("a", "pa")
    assert verified.lookup("a", "pa") == "a"
    assert verified.lookup("a", "other") is None
    verified.remember("b", "pb")
    verified.remember("c", "pc")
    assert verified.lookup("a", "pa") is None  # the oldest was forgotten
    now[0] = 11
    assert verified.lookup("c", "pc") is None


def test_a_replaced_account_loses_its_sessions(engine: MatchingEngine,
                                               client: TestClient) -> None:
    from matcher.services.coordinators import add_coordinator
    from tests import factories as f

    signed = client.post("/api/session", json={"username": "c-grid", "password": PASSWORD})
    token = signed.json()["token"]
    with unit_of_work(engine.db) as store:
        add_coordinator(store, username="c-grid", display_name="C", node_id=f.GRID,
                        password="a new long password", clock=engine.clock)
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- CSRF on sign-in ----------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_console_sign_in_without_the_forms_csrf_token_is_refused(
        client: TestClient, password_checks: list[str], csrf: str | None) -> None:
    client.get("/console/sign-in")
    data = {"username": "c-grid", "password": PASSWORD}
    if csrf is not None:
        data["csrf"] = csrf
    page = client.post("/console/sign-in", data=data, follow_redirects=False)
    assert page.status_code == 422
    assert "form expired" in page.text
    assert password_checks == []
    assert client.get("/api/me").status_code == 401


# --- headers and cookies ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/console/sign-in", "/api/openapi.json", "/api/proposals",
                                 "/api/nowhere", "/api/docs", "/console/static/console.css"])
def test_every_response_carries_the_security_headers(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_api_docs_still_render(client: TestClient) -> None:
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/api/openapi.json" in docs.text


def test_the_console_csp_allows_no_inline_script(client: TestClient) -> None:
    csp = client.get("/console/sign-in").headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp


def _session_cookie(response: Any) -> str:
    return next(value for value in response.headers.get_list("set-cookie")
                if value.startswith("matcher_session="))


def test_the_session_cookie_is_secure_over_https(engine: MatchingEngine) -> None:
    with client_for(engine, base_url="https://testserver") as secure:
        cookie = _session_cookie(secure.get("/console/sign-in"))
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()
        signed = console_sign_in(secure, "c-grid", PASSWORD)
        assert "secure" in _session_cookie(signed).lower()
    with client_for(engine) as plain:
        assert "secure" not in _session_cookie(plain.get("/console/sign-in")).lower()


def test_forwarded_proto_counts_only_from_a_trusted_proxy(engine: MatchingEngine) -> None:
    https = {"X-Forwarded-Proto": "https"}
    with client_for(engine) as untrusted:
        cookie = _session_cookie(untrusted.get("/console/sign-in", headers=https))
        assert "secure" not in cookie.lower()
    trusting = Settings(session_secret="test-secret", trust_forwarded_headers=True)
    with client_for(engine, trusting) as proxied:
        assert "secure" in _session_cookie(proxied.get("/console/sign-in",
                                                       headers=https)).lower()


def test_trusted_forwarded_for_separates_clients(engine: MatchingEngine) -> None:
    trusting = Settings(session_secret="test-secret", trust_forwarded_headers=True)
    with client_for(engine, trusting) as proxied:
        for i in range(10):
            proxied.post("/api/session", json={"username": f"nobody-{i}", "password": "x"},
                         headers={"X-Forwarded-For": "10.0.0.1"})
        other = proxied.post("/api/session", json={"username": "c-grid", "password": PASSWORD},
                             headers={"X-Forwarded-For": "10.0.0.2"})
        assert other.status_code == 200
        same = proxied.post("/api/session", json={"username": "c-ws", "password": PASSWORD},
                            headers={"X-Forwarded-For": "10.0.0.1"})
        assert same.status_code == 429


# --- audit --------------------------------------------------------------------------------------


def test_failed_sign_ins_and_decisions_are_audited_without_secrets(
        engine: MatchingEngine, client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    caplog.set_level(logging.INFO, logger="matcher.audit")
    client.post("/api/session", json={"username": "c-grid", "password": "hunter2-secret"})
    client.post("/api/session", json={"username": "c-grid", "password": PASSWORD})
    client.post("/api/proposals/p1/reject", json={"reason": "family matter"})
    audit = [r for r in caplog.records if r.name == "matcher.audit"]
    failed = [r for r in audit if r.getMessage() == "sign-in failed"]
    assert failed and failed[0].levelno == logging.WARNING
    assert getattr(failed[0], "username", None) == "c-grid"
    decided = [r for r in audit if r.getMessage() == "decision applied"]
    assert decided and getattr(decided[0], "decision", None) == "reject"
    assert getattr(decided[0], "channel", None) == "http:api"
    logged = " ".join(str(r.__dict__) for r in audit)
    for secret in ("hunter2-secret", PASSWORD, "family matter"):
        assert secret not in logged
