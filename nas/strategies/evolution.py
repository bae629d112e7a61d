"""Constrained single-objective evolution (Once-for-All style): parents, mutation, crossover, every child
feasible by construction under the cheap budgets."""

from __future__ import annotations

import math

import numpy as np

from nas.strategies.base import Strategy


class Evolution(Strategy):
    """Optimises the first objective (later objectives only break ties) under the constraints.

    Generation 0 is `population_size` feasible random architectures; afterwards the parents are the best
    `parent_ratio * population_size` feasible architectures told so far (elitist, as OFA's population), and each
    ask returns `mutation_ratio` mutants of random parents and crossovers of random parent pairs for the rest
    (more mutants where crossovers repeat known architectures, as those of a converged population do).
    Children are generated `oversample` times over in one batch, screened by the cheap metrics at once, the
    feasible unseen ones kept first and over-budget ones repaired towards smaller choices when too few are
    feasible."""

    name = "evolution"
    defaults = {"population_size": 100, "parent_ratio": 0.25, "mutation_ratio": 0.5, "mutate_prob": 0.1,
                "oversample": 2}

    def parents(self) -> np.ndarray:
        """The best feasible told architectures (canonical), best first; kept incrementally, ties by tell order."""
        count = max(2, math.ceil(self.options["parent_ratio"] * self.options["population_size"]))
        if getattr(self, "_elite_upto", None) is None or self._elite_upto > self._told:
            self._elite, self._elite_upto = np.zeros(0, dtype=np.int64), 0
        new = self._elite_upto + np.flatnonzero(self.told_feasible(self._elite_upto))
        rows = np.concatenate([self._elite, new])
        values = self.minimised({k: v[rows] for k, v in self.metrics.items()})
        self._elite = rows[np.lexsort(values.T[::-1])[:count]]
        self._elite_upto = self._told
        return self.archs[self._elite]

    def _propose(self, n: int) -> np.ndarray:
        parents = self.parents()
        if self._asked_count < self.options["population_size"] or len(parents) < 2:
            return self.sample_feasible(2 * n)
        num_mutants = int(round(n * self.options["mutation_ratio"]))
        factor = int(self.options["oversample"])
        mutants = self._unseen(self.mutants(parents, factor * n, n), n)
        crosses = self.crossovers(parents, factor * (n - num_mutants), n - num_mutants)
        return np.vstack([mutants[:num_mutants], self._unseen(crosses, n - num_mutants), mutants[num_mutants:]])

    def mutants(self, parents: np.ndarray, count: int, needed: int) -> np.ndarray:
        picked = parents[self.rng.integers(0, len(parents), size=count)]
        return self.feasible_part(self.space.mutate(picked, self.options["mutate_prob"], self.rng), needed)

    def crossovers(self, parents: np.ndarray, count: int, needed: int) -> np.ndarray:
        a = parents[self.rng.integers(0, len(parents), size=count)]
        b = parents[self.rng.integers(0, len(parents), size=count)]
        return self.feasible_part(self.space.crossover(a, b, self.rng), needed)

    def _load_extra_state(self, extra: dict) -> None:
        self._elite_upto = None
