"""Layer configurations as small NNX modules for profiling: the layers of what gets exported (`supernets.static`,
`supernets.nb201_static`); weights filled from numpy without compiling initializers."""

from __future__ import annotations

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latency_models.layers import Layer
from supernets.nb201_static import ReLUConvBN, ResBlock, avg_pool_3x3


def _static():
    from supernets import static
    return static


class _DropInferenceBatchNormNotice(logging.Filter):
    """jax2onnx logs, per batch norm, that it exports in inference mode: which is what profiling wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "BatchNorm exported with use_running_average=False" not in record.getMessage()


@contextlib.contextmanager
def onnx_export_context():
    """Routes `supernets.static`'s h-swish / h-sigmoid through `jax.nn.hard_swish` / `hard_sigmoid` (same values)
    while building and exporting: jax2onnx maps those to ONNX HardSwish / HardSigmoid, whereas its layout pass
    breaks the decomposed `x * hsigmoid(x)` after a convolution (ORT: 'Mul ... Incompatible dimensions').
    Also silences jax2onnx's per-batch-norm inference-mode notice."""
    static = _static()
    saved = static.ACTIVATIONS["hswish"], static.hsigmoid
    static.ACTIVATIONS["hswish"] = lambda x: jax.nn.hard_swish(x)
    static.hsigmoid = lambda x: jax.nn.hard_sigmoid(x)
    notice = _DropInferenceBatchNormNotice()
    logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        static.ACTIVATIONS["hswish"], static.hsigmoid = saved
        logging.getLogger().removeFilter(notice)


def _act(name: str):
    return {"relu": jax.nn.relu, "hswish": _static().hswish, "none": lambda x: x}[name]


class BNAct(nnx.Module):
    def __init__(self, channels: int, act: str, *, rngs: nnx.Rngs):
        self.bn = nnx.BatchNorm(channels, use_running_average=True, rngs=rngs)
        self.act = act

    def __call__(self, x):
        return _act(self.act)(self.bn(x))


class Function(nnx.Module):
    """A parameter-free layer (global pool, pooling, identity, add)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class Eval(nnx.Module):
    """Calls a `supernets.static` layer in inference mode (running batch-norm statistics)."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return self.layer(x, False)


def _construct(layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    static = _static()
    act = None if layer.act == "none" else layer.act
    if layer.op == "conv_bn_act":
        return Eval(static.ConvBNAct(layer.cin, layer.cout, layer.kernel, layer.stride, act=act, rngs=rngs))
    if layer.op == "mbconv":
        return Eval(static.MBConvBlock(layer.cin, layer.cout, layer.kernel, layer.stride, layer.expand,
                                       layer.act, bool(layer.se), rngs=rngs))
    if layer.op == "linear" and act is not None:
        return Eval(static.ConvBNAct(layer.cin, layer.cout, 1, act=act, use_bn=False, rngs=rngs))
    if layer.op == "linear":
        return Eval(static.Classifier(layer.cin, layer.cout, rngs=rngs))
    if layer.op == "relu_conv_bn":
        return ReLUConvBN(layer.cin, layer.cout, layer.kernel, layer.stride, rngs=rngs)
    if layer.op == "resblock":
        return ResBlock(layer.cin, layer.cout, rngs=rngs)
    if layer.op == "bn_act":
        return BNAct(layer.cin, layer.act, rngs=rngs)
    functions = {"gap": lambda x: jnp.mean(x, axis=(1, 2), keepdims=True), "avg_pool": avg_pool_3x3,
                 "identity": lambda x: x, "add": lambda x: x + x}
    if layer.op in functions:
        return Function(functions[layer.op])
    raise ValueError(f"no module for layer op {layer.op!r}")


def input_shape(layer: Layer, batch_size: int = 1) -> tuple[int, ...]:
    """NHWC input of the layer's model; the classifier takes pooled (N, C) features."""
    if layer.op == "linear" and layer.act == "none":
        return (batch_size, layer.cin)
    return (batch_size, layer.hw, layer.hw, layer.cin)


def _fill(path, leaf, rng: np.random.Generator):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    name = next((n for n in reversed(names) if n != "value"), "")
    if name in ("var", "scale"):
        return np.ones(leaf.shape, leaf.dtype)
    if name in ("mean", "bias"):
        return np.zeros(leaf.shape, leaf.dtype)
    return (rng.standard_normal(leaf.shape) * 0.1).astype(leaf.dtype)


def filled(construct, seed: int = 0) -> nnx.Module:
    """`construct()`'s module with random weights, built abstractly so no initializer is compiled."""
    graphdef, state = nnx.split(nnx.eval_shape(construct))
    rng = np.random.default_rng(seed)
    state = jax.tree_util.tree_map_with_path(lambda p, x: _fill(p, x, rng), state)
    return nnx.merge(graphdef, state)


def build_module(layer: Layer, seed: int = 0) -> nnx.Module:
    """The layer as an NNX module with random weights."""
    return filled(lambda: _construct(layer, nnx.Rngs(seed)), seed)


def _conv_config(layer: Layer, use_bn: bool = True) -> dict:
    return {"name": "ConvBNAct", "in_channels": layer.cin, "out_channels": layer.cout, "kernel": layer.kernel,
            "stride": layer.stride, "groups": 1, "act": None if layer.act == "none" else layer.act,
            "use_bn": use_bn, "bias": False}


def ofa_static_config(space, arch, **layer_options) -> dict:
    """The `supernets.static.StaticMobileNetV3` config of an ofa_mbv3 architecture, from its layer enumeration
    (the same layers the lookup table sums), so a subnet can be built and timed without a trained supernet."""
    from latency_models.layers import layer_table
    table = layer_table(space, arch, **layer_options)
    run = [table.layers[i] for i, c in zip(table.index[0], table.count[0]) if c > 0]
    blocks = [{"name": "MBConvBlock", "in_channels": l.cin, "out_channels": l.cout, "kernel": l.kernel,
               "stride": l.stride, "expand_channels": l.expand, "act": l.act, "se": bool(l.se)}
              for l in run if l.op == "mbconv"]
    feature_mix, classifier = run[-2], run[-1]
    return {"name": "StaticMobileNetV3", "first_conv": _conv_config(run[0]), "blocks": blocks,
            "final_expand": _conv_config(run[-4]), "feature_mix": _conv_config(feature_mix, use_bn=False),
            "classifier": {"name": "Classifier", "in_features": classifier.cin, "out_features": classifier.cout}}
