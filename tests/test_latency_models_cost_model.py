"""build_cost_model: lut from a path, roofline fallback labelled estimated, energy alongside latency."""

import numpy as np
import pytest

from latency_models import build_cost_model
from latency_models.layers import space_layers
from latency_models.lut import LookupTable, default_metadata, entry
from search_spaces import get_space
from search_spaces.errors import UserInputError


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3", resolutions=(32, 48))


def test_roofline_predicts_latency_and_energy(space):
    model = build_cost_model(space, "raspberry-pi-5", "roofline")
    out = model.predict(space.sample(100, 0))
    assert set(out) == set(model.metrics) == {"latency_ms", "energy_mj"}
    assert out["latency_ms"].shape == (100,) and (out["energy_mj"] > 0).all()
    assert model.describe()["estimated"]


def test_lut_kind_without_table_falls_back_to_estimate(space):
    assert build_cost_model(space, "jetson-tx2", "lut").describe()["table"]["method"] == "roofline"


def test_lut_from_path(space, tmp_path):
    entries = {k: entry([1.0, 1.0]) for k in space_layers(space).keys}
    LookupTable(entries, default_metadata("host-cpu", "measured", overhead_ms=0.25)).save(tmp_path / "t.json")
    model = build_cost_model(space, "host-cpu", "lut", tmp_path / "t.json")
    archs = np.stack([space.smallest(), space.largest()]).reshape(2, -1)
    np.testing.assert_allclose(model.predict(archs)["latency_ms"], [6 + 10 + 0.25, 6 + 20 + 0.25])
    assert not model.describe()["estimated"]


def test_bad_kind_and_missing_predictor_path(space):
    with pytest.raises(UserInputError, match="roofline"):
        build_cost_model(space, "host-cpu", "magic")
    with pytest.raises(UserInputError, match="path"):
        build_cost_model(space, "host-cpu", "predictor")


def test_lut_kind_uses_the_shipped_measured_table_when_it_covers_the_space():
    space = get_space("ofa_mbv3", resolutions=(24, 32))
    model = build_cost_model(space, "host-cpu", "lut")
    assert model.describe()["table"]["method"] == "measured" and not model.describe()["estimated"]
    out = model.predict(np.stack([space.smallest(), space.largest()]).reshape(2, -1))
    assert 0 < out["latency_ms"][0] < out["latency_ms"][1]
    uncovered = get_space("ofa_mbv3", resolutions=(224,))
    assert build_cost_model(uncovered, "host-cpu", "lut").describe()["estimated"]


def test_latency_only_predictor_gives_latency_only(tmp_path):
    import numpy as np

    from latency_models import build_cost_model
    from latency_models.predictor import CalibratedPredictor
    from search_spaces import get_space

    space = get_space("nb201")
    archs = space.canonical(space.sample(60, 0))
    latency = 1.0 + space.features(archs) @ np.linspace(0.1, 1.0, int(space.sizes.sum()))
    path = tmp_path / "pred.json"
    CalibratedPredictor.fit(space, archs, {"latency_ms": latency}).save(path)
    model = build_cost_model(space, "raspberry-pi-5", "predictor", path)
    assert model.metrics == ("latency_ms",)
    assert set(model.predict(archs[:3])) == {"latency_ms"}


def test_a_narrower_network_is_never_priced_with_a_full_width_table(tmp_path):
    """The shipped host-cpu table was measured at width 1.0: a width-0.35 supernet gets an estimate for its own
    layers, and a table file of another width is refused with the options named."""
    from latency_models.roofline import roofline_table

    space = get_space("ofa_mbv3", resolutions=(32,))
    options = {"width_mult": 0.35, "num_classes": 10}
    archs = space.sample(50, 1)
    narrow = build_cost_model(space, "host-cpu", "lut", layer_options=options)
    full = build_cost_model(space, "host-cpu", "lut")
    assert narrow.describe()["estimated"] and not full.describe()["estimated"]
    expected = roofline_table(space, "host-cpu", **options).predict(space, archs)
    np.testing.assert_allclose(narrow.predict(archs)["latency_ms"], expected)
    assert (narrow.predict(archs)["latency_ms"] < full.predict(archs)["latency_ms"]).all()
    entries = {k: entry([1.0, 1.0]) for k in space_layers(space).keys}
    LookupTable(entries, default_metadata("host-cpu", "measured")).save(tmp_path / "full.json")
    with pytest.raises(UserInputError, match="has no entry"):
        build_cost_model(space, "host-cpu", "lut", tmp_path / "full.json", layer_options=options)
