"""The evaluator interface, merging cheap metric sources, and the cache of expensive results by canonical hash."""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

import numpy as np


class Evaluator(Protocol):
    """Maps an (N, D) batch of architectures to named (N,) float64 metric arrays.

    An evaluator whose `asynchronous` is true also has `submit(arch) -> ticket` (one architecture, queued) and
    `completed() -> [(ticket, {metric: float})]` (waits for at least one finished evaluation while any is queued
    or running), so a search can keep every worker busy without a barrier per generation."""

    metrics: tuple[str, ...]

    def evaluate(self, archs: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class CheapMetrics:
    """Several cheap, vectorized evaluators as one callable `archs -> {metric: (N,)}` (a strategy's
    `cheap_metrics`)."""

    def __init__(self, sources: Sequence[Evaluator] = ()):
        self.sources = tuple(sources)
        self.metrics = tuple(m for s in self.sources for m in s.metrics)

    def __call__(self, archs) -> dict[str, np.ndarray]:
        archs = np.asarray(archs)
        out: dict[str, np.ndarray] = {}
        for source in self.sources:
            out.update({k: np.asarray(v, np.float64) for k, v in source.evaluate(archs).items()})
        return out

    def __bool__(self) -> bool:
        return bool(self.sources)


class ExpensiveCache:
    """Expensive results keyed by canonical hash, shared by every search of a run (targets, resumes).

    `evaluate(evaluator, archs, hashes)` answers known architectures from the cache and sends only the rest
    (each distinct one once) to the evaluator; `num_evaluated` counts what the evaluator really computed."""

    def __init__(self, metrics: Iterable[str]):
        self.metrics = tuple(metrics)
        self._rows: dict[int, np.ndarray] = {}
        self.num_evaluated = 0

    def __contains__(self, key: int) -> bool:
        return int(key) in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def store(self, hashes: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        values = np.column_stack([np.asarray(metrics[m], np.float64) for m in self.metrics])
        for key, row in zip(np.asarray(hashes, np.uint64).tolist(), values):
            self._rows[int(key)] = row

    def add_evaluated(self, hashes: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """Stores what the evaluator just computed and counts it in `num_evaluated`."""
        self.store(hashes, metrics)
        self.num_evaluated += len(hashes)

    def lookup(self, hashes: np.ndarray) -> dict[str, np.ndarray]:
        values = np.stack([self._rows[int(k)] for k in np.asarray(hashes, np.uint64).tolist()]) if len(hashes) \
            else np.zeros((0, len(self.metrics)))
        return {m: values[:, j] for j, m in enumerate(self.metrics)}

    def evaluate(self, evaluator: Evaluator, archs: np.ndarray, hashes: np.ndarray) -> tuple[dict, np.ndarray]:
        """Metrics of every row of `archs` and a bool mask of the rows served from the cache."""
        hashes = np.asarray(hashes, np.uint64)
        known = np.array([int(k) in self._rows for k in hashes.tolist()], dtype=bool)
        _, first = np.unique(hashes, return_index=True)
        todo = np.sort(first[~known[first]])
        if todo.size:
            self.add_evaluated(hashes[todo], evaluator.evaluate(archs[todo]))
        cached = np.ones(len(hashes), dtype=bool)
        cached[todo] = False
        return self.lookup(hashes), cached
