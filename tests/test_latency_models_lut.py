"""Lookup tables: schema checks with clear errors, subnet latency = sum of layer entries + overhead, vectorized."""

import json

import numpy as np
import pytest

from latency_models.layers import layer_table, space_layers
from latency_models.lut import LookupTable, default_metadata, entry
from search_spaces import get_space
from search_spaces.errors import UserInputError


def _table(space, seed=0):
    layers = space_layers(space).layers
    rng = np.random.default_rng(seed)
    entries = {l.key: entry(rng.random(5)) for l in layers}
    return LookupTable(entries, default_metadata("host-cpu", "measured", overhead_ms=0.5, space=space.config()))


@pytest.mark.parametrize("name, hparams", [("ofa_mbv3", {"resolutions": (32, 48)}), ("nb201", {})])
def test_prediction_is_layer_sum_plus_overhead(name, hparams):
    space = get_space(name, **hparams)
    table = _table(space)
    archs = space.sample(50, 0)
    values = np.array([table.entries[k]["median"] for k in space_layers(space).keys])
    expected = layer_table(space, archs).per_slot(values).sum(1) + 0.5
    np.testing.assert_allclose(table.predict(space, archs), expected)


def test_nb201_inactive_edges_do_not_count():
    space = get_space("nb201")
    table = _table(space)
    a = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    b = space.from_string("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert table.predict(space, a)[0] == table.predict(space, b)[0]


def test_save_load_round_trip(tmp_path):
    space = get_space("ofa_mbv3", resolutions=(32,))
    table = _table(space)
    table.save(tmp_path / "t.json")
    loaded = LookupTable.load(tmp_path / "t.json")
    archs = space.sample(10, 1)
    np.testing.assert_allclose(loaded.predict(space, archs), table.predict(space, archs))


def test_missing_layer_is_named(tmp_path):
    space = get_space("ofa_mbv3", resolutions=(32,))
    table = _table(space)
    first = space_layers(space).keys[0]
    del table.entries[first]
    with pytest.raises(UserInputError, match=first):
        table.predict(space, space.smallest())
    other_resolution = get_space("ofa_mbv3", resolutions=(64,))
    with pytest.raises(UserInputError, match="missing"):
        _table(space).predict(other_resolution, other_resolution.smallest())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema_version=0), "schema_version"),
    (lambda d: d["metadata"].pop("device"), "device"),
    (lambda d: d["metadata"].update(method="guessed"), "method"),
    (lambda d: next(iter(d["entries"].values())).pop("std"), "std"),
    (lambda d: d.pop("schema"), "schema"),
])
def test_bad_files_are_clear_errors(tmp_path, mutate, message):
    space = get_space("ofa_mbv3", resolutions=(32,))
    data = _table(space).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=message):
        LookupTable.load(path)


def test_not_json_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(UserInputError, match="not valid JSON"):
        LookupTable.load(tmp_path / "x.json")
