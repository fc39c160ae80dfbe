"""Seeded simulator of the Qijiang charity union: its district, and days of offers and cases.

The pure part (this package's exports) only builds schema objects; sending them to Kafka is
`matcher.simulator.publish.publish_events`.
"""

from matcher.simulator.day import (
    Event,
    NeedBalance,
    coverage_by_kind,
    day_balance,
    registry_events,
    simulate_day,
    simulate_month,
)
from matcher.simulator.district import District, build_district, distance_km

__all__ = [
    "District",
    "Event",
    "NeedBalance",
    "build_district",
    "coverage_by_kind",
    "day_balance",
    "distance_km",
    "registry_events",
    "simulate_day",
    "simulate_month",
]
