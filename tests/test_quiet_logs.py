"""Logs an operator can read: no terminal colour codes in JSON lines, and the Kafka client's
expected warm-up complaints kept out of WARNING and ERROR during the first minute."""

from __future__ import annotations

import json
import logging

from matcher.observability import BrokerWarmUpFilter, JsonFormatter


def record(name: str, level: int, msg: str, *args: object, **extra: object
           ) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_json_lines_carry_no_colour_codes_from_uvicorn() -> None:
    line = JsonFormatter().format(record(
        "uvicorn.error", logging.INFO, "Uvicorn running on %s", "http://0.0.0.0:8080",
        color_message="Uvicorn running on \x1b[1m%s\x1b[0m"))
    entry = json.loads(line)
    assert "color_message" not in entry
    assert "\x1b" not in line
    assert entry["msg"] == "Uvicorn running on http://0.0.0.0:8080"


def test_colour_codes_inside_a_message_are_stripped() -> None:
    entry = json.loads(JsonFormatter().format(
        record("matcher", logging.INFO, "\x1b[32mstarted\x1b[0m", topic="t.offers")))
    assert entry["msg"] == "started"
    assert entry["topic"] == "t.offers"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_coordinator_warning_during_warm_up_is_lowered_to_debug_and_dropped() -> None:
    warm_up = BrokerWarmUpFilter(window_s=60, clock=FakeClock())
    dead = record("aiokafka.consumer.group_coordinator", logging.WARNING,
                  "Marking the coordinator dead (node %s)for group %s.", 1, "g")
    assert warm_up.filter(dead) is False
    assert dead.levelno == logging.DEBUG


def test_a_warm_up_message_is_kept_at_debug_when_debugging() -> None:
    logger = logging.getLogger("aiokafka.test_debugging")
    logger.setLevel(logging.DEBUG)
    try:
        error = record(logger.name, logging.ERROR, "Group Coordinator Request failed: %s",
                       "[Error 15] GroupCoordinatorNotAvailableError")
        assert BrokerWarmUpFilter(clock=FakeClock()).filter(error) is True
        assert error.levelname == "DEBUG"
    finally:
        logger.setLevel(logging.NOTSET)


def test_the_same_warning_after_warm_up_keeps_its_level() -> None:
    clock = FakeClock()
    warm_up = BrokerWarmUpFilter(window_s=60, clock=clock)
    clock.now += 61
    late = record("aiokafka.producer.sender", logging.WARNING, "Got error produce response: %s",
                  "NotLeaderForPartitionError")
    assert warm_up.filter(late) is True
    assert late.levelno == logging.WARNING


def test_other_warnings_are_untouched_during_warm_up() -> None:
    warm_up = BrokerWarmUpFilter(clock=FakeClock())
    own = record("matcher.events", logging.WARNING, "NotLeaderForPartition seen by us")
    other = record("aiokafka.conn", logging.ERROR, "Unable to connect to node 1")
    assert warm_up.filter(own) and warm_up.filter(other)
    assert (own.levelno, other.levelno) == (logging.WARNING, logging.ERROR)


def test_an_empty_partner_pattern_is_not_a_warning_but_other_groups_are() -> None:
    clock = FakeClock()
    quiet = BrokerWarmUpFilter(window_s=60, clock=clock)
    clock.now += 3600  # long after warm-up: no partner may have its own topics yet
    empty = record("matcher.broker", logging.WARNING, "Consumer in group g.partner-offers has "
                   "no partition assignments - this could be temporary")
    assert quiet.filter(empty) is False and empty.levelno == logging.DEBUG
    still = record("matcher.broker", logging.WARNING, "Consumer in group g.partner-fulfilments "
                   "has had no partition assignments for 120 seconds")
    assert quiet.filter(still) is False
    stuck = record("matcher.broker", logging.WARNING, "Consumer in group g.needs has no "
                   "partition assignments - this could be temporary")
    assert quiet.filter(stuck) is True and stuck.levelno == logging.WARNING
