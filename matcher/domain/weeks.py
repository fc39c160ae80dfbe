"""Weeks of the district's calendar: a volunteer's hour limit holds per person and per week.

A week is the ISO week (Monday 00:00 to Monday 00:00) on the district's wall clock, named by
an integer: weeks since the Monday 1969-12-29 (local). Pure: standard library and numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

DEFAULT_ZONE = "Asia/Shanghai"
DAY_S = 86_400.0
# 1970-01-01 was a Thursday: three days after the Monday its ISO week began on.
_EPOCH_WEEKDAY = 3


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset_s(day: int, zone: str) -> float:
    """The zone's UTC offset at noon UTC of a UTC day (seconds)."""
    moment = datetime.fromtimestamp(day * DAY_S + DAY_S / 2, UTC).astimezone(_zone(zone))
    offset = moment.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def weeks_of(moments: NDArray[np.float64] | Iterable[float], zone: str = DEFAULT_ZONE
             ) -> NDArray[np.int64]:
    """The week of each moment (epoch seconds), as the district's wall clock counts weeks.

    Offsets are looked up once per distinct day, so a batch of many arcs costs a few lookups.
    """
    t = np.asarray(moments if isinstance(moments, np.ndarray) else list(moments),
                   dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    finite = np.isfinite(t)
    days = np.floor(np.where(finite, t, 0.0) / DAY_S).astype(np.int64)
    unique, inverse = np.unique(days, return_inverse=True)
    offsets = np.asarray([_offset_s(int(d), zone) for d in unique.tolist()])
    local_days = np.floor((np.where(finite, t, 0.0) + offsets[inverse]) / DAY_S)
    weeks = np.floor((local_days + _EPOCH_WEEKDAY) / 7.0).astype(np.int64)
    return np.where(finite, weeks, -1)


def week_of(moment: datetime, zone: str = DEFAULT_ZONE) -> int:
    """The week of one moment."""
    return int(weeks_of(np.asarray([moment.timestamp()]), zone)[0])


def week_start(week: int, zone: str = DEFAULT_ZONE) -> datetime:
    """Monday 00:00 local time of a week, time-zone aware."""
    monday = date(1970, 1, 1) + timedelta(days=week * 7 - _EPOCH_WEEKDAY)
    return datetime(monday.year, monday.month, monday.day, tzinfo=_zone(zone))


def week_label(week: int, zone: str = DEFAULT_ZONE) -> str:
    """The ISO name of a week, e.g. 2025-W10."""
    year, number, _ = week_start(week, zone).isocalendar()
    return f"{year}-W{number:02d}"


def hours_by_week(visits: Iterable[tuple[str, float, float]], zone: str = DEFAULT_ZONE
                  ) -> dict[tuple[str, int], float]:
    """Hours per (volunteer, week) of visits given as (volunteer, start, hours); a visit
    counts in the week it starts in."""
    rows = list(visits)
    weeks = weeks_of(np.asarray([start for _, start, _ in rows], dtype=np.float64), zone)
    out: dict[tuple[str, int], float] = {}
    for (volunteer, _, hours), week in zip(rows, weeks.tolist(), strict=True):
        out[volunteer, week] = out.get((volunteer, week), 0.0) + hours
    return out


def over_limit(hours: Mapping[tuple[str, int], float], limits: Mapping[str, float],
               slack: float = 1e-6) -> dict[tuple[str, int], float]:
    """(volunteer, week) -> hours beyond the volunteer's limit, for those over it."""
    return {key: used - limits[key[0]] for key, used in hours.items()
            if key[0] in limits and used > limits[key[0]] + slack}


def stated_limits(offers: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """The lowest weekly hour limit each volunteer states across these offer payloads."""
    limits: dict[str, float] = {}
    for payload in offers:
        if payload.get("kind") == "volunteer":
            volunteer = str(payload["volunteer_id"])
            limit = float(payload["weekly_hour_limit"])  # type: ignore[arg-type]
            limits[volunteer] = min(limit, limits.get(volunteer, limit))
    return limits
