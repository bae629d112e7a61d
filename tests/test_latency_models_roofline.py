"""Roofline: compute- vs memory-bound layers, faster devices predict less, tables labelled estimated."""

import numpy as np

from latency_models.devices import get_device
from latency_models.layers import Layer
from latency_models.roofline import layer_latency_ms, layer_overhead_ms, roofline_table
from search_spaces import get_space


def test_big_conv_is_compute_bound_and_scales_with_peak():
    conv = Layer("conv_bn_act", 64, 64, 64, 3, 1, act="relu")
    pi4, pi5 = get_device("raspberry-pi-4"), get_device("raspberry-pi-5")
    t4 = layer_latency_ms(conv, pi4) - layer_overhead_ms(pi4)
    t5 = layer_latency_ms(conv, pi5) - layer_overhead_ms(pi5)
    np.testing.assert_allclose(t4 / t5, pi5.peak() / pi4.peak(), rtol=1e-6)


def test_pooling_is_memory_bound():
    pool = Layer("gap", 32, 960, 960)
    pi5 = get_device("raspberry-pi-5")
    expected = 4 * (32 * 32 * 960 + 960) / (pi5.memory_bandwidth_gbs * 1e9) * 1e3
    np.testing.assert_allclose(layer_latency_ms(pool, pi5) - layer_overhead_ms(pi5), expected)


def test_roofline_table_is_estimated_and_orders_subnets():
    space = get_space("ofa_mbv3", resolutions=(32, 64))
    table = roofline_table(space, "jetson-nano")
    assert table.metadata["method"] == "roofline" and table.estimated
    small, large = table.predict(space, np.stack([space.smallest(), space.largest()]).reshape(2, -1))
    assert 0 < small < large
    faster = roofline_table(space, "jetson-agx-orin").predict(space, space.largest())[0]
    assert faster < large
