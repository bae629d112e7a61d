"""Roofline: compute- vs memory-bound layers, faster devices predict less, tables labelled estimated."""

import numpy as np
import pytest

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


def test_roofline_ranks_real_pi5_measurements():
    import csv
    from pathlib import Path

    from scipy.stats import spearmanr
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv"
    if not path.exists():
        pytest.skip(f"{path} (NAS-Bench-201 Raspberry Pi 5 measurements) is not present")
    rows = list(csv.DictReader(path.open()))
    space = get_space("nb201")
    archs = space.parse([r["arch"] for r in rows[:3000]])
    measured = np.array([float(r["latency_ms"]) for r in rows[:3000]])
    predicted = roofline_table(space, "raspberry-pi-5").predict(space, archs)
    assert spearmanr(predicted, measured).statistic > 0.7
    assert 0.5 < np.median(predicted / measured) < 2.0
