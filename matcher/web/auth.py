"""Who is calling: a signed session cookie (console, API) or HTTP Basic credentials (API)."""

from __future__ import annotations

import base64
import binascii
import secrets

from fastapi import Request

from matcher.services.desk import Desk

SESSION_USER = "username"
SESSION_CSRF = "csrf"


class SignInRequired(Exception):
    """The request carries no valid credentials."""


def desk_of(request: Request) -> Desk:
    """The desk the web app was built with."""
    desk: Desk = request.app.state.desk
    return desk


def signed_in(request: Request) -> str:
    """Username of the caller: from the session, else from HTTP Basic credentials."""
    username = request.session.get(SESSION_USER)
    if isinstance(username, str):
        return username
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        coordinator = desk_of(request).sign_in(*basic)
        if coordinator is not None:
            return coordinator.username
    raise SignInRequired()


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


def start_session(request: Request, username: str) -> None:
    """Remember the coordinator in a fresh session with a new CSRF token."""
    request.session.clear()
    request.session[SESSION_USER] = username
    request.session[SESSION_CSRF] = secrets.token_urlsafe(24)


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
