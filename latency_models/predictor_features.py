"""Structural feature groups of architectures for the calibrated predictor, per search space (vectorized), and
the kernels over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search_spaces.errors import UserInputError
from search_spaces.space import Space

FeatureGroups = dict[str, np.ndarray]


def _one_hot(values: np.ndarray, num: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, C) integer values in 0..num-1 -> (N, C * num) float one-hot, zero where `mask` is False."""
    out = (values[:, :, None] == np.arange(num)).astype(np.float64)
    if mask is not None:
        out *= mask[:, :, None]
    return out.reshape(values.shape[0], values.shape[1] * num)


def nb201_groups(space: Space, archs: np.ndarray) -> FeatureGroups:
    """Per-edge active-op one-hots, per-op counts and per-node fan-in of the canonical cell."""
    from search_spaces.nb201 import EDGES, NUM_NODES, OPS

    canonical = space.canonical(archs)
    active = space.active(canonical)
    ops = np.where(active, canonical, 0).astype(np.int64)
    edge_ops = _one_hot(ops - 1, len(OPS) - 1, active)
    op_counts = np.stack([(ops == k).sum(1) for k in range(1, len(OPS))], 1).astype(np.float64)
    targets = np.array([to for to, _ in EDGES])
    fan_in = np.stack([active[:, targets == node].sum(1) for node in range(1, NUM_NODES)], 1)
    return {"op_counts": op_counts, "edge_ops": edge_ops, "node_fan_in": _one_hot(fan_in, len(EDGES) // 2 + 1)}


def ofa_mbv3_groups(space: Space, archs: np.ndarray) -> FeatureGroups:
    """Resolution one-hot, per-stage depth one-hot, per-block (kernel, expand) one-hots of active blocks and their
    counts over the network, the latter two also scaled by the relative pixel count (block cost grows with
    resolution squared)."""
    from search_spaces import ofa_mbv3 as ofa

    archs = space.validate(archs).astype(np.int64)
    active = space.active(archs)
    resolution_values = np.asarray(space.hparams["resolutions"], dtype=np.float64)
    pixels = (resolution_values[archs[:, ofa.RESOLUTION]] / resolution_values.max()) ** 2
    block_active = active[:, ofa.KERNEL]
    block_choice = archs[:, ofa.KERNEL] * len(ofa.EXPAND_CHOICES) + archs[:, ofa.EXPAND]
    block_ops = _one_hot(block_choice, len(ofa.KERNEL_CHOICES) * len(ofa.EXPAND_CHOICES), block_active)
    op_counts = block_ops.reshape(len(archs), block_active.shape[1], -1).sum(1)
    return {
        "op_counts_pixels": op_counts * pixels[:, None],
        "resolution": _one_hot(archs[:, [ofa.RESOLUTION]], len(resolution_values)),
        "stage_depth": _one_hot(archs[:, ofa.DEPTH], len(ofa.DEPTH_CHOICES)),
        "block_ops": block_ops,
        "block_ops_pixels": block_ops * pixels[:, None],
    }


def generic_groups(space: Space, archs: np.ndarray) -> FeatureGroups:
    """Any space: one-hot of each active decision of the canonical form."""
    return {"decisions": space.features(archs).astype(np.float64)}


_LAYER_COST_EVALUATORS: dict[str, list] = {}


def layer_groups(space: Space, archs: np.ndarray) -> FeatureGroups:
    """Whole-network MACs, parameters, bytes moved and layer count from `latency_models.layers`, when that module
    enumerates the space's layers; empty otherwise. Each is one compiled gather-and-sum over the architectures."""
    key = repr(space.config())
    if key not in _LAYER_COST_EVALUATORS:
        _LAYER_COST_EVALUATORS[key] = _layer_cost_evaluators(space)
    evaluators = _LAYER_COST_EVALUATORS[key]
    if not evaluators:
        return {}
    return {"layer_costs": np.stack([evaluate(archs) for evaluate in evaluators], axis=1)}


def _layer_cost_evaluators(space: Space) -> list:
    try:
        from latency_models.layers import layer_bytes, layer_macs, layer_params, space_layers
        skeleton = space_layers(space)
    except (ImportError, UserInputError):
        return []
    costs = [[layer_macs(l) / 1e6, layer_params(l) / 1e6, layer_bytes(l) / 1e6, 1.0] for l in skeleton.layers]
    return [skeleton.compile(column) for column in np.asarray(costs, dtype=np.float64).T]


REFERENCE_DEVICE = "host-cpu"
_REFERENCE_EVALUATORS: dict[tuple, tuple] = {}


def reference_layer_values(space: Space) -> dict | None:
    """This machine's per-layer latencies for the space (its measured lookup table where one covers the space,
    else its roofline estimate), to be frozen into a fitted predictor so that re-profiling later does not change
    it; None when the space has no layer enumeration."""
    try:
        from latency_models.devices import get_device, measured_tables
        from latency_models.lut import LookupTable
        from latency_models.roofline import roofline_table

        device = get_device(REFERENCE_DEVICE)
        tables = (LookupTable.load(path) for path in measured_tables(device.name))
        table = next((t for t in tables if t.metadata.get("method") != "roofline" and not t.missing(space)), None)
        table = table or roofline_table(space, device)
        return {"device": device.name, "table": str(table.path or "roofline estimate"),
                "date": table.metadata.get("date", ""), "per_layer": table.per_layer(space).tolist(),
                "overhead_ms": table.overhead_ms}
    except (ImportError, UserInputError):
        return None


def reference_groups(space: Space, archs: np.ndarray, reference: dict | None) -> FeatureGroups:
    """The reference device's lookup-table latency of each architecture: a prior that other devices' latencies
    largely follow (same layers, different speeds)."""
    if reference is None:
        return {}
    key = (id(reference), repr(space.config()))
    if key not in _REFERENCE_EVALUATORS or _REFERENCE_EVALUATORS[key][0] is not reference:
        from latency_models.layers import space_layers

        per_layer = np.asarray(reference["per_layer"], dtype=np.float64)
        _REFERENCE_EVALUATORS[key] = (reference, space_layers(space).compile(per_layer))
    return {"reference_latency": (_REFERENCE_EVALUATORS[key][1](archs) + reference["overhead_ms"])[:, None]}


SPACE_GROUPS = {"nb201": nb201_groups, "ofa_mbv3": ofa_mbv3_groups}

# Default kernels per space: (feature group, kernel kind). Every group gets its own scale, chosen in `fit`.
SPACE_KERNELS = {
    "nb201": [("op_counts", "linear"), ("edge_ops", "linear"), ("node_fan_in", "linear"), ("edge_ops", "poly2"),
              ("layer_costs", "linear"), ("reference_latency", "linear")],
    "ofa_mbv3": [("resolution", "linear"), ("op_counts_pixels", "linear"), ("stage_depth", "linear"),
                 ("block_ops_pixels", "linear"),
                 ("block_ops", "linear"), ("block_ops_pixels", "poly2"), ("layer_costs", "linear"),
                 ("reference_latency", "linear")],
}
GENERIC_KERNELS = [("decisions", "linear"), ("decisions", "poly2"), ("layer_costs", "linear"),
                   ("reference_latency", "linear")]


def feature_groups(space: Space, archs: np.ndarray, reference: dict | None = None) -> FeatureGroups:
    """All feature groups this framework knows for `space`, each (N, k) float64, computed on the canonical
    form (functionally equal architectures get equal features); `reference` from `reference_layer_values`."""
    archs = space.canonical(space.validate(archs))
    groups = SPACE_GROUPS.get(space.name, generic_groups)(space, archs)
    groups.update(layer_groups(space, archs))
    groups.update(reference_groups(space, archs, reference))
    return groups


def default_kernels(space: Space, available: FeatureGroups) -> list[tuple[str, str]]:
    """The space's default kernel list restricted to the feature groups that are available."""
    kernels = SPACE_KERNELS.get(space.name, GENERIC_KERNELS)
    return [(group, kind) for group, kind in kernels if group in available]


def _group_scale(train: np.ndarray) -> np.ndarray:
    """Per-column divisor: 1 for binary columns, the column's RMS for continuous ones (0 columns stay 0)."""
    binary = np.all((train == 0) | (train == 1), axis=0)
    rms = np.sqrt(np.mean(train ** 2, axis=0))
    return np.where(binary | (rms == 0), 1.0, rms)


def _kernel(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dot = a @ b.T
    if kind == "linear":
        return dot
    if kind == "poly2":
        return dot ** 2
    raise UserInputError(f"unknown predictor kernel {kind!r}; allowed: 'linear', 'poly2'")


@dataclass
class KernelTerm:
    """One (feature group, kernel) term: column centre and scale, the training features, the diagonal normaliser.

    Linear terms are centred on the training mean, so the fit has an unpenalised intercept and an architecture
    with fewer ops than the sampled ones is predicted faster, not pulled to the sample mean."""
    group: str
    kind: str
    center: np.ndarray
    scale: np.ndarray
    train: np.ndarray
    norm: float

    @classmethod
    def build(cls, group: str, kind: str, train: np.ndarray) -> "KernelTerm":
        center = train.mean(0) if kind == "linear" else np.zeros(train.shape[1])
        scale = _group_scale(train)
        scaled = (train - center) / scale
        diag = np.einsum("ij,ij->i", scaled, scaled)
        diag = diag if kind == "linear" else diag ** 2
        return cls(group, kind, center, scale, scaled, float(max(diag.mean(), 1e-12)))

    def _prepare(self, features: np.ndarray) -> np.ndarray:
        return (features - self.center) / self.scale

    def matrix(self, features: np.ndarray | None = None) -> np.ndarray:
        """k(features, train) / norm; the training Gram matrix when `features` is None."""
        a = self.train if features is None else self._prepare(features)
        return _kernel(self.kind, a, self.train) / self.norm

    def apply(self, features: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """k(features, train) @ alpha / norm in primal form on the raw features: (k,) weights for linear kernels,
        a (k, k) matrix W for poly2 (sum over training rows t of (x.t)^2 alpha_t = x^T W x), so the cost does not
        grow with the sample."""
        if self.kind == "linear":
            weights = self.train.T @ alpha / self.norm / self.scale
            return features @ weights - self.center @ weights
        weights = (self.train.T * alpha) @ self.train / self.norm / np.outer(self.scale, self.scale)
        return np.einsum("nk,nk->n", features @ weights, features)

    def to_json(self) -> dict:
        return {"group": self.group, "kernel": self.kind, "center": self.center.tolist(),
                "scale": self.scale.tolist(), "train": self.train.tolist(), "norm": self.norm}

    @classmethod
    def from_json(cls, d: dict) -> "KernelTerm":
        return cls(d["group"], d["kernel"], *(np.asarray(d[k], float) for k in ("center", "scale", "train")),
                   float(d["norm"]))
