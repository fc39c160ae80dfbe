"""Names of the topics, derived from one configurable prefix."""

from __future__ import annotations

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
