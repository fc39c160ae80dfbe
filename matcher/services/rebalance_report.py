"""The report of a rebalancing run: district figures before and after, as data, files and pages.

Figures: objective and bound, fulfilment by grid and by kind, waiting times of what is still
open, partner utilisation, goods close to expiry given out. No beneficiary attributes: items
are counted, never described.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from matcher.storage.rebalance_tables import RebalanceStore
from matcher.storage.store import OfferRow, unit_of_work
from schemas.rebalance import RebalanceSummary

if TYPE_CHECKING:
    from matcher.services.rebalance_diff import Figures, ShardPlan

NEAR_EXPIRY_DAYS = 7.0
DISTRICT_TIMEZONE = "Asia/Shanghai"
TOP_PARTNERS = 15


def build_report(summary: RebalanceSummary, plans: list[ShardPlan]) -> dict[str, Any]:
    """The whole report as JSON-ready data: summary, diff and district figures."""
    items = [item for plan in plans for item in plan.items]
    offers = [offer for plan in plans for offer in plan.offers]
    now = plans[0].now if plans else summary.started_at
    before = _merge([p.before for p in plans])
    after = _merge([p.after for p in plans])
    return {
        "summary": summary.model_dump(mode="json", exclude={"changes"}),
        "objective": {"before": summary.objective_before, "after": summary.objective_after,
                      "gain": round(summary.objective_after - summary.objective_before, 3),
                      "stability_adjusted_before": round(sum(p.adjusted_before for p in plans),
                                                         3),
                      "stability_adjusted_after": round(sum(p.adjusted_after for p in plans), 3),
                      "bound": summary.bound},
        "fulfilment_by_grid": _fulfilment(items, before, after, "grid_id"),
        "fulfilment_by_kind": _fulfilment(items, before, after, "kind"),
        "waiting_days": {"before": _waiting(items, before, now),
                         "after": _waiting(items, after, now)},
        "partner_utilisation": _utilisation(offers, before, after),
        "goods_near_expiry": _near_expiry(offers, before, after, now),
        "changes": [c.model_dump(mode="json") for plan in plans for c in plan.changes]
        if summary.changes_truncated else [c.model_dump(mode="json") for c in summary.changes],
    }


def _merge(figures: Iterable[Figures]) -> tuple[dict[Any, float], dict[Any, float]]:
    """(served per item, committed per offer unit) over all shards."""
    served: dict[Any, float] = {}
    committed: dict[Any, float] = {}
    for f in figures:
        served.update(f.served)
        for key, value in f.committed.items():
            committed[key] = committed.get(key, 0.0) + value
    return served, committed


def _share(item: Mapping[str, Any], served: Mapping[Any, float]) -> float:
    """Share of an item's quantity served (0..1)."""
    return min(1.0, served.get((item["case_id"], item["item_id"]), 0.0) / item["quantity"])


def _fulfilment(items: list[dict[str, Any]], before: tuple[dict[Any, float], dict[Any, float]],
                after: tuple[dict[Any, float], dict[Any, float]], by: str
                ) -> dict[str, dict[str, float]]:
    """Mean share of requested quantity served per group, before and after, and item counts."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[str(item[by])].append(item)
    return {
        name: {"items": len(group),
               "before": round(sum(_share(i, before[0]) for i in group) / len(group), 4),
               "after": round(sum(_share(i, after[0]) for i in group) / len(group), 4)}
        for name, group in sorted(groups.items())
    }


def _waiting(items: list[dict[str, Any]], served: tuple[dict[Any, float], dict[Any, float]],
             now: datetime) -> dict[str, float]:
    """How long items not fully served have waited since their case opened, in days."""
    days = sorted(max(0.0, (now - item["opened_at"]).total_seconds() / 86_400.0) for item in items
                  if _share(item, served[0]) < 1.0 - 1e-9)
    if not days:
        return {"open_items": 0, "median": 0.0, "p90": 0.0, "max": 0.0}
    return {"open_items": len(days), "median": round(statistics.median(days), 2),
            "p90": round(days[min(len(days) - 1, int(0.9 * len(days)))], 2),
            "max": round(days[-1], 2)}


def _unit_capacity(offers: Iterable[OfferRow]) -> dict[tuple[str, int | None], tuple[str, float]]:
    """(partner, capacity) per offer unit."""
    from matcher.domain.frames import supply_units

    out: dict[tuple[str, int | None], tuple[str, float]] = {}
    for offer in offers:
        for unit in supply_units({"offer_id": offer.offer_id, "payload": offer.payload}):
            key = (offer.offer_id, None if unit["slot"] < 0 else unit["slot"])
            out[key] = (offer.partner_id, float(unit["capacity"]))
    return out


def _utilisation(offers: list[OfferRow], before: tuple[dict[Any, float], dict[Any, float]],
                 after: tuple[dict[Any, float], dict[Any, float]]) -> dict[str, Any]:
    """Share of each partner's capacity committed, before and after (busiest partners first)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for key, (partner, capacity) in _unit_capacity(offers).items():
        totals[partner][0] += capacity
        totals[partner][1] += before[1].get(key, 0.0)
        totals[partner][2] += after[1].get(key, 0.0)
    rows = {p: {"before": round(b / c, 4), "after": round(a / c, 4)}
            for p, (c, b, a) in totals.items() if c > 0}
    ranked = sorted(rows.items(), key=lambda kv: -kv[1]["after"])
    mean_before = sum(r["before"] for r in rows.values()) / len(rows) if rows else 0.0
    mean_after = sum(r["after"] for r in rows.values()) / len(rows) if rows else 0.0
    return {"partners": len(rows), "mean_before": round(mean_before, 4),
            "mean_after": round(mean_after, 4), "busiest": dict(ranked[:TOP_PARTNERS])}


def _near_expiry(offers: list[OfferRow], before: tuple[dict[Any, float], dict[Any, float]],
                 after: tuple[dict[Any, float], dict[Any, float]], now: datetime
                 ) -> dict[str, dict[str, float]]:
    """Goods expiring within a week: quantity offered, given out before and after, per unit."""
    out: dict[str, dict[str, float]] = {}
    for offer in offers:
        expires = offer.payload.get("expires_at")
        if offer.kind != "goods" or not expires:
            continue
        left = (datetime.fromisoformat(expires) - now).total_seconds() / 86_400.0
        if not 0 < left <= NEAR_EXPIRY_DAYS:
            continue
        unit = str(offer.payload["unit"])
        row = out.setdefault(unit, {"offered": 0.0, "before": 0.0, "after": 0.0, "saved": 0.0})
        row["offered"] += float(offer.payload["quantity"])
        row["before"] += before[1].get((offer.offer_id, None), 0.0)
        row["after"] += after[1].get((offer.offer_id, None), 0.0)
        row["saved"] = round(row["after"] - row["before"], 3)
    return out


# --- files ---------------------------------------------------------------------------------------


def zone_label(timezone: str, at: datetime) -> str:
    """'Beijing time, UTC+8' for China's zone; 'UTC+H, Area/City' elsewhere."""
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset() or timedelta()
    utc = f"UTC{offset.total_seconds() / 3600:+g}"
    return f"Beijing time, {utc}" if timezone in ("Asia/Shanghai", "Asia/Chongqing") \
        else f"{utc}, {timezone}"


def local_time(moment: str | datetime, timezone: str) -> str:
    """A moment of the report (ISO-8601 on the wire) as the district's clock shows it."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return f"{when.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}"


def write_report_files(report: dict[str, Any], folder: Path,
                       timezone: str = DISTRICT_TIMEZONE) -> list[Path]:
    """Write the report as JSON, Markdown (times in the district's zone) and a PNG of
    fulfilment by kind and grid."""
    folder.mkdir(parents=True, exist_ok=True)
    run_id = report["summary"]["run_id"]
    json_path = folder / f"{run_id}.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    md_path = folder / f"{run_id}.md"
    md_path.write_text(markdown(report, timezone))
    paths = [json_path, md_path]
    png = plot(report, folder / f"{run_id}.png")
    if png is not None:
        paths.append(png)
    return paths


def markdown(report: dict[str, Any], timezone: str = DISTRICT_TIMEZONE) -> str:
    """The report as a Markdown page for people, its times on the district's clock."""
    s, o = report["summary"], report["objective"]
    started = datetime.fromisoformat(s["started_at"])
    lines = [
        f"# Rebalancing run {s['run_id']}",
        "",
        f"{s['trigger']} run by {s['requested_by']}, {local_time(started, timezone)} to "
        f"{local_time(s['finished_at'], timezone)} ({zone_label(timezone, started)}): "
        f"**{s['status']}**. {s['note']}",
        "",
        "| new | moved | revoked | released | kept | held back by the cap |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {s['new']} | {s['moved']} | {s['revoked']} | {s['released']} | {s['kept']} | "
        f"{s['moves_capped']} |",
        "",
        f"Objective (score points of the pending plan): {o['before']:.1f} -> {o['after']:.1f} "
        f"({o['gain']:+.1f}); with the stability bonus {o['stability_adjusted_before']:.1f} -> "
        f"{o['stability_adjusted_after']:.1f}, bound {o['bound']:.1f}.",
        "",
        "## Fulfilment by kind (mean share of each item served)",
        "",
        "| kind | items | before | after |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {v['items']} | {v['before']:.1%} | {v['after']:.1%} |"
          for k, v in report["fulfilment_by_kind"].items()),
        "",
        "## Fulfilment by grid",
        "",
        "| grid | items | before | after |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {v['items']} | {v['before']:.1%} | {v['after']:.1%} |"
          for k, v in report["fulfilment_by_grid"].items()),
        "",
        "## Waiting (days since the case opened, items not fully served)",
        "",
        "| | open items | median | p90 | max |",
        "|---|---:|---:|---:|---:|",
        *(f"| {when} | {w['open_items']} | {w['median']} | {w['p90']} | {w['max']} |"
          for when, w in report["waiting_days"].items()),
        "",
        f"## Partner utilisation: mean {report['partner_utilisation']['mean_before']:.1%} -> "
        f"{report['partner_utilisation']['mean_after']:.1%}",
        "",
        "## Goods close to expiry (within a week)",
        "",
        "| unit | offered | given before | given after | saved |",
        "|---|---:|---:|---:|---:|",
        *(f"| {u} | {v['offered']:g} | {v['before']:g} | {v['after']:g} | {v['saved']:g} |"
          for u, v in report["goods_near_expiry"].items()),
        "",
        "## Changes",
        "",
        "| change | case/item | from | to | score | reason |",
        "|---|---|---|---|---:|---|",
        *(f"| {c['change']} | {c['case_id']}/{c['item_id']} | {c['old_offer_id'] or ''} | "
          f"{', '.join(c['new_offer_ids'])} | {c['score_before']:.1f} -> "
          f"{c['score_after']:.1f} | {c['reason']} |" for c in report["changes"]),
        "",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """Bar charts of fulfilment by kind and by grid, before and after (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency, but the plot is optional
        return None
    by_kind, by_grid = report["fulfilment_by_kind"], report["fulfilment_by_grid"]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5),
                                gridspec_kw={"width_ratios": [1, 3]})
    for axis, table, title in ((axes[0], by_kind, "by kind"), (axes[1], by_grid, "by grid")):
        names = list(table)
        positions = range(len(names))
        axis.bar([x - 0.2 for x in positions], [table[n]["before"] for n in names], 0.4,
                 label="before")
        axis.bar([x + 0.2 for x in positions], [table[n]["after"] for n in names], 0.4,
                 label="after")
        axis.set_xticks(list(positions), [n[-18:] for n in names], rotation=60, ha="right",
                        fontsize=7)
        axis.set_ylim(0, 1)
        axis.set_title(f"Share served {title}")
    axes[0].legend()
    figure.suptitle(f"Rebalancing {report['summary']['run_id']}: objective "
                    f"{report['objective']['before']:.0f} -> {report['objective']['after']:.0f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --- for the console ------------------------------------------------------------------------------


def latest_reports(db: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs' reports, newest first (for the coordinators' rebalancing page)."""
    with unit_of_work(db) as store:
        rows = RebalanceStore(store.conn).latest_runs(limit)
    return [row.report for row in rows]
