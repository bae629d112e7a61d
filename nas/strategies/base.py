"""The ask/tell strategy base: objectives, constraints, canonical deduplication, feasible sampling, history and
JSON-able state for exact resume."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from search_spaces.errors import UserInputError
from search_spaces.space import Space

CheapMetrics = Callable[[np.ndarray], dict]
_ENUMERABLE = 2_000_000
_REPAIR_ROUNDS = 200
_PROBABILITIES = ("mutate_prob", "crossover_prob")


@dataclass(frozen=True)
class Objective:
    """A metric to maximise ("max") or minimise ("min")."""

    name: str
    direction: str = "max"

    def __post_init__(self):
        if self.direction not in ("max", "min"):
            raise UserInputError(f"objective {self.name!r}: direction {self.direction!r} is not 'max' or 'min'")

    @property
    def sign(self) -> float:
        """Multiplies the metric into the minimisation convention."""
        return -1.0 if self.direction == "max" else 1.0


@dataclass(frozen=True)
class Constraint:
    """Feasible architectures have `metric <= upper_bound`."""

    metric: str
    upper_bound: float


def _objective(o) -> Objective:
    if isinstance(o, Objective):
        return o
    if isinstance(o, dict):
        return Objective(**o)
    return Objective(*o)


def _constraint(c) -> Constraint:
    if isinstance(c, Constraint):
        return c
    if isinstance(c, dict):
        return Constraint(**c)
    return Constraint(*c)


def _to_json_list(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def _from_json_list(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(N,) bool: each key occurs in the ascending array `sorted_keys` (binary search, no re-sorting)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def insert_sorted(sorted_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """`sorted_keys` with distinct `new_keys` (none of them present yet) merged in, still ascending."""
    new_keys = np.sort(new_keys)
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, new_keys), new_keys)


def _grown(buffer: np.ndarray, capacity: int, fill) -> np.ndarray:
    out = np.full((capacity,) + buffer.shape[1:], fill, dtype=buffer.dtype)
    out[: len(buffer)] = buffer
    return out


class Strategy:
    """Ask/tell over (N, D) canonical architectures. Subclasses implement `_propose(n)` (any candidates; the base
    keeps the feasible, unseen ones) and may add `defaults` options and extra state."""

    name = "base"
    defaults: dict = {}
    asynchronous = True  # ask may come again before earlier asks are told (never re-asks what is pending)

    def __init__(self, space: Space, objectives, *, constraints=(), cheap_metrics: CheapMetrics | None = None,
                 seed: int = 0, **options):
        self.space = space
        self.objectives = tuple(_objective(o) for o in objectives)
        if not self.objectives:
            raise UserInputError(f"strategy {self.name!r}: give at least one objective")
        self.constraints = tuple(_constraint(c) for c in constraints)
        self.cheap_metrics = cheap_metrics
        self.seed = int(seed)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise UserInputError(f"strategy {self.name!r}: unknown option(s) {unknown}; allowed: "
                                 f"{sorted(self.defaults)}")
        self.options = {**self.defaults, **options}
        self._check_probabilities()
        self.rng = np.random.default_rng(self.seed)
        self.cheap_names = self._probe_cheap_names()
        self._asked_chunks: list[np.ndarray] = []
        self._asked_count = 0
        self._seen_keys = np.zeros(0, dtype=np.uint64)
        self.candidates_screened = 0  # candidates generated and checked against the cheap constraints, each once
        self._told = 0
        self._arch_buffer = np.zeros((0, space.num_decisions), dtype=space.dtype)
        self._metric_buffers: dict[str, np.ndarray] = {}
        self._canonical_pool: np.ndarray | None = None
        self._check_budgets_reachable()

    def _check_probabilities(self) -> None:
        for key in _PROBABILITIES:
            value = self.options.get(key)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise UserInputError(f"strategy {self.name!r}: option {key} = {value!r} is not a probability; "
                                     "allowed: a number from 0 to 1")

    # ------------------------------------------------------------- metrics
    def _probe_cheap_names(self) -> frozenset:
        if self.cheap_metrics is None:
            return frozenset()
        return frozenset(self.cheap_metrics(self.space.smallest()[None]))

    @property
    def cheap_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.metric in self.cheap_names)

    def cheap(self, archs: np.ndarray) -> dict[str, np.ndarray]:
        """Cheap metrics of a batch (empty dict without a cheap model)."""
        if self.cheap_metrics is None or len(archs) == 0:
            return {}
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.cheap_metrics(archs).items()}

    def cheap_feasible(self, archs: np.ndarray, values: dict | None = None) -> np.ndarray:
        """(N,) bool: every constraint on a cheap metric holds."""
        ok = np.ones(len(archs), dtype=bool)
        if not self.cheap_constraints or len(archs) == 0:
            return ok
        values = self.cheap(archs) if values is None else values
        for c in self.cheap_constraints:
            ok &= values[c.metric] <= c.upper_bound
        return ok

    def _check_budgets_reachable(self) -> None:
        if not self.cheap_constraints:
            return
        probe = np.vstack([self.space.smallest()[None], self.space.sample(256, self.seed)])
        values = self.cheap(probe)
        if not self.cheap_feasible(probe, values).any():
            best = {c.metric: float(values[c.metric].min()) for c in self.cheap_constraints}
            raise UserInputError(f"strategy {self.name!r}: no architecture meets the budget(s) "
                                 f"{[(c.metric, c.upper_bound) for c in self.cheap_constraints]}; the smallest "
                                 f"values found are {best}")

    def minimised(self, metrics: dict | None = None) -> np.ndarray:
        """(N, M) objective values in the minimisation convention (NaN where missing)."""
        metrics = self.metrics if metrics is None else metrics
        n = len(next(iter(metrics.values()))) if metrics else 0
        cols = [o.sign * np.asarray(metrics.get(o.name, np.full(n, np.nan)), dtype=np.float64)
                for o in self.objectives]
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def told_feasible(self, start: int = 0) -> np.ndarray:
        """(N - start,) bool over the told history from `start`: objectives finite and every constraint met."""
        metrics = {k: v[start:] for k, v in self.metrics.items()}
        n = self._told - start
        ok = np.isfinite(self.minimised(metrics)).all(1) if n else np.zeros(0, dtype=bool)
        for c in self.constraints:
            values = metrics.get(c.metric, np.full(n, np.nan))
            ok &= np.nan_to_num(values, nan=np.inf) <= c.upper_bound
        return ok

    # ------------------------------------------------------------ ask/tell
    def ask(self, n: int) -> np.ndarray:
        """Up to `n` canonical architectures never asked before (fewer only when the space is exhausted)."""
        n = int(n)
        if n < 0:
            raise UserInputError(f"strategy {self.name!r}: ask(n) needs n >= 0, got {n}")
        chosen = self._unseen(self._propose(n), n) if n else self._empty()
        if len(chosen) < n:
            more = self._propose(n)
            chosen = np.vstack([chosen, self._unseen(more[~self._in(more, chosen)], n - len(chosen))])
        if len(chosen) < n:
            chosen = np.vstack([chosen, self._unseen(self._fill(n - len(chosen), chosen), n - len(chosen))])
        self._asked_chunks.append(chosen)
        self._asked_count += len(chosen)
        if len(chosen):
            self._remember(self.space.hash(chosen))
        return chosen

    def tell(self, archs, metrics: dict) -> None:
        """Records evaluated architectures and their metrics (expensive and cheap)."""
        archs = self.space.canonical(self.space.validate(archs))
        n = len(archs)
        for k, v in metrics.items():
            if np.shape(v) != (n,):
                raise UserInputError(f"strategy {self.name!r}: tell: metric {k!r} has shape {np.shape(v)}, "
                                     f"expected ({n},)")
        old, total = self._told, self._told + n
        if total > len(self._arch_buffer):
            capacity = max(2 * total, 64)
            self._arch_buffer = _grown(self._arch_buffer, capacity, 0)
            self._metric_buffers = {k: _grown(v, capacity, np.nan) for k, v in self._metric_buffers.items()}
        self._arch_buffer[old:total] = archs
        for k, v in metrics.items():
            if k not in self._metric_buffers:
                self._metric_buffers[k] = np.full(len(self._arch_buffer), np.nan)
            self._metric_buffers[k][old:total] = v
        self._told = total
        self._remember(self.space.hash(archs))

    @property
    def archs(self) -> np.ndarray:
        """(N, D) canonical architectures told so far, in order."""
        return self._arch_buffer[: self._told]

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Every told metric, (N,) each, NaN where a tell did not give it."""
        return {k: v[: self._told] for k, v in self._metric_buffers.items()}

    @property
    def asked(self) -> np.ndarray:
        """(N, D) every architecture asked so far, in order."""
        if len(self._asked_chunks) != 1:
            self._asked_chunks = [np.vstack([self._empty(), *self._asked_chunks])]
        return self._asked_chunks[0]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.space.num_decisions), dtype=self.space.dtype)

    def _propose(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def _remember(self, keys: np.ndarray) -> None:
        """Inserts hashes into the sorted array of seen ones."""
        new = np.unique(keys)
        self._seen_keys = insert_sorted(self._seen_keys, new[~self._known(new)])

    def _known(self, keys: np.ndarray) -> np.ndarray:
        return in_sorted(self._seen_keys, keys)

    def seen(self, archs: np.ndarray) -> np.ndarray:
        """(N,) bool: already asked or told."""
        return self._known(self.space.hash(archs))

    def _unseen(self, candidates: np.ndarray, n: int) -> np.ndarray:
        """The first `n` candidates (canonicalised) that are unseen and distinct, in order."""
        if len(candidates) == 0:
            return self._empty()
        cand = self.space.canonical(candidates)
        keys = self.space.hash(cand)
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)
        fresh = first[~self._known(keys[first])]
        return cand[fresh[:n]].astype(self.space.dtype)

    # ------------------------------------------------------------ sampling
    def sample_feasible(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """About `n` architectures that meet the cheap constraints: a uniform and a small-biased half, repaired
        towards smaller choices where over budget."""
        rng = self.rng if rng is None else rng
        self.candidates_screened += n
        if not self.cheap_constraints:
            return self.space.sample(n, rng)
        uniform = self.space.sample(n - n // 2, rng)
        low = np.floor(self.space.sizes * rng.random((n // 2, self.space.num_decisions)) ** 2)
        return self.repair(np.vstack([uniform, low.astype(self.space.dtype)]), rng)

    def feasible_part(self, archs: np.ndarray, needed: int) -> np.ndarray:
        """The rows that meet the cheap constraints, in order; when fewer than `needed` do, the others follow
        repaired."""
        self.candidates_screened += len(archs)
        if not self.cheap_constraints:
            return archs
        ok = self.cheap_feasible(archs)
        if ok.sum() >= needed:
            return archs[ok]
        return np.vstack([archs[ok], self.repair(archs[~ok])])

    def repair(self, archs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Lowers random decisions of over-budget rows until they meet the cheap constraints; rows that cannot be
        repaired are dropped."""
        rng = self.rng if rng is None else rng
        archs = np.array(archs, dtype=np.int64)
        bad = np.flatnonzero(~self.cheap_feasible(archs))
        for round_index in range(_REPAIR_ROUNDS):
            if bad.size == 0:
                break
            rows = archs[bad]
            raised = rows > 0
            one = (rng.random(rows.shape) * raised).argmax(1)
            lower = (rng.random(rows.shape) < min(1.0, 0.02 * 1.5 ** round_index)) & raised
            lower[np.arange(len(rows)), one] |= raised[np.arange(len(rows)), one]
            rows -= lower
            archs[bad] = rows
            stuck = ~raised.any(1)
            still = ~self.cheap_feasible(rows)
            bad = bad[still & ~stuck]
        keep = self.cheap_feasible(archs)
        return archs[keep].astype(self.space.dtype)

    def _fill(self, n: int, taken: np.ndarray) -> np.ndarray:
        """Feasible unseen random architectures; enumerates the space's canonical classes when it is small."""
        out = self._empty()
        for _ in range(4):
            cand = self.sample_feasible(max(8 * n, 256))
            cand = cand[~self._in(cand, taken)]
            out = np.vstack([out, self._unseen(cand, n)])
            out = out[self._distinct(out)][:n]
            if len(out) >= n:
                return out
        pool = self._remaining_pool()
        pool = pool[~self._in(pool, np.vstack([taken, out]))]
        pool = pool[self.cheap_feasible(pool)]
        extra = pool[self.rng.permutation(len(pool))[: n - len(out)]]
        return np.vstack([out, extra]).astype(self.space.dtype)

    def _distinct(self, archs: np.ndarray) -> np.ndarray:
        _, first = np.unique(self.space.hash(archs), return_index=True)
        return np.sort(first)

    def _in(self, archs: np.ndarray, others: np.ndarray) -> np.ndarray:
        if len(others) == 0 or len(archs) == 0:
            return np.zeros(len(archs), dtype=bool)
        return np.isin(self.space.hash(archs), self.space.hash(others))

    def enumerable(self) -> bool:
        return math.prod(int(s) for s in self.space.sizes) <= _ENUMERABLE

    def canonical_pool(self) -> np.ndarray:
        """Every canonical class of a small space, once (cached); empty for spaces too large to enumerate."""
        if self._canonical_pool is None:
            if not self.enumerable():
                self._canonical_pool = self._empty()
            else:
                every = self.space.canonical(self.space.enumerate())
                self._canonical_pool = every[self._distinct(every)]
        return self._canonical_pool

    def _remaining_pool(self) -> np.ndarray:
        pool = self.canonical_pool()
        return pool[~self.seen(pool)] if len(pool) else pool

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """JSON-able state; `load_state_dict` on a strategy built with the same arguments resumes exactly."""
        return {"strategy": self.name, "seed": self.seed, "rng": self.rng.bit_generator.state,
                "asked": self.asked.astype(int).tolist(), "archs": self.archs.astype(int).tolist(),
                "metrics": {k: _to_json_list(v) for k, v in self.metrics.items()}, "extra": self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("strategy") != self.name:
            raise UserInputError(f"strategy state is for {state.get('strategy')!r}, not {self.name!r}")
        self.seed = int(state["seed"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        d = self.space.num_decisions
        self._asked_chunks = [np.array(state["asked"], dtype=self.space.dtype).reshape(-1, d)]
        self._asked_count = len(self._asked_chunks[0])
        self._arch_buffer = np.array(state["archs"], dtype=self.space.dtype).reshape(-1, d)
        self._metric_buffers = {k: _from_json_list(v) for k, v in state["metrics"].items()}
        self._told = len(self._arch_buffer)
        keys = self.space.hash(np.vstack([self.asked, self.archs]))
        self._seen_keys = np.zeros(0, dtype=np.uint64)
        self._remember(keys)
        self._load_extra_state(state.get("extra", {}))

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, extra: dict) -> None:
        pass
