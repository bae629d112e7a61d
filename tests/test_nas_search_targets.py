"""Tests for nas.search_targets: targets from devices and budgets, and from an experiment config."""

from nas.config import config_from_dict
from nas.search_targets import device_targets, strategy_options_from_config, targets_from_config


def test_device_targets_cross_devices_and_budgets():
    targets = device_targets(["pi5", "nano"], [5, 10.5])
    assert [t.name for t in targets] == ["pi5-5ms", "pi5-10.5ms", "nano-5ms", "nano-10.5ms"]
    assert targets[1].constraints[0].upper_bound == 10.5 and targets[1].device == "pi5"


def test_config_targets_and_strategy_options():
    config = config_from_dict({
        "name": "r", "targets": [
            {"device": "raspberry-pi-5", "budgets_ms": [5, 10], "energy_budgets_mj": [50]},
            {"device": "jetson-nano", "latency_model": "roofline"}],
        "search": {"strategy": "evolution", "mutation_prob": 0.3, "objectives": ["accuracy:max", "energy_mj:min"]}})
    targets = targets_from_config(config)
    assert [t.name for t in targets] == ["raspberry-pi-5-5ms", "raspberry-pi-5-10ms", "raspberry-pi-5-50mJ",
                                         "jetson-nano"]
    assert targets[2].constraints[0].metric == "energy_mj" and targets[3].constraints == ()
    assert targets[3].latency_model == "roofline"
    assert [o.name for o in targets[0].objectives] == ["accuracy", "energy_mj"]
    assert strategy_options_from_config(config.search) == {"mutate_prob": 0.3}


def test_devices_times_budgets_share_accuracy_evaluations(tmp_path):
    import csv

    from nas.evaluators import TableEvaluator, cheap_metrics_for
    from nas.search import best_achievable, run_multi_target_search
    from search_spaces import get_space

    space = get_space("nb201")
    archs = space.enumerate()
    path = tmp_path / "acc.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["arch", "accuracy"], *zip(space.strings(archs), (archs >= 2).sum(1))])
    targets = []
    for device in ("raspberry-pi-5", "jetson-nano"):
        fastest, _ = best_achievable(space, cheap_metrics_for(space, ["latency_ms"], device=device), "latency_ms")
        targets += device_targets([device], [round(fastest * 2, 3), round(fastest * 4, 3)])
    table = TableEvaluator(space, path)
    result = run_multi_target_search(space, table, targets, out=tmp_path / "run", budget=24, population=8,
                                     progress=False)
    assert sorted(result.targets) == sorted(t.name for t in targets)
    for target in targets:
        found = result.targets[target.name]
        assert len(found.history["arch"]) == 24
        assert (found.pareto["latency_ms"] <= target.constraints[0].upper_bound).all()
    assert result.expensive_evaluations == table.num_queried < 4 * 24
