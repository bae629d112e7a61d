"""Layer enumeration: unique layers per space, slot maps, MACs, and the fast evaluators matching the plain sum."""

import numpy as np
import pytest

from latency_models.layers import Layer, layer_macs, layer_table, space_layers
from search_spaces import get_space
from search_spaces.errors import UserInputError


@pytest.fixture(scope="module")
def ofa():
    return get_space("ofa_mbv3", resolutions=(32, 48))


def test_layer_key_round_trips():
    layer = Layer("mbconv", 16, 24, 40, 5, 2, 96, 24, "relu")
    assert Layer.from_key(layer.key) == layer
    with pytest.raises(UserInputError, match="malformed"):
        Layer.from_key("conv-16")


def test_ofa_unique_layers_stay_few_per_resolution(ofa):
    layers = space_layers(ofa).layers
    assert len(layers) == len(set(layers))
    per_res = {l.hw for l in layers if l.op == "conv_bn_act" and l.cin == 3}
    assert per_res == {32, 48}
    assert len(layers) <= 2 * 100


def test_ofa_inactive_blocks_cost_nothing(ofa):
    small, large = ofa.smallest(), ofa.largest()
    t_small, t_large = layer_table(ofa, small), layer_table(ofa, large)
    assert t_small.count.sum() == 6 + 5 * 2
    assert t_large.count.sum() == 6 + 5 * 4
    assert t_small.totals()["macs"][0] < t_large.totals()["macs"][0]


def test_ofa_block_channels_follow_stages(ofa):
    table = layer_table(ofa, ofa.largest())
    blocks = [table.layers[i] for i in table.index[0, 2:22]]
    assert [b.cout for b in blocks[::4]] == [24, 40, 80, 112, 160]
    assert blocks[4].cin == 24 and blocks[5].cin == 40
    assert blocks[4].stride == 2 and blocks[5].stride == 1
    assert blocks[4].se > 0 and blocks[0].se == 0
    assert blocks[4].expand == 24 * 6


def test_ofa_block_sizes_follow_the_space_stage_strides():
    strided = get_space("ofa_mbv3", resolutions=(32,), stage_strides=(1, 2, 2, 1, 2))
    default = get_space("ofa_mbv3", resolutions=(32,))
    tables = {space.stage_strides: layer_table(space, space.largest()) for space in (default, strided)}
    sizes = {}
    for strides, table in tables.items():
        blocks = [table.layers[i] for i in table.index[0, 2:22]]
        sizes[strides] = ([b.hw for b in blocks[::4]], [b.stride for b in blocks[::4]])
    assert sizes[default.stage_strides] == ([16, 8, 4, 2, 2], [2, 2, 2, 1, 2])
    assert sizes[strided.stage_strides] == ([16, 16, 8, 4, 4], [1, 2, 2, 1, 2])
    assert tables[strided.stage_strides].totals()["macs"][0] > tables[default.stage_strides].totals()["macs"][0]


def test_mbconv_macs_by_hand():
    layer = Layer("mbconv", 8, 16, 24, 3, 2, 48, 0, "relu")
    expected = 8 * 8 * 16 * 48 + 4 * 4 * 9 * 48 + 4 * 4 * 48 * 24
    assert layer_macs(layer) == expected


@pytest.mark.parametrize("name", ["ofa_mbv3", "nb201"])
def test_compiled_evaluator_equals_plain_sum(name, ofa):
    space = ofa if name == "ofa_mbv3" else get_space("nb201")
    layers = space_layers(space)
    values = np.random.default_rng(0).random(len(layers.layers))
    archs = space.sample(200, 1)
    plain = layer_table(space, archs).per_slot(values).sum(1)
    np.testing.assert_allclose(layers.compile(values)(archs), plain)


def test_nb201_only_active_edges_count():
    space = get_space("nb201")
    dead_end = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    live = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|")
    macs = [layer_table(space, a).totals()["macs"][0] for a in (dead_end, live)]
    assert macs[1] > macs[0]


def test_unknown_space_is_a_clear_error():
    with pytest.raises(UserInputError, match="ofa_mbv3"):
        space_layers(get_space("encdec"))


def test_columns_are_per_slot_arrays(ofa):
    table = layer_table(ofa, ofa.sample(4, 0))
    assert set(table.columns) == {"macs", "flops", "params", "bytes"}
    np.testing.assert_allclose(table["flops"].sum(1), 2 * table.totals()["macs"])
    assert table["bytes"].shape == table.index.shape
    with pytest.raises(KeyError):
        table["latency"]
