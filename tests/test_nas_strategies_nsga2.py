"""Tests for NSGA-II: constrained survival order and a better front than random search on a synthetic problem."""

import numpy as np

from nas.pareto import hypervolume, pareto_mask
from nas.strategies import Constraint, Objective, get_strategy
from strategy_problems import nb201_problem, ofa_problem

OBJECTIVES = [Objective("accuracy", "max"), Objective("latency_ms", "min")]


def _run(name, seed, evaluations=240, **options):
    space, evaluate = nb201_problem(seed=0)
    strategy = get_strategy(name)(space, OBJECTIVES, seed=seed, **options)
    while len(strategy.archs) < evaluations:
        archs = strategy.ask(20)
        strategy.tell(archs, evaluate(archs))
    return strategy


def _hypervolume(strategy):
    values = strategy.minimised()
    return hypervolume(values, [0.0, 9.0])


def test_nsga2_finds_a_better_front_than_random_search():
    """Over 5 seeds: a better median hypervolume, and a better front in at least 4 of them (a small space, so
    random search sometimes gets lucky)."""
    ours = np.array([_hypervolume(_run("nsga2", seed, population_size=40)) for seed in range(5)])
    random = np.array([_hypervolume(_run("random", seed)) for seed in range(5)])
    assert np.median(ours) > np.median(random)
    assert (ours > random).sum() >= 4, (ours, random)


def test_population_keeps_the_front_and_puts_infeasible_last():
    space, evaluate = nb201_problem(seed=0)
    strategy = get_strategy("nsga2")(space, OBJECTIVES, constraints=[Constraint("latency_ms", 4.0)],
                                     population_size=30)
    archs = strategy.ask(80)
    strategy.tell(archs, evaluate(archs))
    rows, rank, _ = strategy.population()
    assert len(rows) == 30
    feasible = strategy.told_feasible()
    front = np.flatnonzero(feasible)[pareto_mask(strategy.minimised()[feasible])]
    assert set(front) <= set(rows)
    in_population = feasible[rows]
    if not in_population.all():
        assert rank[~in_population].min() > rank[in_population].max()


def test_children_meet_cheap_budgets():
    space, evaluate = nb201_problem(seed=0)
    cheap = lambda archs: {"latency_ms": evaluate(archs)["latency_ms"]}
    strategy = get_strategy("nsga2")(space, OBJECTIVES, constraints=[Constraint("latency_ms", 3.0)],
                                     cheap_metrics=cheap, population_size=20, seed=1)
    for _ in range(5):
        archs = strategy.ask(20)
        assert (cheap(archs)["latency_ms"] <= 3.0).all()
        strategy.tell(archs, evaluate(archs))


def test_mutation_probability_sets_how_far_children_move():
    """Without crossover a child is a mutated tournament winner: how far it lies from the population grows with
    `mutate_prob` (default 1/D, about one decision of ofa_mbv3's 46)."""
    space, accuracy, cheap = ofa_problem(seed=0)
    moved = {}
    for prob in (None, 0.3):
        strategy = get_strategy("nsga2")(space, OBJECTIVES, seed=0, population_size=20, crossover_prob=0.0,
                                         mutate_prob=prob)
        archs = strategy.ask(20)
        strategy.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
        population = strategy.archs[strategy.population()[0]]
        children = strategy.ask(20)
        moved[prob] = (children[:, None, :] != population[None, :, :]).sum(-1).min(1).mean()
    assert moved[None] < 3 < 8 < moved[0.3]
