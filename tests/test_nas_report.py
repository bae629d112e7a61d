"""The run report: what to deploy where, every section, self-contained HTML whose images all load in headless
Chromium, and Markdown."""

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from nas.report import write_report
from search_spaces import UserInputError, get_space


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture()
def run_dir(tmp_path):
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = space.strings(space.sample(40, rng))
    for device, budget in (("host-cpu", 2.0), ("pixel-7", 5.0)):
        target = f"{device}@{budget:g}ms"
        directory = tmp_path / "search" / target
        rows = [{"arch": a, "accuracy": 0.6 + 0.1 * rng.random(), "latency_ms": 1 + 5 * rng.random(),
                 "energy_mj": 2 + 3 * rng.random()} for a in archs]
        write_csv(directory / "history.csv", rows)
        (directory / "target.json").write_text(json.dumps({"target": target, "device": device,
                                                           "budgets_ms": [budget]}))
        sub = tmp_path / "subnets" / f"{device}-0"
        sub.mkdir(parents=True)
        predicted = {k: rows[0][k] for k in ("accuracy", "latency_ms", "energy_mj")}
        (sub / "arch.json").write_text(json.dumps({
            "arch": archs[0], "input_shape": [32, 32, 3], "class_names": ["a", "b"],
            "chosen_for": [{"target": target, "device": device, "budget_ms": budget, "predicted": predicted}]}))
        (sub / "metrics.json").write_text(json.dumps({
            "onnx_max_abs_diff": 3e-6, "host_cpu_latency_ms_measured": 2.5, "host_cpu_latency_spread_ms": [2.4, 2.7],
            "host_cpu_latency_ms_predicted": 1.1, "test_accuracy": 0.64, "num_test": 500}))
    write_csv(tmp_path / "metrics.csv", [{"step": s, "phase": "full" if s < 5 else "kernel", "loss": 2.0 / (1 + s)}
                                         for s in range(10)])
    return tmp_path


def test_report_has_every_section_and_png(run_dir):
    html_path = write_report(run_dir)
    text = html_path.read_text()
    for title in ("What to deploy where", "Device host-cpu", "Device pixel-7", "Search progress",
                  "Supernet training", "Host-CPU latency: predicted vs measured"):
        assert title in text
    assert text.index("What to deploy where") < text.index("Device host-cpu")
    # the deploy table names the file, the accuracy with its number of images, and whether the budget held:
    # host-cpu by the measured latency (2.5 ms > 2 ms), pixel-7 by the estimate
    assert "subnets/host-cpu-0/model.onnx" in text and "64.0% of 500 images" in text
    assert "no: measured 2.5 ms" in text and "yes (estimate" in text
    assert "float32, NHWC, shape (N, 32, 32, 3), values in [0, 1]" in text
    assert "src='http" not in text and "src=\"http" not in text  # self-contained
    assert len(re.findall(r"data:image/png;base64,", text)) == 5
    pngs = sorted(p.name for p in (run_dir / "report").glob("*.png"))
    assert pngs == ["host_cpu_latency.png", "pareto_host-cpu.png", "pareto_pixel-7.png", "progress.png",
                    "training.png"]
    md = (run_dir / "report.md").read_text()
    assert "![Accuracy vs latency](report/pareto_host-cpu.png)" in md


def test_empty_run_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="nothing to report"):
        write_report(tmp_path)
    with pytest.raises(UserInputError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_every_image_loads_in_headless_chromium(run_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    page = run_dir / "checked.html"
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
             "document.body.setAttribute('data-images', imgs.length + ':' +"
             "imgs.filter(i => i.complete && i.naturalWidth > 0).length); });</script></body>")
    page.write_text(write_report(run_dir).read_text().replace("</body>", probe))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-images="(\d+):(\d+)"', out.stdout)
    assert found, out.stderr[-2000:]
    total, loaded = map(int, found.groups())
    assert total == 5 and loaded == total
