"""What a nightly rebalance of one shard starts from: its knobs and one consistent snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from matcher.domain.weeks import DEFAULT_ZONE, hours_by_week, week_of, week_start
from matcher.services.matching import MatchingConfig
from matcher.storage.store import HOLDING, NodeRow, OfferRow, ProposalRow, Store, hours_given
from matcher.storage.tables import proposals


@dataclass(frozen=True)
class RebalanceConfig:
    """Knobs of a rebalancing run."""

    matching: MatchingConfig
    change_penalty: float = 10.0  # score points a move must gain (per whole item)
    max_moves: int | None = 200  # pending proposals moved or revoked per run; None: no cap


@dataclass(frozen=True)
class Snapshot:
    """What a shard's plan is computed from, read in one transaction."""

    shard: str
    items: list[dict[str, Any]]
    offers: list[OfferRow]
    nodes: dict[str, NodeRow]
    holding: list[ProposalRow]
    offer_rows: dict[str, OfferRow]  # every offer a holding proposal uses, active or not
    excluded: set[tuple[str, str, str]]
    history: set[tuple[str, str]]
    visits: list[ProposalRow]  # volunteer visits promised anywhere (for placing new ones)
    # Hours each volunteer gives per week (any offer or shard, pending ones included).
    given: dict[tuple[str, int], float] = field(default_factory=dict)
    timezone: str = DEFAULT_ZONE
    limits: dict[str, float] = field(default_factory=dict)  # stated by offers serving them
    partner_reach: dict[str, dict[str, Any]] = field(default_factory=dict)  # partners' defaults


def read_snapshot(store: Store, shard: str, now: datetime | None = None,
                  timezone: str = DEFAULT_ZONE) -> Snapshot:
    """Read everything the shard's plan needs, in the caller's (read) transaction; with
    `now`, also the hours volunteers give from this week on."""
    holding = store.proposals_where(proposals.c.shard == shard,
                                    proposals.c.status.in_([s.value for s in HOLDING]))
    given = [] if now is None else store.given_visits(
        since=week_start(week_of(now, timezone), timezone))
    offer_rows: dict[str, OfferRow] = {}
    for offer_id in sorted({p.offer_id for p in holding}):
        row = store.offer(offer_id)
        if row is not None:
            offer_rows[offer_id] = row
    return Snapshot(
        shard=shard, items=store.open_items(shard), offers=store.active_offers(shard),
        nodes={node.node_id: node for node in store.all_nodes()}, holding=holding,
        offer_rows=offer_rows, excluded=store.excluded_pairs(shard),
        history=store.volunteer_history(), visits=store.holding_volunteer_visits(),
        given=hours_by_week(hours_given(given), timezone), timezone=timezone,
        limits=store.stated_limits_of({visit.offer_id for visit in given}),
        partner_reach=store.partner_reaches(),
    )
