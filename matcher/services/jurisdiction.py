"""Who may see and decide what: a coordinator's jurisdiction is their node's subtree.

Whatever lies outside it is answered exactly as if it did not exist (NotFoundHere), so a
refusal reveals neither that a case or proposal exists nor where it lives.
"""

from __future__ import annotations

from dataclasses import dataclass

from matcher.domain.errors import NotInJurisdiction, UnknownReference
from matcher.domain.hierarchy import in_subtree
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import Store


class NotFoundHere(NotInJurisdiction):
    """Unknown, or outside the coordinator's subtree: the two are indistinguishable."""

    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found in your jurisdiction")


@dataclass(frozen=True)
class Coordinator:
    """A signed-in (or event-named) coordinator with the node they answer for."""

    username: str
    display_name: str
    node_id: str
    node_path: str
    level: str

    def covers(self, path: str) -> bool:
        """Whether a node at `path` lies in this coordinator's subtree."""
        return in_subtree(path, self.node_path)


def active_coordinator(store: Store, username: str) -> Coordinator:
    """The registered, active coordinator with this username; refused otherwise."""
    row = CoordinationStore(store.conn).coordinator(username)
    if row is None or not row.active:
        raise NotInJurisdiction(f"'{username}' is not an active registered coordinator")
    node = store.node(row.node_id)
    if node is None:  # the foreign key keeps this from happening
        raise UnknownReference(f"node '{row.node_id}' of '{username}' is unknown")
    return Coordinator(username=row.username, display_name=row.display_name,
                       node_id=node.node_id, node_path=node.path, level=node.level)


def grid_path(store: Store, grid_id: str) -> str:
    """Path of a node that holds cases."""
    node = store.node(grid_id)
    if node is None:
        raise UnknownReference(f"node '{grid_id}' is unknown")
    return node.path


def require_case_in_jurisdiction(store: Store, coordinator: Coordinator, grid_id: str,
                                 what: str) -> None:
    """Refuse, as not found, unless the case's grid lies in the coordinator's subtree."""
    node = store.node(grid_id)
    if node is None or not coordinator.covers(node.path):
        raise NotFoundHere(what)


def require_proposal_in_jurisdiction(store: Store, coordinator: Coordinator,
                                     proposal_id: str) -> None:
    """Refuse, as not found, a proposal that is unknown or serves a case outside the subtree."""
    proposal = store.proposal(proposal_id)
    what = f"proposal '{proposal_id}'"
    if proposal is None:
        raise NotFoundHere(what)
    require_case_in_jurisdiction(store, coordinator, proposal.grid_id, what)
