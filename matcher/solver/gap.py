"""OR-Library generalized assignment (GAP) instances as solver Problems, with known optima."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher.solver.problem import Problem, Solution

__all__ = [
    "GAP_FILES",
    "KNOWN_OPTIMA",
    "PROVEN_OPTIMAL",
    "GapInstance",
    "default_gap_folder",
    "load_gap",
    "read_gap_file",
]

GAP_FILES = ("gap1", "gap12", "gapa", "gapb", "gapc", "gapd")

# Optimum per instance in file order (README of the shared folder; Chu & Beasley 1997).
KNOWN_OPTIMA: dict[str, tuple[int, ...]] = {
    "gap1": (336, 327, 339, 341, 326),
    "gap12": (1451, 1449, 1433, 1447, 1446),
    "gapa": (1698, 3235, 1360, 2623, 1158, 2339),
    "gapb": (1843, 3552, 1407, 2827, 1166, 2339),
    "gapc": (1931, 3456, 1402, 2806, 1243, 2391),
    "gapd": (6353, 12742, 6347, 12430, 6185, 12235),
}
# gapd's values are the best known, not proven optima.
PROVEN_OPTIMAL = {name: name != "gapd" for name in KNOWN_OPTIMA}


@dataclass(frozen=True, eq=False)
class GapInstance:
    """One GAP instance: m agents with capacity, n jobs, value and use per (agent, job)."""

    name: str  # "<file>-<1-based position>", e.g. "gap12-3"
    file: str
    position: int  # 0-based position in the file
    value: np.ndarray  # (m, n) profit (maximise files) or cost (minimise files)
    use: np.ndarray  # (m, n) capacity job j takes from agent i
    capacity: np.ndarray  # (m,)
    maximise: bool

    @property
    def size(self) -> str:
        """Agents x jobs, as the literature writes it."""
        m, n = self.value.shape
        return f"{m}x{n}"

    @property
    def known_optimum(self) -> int | None:
        """Published optimum (best known for gapd), or None for files not in the table."""
        optima = KNOWN_OPTIMA.get(self.file)
        return optima[self.position] if optima and self.position < len(optima) else None

    def to_problem(self, *, time_limit_s: float = 10.0, workers: int = 2) -> Problem:
        """Jobs become required whole needs of demand 1, agents offers, every pair an arc."""
        m, n = self.value.shape
        # Minimising cost is maximising its negation, so every file becomes a maximisation.
        utility = self.value if self.maximise else -self.value
        return Problem(
            need_ids=[f"job{j}" for j in range(n)],
            demand=np.ones(n, dtype=np.int64),
            splittable=np.zeros(n, dtype=bool),
            required=np.ones(n, dtype=bool),
            offer_ids=[f"agent{i}" for i in range(m)],
            capacity=self.capacity.astype(np.int64),
            # Arcs in agent-major order, matching value.ravel() and use.ravel().
            arc_need=np.tile(np.arange(n, dtype=np.int32), m),
            arc_offer=np.repeat(np.arange(m, dtype=np.int32), n),
            arc_utility=utility.ravel().astype(np.float64),
            arc_use=self.use.ravel().astype(np.int64),
            time_limit_s=time_limit_s,
            workers=workers,
        )

    def score(self, solution: Solution) -> tuple[float, float]:
        """(found, bound) in the file's sense: profit and upper bound, or cost and lower bound."""
        if self.maximise:
            return solution.objective, solution.bound
        return -solution.objective, -solution.bound


def read_gap_file(path: Path, *, maximise: bool | None = None) -> list[GapInstance]:
    """Parse every instance of an OR-Library GAP file (P, then m n, c, a, b per instance)."""
    numbers = np.array(path.read_text().split(), dtype=np.int64)
    file = path.stem
    if maximise is None:
        # OR-Library convention: gap1..gap12 hold profits, gapa..gapd hold costs.
        maximise = file.removeprefix("gap").isdigit()
    count, at = int(numbers[0]), 1
    instances = []
    for position in range(count):
        if at + 2 > numbers.size:
            raise ValueError(f"{path}: ends before instance {position + 1} of {count}")
        m, n = int(numbers[at]), int(numbers[at + 1])
        at += 2
        end = at + 2 * m * n + m
        if end > numbers.size:
            raise ValueError(f"{path}: instance {position + 1} is cut short")
        value = numbers[at : at + m * n].reshape(m, n)
        use = numbers[at + m * n : at + 2 * m * n].reshape(m, n)
        capacity = numbers[at + 2 * m * n : end]
        at = end
        instances.append(
            GapInstance(
                name=f"{file}-{position + 1}",
                file=file,
                position=position,
                value=value,
                use=use,
                capacity=capacity,
                maximise=maximise,
            )
        )
    return instances


def load_gap(file: str, folder: Path | None = None) -> list[GapInstance]:
    """Instances of one named file ("gap1", "gapa", ...) from `folder` (default: the
    repository's copy)."""
    return read_gap_file((folder or default_gap_folder()) / f"{file}.txt")


def default_gap_folder() -> Path:
    """The instances kept with the repository (<repo>/benchmarks/gap), so a clean clone proves
    the optima too."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "gap"
