"""Names of the topics, derived from one configurable prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every registry event carries this one key, so the registry topic keeps one total order:
# a parent node before its children, a node before the partners attached to it.
REGISTRY_KEY = "registry"


@dataclass(frozen=True)
class Topics:
    """Every topic the engine reads or writes.

    Keys: offers by offer id, needs by case id, the registry by REGISTRY_KEY, decisions and
    fulfilment by proposal id, proposals and unmatched by case id; so per-entity order holds.
    """

    prefix: str = "charity"

    @property
    def registry(self) -> str:
        return f"{self.prefix}.registry"

    @property
    def offers(self) -> str:
        return f"{self.prefix}.offers"

    @property
    def needs(self) -> str:
        return f"{self.prefix}.needs"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def fulfilments(self) -> str:
        return f"{self.prefix}.fulfilments"

    @property
    def proposals(self) -> str:
        return f"{self.prefix}.proposals"

    @property
    def unmatched(self) -> str:
        return f"{self.prefix}.unmatched"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.registry, self.offers, self.needs, self.decisions, self.fulfilments,
                self.rebalance)

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.inputs, self.proposals, self.unmatched, self.dead_letter, self.assignments,
                self.shard_changes, self.rebalance_reports)

    @property
    def assignments(self) -> str:
        """Approved matches sent to the offering partner, keyed by partner id."""
        return f"{self.prefix}.assignments"

    @property
    def shard_changes(self) -> str:
        """Internal: which matching shard changed, keyed by shard id. The engine instance that
        owns the shard's partition is the only one that matches it."""
        return f"{self.prefix}.shard-changes"

    @property
    def rebalance(self) -> str:
        """Requests for a rebalancing run (rebalance.requested), keyed by requester."""
        return f"{self.prefix}.rebalance"

    @property
    def rebalance_reports(self) -> str:
        """What each rebalancing run did (rebalance.completed, with its diff), keyed by run id."""
        return f"{self.prefix}.rebalance-reports"

    # -- a partner's own topics: only that partner's principal may write them, so the topic
    # -- itself proves which partner sent a record (see docs/kafka-security.md)

    def offers_of(self, partner_id: str) -> str:
        """Offers of one partner, written by its principal only; keyed by offer id."""
        return f"{self.offers}.{partner_id}"

    def fulfilments_of(self, partner_id: str) -> str:
        """Fulfilment reports of one partner, written by its principal only."""
        return f"{self.fulfilments}.{partner_id}"

    def feedback_of(self, partner_id: str) -> str:
        """Why the partner's own events were refused (redacted), readable by it only."""
        return f"{self.prefix}.feedback.{partner_id}"

    def assignments_of(self, partner_id: str) -> str:
        """Approved matches of one partner's offers, readable by it only."""
        return f"{self.assignments}.{partner_id}"

    def partner_topics(self, partner_id: str) -> tuple[str, ...]:
        return (self.offers_of(partner_id), self.fulfilments_of(partner_id),
                self.feedback_of(partner_id), self.assignments_of(partner_id))

    @property
    def partner_offers_pattern(self) -> str:
        """The regular expression of every partner's offers topic."""
        return re.escape(f"{self.offers}.") + r"[A-Za-z0-9._-]+"

    @property
    def partner_fulfilments_pattern(self) -> str:
        """The regular expression of every partner's fulfilments topic."""
        return re.escape(f"{self.fulfilments}.") + r"[A-Za-z0-9._-]+"

    def partner_of(self, topic: str) -> str | None:
        """The partner whose own topic `topic` is, or None for a shared topic."""
        for shared in (self.offers, self.fulfilments):
            if topic.startswith(shared + ".") and len(topic) > len(shared) + 1:
                return topic[len(shared) + 1:]
        return None
