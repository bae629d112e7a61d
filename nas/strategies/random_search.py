"""Random search: uniformly drawn architectures that meet the cheap constraints, never one asked before."""

from __future__ import annotations

import numpy as np

from nas.strategies.base import Strategy


class RandomSearch(Strategy):
    """Proposes feasible uniform samples; the base removes duplicates and enumerates small spaces at the end."""

    name = "random"
    defaults: dict = {}

    def _propose(self, n: int) -> np.ndarray:
        return self.sample_feasible(2 * n)
