"""Tests for random search: feasible under cheap budgets, deterministic per seed."""

import numpy as np

from nas.strategies import Constraint, Objective, get_strategy
from strategy_problems import ofa_problem

ACC = [Objective("accuracy", "max")]


def test_every_asked_architecture_meets_a_tight_cheap_budget():
    space, _, cheap = ofa_problem()
    bound = np.quantile(cheap(space.sample(500, 0))["latency_ms"], 0.01)
    strategy = get_strategy("random")(space, ACC, constraints=[Constraint("latency_ms", bound)],
                                      cheap_metrics=cheap)
    archs = strategy.ask(64)
    assert len(archs) == 64
    assert (cheap(archs)["latency_ms"] <= bound).all()


def test_same_seed_same_proposals_and_different_seed_different_ones():
    space, _, _ = ofa_problem()
    asks = [get_strategy("random")(space, ACC, seed=s).ask(5) for s in (4, 4, 5)]
    np.testing.assert_array_equal(asks[0], asks[1])
    assert not np.array_equal(asks[0], asks[2])
