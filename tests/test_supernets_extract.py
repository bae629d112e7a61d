"""Tests for supernets.extract: the extracted static network equals the calibrated supernet at that arch."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from search_spaces import get_space
from search_spaces.ofa_mbv3 import DEPTH
from supernets.bn_calibration import calibrate_bn
from supernets.extract import extract
from supernets.ofa_mbv3 import OFAMobileNetV3
from supernets.static import StaticMobileNetV3

RES = 16


def _perturbed_model(space):
    """A supernet whose kernel transforms and BN affine parameters are not at their initial values."""
    model = OFAMobileNetV3(space, width_mult=0.25, num_classes=5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    for block in model.blocks:
        for t in (block.transform_5, block.transform_3):
            t[...] = t[...] + jnp.asarray(rng.normal(0, 0.05, t[...].shape), jnp.float32)
    for bn in model.batch_norms():
        bn.scale[...] = jnp.asarray(rng.uniform(0.8, 1.2, bn.channels), jnp.float32)
        bn.bias[...] = jnp.asarray(rng.normal(0, 0.1, bn.channels), jnp.float32)
    return model


@nnx.jit
def _eval(model, x, arch):
    return model(x, arch, train=False)


@nnx.jit
def _static_eval(net, x):
    return net(x)


def _in_float64(model):
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Variable):
            node.set_value(jnp.asarray(node.get_value(), jnp.float64))
    return model


def _assert_extraction_equals_supernet(space, archs, calibrate=True):
    """Checked in float64, where both formulations agree to rounding: in float32 this perturbed random network
    amplifies the different summation orders (grouped vs shifted-product depthwise conv) to ~1e-3 relative.
    Without `calibrate`, the BN statistics stay as initialised (one compilation less)."""
    model = _perturbed_model(space)
    with jax.enable_x64(True):
        model = _in_float64(model)
        rng = np.random.default_rng(1)
        batches = [jnp.asarray(rng.standard_normal((16, RES, RES, 3)), jnp.float64) for _ in range(3)]
        for arch in archs:
            if calibrate:
                calibrate_bn(model, arch, batches[:2])
            expected = np.asarray(_eval(model, batches[2], jnp.asarray(arch)))
            net = extract(model, arch)
            got = np.asarray(_static_eval(net, batches[2]))
            assert got.dtype == np.float64
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(got, expected, atol=1e-5 * scale, rtol=0,
                                       err_msg=f"{space.to_string(arch)}, largest |logit| {scale}")
            config = json.loads(json.dumps(net.to_config()))
            rebuilt = nnx.eval_shape(lambda: StaticMobileNetV3.from_config(config, rngs=nnx.Rngs(1)))
            assert rebuilt.to_config() == config
            assert len(config["blocks"]) == 1 + int(np.sum(space.block_active(arch)))
            depths = space.values(arch)[0][DEPTH]
            assert [b["stride"] for b in config["blocks"][1:]] == [
                stride if b == 0 else 1 for stride, depth in zip(space.stage_strides, depths) for b in range(depth)]


def test_extracted_networks_equal_the_calibrated_supernet():
    space = get_space("ofa_mbv3", resolutions=(RES,))
    _assert_extraction_equals_supernet(space, np.concatenate([space.smallest()[None], space.largest()[None],
                                                              space.sample(8, 2)]))


def test_extraction_follows_the_space_stage_strides():
    space = get_space("ofa_mbv3", resolutions=(RES,), stage_strides=(1, 2, 2, 1, 1))
    _assert_extraction_equals_supernet(space, np.stack([space.smallest(), space.largest(), space.sample(1, 3)[0]]),
                                       calibrate=False)


def test_extracted_network_uses_grouped_convolution_not_the_training_op():
    space = get_space("ofa_mbv3", resolutions=(RES,))
    model = OFAMobileNetV3(space, width_mult=0.25, num_classes=5, rngs=nnx.Rngs(0))
    net = extract(model, space.largest())
    jaxpr = str(jax.make_jaxpr(lambda x: net(x))(jnp.ones((1, RES, RES, 3))))
    assert "feature_group_count=48" in jaxpr
    assert "custom_vjp_call" not in jaxpr and "cond[" not in jaxpr


def _input_and_first_conv_grads(module, first_conv_kernel, call):
    """A jitted (x, cotangent, *args) -> d(sum(call(module, x, *args) * cotangent)) / d(x, first conv kernel), in
    training mode; traced arguments, so the supernet compiles once for every arch."""
    graphdef, state = nnx.as_pure(nnx.split(module))
    kernel = first_conv_kernel(module).get_value()

    def loss(x, kernel, cotangent, *args):
        merged = nnx.merge(graphdef, state)
        first_conv_kernel(merged).set_value(kernel)
        return jnp.sum(call(merged, x, *args) * cotangent)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda x, cotangent, *args: grads(x, kernel, cotangent, *args)


def test_training_gradients_equal_the_extracted_networks():
    """The supernet's backward pass (switches, skipped blocks, hand-written block backward) gives the gradients of
    the plain static subnet, in training mode (batch statistics), through every block down to the input."""
    space = get_space("ofa_mbv3", resolutions=(RES,))
    model = _perturbed_model(space)
    with jax.enable_x64(True):
        model = _in_float64(model)
        rng = np.random.default_rng(2)
        x = jnp.asarray(rng.standard_normal((8, RES, RES, 3)), jnp.float64)
        cotangent = jnp.asarray(rng.standard_normal((8, 5)), jnp.float64)
        supernet_grads = _input_and_first_conv_grads(model, lambda m: m.first_conv_kernel,
                                                     lambda m, x, arch: m(x, arch, train=True))
        for arch in np.stack([space.smallest(), space.largest(), space.sample(1, 4)[0]]):
            net = extract(model, arch)
            ours = supernet_grads(x, cotangent, jnp.asarray(arch))
            expected = _input_and_first_conv_grads(net, lambda n: n.first_conv.conv.kernel,
                                                   lambda n, x: n(x, train=True))(x, cotangent)
            for got, want in zip(ours, expected):
                np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * float(np.abs(want).max()),
                                           err_msg=space.to_string(arch))
