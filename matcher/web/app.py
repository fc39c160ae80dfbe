"""The coordinators' web app: the JSON API (/api, OpenAPI at /api/openapi.json) and the
console (/console), both on the decision service; mounted into the engine's ASGI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from matcher.domain.errors import (
    DomainError,
    InvalidCommand,
    NotInJurisdiction,
    NotOwner,
    ProposalNotFound,
    StaleProposal,
    UnknownReference,
)
from matcher.services.desk import Desk
from matcher.services.engine import MatchingEngine
from matcher.services.jurisdiction import NotFoundHere
from matcher.settings import Settings
from matcher.web import api, console, docs_pages, partner_api, partner_pages, rebalance_pages
from matcher.web.auth import SignInRequired
from matcher.web.headers import SecurityHeaders
from matcher.web.partner_api import BrokerUnavailable
from matcher.web.throttle import SignInThrottle, TooManySignIns, VerifiedCredentials

STATIC = Path(__file__).parent / "static"

# Domain refusals as HTTP statuses (first match wins); anything else refused is a 400.
STATUS = {
    NotFoundHere: 404,  # unknown or outside the jurisdiction: the same answer for both
    NotInJurisdiction: 403,
    NotOwner: 403,
    ProposalNotFound: 404,
    UnknownReference: 404,
    StaleProposal: 409,
    InvalidCommand: 422,
}
TITLES = {400: "Not possible", 403: "Outside your jurisdiction", 404: "Not found",
          409: "Already decided or no longer possible", 422: "Please check the form",
          429: "Too many attempts"}


def _is_console(request: Request) -> bool:
    """Pages (the console, the partner page) get a page; the API gets JSON."""
    return request.url.path.startswith(("/console", "/partner"))


def _refusal(request: Request, status: int, code: str, reason: str,
             headers: dict[str, str] | None = None) -> Response:
    """The same refusal as JSON for the API and as a friendly page for the console."""
    if _is_console(request):
        page = console.console_error(request, status, TITLES.get(status, "Error"), reason)
        page.headers.update(headers or {})
        return page
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Basic realm="coordinators"'}
    return JSONResponse({"error": code, "reason": reason}, status_code=status, headers=headers)


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status = next((s for kind, s in STATUS.items() if isinstance(exc, kind)), 400)
    return _refusal(request, status, exc.code, exc.reason)


async def _on_sign_in_required(request: Request, exc: Exception) -> Response:
    return _refusal(request, 401, "sign_in_required",
                    "sign in first: POST /api/session, or send HTTP Basic credentials")


async def _on_too_many_sign_ins(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManySignIns)
    wait = max(int(exc.retry_after_s + 0.999), 1)
    return _refusal(request, 429, "too_many_sign_ins", str(exc),
                    headers={"Retry-After": str(wait)})


async def _on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p != 'body')}: {err['msg']}"
        for err in exc.errors()
    )
    if _is_console(request):
        return _refusal(request, 422, "invalid_request", problems)
    # Echo locations and messages only: the input may hold what should not be reflected.
    detail = [{"loc": err["loc"], "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
    return JSONResponse({"error": "invalid_request", "reason": problems, "detail": detail},
                        status_code=422)


async def _on_broker_unavailable(request: Request, exc: Exception) -> Response:
    return _refusal(request, 503, "broker_unavailable",
                    "this web app is not connected to the broker: run it as `matcher run`")


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _refusal(request, exc.status_code, "http_error", str(exc.detail))


def build_web(engine: MatchingEngine, settings: Settings) -> FastAPI:
    """The web app over a matching engine: serve it under /api and /console."""
    web = FastAPI(
        title="Charity matching engine: coordinators' API",
        version="1.0.0",
        description="Coordinators see and decide proposals in their own jurisdiction "
        "(their node's subtree of the hierarchy). Sign in with POST /api/session or "
        "HTTP Basic credentials.",
        # The docs page is docs_pages' own: it loads Swagger UI from static files, offline.
        openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
    )
    web.state.desk = Desk(engine=engine, settings=settings)
    web.state.throttle = SignInThrottle(window_s=settings.sign_in_window_s,
                                        max_failures=settings.sign_in_max_failures)
    web.state.verified = VerifiedCredentials(ttl_s=settings.basic_cache_ttl_s,
                                             size=settings.basic_cache_size)
    web.add_middleware(SessionMiddleware, secret_key=settings.session_secret,
                       session_cookie="matcher_session", max_age=int(settings.session_max_age_s),
                       same_site="lax", https_only=settings.session_https_only)
    # Outside the session middleware, so it also sees (and secures) the session cookie.
    web.add_middleware(SecurityHeaders, trust_forwarded=settings.trust_forwarded_headers)
    web.add_exception_handler(DomainError, _on_domain_error)
    web.add_exception_handler(SignInRequired, _on_sign_in_required)
    web.add_exception_handler(TooManySignIns, _on_too_many_sign_ins)
    web.add_exception_handler(RequestValidationError, _on_invalid_request)
    web.add_exception_handler(HTTPException, _on_http_error)
    web.add_exception_handler(BrokerUnavailable, _on_broker_unavailable)
    web.include_router(api.router)
    web.include_router(partner_api.router)
    web.include_router(partner_pages.router)
    web.include_router(console.router)
    web.include_router(rebalance_pages.router)
    web.include_router(docs_pages.router)
    web.mount("/console/static", StaticFiles(directory=STATIC), name="static")
    return web
