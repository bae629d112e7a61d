"""Tests for predictor-guided search on synthetic nb201 problems (no shared data needed)."""

import json

import numpy as np
import pytest

from nas.pareto import hypervolume
from nas.strategies import Constraint, Objective, get_strategy
from search_spaces.errors import UserInputError
from strategy_problems import nb201_problem, ofa_problem

OBJECTIVES = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
SMALL = dict(members=4, hidden=(16,), steps=150, learning_rate=1e-2, initial=16)


def _tell_rounds(strategy, evaluate, rounds, batch=10):
    for _ in range(rounds):
        archs = strategy.ask(batch)
        strategy.tell(archs, evaluate(archs))
    return strategy


def test_predictor_finds_a_better_front_than_random_search():
    space, evaluate = nb201_problem(seed=0)
    for seed in range(2):
        volumes = {}
        for name, options in (("predictor", SMALL), ("random", {})):
            strategy = _tell_rounds(get_strategy(name)(space, OBJECTIVES, seed=seed, **options), evaluate, 6)
            volumes[name] = hypervolume(strategy.minimised(), [0.0, 9.0])
        assert volumes["predictor"] > volumes["random"]


def test_four_objectives_find_a_better_front_than_random_search():
    """Accuracy, two latencies and energy together: the acquisition's exact 4-D hypervolume improvement."""
    space, evaluate = nb201_problem(seed=3)
    weights = np.random.default_rng(3).random((space.features(space.smallest()).shape[1], 2))

    def four(archs):
        extra = space.features(archs) @ weights
        return {**evaluate(archs), "gpu_ms": 1.0 + extra[:, 0], "energy_mj": 1.0 + extra[:, 1]}

    objectives = OBJECTIVES + [Objective("gpu_ms", "min"), Objective("energy_mj", "min")]
    volumes = {}
    for name, options in (("predictor", SMALL), ("random", {})):
        strategy = _tell_rounds(get_strategy(name)(space, objectives, seed=0, **options), four, 10)
        volumes[name] = hypervolume(strategy.minimised(), [0.0, 9.0, 9.0, 9.0])
    assert volumes["predictor"] > volumes["random"] > 0


def test_resume_from_json_state_continues_identically():
    space, evaluate = nb201_problem(seed=1)
    make = lambda: get_strategy("predictor")(space, OBJECTIVES, seed=2, **SMALL)
    first = _tell_rounds(make(), evaluate, 3)
    second = make()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    np.testing.assert_array_equal(first.ask(10), second.ask(10))


def test_cheap_budget_and_proxy_pretraining_path():
    space, evaluate = nb201_problem(seed=2)

    def cheap(archs):
        latency = evaluate(archs)["latency_ms"]
        return {"latency_ms": latency, "flops": 1e6 * latency}

    strategy = get_strategy("predictor")(space, OBJECTIVES, constraints=[Constraint("latency_ms", 4.0)],
                                         cheap_metrics=cheap, seed=0, pretrain_samples=64, **SMALL)
    assert strategy.proxy == "flops" and strategy.modelled == ("accuracy",)
    for _ in range(3):
        archs = strategy.ask(10)
        assert len(archs) == 10 and (cheap(archs)["latency_ms"] <= 4.0).all()
        strategy.tell(archs, {**evaluate(archs), **cheap(archs)})


def test_reference_option_is_used_in_the_minimisation_convention():
    space, evaluate = nb201_problem(seed=0)
    strategy = get_strategy("predictor")(space, OBJECTIVES, reference={"accuracy": 2.0}, **SMALL)
    _tell_rounds(strategy, evaluate, 2)
    ref = strategy.reference_point()
    assert ref[0] == -2.0
    assert ref[1] == pytest.approx(np.quantile(strategy.metrics["latency_ms"][:16], 0.9))


def test_bad_options_are_user_errors():
    space, _ = nb201_problem(seed=0)
    with pytest.raises(UserInputError, match="proxy"):
        get_strategy("predictor")(space, OBJECTIVES, proxy="flops")


def test_single_objective_under_a_cheap_budget_in_a_large_space():
    space, accuracy, cheap = ofa_problem(seed=1)
    bound = np.quantile(cheap(space.sample(1000, 0))["latency_ms"], 0.2)
    best = {}
    for name, options in (("predictor", dict(SMALL, pool_size=500, pool_generations=1)), ("random", {})):
        strategy = get_strategy(name)(space, [Objective("accuracy", "max")], cheap_metrics=cheap, seed=0,
                                      constraints=[Constraint("latency_ms", bound)], **options)
        for _ in range(4):
            archs = strategy.ask(20)
            strategy.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
        assert (strategy.metrics["latency_ms"] <= bound).all()
        best[name] = strategy.metrics["accuracy"].max()
    assert best["predictor"] > best["random"]


def test_mutation_probability_changes_the_candidate_pool():
    """A space too large to enumerate: the pool grows by mutating the predicted front, with `mutate_prob`."""
    space, accuracy, cheap = ofa_problem(seed=0)
    evaluate = lambda archs: {"accuracy": accuracy(archs), **cheap(archs)}  # noqa: E731
    asked = {}
    for prob in (0.1, 0.6):
        strategy = get_strategy("predictor")(space, OBJECTIVES, seed=0, pool_size=400, pool_generations=2,
                                             pretrain_samples=64, mutate_prob=prob, **SMALL)
        _tell_rounds(strategy, evaluate, 2)
        asked[prob] = strategy.ask(10)
    assert (asked[0.1] != asked[0.6]).any()
    with pytest.raises(UserInputError, match="mutate_prob"):
        get_strategy("predictor")(space, OBJECTIVES, mutate_prob=-0.1)
