"""The console's rebalancing page: the latest nightly (or requested) runs and what they changed.

District-wide figures are shown to every coordinator; grid rows and changed proposals only
where the coordinator's subtree holds the grid.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from matcher.services.jurisdiction import Coordinator
from matcher.services.oversight import grid_choices
from matcher.services.rebalance_report import latest_reports
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import Store
from matcher.web.auth import desk_of
from matcher.web.console import _activate, _me, page

router = APIRouter(prefix="/console", include_in_schema=False)
RUNS_SHOWN = 7


def _grid_paths(store: Store, _: Coordinator) -> dict[str, str]:
    """Path of every node (to tell which grids a coordinator covers)."""
    return CoordinationStore(store.conn).grid_paths()


def _grid_names(store: Store, me: Coordinator) -> dict[str, str]:
    """Registry names of the grids in the coordinator's subtree."""
    return dict(grid_choices(store, me))


def in_jurisdiction(report: dict[str, Any], me: Coordinator, paths: dict[str, str]
                    ) -> dict[str, Any]:
    """The report with grid rows and changes cut to the coordinator's subtree."""
    def covered(grid_id: str) -> bool:
        return me.covers(paths.get(grid_id, "\0"))

    return {**report,
            "fulfilment_by_grid": {g: v for g, v in report["fulfilment_by_grid"].items()
                                   if covered(g)},
            "changes": [c for c in report["changes"] if covered(c["grid_id"])]}


@router.get("/rebalance")
def rebalance_page(request: Request) -> HTMLResponse:
    """The latest rebalancing runs: summary, objective, fulfilment and the diff."""
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    paths = desk.read(_grid_paths, me.username)
    names = desk.read(_grid_names, me.username)
    reports = [in_jurisdiction(r, me, paths)
               for r in latest_reports(desk.engine.db, RUNS_SHOWN)]
    return page(request, "rebalance.html", me=me, reports=reports, names=names)
