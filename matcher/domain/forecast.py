"""Urgent cases expected soon, so a batch does not give their capacity away first.

A district's demand repeats by weekday: last week's urgent cases of a shard, moved one week
on, are a forecast of the urgent cases the next hours will bring. A batch that plans these
expected items beside the real ones, their value discounted by `Reserve.share`, lets an
expected urgent case outbid a real but less urgent one for capacity no one else can give it
(a nursing volunteer's afternoon, the last lot of milk in reach); the capacity the expected
items win is then set aside, and the real items are planned against what is left. A real
item as urgent as an expected one always wins, as its value is not discounted.

Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Expected items' case ids start with this, so they can never be taken for real ones.
EXPECTED_PREFIX = "expected:"
_MOMENTS = ("window_start", "window_end", "deadline", "opened_at")


@dataclass(frozen=True)
class Reserve:
    """How much capacity a batch keeps for urgent cases expected soon."""

    # What an expected item is worth against a real one: 0 keeps nothing back; below 1, so a
    # real case as urgent and as well placed always wins. 0.9 and urgency 3 served the most
    # on a simulated month (benchmarks/README.md).
    share: float = 0.9
    min_urgency: int = 3  # only cases this urgent (1-5) are expected
    lookahead_h: float = 24.0  # cases expected to arrive within this many hours
    days_back: int = 7  # the forecast is the same hours this many days before

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"reserve share must be in [0, 1), not {self.share}")

    @property
    def active(self) -> bool:
        """Whether anything is kept back at all."""
        return self.share > 0.0

    def seen_between(self, now: datetime) -> tuple[datetime, datetime]:
        """When the cases the forecast repeats were opened."""
        start = now - timedelta(days=self.days_back)
        return start, start + timedelta(hours=self.lookahead_h)


def expected_items(seen: Iterable[Mapping[str, Any]], reserve: Reserve
                   ) -> list[dict[str, Any]]:
    """Item rows seen `days_back` before, moved on by as much, as items expected soon."""
    shift = timedelta(days=reserve.days_back)
    return [{**row, "case_id": EXPECTED_PREFIX + str(row["case_id"]),
             **{name: row[name] + shift for name in _MOMENTS}} for row in seen]


def still_to_come(expected: Iterable[dict[str, Any]], live: Iterable[Mapping[str, Any]],
                  now: datetime) -> list[dict[str, Any]]:
    """The expected items before their deadline whose beneficiary has no live item asking
    for the same: a weekly case that has come already is not expected again."""
    come = {(item["beneficiary"].get("pseudonym"), item["need"].lower()) for item in live}
    return [item for item in expected if item["deadline"] > now
            and (item["beneficiary"].get("pseudonym"), item["need"].lower()) not in come]


def is_expected(case_id: str) -> bool:
    """Whether a case id names an expected case, not a real one."""
    return case_id.startswith(EXPECTED_PREFIX)
