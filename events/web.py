"""Serving the coordinators' web app (/api, /console) from the engine's AsgiFastStream.

FastStream 0.7.8 matches `asgi_routes` by exact path (`scope["path"] == path`), so a FastAPI
app given as ("/api", app) would only ever see "/api" itself. Mounts here match sub-paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.asgi.types import ASGIApp, Receive, Scope, Send


class AsgiWithMounts(AsgiFastStream):
    """AsgiFastStream that also serves ASGI apps under path prefixes ("/api" -> "/api/...")."""

    def __init__(self, *brokers: Any, mounts: Sequence[tuple[str, ASGIApp]] = (),
                 **options: Any) -> None:
        super().__init__(*brokers, **options)
        self.mounts = [(prefix.rstrip("/"), app) for prefix, app in mounts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Mounted apps get their requests (full path kept); the rest goes to FastStream."""
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            for prefix, app in self.mounts:
                if path == prefix or path.startswith(prefix + "/"):
                    await app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)
