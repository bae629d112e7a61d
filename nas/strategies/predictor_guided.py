"""Predictor-guided multi-objective search: an ensemble predictor proposes, the expensive evaluator confirms, the
predictor retrains; batches maximise optimistic hypervolume improvement over the observed Pareto front."""

from __future__ import annotations

import numpy as np

from nas.accuracy_predictor import EnsemblePredictor
from nas.pareto import hypervolume_improvement, pareto_mask
from nas.strategies.base import Strategy, in_sorted, insert_sorted
from search_spaces.errors import UserInputError

_PROXIES = ("flops", "macs", "params")


class PredictorGuided(Strategy):
    """Each ask after the first `initial` random architectures:

    1. fits an ensemble predictor of every expensive objective and constrained metric on the told history,
       from the space's features plus (`cheap_inputs`) the log of every cheap metric, pre-trained on the log
       of a free proxy (FLOPs/MACs/params from `cheap_metrics`) when one is given; with `targets="copula"` it
       learns the normal scores of the targets' ranks, so diverged or degenerate architectures (accuracy near
       chance) do not dominate the fit of the good ones;
    2. builds a candidate pool: every unseen canonical architecture of a small space, otherwise random
       architectures plus `pool_generations` rounds of mutation (each decision resampled with probability
       `mutate_prob`) and crossover of the predicted front;
    3. scores candidates optimistically (mean + `optimism` * std towards better, cheap metrics exact) and picks
       the batch greedily by hypervolume improvement over the observed feasible front, each pick joining the
       front, so a batch spreads along the front (when nothing improves it, the candidate nearest to it).

    The hypervolume's reference point is the `reference` option ({objective: value}) where given, else each
    objective's `reference_quantile` over the initial random design (0.9: worse than 90% of random
    architectures does not count)."""

    name = "predictor"
    defaults = {"initial": 16, "members": 8, "hidden": (64,), "steps": 300, "learning_rate": 3e-3,
                "optimism": 0.25, "pool_size": 20000, "pool_generations": 3, "pretrain_samples": 2048,
                "proxy": "auto", "reference": None, "reference_quantile": 0.9, "cheap_inputs": True,
                "targets": "copula", "mutate_prob": 0.1}

    def __init__(self, space, objectives, **kwargs):
        super().__init__(space, objectives, **kwargs)
        names = [o.name for o in self.objectives] + [c.metric for c in self.constraints]
        self.modelled = tuple(dict.fromkeys(n for n in names if n not in self.cheap_names))
        self.proxy = self._pick_proxy(self.options["proxy"])
        self._model: EnsemblePredictor | None = None
        self._model_told = -1
        self._pretrained = None
        self._scaling = self._input_scaling()

    def _pick_proxy(self, proxy) -> str | None:
        if proxy == "auto":
            return next((p for p in _PROXIES if p in self.cheap_names), None)
        if proxy is not None and proxy not in self.cheap_names:
            raise UserInputError(f"strategy 'predictor': option proxy={proxy!r} is not a cheap metric; cheap "
                                 f"metrics: {sorted(self.cheap_names)}")
        return proxy

    # --------------------------------------------------------------- model
    def model(self) -> EnsemblePredictor | None:
        """The predictor fitted on the told history (refitted only when the history grew)."""
        if not self.modelled:
            return None
        if self._model_told == self._told:
            return self._model
        targets = np.stack([self.metrics[n] for n in self.modelled], axis=1)
        if not np.isfinite(targets).any(0).all():
            return None
        model = EnsemblePredictor(self.inputs(self.space.smallest()[None]).shape[1], len(self.modelled),
                                  members=self.options["members"], hidden=tuple(self.options["hidden"]),
                                  steps=self.options["steps"], learning_rate=self.options["learning_rate"],
                                  seed=self.seed, targets=self.options["targets"])
        if self.proxy is not None and self._pretrained is None:
            archs = self.space.sample(self.options["pretrain_samples"], self.seed + 1)
            proxy = self.cheap(archs)[self.proxy]
            model.pretrain(self.inputs(archs), np.log(np.maximum(proxy, 1e-12)))
            self._pretrained = model.pretrained_weights
        model.start_from(self._pretrained)
        self._model = model.fit(self.inputs(self.archs), targets, seed=self.seed + self._told)
        self._model_told = self._told
        return self._model

    def _input_scaling(self) -> dict[str, tuple[float, float]]:
        """Mean and spread of the log of each positive cheap metric over a fixed random sample."""
        if not self.options["cheap_inputs"] or not self.cheap_names:
            return {}
        values = self.cheap(self.space.sample(self.options["pretrain_samples"], self.seed + 1))
        scaling = {}
        for name in sorted(values):
            if (values[name] > 0).all():
                logs = np.log(values[name])
                scaling[name] = (float(logs.mean()), float(logs.std()) or 1.0)
        return scaling

    def inputs(self, archs: np.ndarray, cheap: dict | None = None) -> np.ndarray:
        """Predictor inputs: the space's features, plus the standardized log of every positive cheap metric
        (FLOPs, params, a latency model's estimate) when `cheap_inputs`; `cheap` passes metrics already
        computed for `archs`."""
        features = self.space.features(archs)
        if not self._scaling:
            return features
        cheap = self.cheap(archs) if cheap is None else cheap
        extra = [(np.log(np.maximum(cheap[n], 1e-12)) - mu) / sd for n, (mu, sd) in self._scaling.items()]
        return np.hstack([features, np.stack(extra, axis=1)]).astype(np.float32)

    def _load_extra_state(self, extra: dict) -> None:
        self._model, self._model_told = None, -1

    # ---------------------------------------------------------------- pool
    def candidate_pool(self, model: EnsemblePredictor | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unseen feasible canonical candidates with their optimistic values and feasibility (`optimistic`)."""
        pool = self._remaining_pool()
        if len(pool):
            self.candidates_screened += len(pool)
            pool = pool[self.cheap_feasible(pool)]
            if len(pool) > self.options["pool_size"]:
                pool = pool[self.rng.choice(len(pool), self.options["pool_size"], replace=False)]
            return (pool, *self.optimistic(pool, model))
        size = self.options["pool_size"]
        pool = self._unseen(self.sample_feasible(size // 2), size)
        pool_keys = np.sort(self.space.hash(pool))
        values, ok = self.optimistic(pool, model)
        parents = self.archs[pareto_mask(self._observed()) & self.told_feasible()]
        for _ in range(self.options["pool_generations"]):
            parents = np.vstack([parents, pool[pareto_mask(values)]]) if len(pool) else parents
            children = np.vstack([self.space.mutate(parents[self.rng.integers(0, len(parents), size // 4)],
                                                    self.options["mutate_prob"], self.rng),
                                  self.space.crossover(parents[self.rng.integers(0, len(parents), size // 4)],
                                                       parents[self.rng.integers(0, len(parents), size // 4)],
                                                       self.rng)])
            children = self._unseen(self.feasible_part(children, 0), size)
            child_keys = self.space.hash(children)
            new = ~in_sorted(pool_keys, child_keys)
            children, pool_keys = children[new], insert_sorted(pool_keys, child_keys[new])
            child_values, child_ok = self.optimistic(children, model)
            pool, values, ok = np.vstack([pool, children]), np.vstack([values, child_values]), np.concatenate(
                [ok, child_ok])
        return pool, values, ok

    # ---------------------------------------------------------- acquisition
    def optimistic(self, archs: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
        """(N, M) optimistic objective values (minimisation convention) and (N,) optimistic feasibility."""
        cheap = self.cheap(archs)
        if model is not None:
            mean, std = model.predict(self.inputs(archs, cheap))
        else:
            mean = std = np.zeros((len(archs), 0))
        k = float(self.options["optimism"])
        guess = {n: (mean[:, i], std[:, i]) for i, n in enumerate(self.modelled)}
        cols = []
        for o in self.objectives:
            if o.name in cheap:
                cols.append(o.sign * cheap[o.name])
            else:
                m, s = guess[o.name]
                cols.append(o.sign * m - k * s)
        feasible = np.ones(len(archs), dtype=bool)
        for c in self.constraints:
            if c.metric not in cheap:
                m, s = guess[c.metric]
                feasible &= m - k * s <= c.upper_bound
        return np.stack(cols, axis=1), feasible

    def _observed(self) -> np.ndarray:
        values = self.minimised()
        return np.where(self.told_feasible()[:, None], values, np.inf)

    def reference_point(self) -> np.ndarray:
        """The `reference` option's values where given; otherwise, per objective, the `reference_quantile` of the
        initial random design (minimisation convention), so the worst tail of the space does not steer the
        acquisition."""
        given = dict(self.options["reference"] or {})
        unknown = sorted(set(given) - {o.name for o in self.objectives})
        if unknown:
            raise UserInputError(f"strategy 'predictor': option reference names {unknown}, not objectives "
                                 f"{[o.name for o in self.objectives]}")
        values = self.minimised()
        initial = values[np.isfinite(values).all(1)][: self.options["initial"]]
        auto = np.quantile(initial, self.options["reference_quantile"], axis=0)
        return np.array([o.sign * given[o.name] if o.name in given else auto[i]
                         for i, o in enumerate(self.objectives)])

    def _propose(self, n: int) -> np.ndarray:
        finite = np.isfinite(self.minimised()).all(1).sum() if self._told else 0
        if finite < max(self.options["initial"], 2):
            return self.sample_feasible(2 * n)
        model = self.model()
        pool, scores, feasible = self.candidate_pool(model)
        if len(pool) == 0:
            return pool
        if feasible.any():
            pool, scores = pool[feasible], scores[feasible]
        return pool[self.greedy_batch(scores, n)]

    def greedy_batch(self, scores: np.ndarray, n: int) -> np.ndarray:
        """Indices of up to `n` candidates, each maximising hypervolume improvement over the observed front plus
        the earlier picks; when no candidate improves it, the one closest to entering the front."""
        ref = self.reference_point()
        observed = self._observed()
        front = observed[pareto_mask(observed)] if np.isfinite(observed).all(1).any() else observed[:0]
        front = front[np.isfinite(front).all(1)]
        available = np.ones(len(scores), dtype=bool)
        spread = np.ptp(np.vstack([front, scores, ref[None]]), axis=0) + 1e-12
        beyond_ref = np.maximum(((scores - ref) / spread).max(1), 0.0)
        dominated_by, improving, picks = None, True, []
        for _ in range(min(n, len(scores))):
            index = np.flatnonzero(available)
            gain = hypervolume_improvement(scores[index], front, ref) if improving else np.zeros(1)
            improving = gain.max() > 0
            if improving:
                best = index[int(np.argmax(gain))]
            else:
                if dominated_by is None:
                    dominated_by = _dominated_by(scores, front, spread)
                best = index[int(np.argmin(np.maximum(dominated_by[index], 0.0) + beyond_ref[index]))]
            picks.append(best)
            available[best] = False
            front = np.vstack([front, scores[best][None]])
            if dominated_by is not None:
                dominated_by = np.maximum(dominated_by, ((scores - scores[best]) / spread).min(1))
        return np.asarray(picks, dtype=np.int64)


def _dominated_by(candidates: np.ndarray, front: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(C,) the additive epsilon (in units of each objective's spread) a candidate must improve by in every
    objective to be dominated by no front point (negative when none dominates it); a new front point p updates
    it as max(epsilon, min_j (c_j - p_j) / spread_j)."""
    if len(front) == 0:
        return np.full(len(candidates), -np.inf)
    return ((candidates[:, None, :] - front[None, :, :]) / spread).min(2).max(1)
