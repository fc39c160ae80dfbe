"""The three kinds of supply, as one integer code everywhere arrays carry them."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """A volunteer's time, a lot of goods, or a service's places."""

    VOLUNTEER = 0
    GOODS = 1
    SERVICE = 2

    @property
    def wire(self) -> str:
        """The kind as the wire names it ("volunteer", "goods", "service")."""
        return self.name.lower()

    @classmethod
    def of(cls, wire: str) -> Kind:
        """The kind a wire name stands for."""
        return cls[wire.upper()]


# Integer units the solver counts in, per kind: quarter hours, tenths of a goods unit, whole
# sessions.
SOLVER_SCALE = np.array([4.0, 10.0, 1.0])
