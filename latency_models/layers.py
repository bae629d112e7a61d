"""Layer enumeration per search space: the unique layer configurations, which ones each architecture runs, and
their MACs, parameters and bytes moved, all as gathers over (N, D) architecture arrays."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from search_spaces.errors import UserInputError

CHUNK = 32768  # rows per step of the fast evaluators: intermediates stay in cache; one BLAS thread is fastest

@dataclass(frozen=True)
class Layer:
    """One layer configuration as a lookup table keys it: op, square input hw×hw×cin, output channels, kernel,
    stride, expand channels (mbconv; 0 otherwise), SE mid channels (0 = no SE), activation."""

    op: str
    hw: int
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    expand: int = 0
    se: int = 0
    act: str = "none"

    @property
    def key(self) -> str:
        return (f"{self.op}-i{self.hw}x{self.hw}x{self.cin}-o{self.cout}-k{self.kernel}-s{self.stride}"
                f"-e{self.expand}-se{self.se}-{self.act}")

    @classmethod
    def from_key(cls, key: str) -> "Layer":
        try:
            op, shape, out, k, s, e, se, act = key.split("-")
            hw, _, cin = shape[1:].split("x")
            return cls(op, int(hw), int(cin), int(out[1:]), int(k[1:]), int(s[1:]), int(e[1:]), int(se[2:]), act)
        except ValueError:
            raise UserInputError(f"layer key {key!r} is malformed; expected e.g. "
                                 f"{Layer('mbconv', 32, 16, 24, 3, 2, 48, 0, 'relu').key!r}") from None

    @property
    def out_hw(self) -> int:
        if self.op in ("gap", "linear"):
            return 1
        return -(-self.hw // self.stride)

    @property
    def residual(self) -> bool:
        return self.op == "mbconv" and self.stride == 1 and self.cin == self.cout

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _conv_macs(hw_out: int, cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return hw_out * hw_out * kernel * kernel * (cin // groups) * cout


def layer_macs(layer: Layer) -> int:
    """Multiply-accumulates of one inference of the layer (batch 1)."""
    o, h = layer.out_hw, layer.hw
    if layer.op in ("conv_bn_act", "relu_conv_bn"):
        return _conv_macs(o, layer.cin, layer.cout, layer.kernel)
    if layer.op == "mbconv":
        e = layer.expand
        expand = _conv_macs(h, layer.cin, e, 1) if e != layer.cin else 0
        depthwise = _conv_macs(o, e, e, layer.kernel, groups=e)
        se = 2 * e * layer.se if layer.se else 0
        return expand + depthwise + se + _conv_macs(o, e, layer.cout, 1)
    if layer.op == "linear":
        return layer.cin * layer.cout
    if layer.op == "resblock":
        return (_conv_macs(o, layer.cin, layer.cout, 3) + _conv_macs(o, layer.cout, layer.cout, 3)
                + _conv_macs(o, layer.cin, layer.cout, 1))
    return 0


def layer_params(layer: Layer) -> int:
    """Weights (BN folded into the convolution, as an inference runtime stores them)."""
    if layer.op in ("conv_bn_act", "relu_conv_bn"):
        return layer.kernel ** 2 * layer.cin * layer.cout + layer.cout
    if layer.op == "mbconv":
        e, c = layer.expand, layer.cin
        expand = c * e + e if e != c else 0
        se = (e * layer.se + layer.se + layer.se * e + e) if layer.se else 0
        return expand + layer.kernel ** 2 * e + e + se + e * layer.cout + layer.cout
    if layer.op == "linear":
        return layer.cin * layer.cout + layer.cout
    if layer.op == "resblock":
        return 9 * layer.cin * layer.cout + 9 * layer.cout ** 2 + layer.cin * layer.cout + 3 * layer.cout
    if layer.op == "bn_act":
        return 2 * layer.cin
    return 0


def layer_activations(layer: Layer) -> int:
    """Activation elements read and written (intermediate tensors of a block counted once written, once read)."""
    h, o = layer.hw, layer.out_hw
    x_in, x_out = h * h * layer.cin, o * o * layer.cout
    if layer.op == "mbconv":
        e = layer.expand
        expanded = 2 * h * h * e if e != layer.cin else 0
        inner = 2 * o * o * e * (2 if layer.se else 1)
        return x_in + expanded + inner + x_out + (x_out if layer.residual else 0)
    if layer.op == "add":
        return 2 * x_in + x_out
    if layer.op == "resblock":
        return 2 * x_in + 4 * x_out
    return x_in + x_out


def layer_bytes(layer: Layer, bytes_per_element: int = 4) -> int:
    """Bytes moved to and from memory: activations plus weights, at the given precision."""
    return (layer_activations(layer) + layer_params(layer)) * bytes_per_element


@dataclass
class LayerTable:
    """Which layers N architectures run: `index` (N, L) into `layers`, `count` (N, L) how many times (0 = slot not
    run), one column per slot of the space's skeleton (`slot_names`)."""

    layers: tuple[Layer, ...]
    slot_names: tuple[str, ...]
    index: np.ndarray
    count: np.ndarray

    def per_slot(self, per_layer: np.ndarray) -> np.ndarray:
        """(N, L): a per-layer quantity (U,) placed at each slot and multiplied by its count."""
        return np.asarray(per_layer, dtype=np.float64)[self.index] * self.count

    @property
    def macs(self) -> np.ndarray:
        return self.per_slot([layer_macs(l) for l in self.layers])

    @property
    def params(self) -> np.ndarray:
        return self.per_slot([layer_params(l) for l in self.layers])

    def bytes(self, bytes_per_element: int = 4) -> np.ndarray:
        return self.per_slot([layer_bytes(l, bytes_per_element) for l in self.layers])

    columns = ("macs", "flops", "params", "bytes")

    def __getitem__(self, column: str) -> np.ndarray:
        """(N, L) per-slot `macs`, `flops` (2 x MACs), `params` or `bytes` (fp32)."""
        if column not in self.columns:
            raise KeyError(f"layer table column {column!r}; columns: {self.columns}")
        if column == "bytes":
            return self.bytes()
        return 2.0 * self.macs if column == "flops" else getattr(self, column)

    def totals(self, bytes_per_element: int = 4) -> dict[str, np.ndarray]:
        """(N,) sums per architecture: macs, params (of the layers run), bytes, number of layers run."""
        return {"macs": self.macs.sum(1), "params": self.params.sum(1),
                "bytes": self.bytes(bytes_per_element).sum(1), "layers": self.count.sum(1).astype(np.float64)}


class SpaceLayers:
    """A space's skeleton: unique layers, the slot map of architectures to layers, and a fast summing evaluator.

    Subclasses implement `_slots(archs) -> (index, count)`; `compile(per_layer)` returns `f(archs) -> (N,)` equal
    to `(per_layer[index] * count).sum(1)`, specialised per space to a single gather where possible."""

    def __init__(self, space, layers: list[Layer], slot_names: list[str]):
        self.space = space
        self.layers = tuple(layers)
        self.slot_names = tuple(slot_names)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(l.key for l in self.layers)

    def table(self, archs) -> LayerTable:
        archs = self.space.validate(archs)
        index, count = self._slots(archs)
        return LayerTable(self.layers, self.slot_names, index, count)

    def _slots(self, archs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def compile(self, per_layer) -> Callable[[np.ndarray], np.ndarray]:
        per_layer = self._check(per_layer)
        return lambda archs: self.table(archs).per_slot(per_layer).sum(1)

    def _check(self, per_layer) -> np.ndarray:
        per_layer = np.asarray(per_layer, dtype=np.float64)
        if per_layer.shape != (len(self.layers),):
            raise ValueError(f"per-layer values must have shape ({len(self.layers)},), got {per_layer.shape}")
        return per_layer


def _scaled(channels: int, width_mult: float) -> int:
    from search_spaces.ofa_mbv3 import make_divisible
    return make_divisible(channels * width_mult)


class OFAMobileNetV3Layers(SpaceLayers):
    """ofa_mbv3: fixed stem, first block and head per resolution; block (stage, b) is a function of (resolution,
    stage, b, kernel, expand) because a block's input channels are its stage's (or the previous stage's) width."""

    FIXED = ("stem", "first_block", "final_expand", "gap", "feature_mix", "classifier")

    def __init__(self, space, width_mult: float = 1.0, num_classes: int = 10):
        from search_spaces import ofa_mbv3 as m
        self._m = m
        first = _scaled(m.FIRST_CHANNELS, width_mult)
        final = _scaled(m.FINAL_EXPAND, width_mult)
        feature = _scaled(m.FEATURE_DIM, width_mult)
        layers: list[Layer] = []
        add = lambda l: layers.index(l) if l in layers else (layers.append(l), len(layers) - 1)[1]
        R, S, B = len(space.resolutions), m.NUM_STAGES, m.MAX_DEPTH
        self.fixed_ids = np.zeros((R, len(self.FIXED)), dtype=np.int64)
        self.block_ids = np.zeros((R, S, B, len(m.KERNEL_CHOICES), len(m.EXPAND_CHOICES)), dtype=np.int64)
        for r, res in enumerate(space.resolutions):
            stem = Layer("conv_bn_act", res, 3, first, 3, 2, act="hswish")
            hw = stem.out_hw
            self.fixed_ids[r, 0] = add(stem)
            self.fixed_ids[r, 1] = add(Layer("mbconv", hw, first, first, 3, 1, first, 0, "relu"))
            cin = first
            for s, (stage, stage_stride) in enumerate(zip(m.STAGES, space.stage_strides)):
                cout = _scaled(stage["out_channels"], width_mult)
                for b in range(B):
                    c, stride = (cin, stage_stride) if b == 0 else (cout, 1)
                    for ki, k in enumerate(m.KERNEL_CHOICES):
                        for ei, e in enumerate(m.EXPAND_CHOICES):
                            mid = m.make_divisible(c * e)
                            se = m.make_divisible(mid // 4) if stage["se"] else 0
                            self.block_ids[r, s, b, ki, ei] = add(Layer("mbconv", hw, c, cout, k, stride, mid, se,
                                                                        stage["act"]))
                    hw = -(-hw // stride) if b == 0 else hw
                cin = cout
            self.fixed_ids[r, 2] = add(Layer("conv_bn_act", hw, cin, final, 1, 1, act="hswish"))
            self.fixed_ids[r, 3] = add(Layer("gap", hw, final, final))
            self.fixed_ids[r, 4] = add(Layer("linear", 1, final, feature, act="hswish"))
            self.fixed_ids[r, 5] = add(Layer("linear", 1, feature, num_classes))
        blocks = [f"block_{s}_{b}" for s in range(S) for b in range(B)]
        super().__init__(space, layers, list(self.FIXED[:2]) + blocks + list(self.FIXED[2:]))

    def _slots(self, archs):
        m = self._m
        a = archs.astype(np.int64)
        r = a[:, m.RESOLUTION]
        S, B = m.NUM_STAGES, m.MAX_DEPTH
        s_idx = np.repeat(np.arange(S), B)
        b_idx = np.tile(np.arange(B), S)
        blocks = self.block_ids[r[:, None], s_idx, b_idx, a[:, m.KERNEL], a[:, m.EXPAND]]
        fixed = self.fixed_ids[r]
        index = np.concatenate([fixed[:, :2], blocks, fixed[:, 2:]], axis=1)
        active = self.space.block_active(archs).reshape(len(a), -1)
        count = np.concatenate([np.ones((len(a), 2), np.int64), active.astype(np.int64),
                                np.ones((len(a), 4), np.int64)], axis=1)
        return index, count

    def compile(self, per_layer):
        """Per (resolution, stage) a table over (depth, the 4 blocks' kernel×expand options) of the stage's total,
        so a query is 5 gathers and a sum, plus the resolution's fixed layers."""
        m = self._m
        per_layer = self._check(per_layer)
        R, S, B = self.block_ids.shape[:3]
        n_opt = len(m.KERNEL_CHOICES) * len(m.EXPAND_CHOICES)
        block = per_layer[self.block_ids].reshape(R, S, B, n_opt)
        active = np.arange(B) < np.asarray(m.DEPTH_CHOICES)[:, None]
        stage = np.zeros((R, S, len(m.DEPTH_CHOICES)) + (n_opt,) * B)
        for b in range(B):
            shape = [R, S, 1] + [1] * B
            shape[3 + b] = n_opt
            stage += active[:, b].reshape(1, 1, -1, *([1] * B)) * block[:, :, b].reshape(shape)
        stage[:, 0] += per_layer[self.fixed_ids].sum(1).reshape(R, *([1] * (1 + B)))
        flat = stage.reshape(-1)
        weights = self._index_weights(R, S, B, n_opt, stage[0, 0].size)
        n_cols = weights.shape[0]

        stage_offsets = np.arange(S) * stage[0, 0].size

        def evaluate_chunks(a, out):
            for start in range(0, len(a), CHUNK):
                chunk = a[start:start + CHUNK, :n_cols]
                idx = (chunk.astype(np.float32) @ weights).astype(np.int64) + stage_offsets
                out[start:start + CHUNK] = flat[idx].sum(1)
            return out

        def evaluate(archs):
            a = np.asarray(archs)
            a = a[None] if a.ndim == 1 else a
            if len(a) <= CHUNK:
                return evaluate_chunks(a, np.empty(len(a)))
            from threadpoolctl import threadpool_limits
            with threadpool_limits(1):
                return evaluate_chunks(a, np.empty(len(a)))
        return evaluate

    def _index_weights(self, R, S, B, n_opt, stage_size) -> np.ndarray:
        """(D, S) float32: the flat table index of each stage is linear in the choice indices (resolution, depth,
        kernel, expand), so one BLAS matmul computes all of them exactly (indices stay far below 2**24)."""
        m = self._m
        if R * S * stage_size >= 2 ** 24:
            raise ValueError("ofa_mbv3 fast table too large for exact float32 indexing; use fewer resolutions")
        n_exp = len(m.EXPAND_CHOICES)
        weights = np.zeros((m.EXPAND.stop, S), dtype=np.float64)
        weights[m.RESOLUTION, :] = S * stage_size
        for s in range(S):
            weights[m.DEPTH.start + s, s] = n_opt ** B
            for b in range(B):
                place = n_opt ** (B - 1 - b)
                weights[m.KERNEL.start + s * B + b, s] = n_exp * place
                weights[m.EXPAND.start + s * B + b, s] = place
        return weights.astype(np.float32)


NB201_C, NB201_CELLS, NB201_STAGES, NB201_RES, NB201_CLASSES = 16, 5, 3, 32, 100


class NB201Layers(SpaceLayers):
    """nb201 macro skeleton: 3x3 stem, 3 stages of `cells` identical cells (channels C, 2C, 4C at resolution R,
    R/2, R/4) with residual reduction blocks between, BN-ReLU, global pool, linear classifier; NAS-Bench-201's
    C=16, 5 cells, 32 px, 100 classes by default. A cell edge costs its op when active (`space.active`); a node
    summing k active edges costs k-1 adds."""

    def __init__(self, space, num_classes: int = NB201_CLASSES, channels: int = NB201_C, cells: int = NB201_CELLS,
                 resolution: int = NB201_RES):
        from search_spaces import nb201
        self._nb = nb201
        self.cells = cells
        layers: list[Layer] = []
        add = lambda l: layers.index(l) if l in layers else (layers.append(l), len(layers) - 1)[1]
        self.fixed_ids = [add(Layer("conv_bn_act", resolution, 3, channels, 3, 1))]
        self.edge_ids = np.zeros((NB201_STAGES, len(nb201.OPS)), dtype=np.int64)
        self.add_ids = np.zeros(NB201_STAGES, dtype=np.int64)
        c, hw = channels, resolution
        for st in range(NB201_STAGES):
            ops = {1: Layer("identity", hw, c, c), 2: Layer("relu_conv_bn", hw, c, c, 1, 1, act="relu"),
                   3: Layer("relu_conv_bn", hw, c, c, 3, 1, act="relu"), 4: Layer("avg_pool", hw, c, c, 3, 1)}
            ops[0] = ops[1]
            for o in range(len(nb201.OPS)):
                self.edge_ids[st, o] = add(ops[o])
            self.add_ids[st] = add(Layer("add", hw, c, c))
            if st < NB201_STAGES - 1:
                self.fixed_ids.append(add(Layer("resblock", hw, c, 2 * c, 3, 2, act="relu")))
                c, hw = 2 * c, hw // 2
        self.fixed_ids += [add(Layer("bn_act", hw, c, c, act="relu")), add(Layer("gap", hw, c, c)),
                           add(Layer("linear", 1, c, num_classes))]
        self.fixed_ids = np.asarray(self.fixed_ids)
        names = ["stem"] + [f"stage{st}_{n}" for st in range(NB201_STAGES)
                            for n in [f"edge_{t}_{s}" for t, s in nb201.EDGES] + ["adds"]]
        names += ["reduction_0", "reduction_1", "lastact", "gap", "classifier"]
        super().__init__(space, layers, names)

    def _slots(self, archs):
        nb = self._nb
        a = archs.astype(np.int64)
        n = len(a)
        active = self.space.active(a)
        targets = np.array([t for t, _ in nb.EDGES])
        per_node = np.stack([active[:, targets == t].sum(1) for t in range(1, nb.NUM_NODES)], axis=1)
        adds = np.maximum(per_node - 1, 0).sum(1)
        index, count = [], []
        for st in range(NB201_STAGES):
            index += [self.edge_ids[st][a], np.full((n, 1), self.add_ids[st])]
            count += [active * self.cells, (adds * self.cells)[:, None]]
        fixed = np.broadcast_to(self.fixed_ids, (n, len(self.fixed_ids)))
        index = np.concatenate([fixed[:, :1]] + index + [fixed[:, 1:]], axis=1)
        count = np.concatenate([np.ones((n, 1))] + count + [np.ones((n, len(self.fixed_ids) - 1))], axis=1)
        return index, count.astype(np.int64)

    def compile(self, per_layer):
        """All 15,625 cells are tabulated once; a query is one gather by the cell's rank."""
        per_layer = self._check(per_layer)
        every = self.space.enumerate()
        totals = self.table(every).per_slot(per_layer).sum(1)
        sizes = self.space.sizes.astype(np.int64)
        weights = np.cumprod(np.concatenate([[1], sizes[::-1][:-1]]))[::-1]
        return lambda archs: totals[np.atleast_2d(np.asarray(archs)).astype(np.int64) @ weights]


_BUILDERS: dict[str, Callable[..., SpaceLayers]] = {"ofa_mbv3": OFAMobileNetV3Layers, "nb201": NB201Layers}


def register_layers(space_name: str, builder: Callable[..., SpaceLayers]) -> None:
    """Makes `space_layers(space)` use `builder(space, **options)` for spaces named `space_name`."""
    _BUILDERS[space_name] = builder


_CACHE: dict[tuple, SpaceLayers] = {}


def space_layers(space, **options) -> SpaceLayers:
    """The layer skeleton of `space` (cached per space config and options such as width_mult, num_classes)."""
    if space.name not in _BUILDERS:
        raise UserInputError(f"no layer enumeration for search space {space.name!r}; spaces with latency models: "
                             f"{sorted(_BUILDERS)}")
    config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in space.config().items()))
    key = (space.name, config, tuple(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = _BUILDERS[space.name](space, **options)
    return _CACHE[key]


def layer_table(space, archs, **options) -> LayerTable:
    """Per-architecture layer enumeration: which layers (and how often) each of the (N, D) architectures runs."""
    return space_layers(space, **options).table(archs)
