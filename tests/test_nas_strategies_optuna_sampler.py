"""Tests for the Optuna strategies: ask/tell contract, constraints, the SQLite record, exact resume, the mutation
probability and bad storage."""

import json

import numpy as np
import optuna
import pytest

from nas.strategies import get_strategy
from search_spaces import IntRange, Space
from search_spaces.errors import UserInputError

OBJECTIVES = [("accuracy", "max"), ("latency_ms", "min")]


def tiny_space(high=7) -> Space:
    return Space("tiny", [IntRange("a", 0, high), IntRange("b", 0, high), IntRange("c", 0, 3)])


def metrics_of(space, archs) -> dict:
    v = space.values(archs).astype(float)
    return {"accuracy": 50 + 3 * v[:, 0] + 2 * v[:, 1] - (v[:, 2] - 2) ** 2,
            "latency_ms": 1 + v[:, 0] + 0.5 * v[:, 1] + 0.25 * v[:, 2]}


def latency_only(space):
    return lambda archs: {"latency_ms": metrics_of(space, archs)["latency_ms"]}


def run(strategy, space, generations, n=8):
    asked = []
    for _ in range(generations):
        archs = strategy.ask(n)
        asked.append(archs)
        strategy.tell(archs, metrics_of(space, archs))
    return np.vstack(asked)


@pytest.mark.parametrize("name", ["optuna-nsga2", "optuna-tpe"])
def test_asks_distinct_canonical_feasible_architectures(name):
    space = tiny_space()
    strategy = get_strategy(name)(space, OBJECTIVES, constraints=[("latency_ms", 7.0)],
                                  cheap_metrics=latency_only(space), seed=0, population_size=8)
    asked = run(strategy, space, generations=5)
    assert len(asked) == 40
    assert len(np.unique(space.hash(asked))) == 40
    np.testing.assert_array_equal(asked, space.canonical(asked))
    assert (metrics_of(space, asked)["latency_ms"] <= 7.0).all()


def test_small_space_is_exhausted_without_repeats_and_every_record_has_its_choices(tmp_path):
    space = Space("pair", [IntRange("a", 0, 2), IntRange("b", 0, 2)])
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    strategy = get_strategy("optuna-tpe")(space, [("accuracy", "max")], seed=0, population_size=4, storage=url)
    seen = []
    for _ in range(4):
        archs = strategy.ask(4)
        seen.append(archs)
        strategy.tell(archs, {"accuracy": space.values(archs).sum(1).astype(float)})
    seen = np.vstack(seen)
    assert len(seen) == 9 == len(np.unique(space.hash(seen)))
    assert len(strategy.ask(4)) == 0
    recorded = optuna.load_study(study_name="hwnas", storage=url).trials
    assert sorted((t.params["a"], t.params["b"]) for t in recorded) == sorted(map(tuple, seen.tolist())), \
        "architectures the base class filled in (enqueued) are recorded with their choices too"


def test_sqlite_record_holds_every_evaluated_trial_with_constraints(tmp_path):
    space = tiny_space()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    strategy = get_strategy("optuna-nsga2")(space, OBJECTIVES, constraints=[("latency_ms", 9.0)], seed=1,
                                            storage=url, study_name="t", population_size=8)
    asked = run(strategy, space, generations=3)
    study = optuna.load_study(study_name="t", storage=url)
    assert len(study.trials) == 24
    by_params = {(t.params["a"], t.params["b"], t.params["c"]): t for t in study.trials}
    truth = metrics_of(space, asked)
    for i, arch in enumerate(asked):
        trial = by_params[tuple(int(x) for x in arch)]
        assert trial.values == pytest.approx([truth["accuracy"][i], truth["latency_ms"][i]])
        assert trial.constraints["latency_ms"] == pytest.approx(truth["latency_ms"][i] - 9.0)


@pytest.mark.parametrize("name", ["optuna-nsga2", "optuna-tpe"])
@pytest.mark.parametrize("stored", [True, False])
def test_resume_from_json_state_continues_exactly(tmp_path, name, stored):
    space = tiny_space()
    url = f"sqlite:///{tmp_path / 'optuna.db'}" if stored else None
    build = lambda: get_strategy(name)(space, OBJECTIVES, constraints=[("latency_ms", 9.0)],  # noqa: E731
                                       cheap_metrics=latency_only(space), seed=2, storage=url, study_name="r",
                                       population_size=8)
    straight = run(get_strategy(name)(space, OBJECTIVES, constraints=[("latency_ms", 9.0)],
                                      cheap_metrics=latency_only(space), seed=2, population_size=8), space, 6)
    first = build()
    before = run(first, space, generations=3)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = build()
    resumed.load_state_dict(state)
    assert [(t.number, t.state, t.values, t.params) for t in resumed.study.trials] == \
        [(t.number, t.state, t.values, t.params) for t in first.study.trials]
    after = run(resumed, space, generations=3)
    np.testing.assert_array_equal(np.vstack([before, after]), straight)
    if stored:
        assert len(optuna.load_study(study_name="r", storage=url).trials) == 48


def test_a_log_optuna_does_not_reproduce_is_refused():
    space = tiny_space()
    build = lambda: get_strategy("optuna-tpe")(space, OBJECTIVES, seed=2, population_size=8)  # noqa: E731
    first = build()
    run(first, space, generations=2)
    state = first.state_dict()
    asks = [event for event in state["extra"]["log"] if event[0] == "ask"]
    asks[-1][1] = [(v + 1) % 4 for v in asks[-1][1]]
    with pytest.raises(UserInputError, match="cannot be replayed exactly"):
        build().load_state_dict(state)


def test_mutation_probability_reaches_optunas_nsga2():
    space = tiny_space()
    proposals = {}
    for prob in (None, 0.9):
        strategy = get_strategy("optuna-nsga2")(space, OBJECTIVES, seed=3, population_size=8, mutate_prob=prob)
        proposals[prob] = run(strategy, space, generations=4)
    np.testing.assert_array_equal(proposals[None][:8], proposals[0.9][:8])
    assert (proposals[None][8:] != proposals[0.9][8:]).any()
    with pytest.raises(UserInputError, match="mutate_prob"):
        get_strategy("optuna-nsga2")(space, OBJECTIVES, mutate_prob=1.5)


def test_bad_storage_url_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="cannot be opened"):
        get_strategy("optuna-tpe")(tiny_space(), OBJECTIVES, storage=f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_study_with_other_directions_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name="s", directions=["minimize", "minimize"])
    with pytest.raises(UserInputError, match="directions"):
        get_strategy("optuna-nsga2")(tiny_space(), OBJECTIVES, storage=url, study_name="s")
