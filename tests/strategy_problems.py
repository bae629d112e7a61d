"""Synthetic search problems for the strategy tests: additive accuracy and latency over space features."""

import numpy as np

from search_spaces import Categorical, Space, get_space


def ofa_problem(seed=0):
    """ofa_mbv3 (small resolutions) with a random additive accuracy and a positive additive latency."""
    space = get_space("ofa_mbv3", resolutions=(32, 48, 64))
    rng = np.random.default_rng(seed)
    width = space.features(space.smallest()).shape[1]
    w_acc, w_lat = rng.normal(size=width), rng.random(width)

    def accuracy(archs):
        return space.features(archs) @ w_acc

    def cheap(archs):
        return {"latency_ms": space.features(archs) @ w_lat}

    return space, accuracy, cheap


def nb201_problem(seed=0):
    """nb201 with accuracy and latency that both grow with the operations' cost plus noise per op choice."""
    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    width = space.features(space.smallest()).shape[1]
    cost = np.tile([0.0, 0.1, 1.0, 3.0, 0.5], width // 5) + 0.2 * rng.random(width)
    gain = np.sqrt(cost) + 0.3 * rng.random(width)

    def evaluate(archs):
        f = space.features(archs)
        return {"accuracy": f @ gain, "latency_ms": 1.0 + f @ cost}

    return space, evaluate


def tiny_space():
    """Nine architectures, no equivalences."""
    return Space("tiny", [Categorical("a", (1, 2, 3)), Categorical("b", (1, 2, 3))])
