"""Tests for supernets.static: layers round-trip through JSON configs; the network exports to plain ONNX."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from supernets.static import ConvBNAct, MBConvBlock, StaticMobileNetV3, layer_from_config

TINY = {"name": "StaticMobileNetV3",
        "first_conv": {"name": "ConvBNAct", "in_channels": 3, "out_channels": 8, "kernel": 3, "stride": 2,
                       "groups": 1, "act": "hswish", "use_bn": True, "bias": False},
        "blocks": [{"name": "MBConvBlock", "in_channels": 8, "out_channels": 8, "kernel": 3, "stride": 1,
                    "expand_channels": 8, "act": "relu", "se": False},
                   {"name": "MBConvBlock", "in_channels": 8, "out_channels": 16, "kernel": 5, "stride": 2,
                    "expand_channels": 24, "act": "hswish", "se": True},
                   {"name": "MBConvBlock", "in_channels": 16, "out_channels": 16, "kernel": 7, "stride": 1,
                    "expand_channels": 48, "act": "hswish", "se": True}],
        "final_expand": {"name": "ConvBNAct", "in_channels": 16, "out_channels": 32, "kernel": 1, "stride": 1,
                         "groups": 1, "act": "hswish", "use_bn": True, "bias": False},
        "feature_mix": {"name": "ConvBNAct", "in_channels": 32, "out_channels": 40, "kernel": 1, "stride": 1,
                        "groups": 1, "act": "hswish", "use_bn": False, "bias": False},
        "classifier": {"name": "Classifier", "in_features": 40, "out_features": 5}}


def _randomize_bn_statistics(net, seed=0):
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_graph(net):
        if isinstance(bn, nnx.BatchNorm):
            shape = bn.mean[...].shape
            bn.mean[...] = jnp.asarray(rng.normal(0, 0.3, shape), jnp.float32)
            bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, shape), jnp.float32)
            bn.bias[...] = jnp.asarray(rng.normal(0, 0.3, shape), jnp.float32)


def test_network_config_round_trips_through_json():
    net = StaticMobileNetV3.from_config(TINY, rngs=nnx.Rngs(0))
    config = json.loads(json.dumps(net.to_config()))
    assert config == TINY
    assert StaticMobileNetV3.from_config(config, rngs=nnx.Rngs(1)).to_config() == TINY


def test_every_layer_round_trips_through_its_config():
    layers = [ConvBNAct(4, 8, 3, 2, groups=4, act="relu", rngs=nnx.Rngs(0)),
              MBConvBlock(8, 8, 5, 1, 32, "hswish", True, rngs=nnx.Rngs(0))]
    for layer in layers:
        config = json.loads(json.dumps(layer.to_config()))
        assert layer_from_config(config, rngs=nnx.Rngs(1)).to_config() == config


def test_block_shapes_shortcut_and_missing_expand_conv():
    block = MBConvBlock(8, 8, 3, 1, 8, "relu", False, rngs=nnx.Rngs(0))
    assert block.expand is None and block.residual
    strided = MBConvBlock(8, 16, 3, 2, 24, "relu", False, rngs=nnx.Rngs(0))
    assert strided(jnp.ones((2, 7, 7, 8))).shape == (2, 4, 4, 16) and not strided.residual


def test_unknown_layer_name_is_rejected():
    with pytest.raises(ValueError, match="layer config name"):
        layer_from_config({"name": "Nope"}, rngs=nnx.Rngs(0))


def test_depthwise_is_a_grouped_convolution_in_the_graph():
    net = StaticMobileNetV3.from_config(TINY, rngs=nnx.Rngs(0))
    jaxpr = str(jax.make_jaxpr(lambda x: net(x))(jnp.ones((1, 16, 16, 3))))
    assert "feature_group_count=24" in jaxpr and "custom_vjp" not in jaxpr


def test_onnx_export_matches_jax():
    ort = pytest.importorskip("onnxruntime")
    from jax2onnx import to_onnx

    net = StaticMobileNetV3.from_config(TINY, rngs=nnx.Rngs(0))
    _randomize_bn_statistics(net)
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    model = to_onnx(net, [x.shape], model_name="static_mbv3")
    groups = {a.i for node in model.graph.node if node.op_type == "Conv" for a in node.attribute if a.name == "group"}
    assert {24, 48} <= groups
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, np.asarray(net(jnp.asarray(x))), atol=1e-4, rtol=0)
