"""The API's OpenAPI page and the events' AsyncAPI page, from the app's own static files.

Both work offline (a government intranet): the Swagger UI and AsyncAPI bundles are vendored
under static/vendor, and each page starts its viewer from a static script, not an inline one.
"""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from matcher.settings import PROJECT_ROOT, Settings

router = APIRouter(include_in_schema=False)
STATIC = "/console/static"
ASYNCAPI_FILE = PROJECT_ROOT / "docs" / "asyncapi.json"


def _page(title: str, styles: list[str], scripts: list[str], body: str) -> HTMLResponse:
    """A bare HTML page loading only local styles and scripts."""
    links = "".join(f'<link rel="stylesheet" href="{STATIC}/{s}">' for s in styles)
    tags = "".join(f'<script src="{STATIC}/{s}" defer></script>' for s in scripts)
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title>'
        f'<link rel="icon" href="{STATIC}/vendor/swagger-ui/favicon-32x32.png">{links}</head>'
        f"<body>{body}{tags}</body></html>")


@router.get("/api/docs")
def swagger_page() -> HTMLResponse:
    """Swagger UI over /api/openapi.json."""
    return _page("Charity matching engine: coordinators' API",
                 ["vendor/swagger-ui/swagger-ui.css"],
                 ["vendor/swagger-ui/swagger-ui-bundle.js", "docs-swagger.js"],
                 '<div id="swagger-ui" data-openapi="/api/openapi.json"></div>')


@router.get("/api/asyncapi")
def asyncapi_page() -> HTMLResponse:
    """The AsyncAPI viewer over /api/asyncapi.json: topics, keys and payloads."""
    return _page("Charity matching engine: events (AsyncAPI)",
                 ["vendor/asyncapi/default.min.css"],
                 ["vendor/asyncapi/asyncapi-standalone.js", "docs-asyncapi.js"],
                 '<div id="asyncapi" data-document="/api/asyncapi.json"></div>')


@lru_cache(maxsize=1)
def asyncapi_document() -> dict[str, object]:
    """The committed document when the source tree is there; generated from the code in a
    wheel install (the same content: tests keep the committed one up to date)."""
    if ASYNCAPI_FILE.is_file():
        document: dict[str, object] = json.loads(ASYNCAPI_FILE.read_text())
        return document
    from events.app import asyncapi_json  # late: events.app builds this web app

    generated: dict[str, object] = json.loads(
        asyncapi_json(Settings.model_construct(database_url="sqlite://")))
    return generated


@router.get("/api/asyncapi.json")
def asyncapi_json_document() -> JSONResponse:
    """The AsyncAPI document as JSON."""
    return JSONResponse(asyncapi_document())
