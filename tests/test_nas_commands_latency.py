"""Tests of `nas latency fit` and `nas latency predict` through the CLI entry point."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nas.cli import main
from search_spaces import get_space

OP_COST = np.array([0.0, 0.02, 0.3, 1.0, 0.15])


def write_measurements(path, n: int = 40, seed: int = 0, energy: bool = True):
    """Distinct nb201 cells with additive synthetic latency (and energy = 1.4 x latency)."""
    space = get_space("nb201")
    archs = np.unique(space.canonical(space.sample(4 * n, seed)), axis=0)[:n]
    ops = np.where(space.active(archs), archs, 0)
    latency = 0.5 + OP_COST[ops].sum(1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "latency_ms"] + (["energy_mj"] if energy else []))
        for arch, ms in zip(archs, latency):
            writer.writerow([space.to_string(arch), ms] + ([1.4 * ms] if energy else []))
    return space, archs, latency


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latency")
    space, archs, latency = write_measurements(folder / "m.csv")
    code = main(["latency", "fit", "--space", "nb201", "--measurements", str(folder / "m.csv"),
                 "--out", str(folder / "model.json"), "--device", "synthetic-board"])
    return folder, code


def test_fit_writes_a_model_file_with_schema_space_device_and_date(fitted):
    folder, code = fitted
    assert code == 0
    model = json.loads((folder / "model.json").read_text())
    assert model["schema_version"] == 1 and model["space"]["name"] == "nb201"
    assert model["device"] == "synthetic-board" and model["created"]
    assert set(model["metrics"]) == {"latency_ms", "energy_mj"}


def test_predict_writes_arch_latency_energy_for_every_row_in_order(fitted):
    folder, _ = fitted
    space = get_space("nb201")
    archs = space.sample(30, 7)
    strings = space.strings(archs)
    with open(folder / "a.csv", "w", newline="") as f:
        csv.writer(f).writerows([["arch", "note"]] + [[s, "x"] for s in strings])
    assert main(["latency", "predict", "--model", str(folder / "model.json"), "--archs", str(folder / "a.csv"),
                 "--out", str(folder / "p.csv")]) == 0
    with open(folder / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == strings and list(rows[0]) == ["arch", "latency_ms", "energy_mj"]
    truth = 0.5 + OP_COST[np.where(space.active(archs), archs, 0)].sum(1)
    predicted = np.array([float(r["latency_ms"]) for r in rows])
    assert np.mean(np.abs(predicted / truth - 1) <= 0.1) > 0.9
    np.testing.assert_allclose([float(r["energy_mj"]) for r in rows], 1.4 * predicted, rtol=0.05)


def test_fit_error_names_file_row_and_value(tmp_path, capsys):
    write_measurements(tmp_path / "m.csv", n=10, energy=False)
    lines = (tmp_path / "m.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",0"
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    code = main(["latency", "fit", "--space", "nb201", "--measurements", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "model.json")])
    err = capsys.readouterr().err
    assert code == 2 and "m.csv" in err and "row 4" in err and "'0'" in err
    assert not (tmp_path / "model.json").exists()


def test_predict_with_a_missing_model_or_arch_column_is_exit_2(fitted, tmp_path, capsys):
    folder, _ = fitted
    (tmp_path / "a.csv").write_text("architecture\nfoo\n")
    assert main(["latency", "predict", "--model", str(tmp_path / "none.json"), "--archs", str(tmp_path / "a.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["latency", "predict", "--model", str(folder / "model.json"), "--archs", str(tmp_path / "a.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "no 'arch' column" in capsys.readouterr().err


def test_resolution_is_refused_for_a_space_without_it(tmp_path, capsys):
    write_measurements(tmp_path / "m.csv", n=10)
    assert main(["latency", "fit", "--space", "nb201", "--resolution", "32", "--measurements",
                 str(tmp_path / "m.csv"), "--out", str(tmp_path / "model.json")]) == 2
    assert "--resolution" in capsys.readouterr().err
