"""Structured logs and Prometheus metrics shared by every entry point."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter("matcher_events_applied_total", "Events applied to state",
                         ["topic", "event_type"])
EVENTS_DUPLICATE = Counter("matcher_events_duplicate_total", "Repeated events ignored",
                           ["topic"])
EVENTS_FAILED = Counter("matcher_events_failed_total", "Unexpected failures while applying",
                        ["topic"])
DEAD_LETTERS = Counter("matcher_dead_letters_total", "Events sent to the dead-letter topic",
                       ["topic", "reason_code"])
PROPOSALS = Counter("matcher_proposals_total", "Proposals made", ["shard"])
BATCH_SECONDS = Histogram("matcher_batch_seconds", "Wall time of a matching batch",
                          ["shard"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
OUTBOX_BACKLOG = Gauge("matcher_outbox_backlog", "Outgoing events not yet confirmed")
PENDING_SHARDS = Gauge("matcher_pending_shards", "Shards waiting for a matching batch")
CONSUMER_LAG = Gauge("matcher_consumer_lag", "Records on an input topic not yet consumed",
                     ["topic"])
PENDING_PROPOSALS = Gauge("matcher_pending_proposals", "Proposals waiting for a decision")
OLDEST_PENDING_AGE = Gauge("matcher_oldest_pending_proposal_age_seconds",
                           "Age of the oldest proposal waiting for a decision")
UNMATCHED_ITEMS = Gauge("matcher_unmatched_items", "Open need items left (partly) unmatched")
REBALANCE_LAST_SUCCESS = Gauge("matcher_rebalance_last_success_timestamp_seconds",
                               "Unix time the last rebalancing run completed")
REBALANCE_LAST_FAILURE = Gauge("matcher_rebalance_last_failure_timestamp_seconds",
                               "Unix time the last rebalancing run failed")

# `color_message` is uvicorn's copy of the message with terminal colour codes: noise in JSON.
_STANDARD = (set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
             | {"message", "asctime", "color_message"})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# What a Kafka client says while a freshly started broker (or freshly created topics) elect
# their partition leaders and group coordinators: expected, and gone within seconds.
EMPTY_PARTNER_PATTERN = re.compile(
    r"partner-(offers|fulfilments) has (had )?no partition assignments")
WARM_UP_MESSAGES = re.compile(
    r"NotLeaderForPartition|GroupCoordinatorNotAvailable|Marking the coordinator dead|"
    r"LeaderNotAvailable|NotCoordinator|CoordinatorLoadInProgress|"
    r"Topic .* not found in cluster metadata|UnknownTopicOrPartition")
WARM_UP_S = 60.0


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _ANSI.sub("", record.getMessage()),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class BrokerWarmUpFilter(logging.Filter):
    """Lower the Kafka client's expected warm-up complaints to DEBUG for the first minute.

    Right after start-up (or topic creation) leaders and coordinators are still being
    elected; an operator reading ERROR lines then would chase a problem that is not there.
    The same messages later on are real trouble and keep their level.
    """

    def __init__(self, window_s: float = WARM_UP_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.until = clock() + window_s

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record; a warm-up one is relabelled DEBUG and kept only when debugging."""
        if not self._is_warm_up(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def _is_warm_up(self, record: logging.LogRecord) -> bool:
        """A Kafka client warning about leaders or coordinators, within the window; or the
        partners' pattern subscriptions finding no topic yet, which is normal until a partner
        is given topics of its own."""
        if record.levelno <= logging.DEBUG:
            return False
        if record.name == "matcher.broker":
            return EMPTY_PARTNER_PATTERN.search(record.getMessage()) is not None
        return (record.name.startswith("aiokafka") and self.clock() < self.until
                and WARM_UP_MESSAGES.search(record.getMessage()) is not None)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Route every logger to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(BrokerWarmUpFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
