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
TINY = ROOT / "experiments" / "quickstart_tiny.yaml"
TARGETS = ("host-cpu@50ms", "pixel-7@0.2ms")


def nas(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


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
    for relative in ("config.yaml", "metrics.csv", "stages.json", "luts/host-cpu.json", "luts/pixel-7.json",
                     "report.html", "report.md"):
        assert (run / relative).is_file(), relative
    assert any((run / "checkpoints").iterdir())
    lut = json.loads((run / "luts" / "host-cpu.json").read_text())
    assert lut["metadata"]["method"] == "measured"
    for target in TARGETS:
        for name in ("history.csv", "pareto.csv", "state.json"):
            assert (run / "search" / target / name).is_file()
    stages = json.loads((run / "stages.json").read_text())
    assert all(stages[s]["done"] for s in ("data", "train", "latency", "search", "export", "report"))


def test_exported_subnets_pass_parity_and_meet_their_budgets(finished):
    from nas.export import load_subnet

    run, _ = finished
    subnets = sorted((run / "subnets").iterdir())
    assert subnets
    covered = set()
    for directory in subnets:
        info = json.loads((directory / "arch.json").read_text())
        metrics = json.loads((directory / "metrics.json").read_text())
        assert (directory / "model.onnx").is_file() and (directory / "params").is_dir()
        assert metrics["onnx_parity_ok"]
        assert metrics["onnx_max_abs_diff"] <= 1e-4 * max(1.0, metrics["onnx_max_abs_logit"])
        assert metrics["host_cpu_latency_ms_measured"] > 0 and "host_cpu_latency_ms_predicted" in metrics
        for choice in info["chosen_for"]:
            assert choice["predicted"]["latency_ms"] <= choice["budget_ms"]
            covered.add(choice["target"])
        resolution = info["input_shape"][0]
        logits = load_subnet(directory)(__import__("numpy").zeros((2, resolution, resolution, 3), "float32"))
        assert logits.shape[0] == 2
    assert covered == set(TARGETS)


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
    history = run / "search" / TARGETS[1] / "history.csv"
    kill_when(nas("run", str(config), "--resume", cwd=workdir),
              lambda: history.is_file() and len(history.read_text().splitlines()) > 1)
    finish(nas("run", str(config), "--resume", "--stop-after", "search", cwd=workdir))
    # pixel-7's model is deterministic: its whole front must be the uninterrupted run's
    assert rows(run, TARGETS[1]) == rows(reference, TARGETS[1])
    # each run measures its own host-cpu table, so there only the (shared, cached) accuracies must agree
    accuracy = {r["arch"]: r["accuracy"] for r in rows(reference, TARGETS[0], "history.csv")}
    resumed = rows(run, TARGETS[0], "history.csv")
    assert resumed and all(accuracy.get(r["arch"], r["accuracy"]) == r["accuracy"] for r in resumed)


def test_rerun_without_resume_refuses_and_keeps_files(finished, workdir):
    run, _ = finished
    before = (run / "report.html").stat().st_mtime_ns
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(workdir / "tiny.yaml")], cwd=workdir,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "already exists" in out.stderr
    assert (run / "report.html").stat().st_mtime_ns == before


def test_unreachable_budget_fails_in_its_stage_and_keeps_earlier_outputs(workdir):
    config = yaml.safe_load(TINY.read_text())
    config.update(name="impossible", targets=[{"device": "pixel-7", "budgets_ms": [0.001]}])
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
