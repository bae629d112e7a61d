"""Layer modules for profiling: NAS-Bench-201 pooling semantics, weights filled sanely, subnet configs."""

import numpy as np

from latency_models.layer_modules import avg_pool_3x3, build_module, input_shape, ofa_static_config
from latency_models.layers import Layer
from search_spaces import get_space


def test_avg_pool_does_not_count_padding():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = np.asarray(avg_pool_3x3(x))
    assert out[0, 0, 0, 0] == np.mean([0, 1, 4, 5])
    assert out[0, 1, 1, 0] == np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10])


def test_built_layer_runs_with_finite_output_of_the_right_shape():
    layer = Layer("mbconv", 8, 16, 24, 5, 2, 48, 16, "hswish")
    out = np.asarray(build_module(layer)(np.ones(input_shape(layer), np.float32)))
    assert out.shape == (1, 4, 4, 24) and np.isfinite(out).all()


def test_ofa_static_config_follows_the_architecture():
    space = get_space("ofa_mbv3", resolutions=(32,))
    arch = space.smallest()
    config = ofa_static_config(space, arch)
    assert len(config["blocks"]) == 1 + int(space.block_active(arch).sum())
    assert config["first_conv"]["stride"] == 2 and config["final_expand"]["out_channels"] == 960
    assert config["classifier"]["in_features"] == config["feature_mix"]["out_channels"] == 1280
    assert [b["kernel"] for b in config["blocks"][1:3]] == [3, 3]
