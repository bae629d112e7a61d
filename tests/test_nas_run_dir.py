"""Run directories: a new run never overwrites another's files; resume needs the same config; metrics rows."""

from types import SimpleNamespace

import pytest

from nas.run_dir import MetricsLog, RunDir, open_run
from search_spaces.errors import UserInputError


def config(tmp_path, name="exp"):
    return SimpleNamespace(runs_dir=str(tmp_path / "runs"), name=name)


def test_new_run_writes_config_and_layout(tmp_path):
    run = open_run(config(tmp_path), "name: exp\n", resume=False)
    assert run.root == tmp_path / "runs" / "exp"
    assert run.config.read_text() == "name: exp\n"
    assert run.checkpoints == run.root / "checkpoints" and run.metrics == run.root / "metrics.csv"
    assert run.search("pi5") == run.root / "search" / "pi5"


def test_new_run_refuses_an_existing_run_and_leaves_it_alone(tmp_path):
    run = open_run(config(tmp_path), "name: exp\n", resume=False)
    run.metrics.write_text("step\n1\n")
    with pytest.raises(UserInputError, match="already exists.*--resume"):
        open_run(config(tmp_path), "name: exp\nseed: 1\n", resume=False)
    assert run.config.read_text() == "name: exp\n" and run.metrics.read_text() == "step\n1\n"


def test_resume_requires_the_stored_config(tmp_path):
    open_run(config(tmp_path), "name: exp\nseed: 0\n", resume=False)
    assert open_run(config(tmp_path), "name: exp\nseed: 0\n", resume=True).root.is_dir()
    with pytest.raises(UserInputError, match="line 2: stored 'seed: 0', given 'seed: 1'"):
        open_run(config(tmp_path), "name: exp\nseed: 1\n", resume=True)


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    foreign = tmp_path / "runs" / "exp"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not a hwnas run"):
        open_run(config(tmp_path), "name: exp\n", resume=True)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_resume_of_a_missing_run_starts_it(tmp_path):
    run = open_run(config(tmp_path), "name: exp\n", resume=True)
    assert run.config.read_text() == "name: exp\n"


def test_metrics_log_appends_and_drops_rows_after_a_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv", ("step", "loss", "acc"))
    for step in (1, 2, 3):
        log.append(step=step, loss=0.5 * step)
    log.append(step=3, acc=0.9)
    log.keep_until(2)
    assert [(r["step"], r["loss"], r["acc"]) for r in log.rows()] == [("1", "0.5", ""), ("2", "1.0", "")]
    log.append(step=3, loss=7)
    assert [r["step"] for r in MetricsLog(tmp_path / "metrics.csv", ("step", "loss", "acc")).rows()] == \
        ["1", "2", "3"]


def test_metrics_log_refuses_another_header(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,accuracy\n1,0.5\n")
    with pytest.raises(UserInputError, match="has columns"):
        MetricsLog(tmp_path / "metrics.csv", ("step", "loss"))


def test_run_dir_of_config(tmp_path):
    assert RunDir.of(config(tmp_path, "a")).root == tmp_path / "runs" / "a"
