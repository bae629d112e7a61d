"""NAS-Bench-201 cell space: the standard strings, 6,466 isomorphism classes, and canonical forms compute the same."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from search_spaces import UserInputError, get_space
from search_spaces.nb201 import EDGES, OPS

TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv"
space = get_space("nb201")


def test_canonical_classes_are_the_6466_of_nas_bench_201():
    assert space.cardinality() == 6466
    assert len(np.unique(space.hash(space.enumerate()))) == 6466


def test_standard_string_round_trip():
    text = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    arch = space.from_string(text)
    assert list(arch) == [3, 0, 1, 1, 0, 4]
    assert space.to_string(arch) == text


@pytest.mark.parametrize("bad, fragment", [
    ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "3 nodes"),
    ("|conv~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|", "'conv'"),
    ("|nor_conv_3x3~1|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|", "~0"),
    ("|nor_conv_3x3~0|+|none~0|+|skip_connect~0|none~1|avg_pool_3x3~2|", "needs 2 inputs"),
])
def test_malformed_strings_are_clear_errors(bad, fragment):
    with pytest.raises(UserInputError, match=fragment):
        space.from_string(bad)


def test_every_row_of_the_shared_table_parses_and_round_trips():
    if not TABLE.exists():
        pytest.skip(f"shared NAS-Bench-201 table not found at {TABLE} (only in the development checkout)")
    import csv

    rows = list(csv.DictReader(TABLE.open()))
    archs = space.parse([r["arch"] for r in rows])
    assert len(archs) == 15625
    assert space.strings(archs) == [r["arch"] for r in rows]
    # isomorphic cells were measured once and share their numbers: our classes are exactly those groups
    by_class = {}
    for key, row in zip(space.hash(archs).tolist(), rows):
        by_class.setdefault(key, set()).add((row["latency_ms"], row["energy_mj"]))
    assert len(by_class) == 6466
    assert all(len(v) == 1 for v in by_class.values())


def _cell_output(arch, x, weights):
    """The cell as a function of its input with one shared map per op type. As in NAS-Bench-201's convention, every
    op maps zero to zero (ReLU-Conv without bias), so a node fed only by zeros contributes nothing."""
    ops = {
        0: lambda h: np.zeros_like(h),
        1: lambda h: h,
        2: lambda h: np.tanh(weights[0] @ np.maximum(h, 0)),
        3: lambda h: np.tanh(weights[1] @ np.maximum(h, 0)) ** 3,
        4: lambda h: np.sin(weights[2] @ h),
    }
    nodes = [x]
    for target in range(1, 4):
        total = np.zeros_like(x)
        for j, (to, src) in enumerate(EDGES):
            if to == target:
                total = total + (np.zeros_like(x) if arch[j] == 0 else ops[int(arch[j])](nodes[src]))
        nodes.append(total)
    return nodes[3]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(OPS) ** len(EDGES) - 1))
def test_canonical_form_computes_the_same_function(rank):
    arch = space._unrank(np.array([rank]))[0]
    canon = space.canonical(arch)[0]
    rng = np.random.default_rng(rank)
    weights = rng.normal(size=(3, 4, 4))
    x = rng.normal(size=4)
    np.testing.assert_allclose(_cell_output(arch, x, weights), _cell_output(canon, x, weights), atol=1e-12)


def test_edges_that_cannot_reach_the_output_do_not_matter():
    # node 1 feeds nothing (edges 2<-1 and 3<-1 are none): the op on edge 1<-0 is irrelevant
    a = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|")
    b = space.from_string("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|")
    assert space.hash(a) == space.hash(b)
    assert not space.active(a)[0, 0]
