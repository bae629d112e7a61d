"""The search section's keys reach the run: mutation_prob and storage change what a table run does, objectives
are the supernet targets' objectives, and a key a strategy cannot take is refused."""

import csv
import sqlite3
from pathlib import Path

import pytest
import yaml

from nas.cli import main
from nas.config import config_from_dict
from nas.run import RunContext, run_experiment, search_targets
from nas.run_dir import RunDir
from search_spaces import get_space


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    space = get_space("nb201")
    archs = space.enumerate()
    path = tmp_path_factory.mktemp("table") / "nb201.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "accuracy", "latency_ms"])
        for arch, row in zip(space.strings(archs), archs.astype(int)):
            writer.writerow([arch, 40 + 2 * (row >= 2).sum() + (row == 3).sum() + 0.1 * row[0],
                             1 + (row == 3).sum() + 0.3 * (row == 2).sum()])
    return path


def table_run(tmp_path, table, name, **search) -> Path:
    config = {"name": name, "runs_dir": str(tmp_path / "runs"), "space": {"name": "nb201"},
              "search": {"evaluator": f"table:{table}", "budget": 24, "population": 8, **search}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_experiment(path, progress=False)
    with open(run.root / "search" / "table" / "history.csv") as f:
        return [row["arch"] for row in csv.DictReader(f)]


def test_mutation_prob_changes_what_the_search_proposes(tmp_path, table):
    default = table_run(tmp_path, table, "default", strategy="evolution")
    same = table_run(tmp_path, table, "same", strategy="evolution", mutation_prob=0.1)
    other = table_run(tmp_path, table, "other", strategy="evolution", mutation_prob=0.9)
    assert same == default  # 0.1 is evolution's own default
    assert other[:8] == default[:8] and other != default  # the first population is sampled, mutation follows


def test_storage_holds_the_optuna_study(tmp_path, table):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    table_run(tmp_path, table, "tpe", strategy="optuna-tpe", storage=url)
    with sqlite3.connect(tmp_path / "studies.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] >= 24
    assert not list((tmp_path / "runs" / "tpe").rglob("optuna.db"))


def test_a_key_the_strategy_cannot_take_is_refused(tmp_path, table, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "space": {"name": "nb201"},
                                    "search": {"evaluator": f"table:{table}", "strategy": "random",
                                               "mutation_prob": 0.3}}))
    assert main(["validate", str(path)]) == 2
    assert "search.mutation_prob does not apply to strategy 'random'" in capsys.readouterr().err


def test_objectives_are_the_supernet_targets_objectives(tmp_path):
    config = config_from_dict({"name": "r", "targets": [{"device": "pixel-7", "budgets_ms": [5], "energy_budgets_mj":
                                                         [2]}],
                               "search": {"objectives": ["accuracy:max", "energy_mj:min", "params:min"]}})
    run = RunDir(tmp_path)
    (tmp_path / "budgets.json").write_text('{"pixel-7": {"budgets_ms": [5.0]}}')
    (target,) = search_targets(RunContext(config, run, None, False))
    assert target.name == "pixel-7@5ms"
    assert [(o.name, o.direction) for o in target.objectives] == [("accuracy", "max"), ("energy_mj", "min"),
                                                                   ("params", "min")]
    assert [(c.metric, c.upper_bound) for c in target.constraints] == [("latency_ms", 5.0), ("energy_mj", 2.0)]
