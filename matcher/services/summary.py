"""What the engine has done so far, in numbers a coordinator reads at a glance."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from matcher.storage.store import HOLDING
from matcher.storage.tables import audit_log, need_items, partners, proposals


@dataclass(frozen=True)
class KindSummary:
    """Demand and what was proposed for one kind of offer."""

    items: int = 0
    requested: float = 0.0
    proposed: float = 0.0
    proposals: int = 0
    items_served: int = 0

    @property
    def share_served(self) -> float:
        return self.items_served / self.items if self.items else 0.0


@dataclass(frozen=True)
class Summary:
    """Counts of state after a run."""

    events_applied: int
    partners: int
    by_kind: dict[str, KindSummary]
    unmatched_reasons: dict[str, int] = field(default_factory=dict)


def summarize(db: Engine) -> Summary:
    """Read the summary from the database."""
    with db.connect() as conn:
        applied = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        partner_count = conn.execute(select(func.count()).select_from(partners)).scalar_one()
        items = conn.execute(select(need_items.c.case_id, need_items.c.item_id, need_items.c.kind,
                                    need_items.c.quantity, need_items.c.unmatched_code)).all()
        held = conn.execute(
            select(proposals.c.case_id, proposals.c.item_id, proposals.c.amount)
            .where(proposals.c.status.in_([s.value for s in HOLDING]))
        ).all()
    served: dict[tuple[str, str], float] = defaultdict(float)
    count: Counter[tuple[str, str]] = Counter()
    for case_id, item_id, amount in held:
        served[(case_id, item_id)] += amount
        count[(case_id, item_id)] += 1
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    reasons: Counter[str] = Counter()
    for case_id, item_id, kind, quantity, code in items:
        key = (case_id, item_id)
        row = totals[kind]
        row["items"] += 1
        row["requested"] += quantity
        row["proposed"] += min(served[key], quantity)
        row["proposals"] += count[key]
        row["items_served"] += served[key] >= quantity - 1e-6
        if code:
            reasons[code] += 1
    by_kind = {kind: KindSummary(items=int(r["items"]), requested=r["requested"],
                                 proposed=r["proposed"], proposals=int(r["proposals"]),
                                 items_served=int(r["items_served"]))
               for kind, r in sorted(totals.items())}
    return Summary(events_applied=int(applied), partners=int(partner_count), by_kind=by_kind,
                   unmatched_reasons=dict(reasons.most_common()))
