"""Property tests of the vectorized space operations, for every built-in space and a user-defined one."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from search_spaces import Categorical, IntRange, Space, UserInputError, get_space, register_space

SPACES = {
    "ofa_mbv3": get_space("ofa_mbv3", resolutions=(32, 48, 64)),
    "nb201": get_space("nb201"),
    "encdec": get_space("encdec", tasks=("segmentation", "depth", "normals")),
    "custom": Space("custom", [Categorical("op", ["conv", "pool", "skip"]), IntRange("width", 8, 64, 8),
                               Categorical("act", ["relu", "gelu"])]),
}
seeds = st.integers(0, 2**31 - 1)
space_names = st.sampled_from(sorted(SPACES))


@settings(max_examples=30, deadline=None)
@given(space_names, seeds)
def test_string_dict_json_round_trips(name, seed):
    space = SPACES[name]
    archs = space.sample(8, seed)
    assert (space.parse(space.strings(archs)) == archs).all()
    for arch in archs:
        assert (space.from_dict(space.to_dict(arch)) == arch).all()
        assert (space.from_json(json.loads(json.dumps(space.to_json(arch)))) == arch).all()


@settings(max_examples=30, deadline=None)
@given(space_names, seeds, st.floats(0.0, 1.0))
def test_mutation_and_crossover_stay_valid(name, seed, prob):
    space = SPACES[name]
    a, b = space.sample(16, seed), space.sample(16, seed + 1)
    mutated = space.mutate(a, prob, seed)
    children = space.crossover(a, b, seed)
    for out in (mutated, children):
        assert out.shape == a.shape and out.dtype == space.dtype
        space.validate(out)
    assert ((children == a) | (children == b)).all()
    if prob == 1.0:
        assert (mutated != a)[:, space.sizes > 1].all()


@settings(max_examples=30, deadline=None)
@given(space_names, seeds)
def test_canonical_is_idempotent_and_hash_matches_it(name, seed):
    space = SPACES[name]
    archs = space.sample(32, seed)
    canon = space.canonical(archs)
    assert (space.canonical(canon) == canon).all()
    assert (space.hash(archs) == space.hash(canon)).all()
    assert (space.features(archs) == space.features(canon)).all()


@pytest.mark.parametrize("name", sorted(SPACES))
def test_empty_batches_give_empty_results(name):
    space = SPACES[name]
    empty = np.zeros((0, space.num_decisions), dtype=space.dtype)
    assert space.canonical(empty).shape == (0, space.num_decisions)
    assert space.hash(empty).shape == (0,)
    assert space.active(empty).shape == (0, space.num_decisions)
    assert len(space.features(empty)) == 0


def test_mutate_is_deterministic_in_its_seed():
    space = SPACES["ofa_mbv3"]
    a = space.sample(100, 0)
    assert (space.mutate(a, 0.3, 7) == space.mutate(a, 0.3, 7)).all()
    assert (space.mutate(a, 0.3, 7) != space.mutate(a, 0.3, 8)).any()


def test_mutate_flips_at_its_rate_to_uniformly_chosen_other_values():
    space = SPACES["ofa_mbv3"]
    a = np.asfortranarray(space.sample(20_000, 0))
    mutated = space.mutate(a, 0.2, 1)
    flipped = mutated != a
    assert abs(flipped.mean() - 0.2) < 0.005
    # a 3-way decision moves to each of its two other values equally often
    col = space.column("kernel_0_0")
    step = (mutated[flipped[:, col], col].astype(int) - a[flipped[:, col], col]) % 3
    assert set(np.unique(step)) == {1, 2} and abs((step == 1).mean() - 0.5) < 0.05


@pytest.mark.parametrize("name", sorted(SPACES))
def test_neighbours_differ_in_one_decision_and_are_distinct(name):
    space = SPACES[name]
    arch = space.canonical(space.sample(1, 3))[0]
    neigh = space.neighbours(arch)
    assert len(neigh) > 0
    hashes = space.hash(neigh)
    assert len(np.unique(hashes)) == len(neigh)
    assert space.hash(arch)[0] not in set(hashes.tolist())


@pytest.mark.parametrize("name", sorted(SPACES))
def test_smallest_and_largest_bound_every_decision(name):
    space = SPACES[name]
    assert (space.smallest() == 0).all()
    assert (space.largest() == space.sizes - 1).all()


def test_validate_names_decision_and_range():
    space = SPACES["nb201"]
    with pytest.raises(UserInputError, match=r"edge_2_1.*index 7.*allowed 0\.\.4"):
        space.validate(np.array([[0, 0, 7, 0, 0, 0]]))
    with pytest.raises(UserInputError, match=r"shape \(N, 6\)"):
        space.validate(np.zeros((2, 5), dtype=int))


def test_from_dict_rejects_unknown_missing_and_bad_values():
    space = SPACES["custom"]
    with pytest.raises(UserInputError, match="unknown decision"):
        space.from_dict({"op": "conv", "width": 8, "act": "relu", "extra": 1})
    with pytest.raises(UserInputError, match="misses decision"):
        space.from_dict({"op": "conv", "width": 8})
    with pytest.raises(UserInputError, match=r"'width'.*12.*\[8, 16"):
        space.from_dict({"op": "conv", "width": 12, "act": "relu"})


def test_custom_space_cardinality_and_registry():
    register_space("tiny_custom_test", lambda: SPACES["custom"], overwrite=True)
    space = get_space("tiny_custom_test")
    assert space.cardinality() == 3 * 8 * 2
    assert space.features(space.sample(5, 0)).shape == (5, 3 + 8 + 2)
    with pytest.raises(UserInputError, match="already registered"):
        register_space("tiny_custom_test", lambda: space)


def test_unknown_space_lists_known():
    with pytest.raises(UserInputError, match=r"unknown search space 'nope'.*nb201.*ofa_mbv3"):
        get_space("nope")


def test_inactive_decisions_define_features_and_custom_activity():
    def active(space, archs):
        mask = np.ones(archs.shape, dtype=bool)
        mask[:, 1] = archs[:, 0] != 2  # width is meaningless for a skip op
        return mask

    space = Space("gated", [Categorical("op", ["conv", "pool", "skip"]), IntRange("width", 1, 4)],
                  active_fn=active)
    assert space.cardinality() == 2 * 4 + 1
    skips = np.array([[2, 0], [2, 3]])
    assert space.hash(skips)[0] == space.hash(skips)[1]
    assert (space.features(skips)[:, 3:] == 0).all()
