"""An ensemble-MLP metric predictor on space features (JAX/Optax): bootstrap ensembles for uncertainty, each
member a ridge regression plus an MLP on what it leaves, full-batch training vmapped over members, padded to
power-of-two sizes so a growing data set never retraces, FBNetV3-style pre-training on a free proxy, and
optionally Gaussian-copula targets (robust to heavy tails such as diverged trainings)."""

from __future__ import annotations

from collections import Counter
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import ndtri
from scipy.stats import rankdata

from search_spaces.errors import UserInputError

TRACES: Counter = Counter()
_MIN_ROWS = 32
_PREDICT_CHUNK = 16384


def padded_size(n: int, minimum: int = _MIN_ROWS) -> int:
    """The power of two (at least `minimum`) a batch of `n` rows is padded to."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def _init_params(rng: np.random.Generator, sizes, members: int) -> dict:
    """He-initialised ReLU MLP layers plus a zero linear skip from the features to the outputs (so additive
    metrics fit at once), stacked over ensemble members."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(size=(members, fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        layers.append((w.astype(np.float32), np.zeros((members, fan_out), dtype=np.float32)))
    return {"layers": layers, "skip": np.zeros((members, sizes[0], sizes[-1]), dtype=np.float32)}


def _forward(params, x):
    h = x
    for w, b in params["layers"][:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params["layers"][-1]
    return h @ w + b + x @ params["skip"]


@partial(jax.jit, static_argnames=("steps", "learning_rate", "weight_decay"))
def _train(params, x, y, weights, *, steps, learning_rate, weight_decay):
    """Full-batch Adam on every member at once; `weights` (E, P, K) is bootstrap weight times validity mask."""
    TRACES["train"] += 1
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss(p, w):
        err = (_forward(p, x) - y) ** 2
        return (err * w).sum() / jnp.maximum(w.sum(), 1.0)

    def member_step(p, state, w):
        grads = jax.grad(loss)(p, w)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    def step(carry, _):
        p, state = carry
        return jax.vmap(member_step)(p, state, weights), None

    state = jax.vmap(optimizer.init)(params)
    (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
    return params


def _predict_numpy(params: dict, x: np.ndarray) -> np.ndarray:
    """(E, N, K) forward pass of every member in numpy: no compilation, and fast for the small batches of an
    ask/tell loop as well as for large candidate pools (BLAS)."""
    out = []
    for m in range(len(params["skip"])):
        h = x
        for w, b in params["layers"][:-1]:
            h = np.maximum(h @ w[m] + b[m], 0.0)
        w, b = params["layers"][-1]
        out.append(h @ w[m] + b[m] + x @ params["skip"][m])
    return np.stack(out)


class NormalScores:
    """The Gaussian-copula transform of one target: values to the normal quantiles of their ranks, and back by
    the empirical quantile function, linear beyond the observed range (with the slope of the outermost standard
    deviation of scores), so a prediction better than every observation stays better."""

    def __init__(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.float64)
        self.scores_of_values = ndtri((rankdata(values) - 0.5) / len(values))
        self.scores, first = np.unique(self.scores_of_values, return_index=True)
        self.values = values[first]
        low, high = self.scores[0], self.scores[-1]
        self.low_slope = (np.interp(low + 1.0, self.scores, self.values) - self.values[0]) / max(
            min(1.0, high - low), 1e-12)
        self.high_slope = (self.values[-1] - np.interp(high - 1.0, self.scores, self.values)) / max(
            min(1.0, high - low), 1e-12)

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        inside = np.interp(scores, self.scores, self.values)
        below = self.values[0] + self.low_slope * np.minimum(scores - self.scores[0], 0.0)
        above = self.values[-1] + self.high_slope * np.maximum(scores - self.scores[-1], 0.0)
        return np.where(scores < self.scores[0], below, np.where(scores > self.scores[-1], above, inside))


_RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _ridge_coefficients(design: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float) -> np.ndarray:
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    gram = design.T @ (design * w[:, None]) + penalty
    return np.linalg.lstsq(gram, design.T @ (w * y), rcond=None)[0]


def _best_ridge(design: np.ndarray, y: np.ndarray, valid: np.ndarray) -> float:
    """The penalty of the grid with the least leave-one-out error (closed form) on the valid rows."""
    x, t = design[valid], y[valid]
    errors = []
    for ridge in _RIDGE_GRID:
        penalty = ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0
        inverse = np.linalg.pinv(x.T @ x + penalty)
        leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
        residual = (t - x @ (inverse @ (x.T @ t))) / np.maximum(1.0 - leverage, 1e-6)
        errors.append(float((residual ** 2).mean()))
    return _RIDGE_GRID[int(np.argmin(errors))]


def _ridge_start(params: dict, x: np.ndarray, y: np.ndarray, weights: np.ndarray, valid: np.ndarray,
                 keep_network: bool) -> dict:
    """Each member starts as its own weighted ridge regression (the skip and output bias; penalty per output
    by leave-one-out error), so training begins at a good additive fit and the MLP learns what is left. A fresh
    network's output layer starts at zero; a pre-trained one is kept and the ridge fits what it leaves."""
    design = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    members, outputs = weights.shape[0], y.shape[1]
    *hidden, (w_out, b_out) = params["layers"]
    if keep_network:
        base = _predict_numpy(params, x).astype(np.float64)
    else:
        w_out, b_out = np.zeros_like(w_out), np.zeros_like(b_out)
        base = np.zeros((members, len(x), outputs))
    skip = params["skip"] if keep_network else np.zeros_like(params["skip"])
    coef = np.zeros((members, design.shape[1], outputs))
    for k in range(outputs):
        ridge = _best_ridge(design, y[:, k] - base.mean(0)[:, k], valid[:, k])
        for m in range(members):
            coef[m, :, k] = _ridge_coefficients(design, y[:, k] - base[m, :, k],
                                                weights[m, :, k].astype(np.float64), ridge)
    out = (w_out, (b_out + coef[:, -1, :]).astype(np.float32))
    return {"layers": [*hidden, out], "skip": (skip + coef[:, :-1, :]).astype(np.float32)}


class EnsemblePredictor:
    """Predicts K metrics from (N, F) features: mean and ensemble standard deviation, in the targets' units.

    `targets="standardize"` learns each target shifted and scaled; `targets="copula"` learns the normal scores
    of its ranks (each member's prediction mapped back through the empirical quantile function), so a few
    outliers (e.g. architectures whose training diverged) do not dominate the squared error of the rest."""

    def __init__(self, num_features: int, num_outputs: int = 1, *, members: int = 8, hidden=(64, 64),
                 steps: int = 300, learning_rate: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
                 targets: str = "standardize"):
        if members < 1 or steps < 1 or num_features < 1 or num_outputs < 1:
            raise UserInputError(f"accuracy predictor: members, steps, features and outputs must be >= 1, got "
                                 f"members={members}, steps={steps}, features={num_features}, outputs={num_outputs}")
        if targets not in ("standardize", "copula"):
            raise UserInputError(f"accuracy predictor: targets={targets!r} is not 'standardize' or 'copula'")
        self.targets = targets
        self._copulas: list[NormalScores] | None = None
        self.sizes = (int(num_features), *map(int, hidden), int(num_outputs))
        self.members, self.steps = int(members), int(steps)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.seed = int(seed)
        self.params = None
        self._start = None
        self._shift = np.zeros(num_outputs)
        self._scale = np.ones(num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.sizes[-1]

    def _fit_standardized(self, x: np.ndarray, y: np.ndarray, valid: np.ndarray, seed: int) -> dict:
        n = len(x)
        size = padded_size(n)
        xp = np.zeros((size, x.shape[1]), dtype=np.float32)
        yp = np.zeros((size, y.shape[1]), dtype=np.float32)
        xp[:n], yp[:n] = x, np.where(valid, y, 0.0)
        rng = np.random.default_rng(seed)
        pretrained = self._start is not None
        start = self._start if pretrained else _init_params(rng, self.sizes, self.members)
        boot = rng.exponential(size=(self.members, size, 1)) if self.members > 1 else np.ones((1, size, 1))
        mask = np.zeros((size, y.shape[1]), dtype=np.float32)
        mask[:n] = valid
        weights = (boot * mask[None]).astype(np.float32)
        start = _ridge_start(start, xp, yp, weights, mask > 0, keep_network=pretrained)
        params = _train(start, xp, yp, weights, steps=self.steps, learning_rate=self.learning_rate,
                        weight_decay=self.weight_decay)
        return jax.tree_util.tree_map(np.asarray, params)

    def _check(self, features, targets) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(features, dtype=np.float32)
        y = np.asarray(targets, dtype=np.float64)
        y = y[:, None] if y.ndim == 1 else y
        if x.ndim != 2 or x.shape[1] != self.sizes[0] or y.shape != (len(x), self.num_outputs):
            raise UserInputError(f"accuracy predictor: expected features (N, {self.sizes[0]}) and targets "
                                 f"(N, {self.num_outputs}), got {x.shape} and {y.shape}")
        return x, y

    def fit(self, features, targets, *, seed: int | None = None) -> "EnsemblePredictor":
        """Trains every member on (N, F) features and (N, K) targets (NaN marks a missing target); starts from the
        pre-trained weights when `pretrain` ran."""
        x, y = self._check(features, targets)
        valid = np.isfinite(y)
        if not valid.any(0).all():
            raise UserInputError("accuracy predictor: every output needs at least one finite target to fit")
        seed = self.seed if seed is None else seed
        if self.targets == "copula":
            self._copulas = [NormalScores(y[valid[:, k], k]) for k in range(y.shape[1])]
            scores = np.zeros_like(y)
            for k, copula in enumerate(self._copulas):
                scores[valid[:, k], k] = copula.scores_of_values
            self._shift, self._scale = np.zeros(y.shape[1]), np.ones(y.shape[1])
            self.params = self._fit_standardized(x, scores, valid, seed)
            return self
        self._shift = np.array([y[valid[:, k], k].mean() for k in range(y.shape[1])])
        spread = np.array([y[valid[:, k], k].std() for k in range(y.shape[1])])
        self._scale = np.where(spread > 0, spread, 1.0)
        self.params = self._fit_standardized(x, (y - self._shift) / self._scale, valid, seed)
        return self

    def pretrain(self, features, proxy, *, seed: int | None = None) -> "EnsemblePredictor":
        """FBNetV3-style: learns a free proxy (e.g. log FLOPs), standardized, as every output; later `fit`s start
        from these weights."""
        x, _ = self._check(features, np.zeros((len(features), self.num_outputs)))
        p = np.asarray(proxy, dtype=np.float64).reshape(-1)
        p = (p - p.mean()) / (p.std() if p.std() > 0 else 1.0)
        y = np.repeat(p[:, None], self.num_outputs, axis=1)
        self._start = None
        self._start = self._fit_standardized(x, y, np.ones_like(y, dtype=bool),
                                             (self.seed if seed is None else seed) + 7919)
        return self

    @property
    def pretrained_weights(self) -> dict | None:
        """The weights `pretrain` produced (None before), to share with other predictors of the same shape."""
        return self._start

    def start_from(self, weights: dict | None) -> "EnsemblePredictor":
        """Later `fit`s start from these pre-trained weights (None: from random ones)."""
        self._start = weights
        return self

    def predict_members(self, features) -> np.ndarray:
        """(E, N, K) every member's prediction in the targets' units."""
        if self.params is None:
            raise UserInputError("accuracy predictor: call fit() before predict()")
        x = np.asarray(features, dtype=np.float32)
        out = [_predict_numpy(self.params, x[start:start + _PREDICT_CHUNK])
               for start in range(0, len(x), _PREDICT_CHUNK)]
        raw = np.concatenate(out, axis=1) if out else np.zeros((self.members, 0, self.num_outputs))
        if self._copulas is not None:
            return np.stack([c.inverse(raw[..., k].astype(np.float64)) for k, c in enumerate(self._copulas)], -1)
        return raw * self._scale + self._shift

    def predict(self, features) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) mean and (N, K) standard deviation over the ensemble."""
        members = self.predict_members(features)
        return members.mean(0), members.std(0)

    def init_random(self, seed: int | None = None) -> "EnsemblePredictor":
        """Untrained random weights (a fixed random function, e.g. a stand-in accuracy model for benchmarks)."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        self.params = _init_params(rng, self.sizes, self.members)
        return self
