"""Tests for the strategy base: objectives, registry, options, deduplication, budgets and exact resume."""

import json

import numpy as np
import pytest

from nas.strategies import Constraint, Objective, get_strategy, list_strategies
from nas.strategies.base import in_sorted, insert_sorted
from search_spaces.errors import UserInputError
from strategy_problems import nb201_problem, ofa_problem, tiny_space

ACC = [Objective("accuracy", "max")]


def test_objective_direction_and_registry_errors_are_user_errors():
    with pytest.raises(UserInputError, match="'maximize'"):
        Objective("accuracy", "maximize")
    with pytest.raises(UserInputError, match="known strategies"):
        get_strategy("annealing")
    assert {"evolution", "nsga2", "predictor", "random"} <= set(list_strategies())


def test_unknown_option_is_named():
    space, _ = nb201_problem()
    with pytest.raises(UserInputError, match="population"):
        get_strategy("random")(space, ACC, population=3)


def test_ask_returns_canonical_architectures_never_asked_before():
    space, evaluate = nb201_problem()
    strategy = get_strategy("random")(space, ACC, seed=1)
    batches = []
    for _ in range(10):
        archs = strategy.ask(50)
        strategy.tell(archs[:25], evaluate(archs[:25]))
        batches.append(archs)
    archs = np.vstack(batches)
    np.testing.assert_array_equal(space.canonical(archs), archs)
    assert len(np.unique(space.hash(archs))) == len(archs) == 500


def test_ask_returns_fewer_when_the_space_is_exhausted():
    strategy = get_strategy("random")(tiny_space(), ACC)
    sizes = [len(strategy.ask(4)) for _ in range(4)]
    assert sizes == [4, 4, 1, 0]
    assert len(np.unique(tiny_space().hash(strategy.asked))) == 9


def test_budget_no_architecture_meets_is_a_user_error():
    space, _, cheap = ofa_problem()
    with pytest.raises(UserInputError, match="no architecture meets"):
        get_strategy("random")(space, ACC, constraints=[Constraint("latency_ms", -1.0)], cheap_metrics=cheap)


def test_tell_rejects_metrics_of_the_wrong_length():
    space, evaluate = nb201_problem()
    strategy = get_strategy("random")(space, ACC)
    archs = strategy.ask(3)
    with pytest.raises(UserInputError, match="'accuracy'"):
        strategy.tell(archs, {"accuracy": np.zeros(2)})


def test_state_dict_round_trips_through_json_and_resumes_exactly():
    space, accuracy, cheap = ofa_problem()
    make = lambda: get_strategy("evolution")(space, ACC, constraints=[Constraint("latency_ms", 40.0)],
                                             cheap_metrics=cheap, seed=3, population_size=10)
    first = make()
    for _ in range(3):
        archs = first.ask(8)
        first.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
    pending = first.ask(4)
    second = make()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for strategy in (first, second):
        strategy.tell(pending, {"accuracy": accuracy(pending), **cheap(pending)})
    for _ in range(3):
        a, b = first.ask(8), second.ask(8)
        np.testing.assert_array_equal(a, b)
        for strategy in (first, second):
            strategy.tell(a, {"accuracy": accuracy(a), **cheap(a)})


def test_state_saved_before_anything_was_asked_resumes():
    space, _, cheap = ofa_problem()
    make = lambda: get_strategy("evolution")(space, ACC, cheap_metrics=cheap, seed=5, population_size=6)
    first, second = make(), make()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    np.testing.assert_array_equal(first.ask(6), second.ask(6))


def test_missing_metrics_count_as_infeasible():
    space, evaluate = nb201_problem()
    strategy = get_strategy("random")(space, ACC, constraints=[Constraint("latency_ms", 5.0)])
    archs = strategy.ask(4)
    metrics = evaluate(archs)
    metrics["accuracy"][0] = np.nan
    strategy.tell(archs, metrics)
    feasible = strategy.told_feasible()
    assert not feasible[0]
    np.testing.assert_array_equal(feasible[1:], metrics["latency_ms"][1:] <= 5.0)


def test_sorted_key_helpers_find_members_and_merge_in_order():
    keys = np.array([3, 9, 20], dtype=np.uint64)
    probe = np.array([9, 4, 20, 0, 21], dtype=np.uint64)
    np.testing.assert_array_equal(in_sorted(keys, probe), [True, False, True, False, False])
    assert not in_sorted(keys[:0], probe).any()
    merged = insert_sorted(keys, np.array([21, 0, 4], dtype=np.uint64))
    np.testing.assert_array_equal(merged, [0, 3, 4, 9, 20, 21])
