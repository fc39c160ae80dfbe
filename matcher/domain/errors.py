"""Domain errors: each names a reason code used in dead letters and HTTP responses."""

from __future__ import annotations


class DomainError(Exception):
    """A command or event that the domain refuses; nothing of it is applied."""

    code = "rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownPartner(DomainError):
    """The producer or owner named is not a registered partner."""

    code = "unknown_partner"


class NotOwner(DomainError):
    """An event about an offer came from a partner other than its owner."""

    code = "not_owner"


class UnknownReference(DomainError):
    """The event refers to an id the engine does not know."""

    code = "unknown_reference"


class StaleVersion(DomainError):
    """The event carries a version not newer than the one already applied."""

    code = "stale_version"


class InvalidHierarchy(DomainError):
    """A node does not fit the four-level hierarchy."""

    code = "invalid_hierarchy"


class ProposalNotFound(DomainError):
    """No proposal has that id."""

    code = "proposal_not_found"


class StaleProposal(DomainError):
    """The proposal can no longer be decided (decided already, case closed, capacity gone)."""

    code = "stale_proposal"


class NotInJurisdiction(DomainError):
    """The case lies outside the coordinator's subtree."""

    code = "not_in_jurisdiction"


class InvalidCommand(DomainError):
    """The command is incomplete or contradicts itself."""

    code = "invalid_command"
