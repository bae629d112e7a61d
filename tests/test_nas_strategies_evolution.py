"""Tests for constrained evolution: feasible children, better than random on a synthetic budgeted problem."""

import numpy as np

from nas.strategies import Constraint, Objective, get_strategy
from strategy_problems import ofa_problem

ACC = [Objective("accuracy", "max")]


def _run(name, space, accuracy, cheap, bound, seed, rounds=15, **options):
    strategy = get_strategy(name)(space, ACC, constraints=[Constraint("latency_ms", bound)], cheap_metrics=cheap,
                                  seed=seed, **options)
    for _ in range(rounds):
        archs = strategy.ask(20)
        strategy.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
    return strategy


def test_evolution_beats_random_search_under_a_latency_budget():
    space, accuracy, cheap = ofa_problem(seed=1)
    bound = np.quantile(cheap(space.sample(1000, 0))["latency_ms"], 0.2)
    wins = 0
    for seed in range(3):
        evolution = _run("evolution", space, accuracy, cheap, bound, seed, population_size=20)
        random = _run("random", space, accuracy, cheap, bound, seed)
        wins += evolution.metrics["accuracy"].max() > random.metrics["accuracy"].max()
    assert wins == 3


def test_children_of_a_tight_budget_are_all_feasible():
    space, accuracy, cheap = ofa_problem(seed=2)
    bound = np.quantile(cheap(space.sample(1000, 0))["latency_ms"], 0.002)
    strategy = _run("evolution", space, accuracy, cheap, bound, seed=0, rounds=6, population_size=20)
    assert len(strategy.archs) == 120
    assert (strategy.metrics["latency_ms"] <= bound).all()


def test_parents_are_the_best_feasible_told():
    space, accuracy, cheap = ofa_problem(seed=3)
    strategy = _run("evolution", space, accuracy, cheap, 60.0, seed=0, rounds=3, population_size=20)
    ok = strategy.metrics["latency_ms"] <= 60.0
    best = np.sort(strategy.metrics["accuracy"][ok])[::-1][:5]
    np.testing.assert_allclose(accuracy(strategy.parents()), best)


def _distance_to_parents(strategy, children):
    """Per child: the fewest decisions in which it differs from a parent."""
    parents = strategy.parents()
    return (children[:, None, :] != parents[None, :, :]).sum(-1).min(1)


def test_mutation_probability_sets_how_far_mutants_move():
    space, accuracy, cheap = ofa_problem(seed=4)
    moved = {}
    for prob in (0.05, 0.4):
        strategy = _run("evolution", space, accuracy, cheap, 1e9, seed=0, rounds=2, population_size=20,
                        mutation_ratio=1.0, mutate_prob=prob)
        moved[prob] = _distance_to_parents(strategy, strategy.ask(20)).mean()
    assert moved[0.4] > 3 * moved[0.05]
