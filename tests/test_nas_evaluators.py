"""Tests for nas.evaluators: the table's query counting and budget, free columns, the expensive-result cache,
cheap metrics from cost models and layers, evaluator specs, and (slow, opt-in) the supernet evaluator."""

import csv
import os

import numpy as np
import pytest

from nas.evaluators import (ExpensiveCache, TableBudgetExceeded, TableEvaluator, build_evaluator,
                            cheap_metrics_for)
from search_spaces import get_space
from search_spaces.errors import UserInputError


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


def write_table(path, space, archs, extra_columns=None):
    """accuracy = 10 * (canonical hash mod 7), latency = number of active edges."""
    accuracy = 10.0 * (space.hash(archs) % np.uint64(7)).astype(float)
    latency = space.active(space.canonical(archs)).sum(1).astype(float)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "accuracy", "latency_ms", *(extra_columns or {})])
        for i, arch in enumerate(space.strings(archs)):
            writer.writerow([arch, accuracy[i], latency[i], *[v[i] for v in (extra_columns or {}).values()]])
    return path


@pytest.fixture(scope="module")
def table_path(tmp_path_factory, nb201):
    return write_table(tmp_path_factory.mktemp("table") / "nb201.csv", nb201, nb201.enumerate())


def non_canonical_pair(space):
    archs = space.sample(200, 0)
    row = np.flatnonzero((archs != space.canonical(archs)).any(1))[0]
    return archs[row], space.canonical(archs[row][None])[0]


def test_table_counts_distinct_canonical_queries_and_enforces_its_budget(table_path, nb201):
    table = TableEvaluator(nb201, table_path, budget=3)
    raw, canonical = non_canonical_pair(nb201)
    first = table.evaluate(np.stack([raw, canonical]))
    assert first["accuracy"][0] == first["accuracy"][1]
    assert table.num_queried == 1, "an architecture and its canonical form are one query"
    others = nb201.canonical(nb201.sample(50, 1))
    others = others[np.unique(nb201.hash(others), return_index=True)[1]]
    others = others[nb201.hash(others) != nb201.hash(canonical[None])[0]]
    table.evaluate(others[:2])
    assert table.num_queried == 3
    with pytest.raises(TableBudgetExceeded, match="budget of 3"):
        table.evaluate(others[2:3])
    assert table.num_queried == 3
    again = table.evaluate(others[:2])
    assert set(again) == {"accuracy", "latency_ms"}


def test_free_columns_are_served_without_counting(table_path, nb201):
    table = TableEvaluator(nb201, table_path, cheap_columns=["latency_ms"], budget=1)
    assert table.metrics == ("accuracy",)
    free = table.columns_view().evaluate(nb201.sample(40, 2))
    assert free["latency_ms"].shape == (40,) and table.num_queried == 0
    assert len(table.columns_view().candidates()) == 6466


def test_parquet_gives_the_same_rows_as_csv(tmp_path, table_path, nb201):
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    pq.write_table(pa_csv.read_csv(table_path), tmp_path / "nb201.parquet")
    archs = nb201.sample(20, 3)
    from_csv = TableEvaluator(nb201, table_path).evaluate(archs)
    from_parquet = TableEvaluator(nb201, tmp_path / "nb201.parquet").evaluate(archs)
    for k in from_csv:
        np.testing.assert_array_equal(from_csv[k], from_parquet[k])


def test_table_input_errors_name_the_file_and_value(tmp_path, nb201):
    with pytest.raises(UserInputError, match="does not exist"):
        TableEvaluator(nb201, tmp_path / "absent.csv")
    partial = write_table(tmp_path / "partial.csv", nb201, nb201.sample(5, 0))
    table = TableEvaluator(nb201, partial)
    absent = nb201.largest()
    with pytest.raises(UserInputError, match=r"partial\.csv.*has no row for architecture"):
        table.evaluate(absent[None])
    with pytest.raises(UserInputError, match="no metric column 'energy_mj'"):
        TableEvaluator(nb201, partial, cheap_columns=["energy_mj"])
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,accuracy\n|not_an_op~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0\n")
    with pytest.raises(UserInputError, match=r"bad\.csv.*column 'arch'.*not_an_op"):
        TableEvaluator(nb201, bad)
    text = tmp_path / "text.csv"
    write_table(text, nb201, nb201.sample(3, 0), {"note": ["a", "b", "c"]})
    with pytest.raises(UserInputError, match="column 'note'.*numeric"):
        TableEvaluator(nb201, text)


def test_cache_evaluates_each_distinct_architecture_once(table_path, nb201):
    table = TableEvaluator(nb201, table_path)
    cache = ExpensiveCache(table.metrics)
    archs = nb201.canonical(nb201.sample(30, 4))
    hashes = nb201.hash(archs)
    first, cached = cache.evaluate(table, archs, hashes)
    distinct = len(np.unique(hashes))
    assert cache.num_evaluated == table.num_queried == distinct
    assert (~cached).sum() == distinct
    second, cached = cache.evaluate(table, archs[::-1], hashes[::-1])
    assert cached.all() and cache.num_evaluated == distinct
    np.testing.assert_array_equal(second["accuracy"], first["accuracy"][::-1])


def test_cost_model_metrics_match_the_latency_model(nb201):
    from latency_models import build_cost_model

    cheap = cheap_metrics_for(nb201, ["latency_ms@raspberry-pi-5", "energy_mj", "params", "flops"],
                              device="jetson-nano")
    archs = nb201.sample(64, 5)
    got = cheap(archs)
    pi5 = build_cost_model(nb201, "raspberry-pi-5", "lut").predict(archs)
    nano = build_cost_model(nb201, "jetson-nano", "lut").predict(archs)
    np.testing.assert_allclose(got["latency_ms@raspberry-pi-5"], pi5["latency_ms"])
    np.testing.assert_allclose(got["energy_mj"], nano["energy_mj"])
    np.testing.assert_allclose(got["flops"], 2 * got["macs"])
    assert (got["params"] >= 0).all() and got["params"].max() > got["params"].min()


def test_unknown_metrics_and_specs_are_user_errors(nb201, table_path):
    with pytest.raises(UserInputError, match="latency_ms@DEVICE"):
        cheap_metrics_for(nb201, ["latency_ms"])
    with pytest.raises(UserInputError, match="'top5'"):
        cheap_metrics_for(nb201, ["top5"])
    with pytest.raises(UserInputError, match="table:PATH"):
        build_evaluator(f"csv:{table_path}", nb201)
    with pytest.raises(UserInputError, match="does not exist"):
        build_evaluator("supernet:/no/such/run", nb201, num_actors=0)
    assert build_evaluator(f"table:{table_path}", nb201).metrics == ("accuracy", "latency_ms")


@pytest.mark.skipif(not os.environ.get("HWNAS_SLOW_TESTS"),
                    reason="compiles the OFA supernet in this process and in a Ray actor (minutes on 2 shared "
                    "cores); set HWNAS_SLOW_TESTS=1 to run")
def test_supernet_evaluator_in_process_and_in_an_actor_agree(tmp_path):
    from nas.config import load_config
    from nas.evaluators.supernet import SupernetEvaluator, supernet_payload
    from nas.train import create_model, evaluate_subnet, load_data

    config = load_config(os.path.join(os.path.dirname(__file__), "..", "nas", "experiments", "tiny_train.yaml"))
    space, data = config.build_space(), load_data(config)
    model = create_model(config, space, data.num_classes, data.channels)
    archs = space.sample(3, 0)
    archs[:, 0] = 0
    payload = supernet_payload(model, config, data)
    local = SupernetEvaluator(space, payload=payload, num_actors=0).evaluate(archs)["accuracy"]
    expected = [evaluate_subnet(model, data, space, a, batch_size=config.train.batch_size,
                                calibration_batches=config.train.bn_calibration_batches, seed=config.seed)
                for a in archs]
    np.testing.assert_allclose(local, expected)
    remote = SupernetEvaluator(space, payload=payload, num_actors=1, compile_cache_dir=tmp_path)
    try:
        np.testing.assert_allclose(remote.evaluate(archs)["accuracy"], local)
    finally:
        remote.close()
