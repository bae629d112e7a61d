"""Extraction: a subnet of the OFA MobileNetV3 supernet as a standalone static network with sliced weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from search_spaces.ofa_mbv3 import DEPTH, DEPTH_CHOICES, EXPAND, KERNEL, KERNEL_CHOICES
from supernets.static import StaticMobileNetV3


def _conv(name, cin, cout, kernel=1, stride=1, groups=1, act=None, use_bn=True):
    return {"name": name, "in_channels": cin, "out_channels": cout, "kernel": kernel, "stride": stride,
            "groups": groups, "act": act, "use_bn": use_bn, "bias": False}


def subnet_config(model, arch) -> dict:
    """The StaticMobileNetV3 config of subnet `arch` (choice indices, (46,)) of `model`."""
    arch = np.asarray(arch, dtype=np.int64).reshape(-1)
    depth = np.asarray(DEPTH_CHOICES)[arch[DEPTH]]
    first = model.first_channels
    blocks = [{"name": "MBConvBlock", "in_channels": first, "out_channels": first, "kernel": 3, "stride": 1,
               "expand_channels": first, "act": "relu", "se": False}]
    for i, (block, info) in enumerate(zip(model.blocks, model.layout)):
        if info["index"] >= depth[info["stage"]]:
            continue
        blocks.append({"name": "MBConvBlock", "in_channels": block.in_channels, "out_channels": block.out_channels,
                       "kernel": int(KERNEL_CHOICES[arch[KERNEL.start + i]]), "stride": block.stride,
                       "expand_channels": block.mid_choices[arch[EXPAND.start + i]], "act": block.act,
                       "se": block.se})
    last = model.layout[-1]["out_channels"]
    return {"name": "StaticMobileNetV3",
            "first_conv": _conv("ConvBNAct", model.in_channels, first, 3, 2, act="hswish"),
            "blocks": blocks,
            "final_expand": _conv("ConvBNAct", last, model.final_expand_channels, act="hswish"),
            "feature_mix": _conv("ConvBNAct", model.final_expand_channels, model.feature_dim, act="hswish",
                                 use_bn=False),
            "classifier": {"name": "Classifier", "in_features": model.feature_dim, "out_features": model.num_classes}}


def set_variable(variable: nnx.Variable, value) -> None:
    """Sets an (abstract or concrete) variable from a host array of the same size, reshaped to its shape."""
    variable.set_value(jnp.asarray(np.reshape(value, variable.get_value().shape)))


def _set_bn(bn: nnx.BatchNorm, arrays: dict, c: int):
    for name in ("scale", "bias", "mean", "var"):
        set_variable(getattr(bn, name), arrays[name][:c])


def _set_conv(layer, kernel, bn_arrays=None):
    set_variable(layer.conv.kernel, kernel)
    if bn_arrays is not None:
        _set_bn(layer.bn, bn_arrays, layer.out_channels)


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _copy_block(static_block, block, expand_index: int, kernel: int):
    p = _host(block.arrays())
    w = block.sliced_weights(p, expand_index, kernel)
    _set_conv(static_block.expand, w["expand_kernel"], p["expand_bn"])
    _set_conv(static_block.depthwise, w["depthwise_kernel"], p["depthwise_bn"])
    if block.se:
        se = static_block.squeeze_excite
        set_variable(se.reduce.kernel, w["se_reduce_kernel"])
        set_variable(se.reduce.bias, w["se_reduce_bias"])
        set_variable(se.expand.kernel, w["se_expand_kernel"])
        set_variable(se.expand.bias, w["se_expand_bias"])
    _set_conv(static_block.project, w["project_kernel"], p["project_bn"])


def extract(model, arch) -> StaticMobileNetV3:
    """Standalone StaticMobileNetV3 for subnet `arch`: weights sliced (kernel transforms applied, BN statistics
    as the supernet holds them, so calibrate first). Its eval output equals `model(x, arch, train=False)`.

    The network is built abstractly (no initialisation) and every variable is then set from the supernet, on the
    host with NumPy, so extraction costs no compilation."""
    arch = np.asarray(arch, dtype=np.int64).reshape(-1)
    config = subnet_config(model, arch)
    net = nnx.eval_shape(lambda: StaticMobileNetV3(config, rngs=nnx.Rngs(0)))
    _set_conv(net.first_conv, _host(model.first_conv_kernel[...]), _host(model.first_conv_bn.arrays()))
    first_block = net.blocks[0]
    _set_conv(first_block.depthwise, _host(model.first_block_depthwise[...]),
              _host(model.first_block_depthwise_bn.arrays()))
    _set_conv(first_block.project, _host(model.first_block_project[...]), _host(model.first_block_project_bn.arrays()))
    depth = np.asarray(DEPTH_CHOICES)[arch[DEPTH]]
    static_blocks = iter(net.blocks[1:])
    for i, (block, info) in enumerate(zip(model.blocks, model.layout)):
        if info["index"] < depth[info["stage"]]:
            _copy_block(next(static_blocks), block, int(arch[EXPAND.start + i]),
                        int(KERNEL_CHOICES[arch[KERNEL.start + i]]))
    _set_conv(net.final_expand, _host(model.final_expand_kernel[...]), _host(model.final_expand_bn.arrays()))
    _set_conv(net.feature_mix, _host(model.feature_mix_kernel[...]))
    set_variable(net.classifier.linear.kernel, _host(model.classifier_kernel[...]))
    set_variable(net.classifier.linear.bias, _host(model.classifier_bias[...]))
    assert_all_set(net)
    return net


def assert_all_set(net: nnx.Module) -> None:
    """Raises if a variable of `net` (built with `nnx.eval_shape`) was left abstract by an extraction."""
    unset = [jax.tree_util.keystr(path) for path, leaf in
             jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(net)))
             if isinstance(leaf, jax.ShapeDtypeStruct)]
    if unset:
        raise AssertionError(f"extract: variables left unset: {unset}")
