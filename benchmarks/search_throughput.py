"""Benchmark: search throughput with cheap evaluators on ofa_mbv3 (resolutions 32/48/64).

1. OFA-style constrained evolution, population 100 x 500 generations (parents 25%, mutation 50%, mutate prob
   0.1), accuracy from a fixed random MLP, latency from a linear additive model, under a latency budget; against
   a per-architecture port of OFA's EvolutionFinder (rejection loops, one architecture at a time) in this process.
2. Candidates per second through `evolution` and `predictor` asks with the cheap evaluators of a real search:
   the latency lookup table of `latency_models` (Raspberry Pi 5; roofline-built where no measured table ships)
   and the ensemble accuracy predictor."""

from __future__ import annotations

import argparse
import time

import numpy as np

from nas.accuracy_predictor import EnsemblePredictor
from nas.strategies import Constraint, Objective, get_strategy
from search_spaces import get_space

ACC = [Objective("accuracy", "max")]


def linear_latency(space, seed=0):
    """Latency = base + sum over active decisions of a positive cost per chosen value (values ascend: costlier)."""
    rng = np.random.default_rng(seed)
    cost = np.sort(rng.random((space.num_decisions, int(space.sizes.max()))), axis=1)
    columns = np.arange(space.num_decisions)

    def latency(archs):
        archs = np.asarray(archs)
        return 1.0 + (cost[columns, archs.astype(np.int64)] * space.active(archs)).sum(1)

    return latency


def random_mlp_accuracy(space, seed=0):
    model = EnsemblePredictor(space.features(space.smallest()).shape[1], 1, members=1, hidden=(64, 64),
                              seed=seed).init_random()
    return lambda archs: model.predict(space.features(archs))[0][:, 0]


def run_evolution(space, accuracy, latency, budget, generations, population=100, seed=0) -> float:
    strategy = get_strategy("evolution")(space, ACC, constraints=[Constraint("latency_ms", budget)],
                                         cheap_metrics=lambda a: {"latency_ms": latency(a)}, seed=seed,
                                         population_size=population)
    start = time.perf_counter()
    for _ in range(generations + 1):
        archs = strategy.ask(population)
        strategy.tell(archs, {"accuracy": accuracy(archs), "latency_ms": latency(archs)})
    best = strategy.parents()[:1]
    return time.perf_counter() - start, float(accuracy(best)[0])


def reference_evolution(space, accuracy, latency, budget, generations, population=100, seed=0):
    """OFA's EvolutionFinder, one architecture at a time: rejection-sampled random, mutated and crossed-over
    samples, each checked against the budget before it joins; the accuracy predictor scores each generation."""
    rng = np.random.default_rng(seed)
    num_parents, num_mutations = population // 4, population // 2

    def feasible(make):
        while True:
            arch = make()
            if latency(arch[None])[0] <= budget:
                return arch

    def mutate(parent):
        flip = rng.random(space.num_decisions) < 0.1
        return np.where(flip, rng.integers(0, space.sizes), parent)

    def cross(a, b):
        return np.where(rng.random(space.num_decisions) < 0.5, a, b)

    start = time.perf_counter()
    members = [feasible(lambda: rng.integers(0, space.sizes)) for _ in range(population)]
    scores = accuracy(np.stack(members))
    for _ in range(generations):
        order = np.argsort(-scores)[:num_parents]
        parents = [members[i] for i in order]
        children = [feasible(lambda: mutate(parents[rng.integers(num_parents)])) for _ in range(num_mutations)]
        children += [feasible(lambda: cross(parents[rng.integers(num_parents)], parents[rng.integers(num_parents)]))
                     for _ in range(population - num_parents - num_mutations)]
        members = parents + children
        scores = np.concatenate([scores[order], accuracy(np.stack(children))])
    return time.perf_counter() - start, float(scores.max())


def candidates_per_second(space, name, accuracy, cost_model, budget, asks, batch, **options) -> float:
    cheap = lambda archs: {"latency_ms": cost_model.predict(archs)["latency_ms"]}
    strategy = get_strategy(name)(space, ACC, constraints=[Constraint("latency_ms", budget)], cheap_metrics=cheap,
                                  seed=0, **options)
    archs = strategy.ask(batch)
    strategy.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
    strategy.ask(batch)
    start, evaluated, screened_before = time.perf_counter(), 0, strategy.candidates_screened
    for _ in range(asks):
        archs = strategy.ask(batch)
        strategy.tell(archs, {"accuracy": accuracy(archs), **cheap(archs)})
        evaluated += len(archs)
    seconds = time.perf_counter() - start
    return evaluated / seconds, (strategy.candidates_screened - screened_before) / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--reference-generations", type=int, default=100,
                        help="generations of the per-architecture reference (its time is scaled to --generations)")
    args = parser.parse_args(argv)
    from latency_models.cost_model import build_cost_model

    space = get_space("ofa_mbv3", resolutions=(32, 48, 64))
    accuracy, latency = random_mlp_accuracy(space), linear_latency(space)
    budget = float(np.quantile(latency(space.sample(4096, 1)), 0.25))
    accuracy(space.sample(100, 2))
    ours, our_best = run_evolution(space, accuracy, latency, budget, args.generations)
    ref, ref_best = reference_evolution(space, accuracy, latency, budget, args.reference_generations)
    ref_scaled = ref * args.generations / args.reference_generations
    print(f"constrained evolution 100 x {args.generations} (linear latency, random-MLP accuracy): ours {ours:.2f} s "
          f"(best {our_best:.3f}); per-architecture OFA loop {ref:.2f} s for {args.reference_generations} "
          f"generations, {ref_scaled:.1f} s scaled (best {ref_best:.3f}); speed-up {ref_scaled / ours:.1f}x")

    cost_model = build_cost_model(space, "raspberry-pi-5", "lut")
    lut_budget = float(np.quantile(cost_model.predict(space.sample(4096, 3))["latency_ms"], 0.25))
    evaluated, screened = candidates_per_second(space, "evolution", accuracy, cost_model, lut_budget, asks=5,
                                                batch=20000, population_size=20000)
    print(f"evolution asks of 20,000 (LUT latency screens every candidate, MLP accuracy for the asked, told "
          f"back): {screened:,.0f} candidates screened/s, {evaluated:,.0f} architectures asked+evaluated/s")
    defaults = get_strategy("predictor").defaults
    ensemble = f"{defaults['members']} members of {'x'.join(map(str, defaults['hidden']))}"
    for pool_size in (50_000, 100_000):
        evaluated, screened = candidates_per_second(space, "predictor", accuracy, cost_model, lut_budget, asks=3,
                                                    batch=100, initial=64, pool_size=pool_size)
        print(f"predictor-guided asks of 100 from {pool_size:,}-candidate pools (LUT + default ensemble predictor, "
              f"{ensemble}, refitted every ask): {screened:,.0f} candidates scored/s ({evaluated:,.0f} proposals/s)")
    evaluated, screened = candidates_per_second(space, "predictor", accuracy, cost_model, lut_budget, asks=3,
                                                batch=100, initial=64, pool_size=50_000, members=4, hidden=(32,))
    print(f"  50,000-candidate pools with a light ensemble (4 members of 32): {screened:,.0f} candidates scored/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
