"""Tests for `nas search`: files written, resume, multi-target layout, and one-line errors with exit status 2."""

import csv

import pytest

from nas.cli import main
from search_spaces import get_space


@pytest.fixture
def nb201_table(tmp_path):
    """A small hardware table: every NB201 cell, accuracy and latency from its operations."""
    space = get_space("nb201")
    archs = space.enumerate()
    path = tmp_path / "nb201.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "accuracy", "latency_ms"])
        for arch, row in zip(space.strings(archs), archs.astype(int)):
            writer.writerow([arch, 40 + 2 * (row >= 2).sum() + (row == 3).sum(), 1 + (row == 3).sum() +
                             0.3 * (row == 2).sum()])
    return path


def search_args(table, out, *extra):
    return ["search", "--space", "nb201", "--evaluator", f"table:{table}", "--objective", "accuracy:max",
            "--objective", "latency_ms:min", "--free-columns", "latency_ms", "--budget", "24", "--population",
            "8", "--out", str(out), "--no-progress", *extra]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_search_then_resume_with_a_larger_budget(nb201_table, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(search_args(nb201_table, out, "--constraint", "latency_ms<=3")) == 0
    assert len(rows(out / "history.csv")) == 24
    assert "24 expensive evaluations" in capsys.readouterr().out
    args = search_args(nb201_table, out, "--constraint", "latency_ms<=3", "--resume")
    args[args.index("--budget") + 1] = "40"
    assert main(args) == 0
    history = rows(out / "history.csv")
    assert len(history) == 40 and len({r["arch"] for r in history}) == 40
    assert all(float(r["latency_ms"]) <= 3 for r in rows(out / "pareto.csv"))
    assert "16 expensive evaluations" in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(nb201_table, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(search_args(nb201_table, out, "--constraint", "latency_ms<=0.5")) == 2
    err = capsys.readouterr().err
    assert "cannot be met" in err and "best achievable latency_ms is 1" in err and len(err.splitlines()) == 1
    assert not out.exists()
    out.mkdir()
    assert main(search_args(nb201_table, out)) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(search_args(nb201_table, tmp_path / "t", "--constraint", "latency_ms>3")) == 2
    assert main(search_args(tmp_path / "missing.csv", tmp_path / "u")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_targets_get_one_directory_each_and_share_evaluations(nb201_table, tmp_path, capsys):
    out = tmp_path / "multi"
    args = ["search", "--space", "nb201", "--evaluator", f"table:{nb201_table}", "--free-columns", "latency_ms",
            "--target", "tablecpu:2,4", "--budget", "16", "--population", "8", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tablecpu@2ms", "tablecpu@4ms"]
    for budget in (2, 4):
        history = rows(out / f"tablecpu@{budget}ms" / "history.csv")
        assert len(history) == 16
        assert all(float(r["latency_ms"]) <= budget for r in history)
    evaluated = int(capsys.readouterr().out.split()[0])
    union = {r["arch"] for b in (2, 4) for r in rows(out / f"tablecpu@{b}ms" / "history.csv")}
    assert evaluated == len(union) <= 32
