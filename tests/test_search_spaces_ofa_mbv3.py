"""Once-for-all MobileNetV3 space: layout, 7371^5 canonical architectures, inactive blocks, string form."""

import numpy as np
import pytest

from search_spaces import UserInputError, get_space
from search_spaces.ofa_mbv3 import DEPTH, EXPAND, KERNEL, make_divisible

space = get_space("ofa_mbv3", resolutions=(64,))


def test_cardinality_is_7371_to_the_fifth_per_resolution():
    assert space.cardinality() == 7371 ** 5
    assert get_space("ofa_mbv3", resolutions=(32, 64, 96)).cardinality() == 3 * 7371 ** 5


def test_stage_strides_are_part_of_the_space_config():
    assert space.stage_strides == (2, 2, 2, 1, 2) and "stage_strides" not in space.config()
    small_input = get_space("ofa_mbv3", resolutions=(32,), stage_strides=[1, 2, 2, 1, 2])
    config = small_input.config()
    assert config["stage_strides"] == [1, 2, 2, 1, 2]
    assert get_space(**config).stage_strides == (1, 2, 2, 1, 2)


@pytest.mark.parametrize("bad", [(1, 2, 2, 1), (1, 2, 3, 1, 2), (True, 2, 2, 1, 2), (1.0, 2, 2, 1, 2)])
def test_bad_stage_strides_name_the_value_and_what_is_allowed(bad):
    with pytest.raises(UserInputError, match=r"stage_strides must be 5 strides, each 1 or 2, got \["):
        get_space("ofa_mbv3", stage_strides=bad)


def test_blocks_beyond_stage_depth_are_inactive_and_collapse():
    arch = space.smallest().copy()
    arch[DEPTH] = 0  # depth 2 everywhere
    other = arch.copy()
    other[KERNEL.start + 3] = 2  # stage 0, block 3: beyond depth
    other[EXPAND.start + 2] = 1  # stage 0, block 2: beyond depth
    assert space.hash(arch) == space.hash(other)
    active = space.active(arch)[0]
    assert active[KERNEL.start + 1] and not active[KERNEL.start + 2]
    changed = arch.copy()
    changed[KERNEL.start + 1] = 2  # active block
    assert space.hash(changed) != space.hash(arch)


def test_string_form_is_compact_and_round_trips():
    text = space.to_string(space.largest())
    assert text == "R64-D44444-K" + "7" * 20 + "-E" + "6" * 20
    assert (space.from_string(text) == space.largest()).all()


@pytest.mark.parametrize("bad", ["R64-D44444", "R65-D44444-K" + "7" * 20 + "-E" + "6" * 20,
                                 "R64-D54444-K" + "7" * 20 + "-E" + "6" * 20])
def test_bad_strings_name_the_value(bad):
    with pytest.raises(UserInputError, match="ofa_mbv3"):
        space.from_string(bad)


def test_values_decode_indices():
    values = space.values(space.largest())[0]
    assert values[0] == 64 and set(values[DEPTH]) == {4} and set(values[KERNEL]) == {7}
    assert set(values[EXPAND]) == {6}


def test_sampling_covers_every_choice_uniformly():
    archs = space.sample(30000, 0)
    for j in range(1, space.num_decisions):
        counts = np.bincount(archs[:, j], minlength=3)
        assert counts.min() > 9000


def test_make_divisible_matches_mobilenet_rounding():
    assert [make_divisible(v) for v in (24 * 3, 40 * 4, 112 * 6, 16 * 0.35)] == [72, 160, 672, 8]
