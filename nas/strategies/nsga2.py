"""Multi-objective evolution, NSGA-II style: constrained non-dominated sorting with crowding distance for
survival, binary tournaments, uniform crossover and mutation, children feasible by construction."""

from __future__ import annotations

import numpy as np

from nas.pareto import crowding_distance, non_dominated_sort
from nas.strategies.base import Strategy


class NSGA2(Strategy):
    """Any number of objectives (accuracy, latency, energy, params, FLOPs, ...), each max or min.

    Generation 0 is `population_size` feasible random architectures. The population is the best
    `population_size` told so far under constrained domination (feasible before infeasible, infeasible by total
    relative violation; feasible by front, then by crowding distance), updated as tells arrive. Each ask breeds
    children from binary-tournament parents: uniform crossover with probability `crossover_prob`, then mutation
    of each decision with probability `mutate_prob` (default 1/D)."""

    name = "nsga2"
    defaults = {"population_size": 50, "crossover_prob": 0.9, "mutate_prob": None, "oversample": 4}

    def population(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Told-history row indices of the population, their front ranks and crowding distances."""
        if getattr(self, "_survivors_upto", None) is None or self._survivors_upto > self._told:
            self._survivors, self._survivors_upto = np.zeros(0, dtype=np.int64), 0
        rows = np.concatenate([self._survivors, np.arange(self._survivors_upto, self._told)])
        rank, crowd = self._rank_and_crowding(rows)
        order = np.lexsort((-crowd, rank))[: self.options["population_size"]]
        self._survivors, self._survivors_upto = np.sort(rows[order]), self._told
        rank, crowd = self._rank_and_crowding(self._survivors)
        return self._survivors, rank, crowd

    def _rank_and_crowding(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        metrics = {k: v[rows] for k, v in self.metrics.items()}
        values = self.minimised(metrics)
        feasible = np.isfinite(values).all(1)
        violation = np.zeros(len(rows))
        for c in self.constraints:
            metric = np.nan_to_num(metrics.get(c.metric, np.full(len(rows), np.nan)), nan=np.inf)
            excess = np.maximum(metric - c.upper_bound, 0.0) / max(abs(c.upper_bound), 1e-12)
            violation += excess
            feasible &= excess == 0
        rank = np.zeros(len(rows), dtype=np.int64)
        crowd = np.zeros(len(rows))
        if feasible.any():
            rank[feasible] = non_dominated_sort(values[feasible])
            crowd[feasible] = crowding_distance(values[feasible], rank[feasible])
        worst = rank[feasible].max() + 1 if feasible.any() else 0
        rank[~feasible] = worst + np.argsort(np.argsort(violation[~feasible], kind="stable"), kind="stable")
        return rank, crowd

    def _tournament(self, rank: np.ndarray, crowd: np.ndarray, count: int) -> np.ndarray:
        a = self.rng.integers(0, len(rank), size=count)
        b = self.rng.integers(0, len(rank), size=count)
        a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
        return np.where(a_wins, a, b)

    def _propose(self, n: int) -> np.ndarray:
        rows, rank, crowd = self.population()
        if self._asked_count < self.options["population_size"] or len(rows) < 2:
            return self.sample_feasible(2 * n)
        count = int(self.options["oversample"]) * n
        archs = self.archs[rows]
        first = archs[self._tournament(rank, crowd, count)]
        second = archs[self._tournament(rank, crowd, count)]
        crossed = np.where((self.rng.random(count) < self.options["crossover_prob"])[:, None],
                           self.space.crossover(first, second, self.rng), first)
        prob = self.options["mutate_prob"]
        prob = 1.0 / self.space.num_decisions if prob is None else prob
        children = self.space.mutate(crossed, prob, self.rng)
        return self.feasible_part(children, n)

    def _load_extra_state(self, extra: dict) -> None:
        self._survivors_upto = None
