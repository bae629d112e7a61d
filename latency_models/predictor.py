"""Calibrated few-shot latency and energy predictors: multiple-kernel ridge over structural features, fitted to
end-to-end measurements of a few architectures, hyperparameters chosen by robust leave-one-out error."""

from __future__ import annotations

import csv
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_models.json_files import read_json
from latency_models.predictor_features import KernelTerm, default_kernels, feature_groups, reference_layer_values
from search_spaces import get_space
from search_spaces.errors import UserInputError
from search_spaces.space import Space

SCHEMA_VERSION = 1
METRICS = ("latency_ms", "energy_mj")
MAX_TRAIN_ROWS = 400
MIN_DISTINCT = 5
LOG_GRID = np.arange(-4.0, 3.01, 0.5)
TRIM_LOG_ERROR = 0.25
TUKEY_C = 4.685
MAX_SWEEPS = 3
REPEAT_SPREAD = 2.0  # repeated measurements of one architecture further apart are refused
MIN_GAIN = 0.01  # a kernel scale moves off its start (1) only for a 1% lower leave-one-out error


# ------------------------------------------------------------------------------------------ fitting one metric
def _transform(values: np.ndarray, target: str) -> np.ndarray:
    return np.log(values) if target == "log" else values


def _inverse(values: np.ndarray, target: str, floor: float) -> np.ndarray:
    out = np.exp(values) if target == "log" else values
    return np.maximum(out, floor)


def _total(grams: list[np.ndarray], theta: np.ndarray, weights: np.ndarray, skip: int = -1) -> np.ndarray:
    """sum_g theta_g K_g (leaving out term `skip`) plus the per-sample noise 1/weights on the diagonal."""
    k = np.diag(1.0 / weights)
    for j, (t, g) in enumerate(zip(theta, grams)):
        if t > 0 and j != skip:
            k = k + t * g
    return k


def _solve(grams, theta, y, weights):
    """Dual coefficients and leave-one-out predictions of kernel ridge with per-sample noise 1/weights."""
    inverse = np.linalg.inv(_total(grams, theta, weights))
    alpha = inverse @ y
    return alpha, y - alpha / np.diag(inverse)


def _line_search(grams, theta, j, y, weights, candidates):
    """Leave-one-out predictions for every candidate value of theta_j, the others fixed, at O(n^2) each:
    with A = rest = L L^T and L^-1 K_j L^-T = U diag(lam) U^T, (A + t K_j)^-1 = B diag(1/(1 + t lam)) B^T,
    B = L^-T U."""
    lower = np.linalg.cholesky(_total(grams, theta, weights, skip=j))
    lower_inv = np.linalg.inv(lower)
    lam, u = np.linalg.eigh(lower_inv @ grams[j] @ lower_inv.T)
    lam = np.maximum(lam, 0.0)
    b = lower_inv.T @ u
    by, b2 = b.T @ y, b ** 2
    for t in candidates:
        shrink = 1.0 / (1.0 + t * lam)
        alpha = b @ (shrink * by)
        yield t, y - alpha / (b2 @ shrink)


def _robust_weights(y, loo):
    """Tukey bisquare weights of the leave-one-out residuals (0 beyond TUKEY_C robust standard deviations)."""
    residual = np.abs(y - loo) / (1.4826 * np.median(np.abs(y - loo)) + 1e-12)
    return np.maximum(1e-4, (1 - np.minimum(residual / TUKEY_C, 1.0) ** 2) ** 2)


def _loss(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute log ratio, each capped at TRIM_LOG_ERROR so measurement glitches do not decide."""
    return float(np.mean(np.minimum(np.abs(np.log(predicted / measured)), TRIM_LOG_ERROR)))


def _search(grams, y, to_original, measured):
    """Kernel scales theta (0 = term off) on a log grid, one term at a time with the sample weights fixed; the
    robust (bisquare) sample weights are refreshed from leave-one-out residuals after each sweep.
    Returns theta, weights, loss."""
    theta, weights = np.ones(len(grams)), np.ones_like(y)
    candidates = np.concatenate([[0.0], 10.0 ** LOG_GRID])
    best = np.inf
    for _ in range(MAX_SWEEPS):
        previous = best
        best = _loss(to_original(_solve(grams, theta, y, weights)[1]), measured)
        for j in range(len(grams)):
            for t, loo in _line_search(grams, theta, j, y, weights, candidates):
                loss = _loss(to_original(loo), measured)
                if loss < best * (1 - MIN_GAIN) and (t > 0 or np.delete(theta, j).max() > 0):
                    best, theta = loss, np.where(np.arange(len(theta)) == j, t, theta)
        weights = _robust_weights(y, _solve(grams, theta, y, weights)[1])
        if best >= previous - 1e-6:
            break
    return theta, weights, best


@dataclass
class MetricModel:
    """A fitted predictor of one metric: target transform, standardisation, kernel scales and dual weights."""
    target: str
    mean: float
    std: float
    floor: float
    theta: np.ndarray
    alpha: np.ndarray
    stats: dict
    ratio_to: str = ""

    def predict(self, terms: list[KernelTerm], groups: dict[str, np.ndarray],
                predicted: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The metric for the architectures whose features are `groups`; a ratio model (e.g. energy per
        latency) multiplies the already `predicted` metric it is a ratio to."""
        z = np.zeros(next(iter(groups.values())).shape[0])
        for t, term in zip(self.theta, terms):
            if t > 0:
                z += t * term.apply(groups[term.group], self.alpha)
        values = _inverse(z * self.std + self.mean, self.target, self.floor)
        return values * predicted[self.ratio_to] if self.ratio_to else values

    def to_json(self) -> dict:
        return {"target": self.target, "mean": self.mean, "std": self.std, "floor": self.floor,
                "theta": self.theta.tolist(), "alpha": self.alpha.tolist(), "stats": self.stats,
                "ratio_to": self.ratio_to}

    @classmethod
    def from_json(cls, d: dict) -> "MetricModel":
        return cls(d["target"], float(d["mean"]), float(d["std"]), float(d["floor"]), np.asarray(d["theta"], float),
                   np.asarray(d["alpha"], float), dict(d["stats"]), str(d.get("ratio_to", "")))


def fit_metric(grams: list[np.ndarray], measured: np.ndarray, base: tuple | None = None,
               targets=("linear", "log")) -> tuple[MetricModel, np.ndarray]:
    """Chooses the target transform and kernel scales by robust leave-one-out error, then fits; returns the model
    and its leave-one-out predictions. With `base` = (name, measured, leave-one-out predictions) of another
    metric, also fits this metric as a ratio to that one (energy = latency x average power) and keeps the better.
    Runs BLAS on one thread: the many small solves are slower multi-threaded, much slower on a busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        direct, direct_loo = _fit_metric(grams, measured, targets)
        if base is None:
            return direct, direct_loo
        name, base_measured, base_loo = base
        ratio, ratio_loo = _fit_metric(grams, measured / base_measured, targets)
        ratio_loo = ratio_loo * base_loo
        ratio_loss, direct_loss = _loss(ratio_loo, measured), direct.stats["loo_trimmed_log_error"]
        choice = (direct, direct_loo) if direct_loss <= ratio_loss else (ratio, ratio_loo)
        choice[0].ratio_to = "" if choice[0] is direct else name
        choice[0].stats.update({"loo_trimmed_log_error": min(direct_loss, ratio_loss),
                                "ratio_to_" + name + "_loss": ratio_loss, "direct_loss": direct_loss,
                                **{"loo_" + k: v for k, v in accuracy(choice[1], measured).items()}})
        return choice


def _fit_metric(grams, measured, targets) -> tuple[MetricModel, np.ndarray]:
    floor = float(measured.min() * 1e-3)
    fits = {}
    for target in targets:
        y_t = _transform(measured, target)
        mean, std = float(y_t.mean()), float(y_t.std() + 1e-12)
        to_original = lambda z, mean=mean, std=std, target=target: _inverse(z * std + mean, target, floor)
        theta, weights, loss = _search(grams, (y_t - mean) / std, to_original, measured)
        alpha, loo = _solve(grams, theta, (y_t - mean) / std, weights)
        fits[target] = (loss, MetricModel(target, mean, std, floor, theta, alpha, {}), to_original(loo), weights)
    loss, model, loo_predicted, weights = min(fits.values(), key=lambda f: f[0])
    model.stats = {"n": int(len(measured)), "loo_trimmed_log_error": loss,
                   "downweighted_samples": int(np.sum(weights < 0.5)),
                   "target_losses": {t: f[0] for t, f in fits.items()},
                   **{"loo_" + k: v for k, v in accuracy(loo_predicted, measured).items()}}
    return model, loo_predicted


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """Spearman rho, Kendall tau, share within +-10%, RMSE and mean absolute relative error."""
    from scipy.stats import kendalltau, spearmanr

    relative = np.abs(predicted / measured - 1)
    return {"spearman": float(spearmanr(predicted, measured)[0]), "kendall": float(kendalltau(predicted, measured)[0]),
            "within_10pct": float(np.mean(relative <= 0.1)),
            "rmse": float(np.sqrt(np.mean((predicted - measured) ** 2))), "mean_rel_error": float(relative.mean())}


# ---------------------------------------------------------------------------------------- the predictor
PREDICT_CHUNK = 20_000



class CalibratedPredictor:
    """Latency (and energy) of any architecture of one space on one device, calibrated on measured ones."""

    def __init__(self, space_config: dict, terms: list[KernelTerm], models: dict[str, MetricModel],
                 info: dict | None = None, reference: dict | None = None):
        self.space_config, self.terms, self.models, self.info = dict(space_config), terms, models, dict(info or {})
        self.reference = reference

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.models)

    @classmethod
    def fit(cls, space: Space, archs, measured: dict[str, np.ndarray], *, kernels=None, device: str = "",
            source: str = "", seed: int = 0) -> "CalibratedPredictor":
        """Fits one model per measured metric (`latency_ms`, optionally `energy_mj`) on distinct architectures
        (repeats of one canonical network are averaged); at most MAX_TRAIN_ROWS of them, drawn at random."""
        archs, measured = distinct_architectures(space, space.validate(archs), measured)
        if len(archs) < MIN_DISTINCT:
            raise UserInputError(f"fitting a predictor needs at least {MIN_DISTINCT} functionally distinct "
                                 f"architectures; the measurements hold {len(archs)}")
        if len(archs) > MAX_TRAIN_ROWS:
            keep = np.sort(np.random.default_rng(seed).permutation(len(archs))[:MAX_TRAIN_ROWS])
            archs, measured = archs[keep], {k: v[keep] for k, v in measured.items()}
        reference = reference_layer_values(space)
        groups = feature_groups(space, archs, reference)
        kernels = [tuple(k) for k in (kernels or default_kernels(space, groups))]
        missing = sorted({g for g, _ in kernels} - set(groups))
        if missing:
            raise UserInputError(f"predictor feature group(s) {missing} are not available for space "
                                 f"{space.name!r}; available: {sorted(groups)}")
        terms = [KernelTerm.build(group, kind, groups[group]) for group, kind in kernels]
        grams = [term.matrix() for term in terms]
        models, base = {}, None
        for name in sorted(measured, key=lambda m: m != "latency_ms"):
            values = np.asarray(measured[name], dtype=np.float64)
            models[name], loo = fit_metric(grams, values, base)
            base = base or (name, values, loo)
        info = {"device": device, "source": source, "distinct_architectures": int(len(archs)),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        return cls(space.config(), terms, models, info, reference)

    def check_space(self, space: Space) -> None:
        if _plain_config(space.config()) != _plain_config(self.space_config):
            raise UserInputError(f"this predictor was fitted for space {self.space_config}, not {space.config()}")

    def space(self) -> Space:
        config = dict(self.space_config)
        return get_space(config.pop("name"), **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})

    def predict(self, space: Space | None, archs) -> dict[str, np.ndarray]:
        """{metric: (N,) values} for an (N, D) batch; features computed and applied in chunks."""
        space = space or self.space()
        self.check_space(space)
        archs = space.validate(archs)
        out = {name: np.empty(len(archs)) for name in self.models}
        for start in range(0, len(archs), PREDICT_CHUNK):
            groups = feature_groups(space, archs[start:start + PREDICT_CHUNK], self.reference)
            chunk: dict[str, np.ndarray] = {}
            for name, model in self.models.items():
                chunk[name] = model.predict(self.terms, groups, chunk)
                out[name][start:start + PREDICT_CHUNK] = chunk[name]
        return out

    def describe(self) -> dict:
        return {"kind": "calibrated_predictor", "schema_version": SCHEMA_VERSION, "space": self.space_config,
                "kernels": [[t.group, t.kind] for t in self.terms], "metrics": list(self.metrics),
                "targets": {k: m.target for k, m in self.models.items()},
                "training": {k: m.stats for k, m in self.models.items()},
                "reference": {k: v for k, v in (self.reference or {}).items() if k != "per_layer"}, **self.info}

    def to_json(self) -> dict:
        return {**self.describe(), "reference": self.reference, "terms": [t.to_json() for t in self.terms],
                "models": {k: m.to_json() for k, m in self.models.items()}}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json()))
        return path

    @classmethod
    def load(cls, path) -> "CalibratedPredictor":
        path = Path(path)
        data = read_json(path, "predictor file", " (make one with `nas latency fit`)")
        if not isinstance(data, dict) or data.get("kind") != "calibrated_predictor":
            raise UserInputError(f"{str(path)!r} is not a calibrated predictor file (made by `nas latency fit`)")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UserInputError(f"predictor file {str(path)!r} has schema version {data.get('schema_version')!r}; "
                                 f"this version reads {SCHEMA_VERSION}")
        try:
            terms = [KernelTerm.from_json(t) for t in data["terms"]]
            models = {k: MetricModel.from_json(m) for k, m in data["models"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"predictor file {str(path)!r} is damaged: {type(e).__name__} {e}") from None
        info = {k: data.get(k, "") for k in ("device", "source", "distinct_architectures", "created")}
        return cls(data["space"], terms, models, info, data.get("reference"))


def _plain_config(config: dict) -> dict:
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}


def distinct_architectures(space: Space, archs: np.ndarray, measured: dict[str, np.ndarray]):
    """One row per canonical architecture, with each metric's mean over the rows that share it."""
    keys = space.hash(archs)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(unique))
    means = {k: np.bincount(inverse, weights=np.asarray(v, float), minlength=len(unique)) / counts
             for k, v in measured.items()}
    return space.canonical(archs[first]), means


# ------------------------------------------------------------------------------------------------- CSV files
def read_architectures(path, space: Space) -> tuple[np.ndarray, list[dict]]:
    """The `arch` column of a CSV parsed into an (N, D) array, plus the raw rows; errors name file and line."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise UserInputError(f"{str(path)!r} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserInputError(f"{str(path)!r} is not a readable CSV file: {e}") from None
    if "arch" not in columns:
        raise UserInputError(f"{str(path)!r} has no 'arch' column (columns: {columns}); it needs the architecture "
                             f"in the {space.name!r} string form")
    archs = np.zeros((len(rows), space.num_decisions), dtype=space.dtype)
    for i, row in enumerate(rows):
        try:
            archs[i] = space.from_string(row["arch"] or "")
        except UserInputError as e:
            raise UserInputError(f"{str(path)!r} row {i + 1} (line {i + 2}): cannot parse arch "
                                 f"{row['arch']!r}: {e}") from None
    return archs, rows


def read_measurements(path, space: Space, min_rows: int = 5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Architectures and their positive `latency_ms` (and `energy_mj` when that column exists) from a CSV."""
    archs, rows = read_architectures(path, space)
    columns = list(rows[0]) if rows else []
    if rows and "latency_ms" not in columns:
        raise UserInputError(f"{str(path)!r} has no 'latency_ms' column (columns: {columns})")
    if len(rows) < min_rows:
        raise UserInputError(f"{str(path)!r} has {len(rows)} measured architecture(s); fitting needs at least "
                             f"{min_rows}")
    measured = {}
    for metric in (m for m in METRICS if m in columns):
        measured[metric] = np.array([_positive(row[metric], path, i, metric) for i, row in enumerate(rows)])
        _check_repeats(path, [row["arch"] for row in rows], measured[metric], metric)
    return archs, measured


def _check_repeats(path, strings: list[str], values: np.ndarray, metric: str) -> None:
    """Repeated measurements of one architecture are averaged, but ones more than REPEAT_SPREAD apart disagree
    beyond timing noise (a mislabelled row or another device's number) and are refused."""
    first: dict[str, int] = {}
    for i, text in enumerate(strings):
        j = first.setdefault(text, i)
        low, high = sorted((values[i], values[j]))
        if high > REPEAT_SPREAD * low:
            raise UserInputError(f"{str(path)!r} lines {j + 2} and {i + 2}: architecture {text!r} has {metric} "
                                 f"{values[j]:g} and {values[i]:g}, more than {REPEAT_SPREAD:g}x apart; repeated "
                                 "measurements of one architecture must agree (fix or drop one)")


def _positive(text, path, index: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise UserInputError(f"{str(path)!r} row {index + 1} (line {index + 2}): {column} {text!r} is not a "
                             f"positive number")
    return value


def write_predictions(path, strings: list[str], predicted: dict[str, np.ndarray]) -> Path:
    """`arch,latency_ms[,energy_mj]` rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [m for m in METRICS if m in predicted] + [m for m in predicted if m not in METRICS]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", *names])
        for i, text in enumerate(strings):
            writer.writerow([text, *(f"{predicted[m][i]:.6g}" for m in names)])
    return path
