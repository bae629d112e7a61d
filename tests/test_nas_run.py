"""`nas run` end to end on the tiny quickstart: every artifact, ONNX parity, budgets met, and crash-safe resume."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "nas" / "experiments" / "quickstart_tiny.yaml"


def targets(run_dir: Path) -> list[str]:
    """The run's target names, from the budgets its latency stage resolved."""
    budgets = json.loads((run_dir / "budgets.json").read_text())
    return [f"{device}@{b:g}ms" for device, entry in budgets.items() for b in entry["budgets_ms"]]


def nas(*args, cwd):
    env = {**os.environ, "HWNAS_TABLE_CACHE": str(Path(cwd) / "table-cache")}
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)


def finish(process, timeout=900):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]
    return out


def write_config(directory: Path, name: str) -> Path:
    config = yaml.safe_load(TINY.read_text())
    config["name"] = name
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(run_dir: Path, target: str, name: str = "pareto.csv") -> list[dict]:
    with (run_dir / "search" / target / name).open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("nas_run")


@pytest.fixture(scope="module")
def finished(workdir):
    config = write_config(workdir, "tiny")
    out = finish(nas("run", str(config), cwd=workdir))
    return workdir / "runs" / "tiny", out


def test_every_artifact_exists_and_report_path_is_printed(finished):
    run, out = finished
    assert f"report: {(run / 'report.html').resolve()}" in out
    for relative in ("config.yaml", "metrics.csv", "stages.json", "budgets.json", "luts/host-cpu.json",
                     "luts/pixel-7.json", "report.html", "report.md"):
        assert (run / relative).is_file(), relative
    assert any((run / "checkpoints").iterdir())
    lut = json.loads((run / "luts" / "host-cpu.json").read_text())
    assert lut["metadata"]["method"] == "measured"
    for target in targets(run):
        for name in ("history.csv", "pareto.csv", "state.json"):
            assert (run / "search" / target / name).is_file()
    stages = json.loads((run / "stages.json").read_text())
    assert all(stages[s]["done"] for s in ("data", "train", "latency", "search", "export", "report"))


def test_relative_budgets_resolve_inside_each_devices_latency_range(finished):
    run, _ = finished
    budgets = json.loads((run / "budgets.json").read_text())
    assert set(budgets) == {"host-cpu", "pixel-7"}
    for device, entry in budgets.items():
        fastest, slowest = entry["latency_range_ms"]
        assert 0 < fastest < slowest
        for fraction, ms in zip(entry["relative"], entry["relative_ms"]):
            assert ms == pytest.approx(fastest + fraction * (slowest - fastest), rel=1e-3)
    assert len(budgets["pixel-7"]["budgets_ms"]) == 2 and len(targets(run)) == 3


def test_exported_subnets_learned_take_raw_images_and_meet_measured_budgets(finished):
    import numpy as np
    import onnxruntime as ort

    from nas.data import load_dataset
    from nas.export import load_subnet

    run, _ = finished
    subnets = sorted((run / "subnets").iterdir())
    assert subnets
    covered, accuracies = set(), []
    test = load_dataset("shapes", resolution=32, num_train=1024, num_val=256, num_test=256, seed=0).test
    for directory in subnets:
        info = json.loads((directory / "arch.json").read_text())
        metrics = json.loads((directory / "metrics.json").read_text())
        assert metrics["onnx_parity_ok"]
        assert metrics["onnx_max_abs_diff"] <= 1e-4 * max(1.0, metrics["onnx_max_abs_logit"])
        # model.onnx fed the raw test images reproduces the accuracy metrics.json records
        session = ort.InferenceSession(str(directory / "model.onnx"))
        logits = session.run(None, {"images": test.images})[0]
        assert metrics["num_test"] == len(test.labels) == 256
        assert np.mean(logits.argmax(1) == test.labels) == pytest.approx(metrics["test_accuracy"])
        np.testing.assert_allclose(np.asarray(load_subnet(directory)(test.images[:8])), logits[:8], atol=1e-3)
        accuracies.append(metrics["test_accuracy"])
        low = metrics["host_cpu_latency_spread_ms"][0]
        for choice in info["chosen_for"]:
            covered.add(choice["target"])
            if choice["device"] == "host-cpu":
                # the measured latency of the exported file, not the prediction the search filtered, with the
                # timing noise (10th percentile) and a 30% margin for a table measured earlier in the run
                assert low <= 1.3 * choice["budget_ms"], (metrics, choice)
    assert covered == set(targets(run))
    assert max(accuracies) >= 0.2  # 10 classes: chance is 0.1


def test_search_of_a_trained_run_prices_as_the_run_did(finished):
    """`nas search --evaluator supernet:RUN` uses the run's own tables and width (no actors needed to check)."""
    import argparse

    import numpy as np

    from nas.commands.search import _run_pricing
    from nas.config import load_config
    from nas.evaluators import cheap_metrics_for
    from nas.report import read_csv

    run, _ = finished
    args = argparse.Namespace(evaluator=f"supernet:{run}", no_progress=True)
    layer_options, paths = _run_pricing(args, ["host-cpu", "pixel-7"])
    assert layer_options["width_mult"] == 0.25
    space = load_config(run / "config.yaml").build_space()
    for target in targets(run):
        device = target.split("@")[0]
        rows = read_csv(run / "search" / target / "history.csv")
        cheap = cheap_metrics_for(space, ["latency_ms"], device=device, latency_paths=paths,
                                  layer_options=layer_options)
        archs = np.stack([space.from_string(r["arch"]) for r in rows])
        expected = [float(r["latency_ms"]) for r in rows]
        assert cheap(archs)["latency_ms"] == pytest.approx(expected, rel=1e-9)


def kill_when(process, condition, timeout=900):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"finished before it could be killed: {process.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_during_training_and_search_resumes_to_the_same_front(finished, workdir):
    reference, _ = finished
    config = write_config(workdir, "resumed")
    run = workdir / "runs" / "resumed"
    kill_when(nas("run", str(config), cwd=workdir),
              lambda: (run / "checkpoints").is_dir() and any(p.name.isdigit() for p in (run / "checkpoints").iterdir()))
    assert "train" not in json.loads((run / "stages.json").read_text())
    assert not (run / "search").exists()
    history = run / "search" / targets(reference)[-1] / "history.csv"
    kill_when(nas("run", str(config), "--resume", cwd=workdir),
              lambda: history.is_file() and len(history.read_text().splitlines()) > 1)
    finish(nas("run", str(config), "--resume", "--stop-after", "search", cwd=workdir))
    # the host-cpu table measured by the first run is reused on this machine: every front equals the
    # uninterrupted run's, host-cpu's included
    assert targets(run) == targets(reference)
    for target in targets(reference):
        assert rows(run, target) == rows(reference, target), target


def test_rerun_without_resume_refuses_and_keeps_files(finished, workdir):
    run, _ = finished
    before = (run / "report.html").stat().st_mtime_ns
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(workdir / "tiny.yaml")], cwd=workdir,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "already exists" in out.stderr
    assert (run / "report.html").stat().st_mtime_ns == before


def test_unreachable_budget_fails_in_its_stage_and_keeps_earlier_outputs(workdir):
    config = yaml.safe_load(TINY.read_text())
    host = dict(config["targets"][0])
    host.pop("budgets_relative")
    config.update(name="impossible", targets=[{**host, "budgets_ms": [0.001]}])
    path = workdir / "impossible.yaml"
    path.write_text(yaml.safe_dump(config))
    shutil.rmtree(workdir / "runs" / "impossible", ignore_errors=True)
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=workdir, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 2
    assert "stage 'latency' failed" in out.stderr and "best achievable" in out.stderr
    run = workdir / "runs" / "impossible"
    stages = json.loads((run / "stages.json").read_text())
    assert stages["data"]["done"] and "latency" not in stages and not (run / "checkpoints").exists()
    assert (run / "config.yaml").is_file()
    # the advertised recovery: fix the budget, rerun with --resume; the unfinished latency stage takes the change
    config["targets"][0]["budgets_ms"] = [50.0]
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path), "--resume", "--stop-after", "latency"],
                         cwd=workdir, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "targets[0].budgets_ms: [0.001] -> [50.0]" in out.stdout and "data: done earlier, skipped" in out.stdout
    assert json.loads((run / "budgets.json").read_text())["host-cpu"]["budgets_ms"] == [50.0]
    assert yaml.safe_load((run / "config.yaml").read_text())["targets"][0]["budgets_ms"] == [50.0]


def test_changed_finished_stage_needs_from_and_then_redoes_only_what_reads_it(finished, tmp_path):
    run, _ = finished
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(run, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["search"]["budget"] += 4
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    before = {p: p.stat().st_mtime_ns for p in (copy / "checkpoints").rglob("*") if p.is_file()}
    refused = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path), "--resume"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "search.budget changed" in refused.stderr and "--from search" in refused.stderr
    assert yaml.safe_load((copy / "config.yaml").read_text())["search"]["budget"] == config["search"]["budget"] - 4
    out = finish(nas("run", str(path), "--resume", "--from", "search", cwd=tmp_path))
    assert "redoing search, export, report" in out and "train: done earlier, skipped" in out
    assert {p: p.stat().st_mtime_ns for p in (copy / "checkpoints").rglob("*") if p.is_file()} == before
    for target in targets(copy):
        evaluated = [r for r in rows(copy, target, "history.csv") if r["accuracy"]]
        assert len(evaluated) == config["search"]["budget"], target
