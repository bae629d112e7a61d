"""`nas run nb201_spos_tiny` end to end: the SPOS supernet trained (with a few-shot split), searched on host-cpu and
a device model, exported subnets that ONNX Runtime runs on raw images, and the report."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nas_run_spos")
    env = {**os.environ, "HWNAS_TABLE_CACHE": str(workdir / "table-cache")}
    done = subprocess.run([sys.executable, "-m", "nas.cli", "run", "nb201_spos_tiny"], cwd=workdir,
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return workdir / "runs" / "nb201_spos_tiny"


def test_the_run_trains_searches_exports_and_reports(finished):
    stages = json.loads((finished / "stages.json").read_text())
    assert all(stages[s]["done"] for s in ("data", "train", "latency", "search", "export", "report"))
    assert (finished / "report.html").is_file()
    budgets = json.loads((finished / "budgets.json").read_text())
    assert set(budgets) == {"host-cpu", "pixel-7"}
    metrics = (finished / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,phase,loss") and any(",few-shot," in line for line in metrics)


def test_exported_cells_run_in_onnx_runtime_on_raw_images(finished):
    import onnxruntime as ort

    from nas.data import load_dataset
    from nas.export import load_subnet
    from search_spaces import get_space
    from search_spaces.nb201 import OPS

    space = get_space("nb201")
    test = load_dataset("shapes", resolution=16, num_train=256, num_val=64, num_test=64, seed=0).test
    subnets = sorted((finished / "subnets").iterdir())
    assert subnets
    for directory in subnets:
        info = json.loads((directory / "arch.json").read_text())
        metrics = json.loads((directory / "metrics.json").read_text())
        assert info["network"]["name"] == "StaticNB201"
        arch = space.from_string(info["arch"])
        assert info["network"]["ops"] == [OPS[op] if active else "none"  # edges that reach the output only
                                          for op, active in zip(arch, space.active(arch)[0])]
        assert metrics["onnx_parity_ok"]
        logits = ort.InferenceSession(str(directory / "model.onnx")).run(None, {"images": test.images})[0]
        assert np.mean(logits.argmax(1) == test.labels) == pytest.approx(metrics["test_accuracy"])
        np.testing.assert_allclose(np.asarray(load_subnet(directory)(test.images[:8])), logits[:8], atol=1e-3)
        assert metrics["host_cpu_latency_ms_measured"] > 0
