"""Placing volunteer visits in time, so no volunteer is in two places at once."""

from __future__ import annotations

from collections.abc import Sequence


def earliest_free_start(busy: Sequence[tuple[float, float]], start: float, end: float,
                        duration: float) -> float | None:
    """Earliest t in [start, end - duration] with [t, t + duration) clear of every busy interval."""
    t = start
    for busy_start, busy_end in sorted(busy):
        if busy_end <= t:
            continue
        if busy_start >= t + duration:
            break
        t = busy_end
    return t if t + duration <= end + 1e-6 else None
