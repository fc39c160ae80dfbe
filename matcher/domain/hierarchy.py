"""The four-level hierarchy: centre > workstations > studios > grids."""

from __future__ import annotations

from schemas.common import Level

LEVELS: tuple[Level, ...] = (Level.CENTRE, Level.WORKSTATION, Level.STUDIO, Level.GRID)


def parent_level(level: Level) -> Level | None:
    """The level a node of this level hangs under (None for the centre)."""
    index = LEVELS.index(level)
    return LEVELS[index - 1] if index > 0 else None


def child_path(parent_path: str, node_id: str) -> str:
    """Materialised path of a child: '/centre/ws/' + 'st' -> '/centre/ws/st/'."""
    return f"{parent_path}{node_id}/"


def root_path(node_id: str) -> str:
    """Materialised path of the centre."""
    return f"/{node_id}/"


def in_subtree(path: str, ancestor_path: str) -> bool:
    """Whether the node at `path` is the node at `ancestor_path` or below it."""
    return path.startswith(ancestor_path)


def shard_of(path: str, shard_level: Level) -> str:
    """The node id of the path's ancestor at the shard level (the centre for nodes above it)."""
    ids = [part for part in path.split("/") if part]
    depth = LEVELS.index(shard_level)
    return ids[depth] if len(ids) > depth else ids[0]
