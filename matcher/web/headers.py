"""Security headers on every response of the web app, and `Secure` cookies over HTTPS."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The console loads only its own stylesheet; charts are inline SVG (no script, no style).
CONSOLE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# The API and event documentation pages run self-hosted viewers (Swagger UI, the AsyncAPI
# component), which set inline styles and compile their schemas at run time (eval); nothing
# from another origin.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-eval'; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/api/docs", "/api/asyncapi")
FIXED_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _is_https(scope: Scope, trust_forwarded: bool) -> bool:
    """HTTPS directly, or as told by a trusted reverse proxy's X-Forwarded-Proto."""
    if scope.get("scheme") == "https":
        return True
    if not trust_forwarded:
        return False
    proto = Headers(scope=scope).get("x-forwarded-proto", "")
    return proto.split(",")[0].strip().lower() == "https"


def _secure(cookie: str) -> str:
    """A Set-Cookie value with the Secure attribute."""
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    return cookie if "secure" in attributes else f"{cookie}; secure"


class SecurityHeaders:
    """ASGI middleware: CSP, frame and sniffing protection; Secure cookies over HTTPS."""

    def __init__(self, app: ASGIApp, *, trust_forwarded: bool = False) -> None:
        self.app = app
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else CONSOLE_CSP
        https = _is_https(scope, self.trust_forwarded)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = csp
                for name, value in FIXED_HEADERS.items():
                    headers[name] = value
                if https:
                    cookies = headers.getlist("set-cookie")
                    del headers["set-cookie"]
                    for cookie in cookies:
                        headers.append("set-cookie", _secure(cookie))
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)
