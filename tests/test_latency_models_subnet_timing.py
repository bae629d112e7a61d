"""Calibration from whole-subnet times: a per-layer boundary correction and a per-network offset, applied by the
table to every prediction."""

import numpy as np
import pytest

from latency_models.layers import layer_table, space_layers
from latency_models.lut import LookupTable, default_metadata, entry
from latency_models.subnet_timing import fit_calibration
from search_spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3", resolutions=(32, 48))


def _table(space):
    rng = np.random.default_rng(0)
    entries = {k: entry(0.05 + rng.random(3) * 0.2) for k in space_layers(space).keys}
    return LookupTable(entries, default_metadata("host-cpu", "measured", overhead_ms=0.01))


def test_fit_recovers_a_per_layer_correction_and_a_network_offset(space):
    table = _table(space)
    archs = space.sample(12, 3)
    layers_run = layer_table(space, archs).count.sum(1)
    measured = table.predict(space, archs) - 0.02 * layers_run + 0.04
    assert fit_calibration(table, space, archs, measured) == pytest.approx((0.02, 0.04))
    # layers that cost more together than alone: no negative correction, the offset takes the difference
    correction, offset = fit_calibration(table, space, archs, table.predict(space, archs) + 0.01 * layers_run)
    assert correction == 0.0 and offset == pytest.approx(0.01 * layers_run.mean())


def test_table_applies_its_correction(space):
    table = _table(space)
    archs = space.sample(5, 4)
    plain = table.predict(space, archs)
    table.metadata["layer_correction_ms"] = 0.01
    layers_run = layer_table(space, archs).count.sum(1)
    np.testing.assert_allclose(table.predict(space, archs), plain - 0.01 * layers_run)
    np.testing.assert_allclose(table.predict(space, archs, layer_correction_ms=0.0), plain)
    table.metadata["network_offset_ms"] = 0.03
    np.testing.assert_allclose(table.predict(space, archs), plain - 0.01 * layers_run + 0.03)
