"""Which stages a resumed run redoes when its config changed or `--from STAGE` is given."""

import pytest
import yaml

from nas.stages import STAGES, TABLE_STAGES, changed_keys, discard, mark_done, plan_rerun, read_stages
from search_spaces.errors import UserInputError

BASE = {"name": "r", "seed": 0, "data": {"name": "shapes", "num_train": 64},
        "train": {"batch_size": 8, "phases": [{"name": "full", "lr": 0.1}]},
        "targets": [{"device": "pixel-7", "budgets_ms": [5.0]}], "search": {"budget": 10}, "export": {}}


def changes(**edits):
    given = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in edits.items():
        node = given
        *parents, last = path.split("__")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return changed_keys(yaml.safe_dump(BASE), yaml.safe_dump(given))


def test_changed_keys_name_the_leaf_that_changed():
    assert changes(train__phases__0__lr=0.2) == {"train.phases[0].lr": (0.1, 0.2)}
    assert changes(targets__0__budgets_ms=[4.0]) == {"targets[0].budgets_ms": ([5.0], [4.0])}
    assert changes() == {}


def test_a_change_to_unfinished_stages_only_reruns_them():
    done = {"data", "latency", "train"}
    assert plan_rerun(changes(search__budget=20), done, STAGES, None, "c.yaml") == ["search", "export", "report"]
    # an infeasible budget stopped the latency stage: the fixed budget redoes latency, not training
    assert plan_rerun(changes(targets__0__budgets_ms=[9.0]), {"data"}, STAGES, None, "c.yaml") == [
        "latency", "search", "export", "report"]


def test_a_change_to_a_finished_stage_needs_from_at_or_before_it():
    done = set(STAGES)
    with pytest.raises(UserInputError, match=r"train.phases\[0\].lr changed \(0.1 -> 0.2\).*--from train"):
        plan_rerun(changes(train__phases__0__lr=0.2), done, STAGES, None, "c.yaml")
    with pytest.raises(UserInputError, match="--from train"):
        plan_rerun(changes(train__phases__0__lr=0.2), done, STAGES, "search", "c.yaml")
    assert plan_rerun(changes(train__phases__0__lr=0.2), done, STAGES, "train", "c.yaml") == [
        "train", "search", "export", "report"]
    # a budget is an input of latency and search, not of training
    assert plan_rerun(changes(targets__0__budgets_ms=[4.0]), done, STAGES, "latency", "c.yaml") == [
        "latency", "search", "export", "report"]
    assert plan_rerun({}, done, STAGES, "export", "c.yaml") == ["export", "report"]
    with pytest.raises(UserInputError, match="--from 'train' is not a stage of this run"):
        plan_rerun({}, done, TABLE_STAGES, "train", "c.yaml")


def test_discard_forgets_stages_and_removes_only_their_files(tmp_path):
    for stage in STAGES:
        mark_done(tmp_path, stage, {})
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "search" / "t").mkdir(parents=True)
    (tmp_path / "report.html").write_text("x")
    (tmp_path / "config.yaml").write_text("name: r")
    removed = discard(tmp_path, ["search", "export", "report"])
    assert sorted(p.name for p in removed) == ["report.html", "search"]
    assert set(read_stages(tmp_path)) == {"data", "latency", "train"}
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "config.yaml").is_file()
