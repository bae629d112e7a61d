"""`nas validate` under random config mutations: never a traceback, one error line or "valid", and whatever it
accepts, the run accepts too (its data and latency stages run on the mutated config)."""

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.run import run_experiment

TINY = Path(__file__).resolve().parents[1] / "nas" / "experiments" / "quickstart_tiny.yaml"
BASE = yaml.safe_load(TINY.read_text())
BASE["targets"] = [{"device": "pixel-7", "budgets_relative": [0.3, 0.9]},
                   {"device": "jetson-orin-nano", "budgets_ms": [40.0]}]
HOSTILE = [-1, 0, 1, 2, 3, 7, 0.5, 1e-9, 1e12, 10**12, -0.0, math.inf, -math.inf, math.nan, "", "x", "pixel-99",
           "table:nowhere.csv", None, True, False, [], [0], [1, 2], [100000], ["a"], {}, {"a": 1}]


def _paths(node, prefix=()):
    """Every place in the config a value sits (mapping keys, list items), plus a new unknown key per mapping."""
    if isinstance(node, dict):
        yield prefix + ("unknown_key",)
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


PATHS = sorted(set(_paths(BASE)), key=str)


def _mutate(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


mutations = st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(HOSTILE)), min_size=1, max_size=3)


def _apply(mutation_list):
    config = copy.deepcopy(BASE)
    for path, value in mutation_list:
        try:
            _mutate(config, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent of this path
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations)
def test_validate_never_prints_a_traceback(tmp_path, capsys, mutation_list):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_apply(mutation_list)))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in err
    if code == 0:
        assert "valid" in out and not err
    else:
        assert len(err.strip().splitlines()) == 1 and "nas validate: error:" in err


ACCEPTED_SEEDS = range(12)


@pytest.mark.parametrize("seed", ACCEPTED_SEEDS)
def test_what_validate_accepts_the_run_accepts(seed, tmp_path, capsys, monkeypatch):
    """Mutations drawn with a fixed seed until validate accepts one; its data and latency stages then run."""
    import random

    rng = random.Random(seed)
    for _ in range(200):
        config = _apply([(rng.choice(PATHS), rng.choice(HOSTILE)) for _ in range(rng.randint(1, 2))])
        if config == BASE:
            continue
        path = tmp_path / f"c{seed}.yaml"
        path.write_text(yaml.safe_dump(config))
        if main(["validate", str(path)]) == 0:
            break
    else:
        pytest.fail("no accepted mutation in 200 draws")
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWNAS_TABLE_CACHE", str(tmp_path / "cache"))
    run = run_experiment(path, stop_after="latency", progress=False)
    assert (run.root / "budgets.json").is_file(), yaml.safe_dump(config)
