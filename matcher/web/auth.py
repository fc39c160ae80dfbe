"""Who is calling: a server-side session (console, API), an API token or HTTP Basic (API).

A session cookie only carries a random session id (signed); the database keeps its sha256
and whether it was revoked, so a copied cookie stops working at sign-out. Passwords are
checked by argon2 behind a throttle, and HTTP Basic results are remembered briefly.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets

from fastapi import Request

from matcher.services.desk import Desk
from matcher.services.jurisdiction import Coordinator
from matcher.web.throttle import SignInThrottle, TooManySignIns, VerifiedCredentials

SESSION_ID = "sid"
SESSION_CSRF = "csrf"
audit = logging.getLogger("matcher.audit")


class SignInRequired(Exception):
    """The request carries no valid credentials."""


def desk_of(request: Request) -> Desk:
    """The desk the web app was built with."""
    desk: Desk = request.app.state.desk
    return desk


def _throttle(request: Request) -> SignInThrottle:
    """The app's sign-in throttle."""
    throttle: SignInThrottle = request.app.state.throttle
    return throttle


def _verified(request: Request) -> VerifiedCredentials:
    """The app's memory of recently verified HTTP Basic credentials."""
    verified: VerifiedCredentials = request.app.state.verified
    return verified


def _trusts_proxy(request: Request) -> bool:
    """Whether forwarded headers are believed (a reverse proxy in front sets them)."""
    return desk_of(request).settings.trust_forwarded_headers


def client_address(request: Request) -> str:
    """The caller's address: the proxy's X-Forwarded-For only when configured trusted."""
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded and _trusts_proxy(request):
        return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


def check_password(request: Request, username: str, password: str, *,
                   channel: str) -> Coordinator | None:
    """The coordinator if the password is right; throttled (TooManySignIns) and audited."""
    keys = [f"account:{username.lower()}", f"address:{client_address(request)}"]
    where = {"username": username[:80], "client": client_address(request), "channel": channel}
    try:
        stamp = _throttle(request).begin(keys)
    except TooManySignIns:
        audit.warning("sign-in throttled", extra=where)
        raise
    coordinator = desk_of(request).sign_in(username, password)
    if coordinator is None:
        audit.warning("sign-in failed", extra=where)
        return None
    _throttle(request).succeeded(keys, stamp)
    audit.info("signed in", extra=where)
    return coordinator


def signed_in(request: Request) -> str:
    """Username of the caller: bearer token, else session, else HTTP Basic credentials."""
    desk = desk_of(request)
    token = bearer_token(request)
    if token is not None:
        username = desk.session_user(token)
        if username is None:
            raise SignInRequired()
        return username
    session_id = request.session.get(SESSION_ID)
    if isinstance(session_id, str):
        username = desk.session_user(session_id)
        if username is not None:
            return username
        request.session.clear()  # signed out or expired: forget the dead id
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        return _basic_user(request, *basic)
    raise SignInRequired()


def _basic_user(request: Request, username: str, password: str) -> str:
    """The coordinator named by HTTP Basic credentials, verified or recently remembered."""
    remembered = _verified(request).lookup(username, password)
    if remembered is not None:
        return remembered
    coordinator = check_password(request, username, password, channel="http:basic")
    if coordinator is None:
        raise SignInRequired()
    _verified(request).remember(username, password)
    return coordinator.username


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(username, password) from an 'Authorization: Basic ...' header."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, sep, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def bearer_token(request: Request) -> str | None:
    """The API token of an 'Authorization: Bearer ...' header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def start_session(request: Request, username: str) -> None:
    """A fresh server-side session (new id, new CSRF token) for the coordinator."""
    old = request.session.get(SESSION_ID)
    if isinstance(old, str):
        desk_of(request).close_session(old)
    request.session.clear()
    request.session[SESSION_ID] = desk_of(request).open_session(username, "cookie")
    request.session[SESSION_CSRF] = secrets.token_urlsafe(24)


def end_session(request: Request) -> None:
    """Sign out: revoke the session (and the API token presented), then forget them."""
    desk = desk_of(request)
    session_id = request.session.get(SESSION_ID)
    token = bearer_token(request)
    for secret in (session_id, token):
        if isinstance(secret, str):
            username = desk.session_user(secret)
            desk.close_session(secret)
            if username is not None:
                audit.info("signed out", extra={"username": username,
                                                "client": client_address(request)})
    request.session.clear()


def csrf_token(request: Request) -> str:
    """The session's CSRF token (forms echo it back)."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session[SESSION_CSRF] = token
    return token


def csrf_ok(request: Request, given: str) -> bool:
    """Whether a form carried this session's CSRF token."""
    expected = request.session.get(SESSION_CSRF)
    return isinstance(expected, str) and secrets.compare_digest(expected, given)
