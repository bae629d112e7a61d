"""Tests for supernets.bn_calibration: OFA's mean of batch means and variances, one compilation for all subnets."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from search_spaces import get_space
from supernets.bn_calibration import TRACES, calibrate_bn
from supernets.ofa_mbv3 import OFAMobileNetV3

RES = 16


@pytest.fixture(scope="module")
def setup():
    space = get_space("ofa_mbv3", resolutions=(RES,))
    model = OFAMobileNetV3(space, width_mult=0.25, num_classes=5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batches = [jnp.asarray(rng.normal(0.5, 2.0, (n, RES, RES, 3)), jnp.float32) for n in (4, 4, 4)]
    return space, model, batches


def test_first_bn_gets_the_mean_of_batch_means_and_biased_variances(setup):
    space, model, batches = setup
    calibrate_bn(model, space.largest(), [(x, None) for x in batches])
    kernel = model.first_conv_kernel[...]
    outs = [np.asarray(lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))) for x in batches]
    means = np.mean([o.mean(axis=(0, 1, 2)) for o in outs], axis=0)
    variances = np.mean([o.var(axis=(0, 1, 2)) for o in outs], axis=0)
    np.testing.assert_allclose(model.first_conv_bn.mean[...], means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.first_conv_bn.var[...], variances, rtol=1e-4, atol=1e-5)


def test_only_the_subnets_channels_and_blocks_change_and_one_compilation_serves_all(setup):
    space, model, batches = setup
    calibrate_bn(model, space.largest(), batches[:1])
    traces = TRACES["batch_statistics"]
    full = [(np.asarray(bn.mean[...]), np.asarray(bn.var[...])) for bn in model.batch_norms()]
    arch = space.smallest()
    calibrate_bn(model, arch, batches[:2])
    block, skipped = model.blocks[0], model.blocks[3]
    active = block.mid_choices[0]
    expand_mean = np.asarray(block.expand_bn.mean[...])
    index = model.batch_norms().index(block.expand_bn)
    assert not np.allclose(expand_mean[:active], full[index][0][:active])
    np.testing.assert_array_equal(expand_mean[active:], full[index][0][active:])
    for bn in skipped.batch_norms():
        index = model.batch_norms().index(bn)
        np.testing.assert_array_equal(bn.mean[...], full[index][0])
        np.testing.assert_array_equal(bn.var[...], full[index][1])
    for arch in space.sample(3, 5):
        calibrate_bn(model, arch, batches[:1])
    assert TRACES["batch_statistics"] == traces


def test_no_batches_is_an_error(setup):
    space, model, _ = setup
    with pytest.raises(ValueError, match="no batches"):
        calibrate_bn(model, space.largest(), [])
