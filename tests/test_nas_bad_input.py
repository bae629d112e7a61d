"""Bad input as a hostile user gives it: every case exits 2 with one line naming the key or file, before any work,
and leaves nothing behind; outputs that exist are never overwritten."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from nas.cli import main

TINY = Path(__file__).resolve().parents[1] / "nas" / "experiments" / "quickstart_tiny.yaml"


def tiny(**changes) -> dict:
    config = yaml.safe_load(TINY.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[int(last) if last.isdigit() else last] = value
    return config


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


CONFIG_CASES = {
    "unknown device": (tiny(**{"targets.1.device": "pixel-99"}), "unknown device 'pixel-99'"),
    "empty budgets": (tiny(**{"targets.1.budgets_relative": []}), r"targets\[1\] \(pixel-7\) has no budget"),
    "missing predictor": (tiny(**{"targets.1.latency_model": "predictor", "targets.1.predictor": "no.json",
                                  "targets.0.latency_model": "predictor", "targets.0.predictor": "no.json"}),
                          r"targets\[0\].predictor = '.*no.json' does not exist"),
    "mixed latency models": (tiny(**{"targets.1.latency_model": "predictor", "targets.1.predictor": "p.json"}),
                             "mix latency_model 'predictor' with tables"),
    "predictor ignored": (tiny(**{"targets.1.predictor": "p.json"}), "would be ignored"),
    "missing data root": (tiny(**{"data.name": "cifar10", "data.root": "nowhere"}),
                          "data.root = '.*nowhere' is not an existing directory"),
    "huge resolution": (tiny(**{"space.resolutions": [100000]}), "space.resolutions = 100000 is out of range; allowed: <= 1024"),
    "infinite lr": (tiny(**{"train.phases.0.lr": float("inf")}), r"lr = inf is not allowed; allowed: a finite"),
    "nan budget": (tiny(**{"targets.1.budgets_ms": [float("nan")]}), "allowed: a finite number"),
    "endless epochs": (tiny(**{"train.phases.0.epochs": 1e12}), "epochs = 1000000000000.0 is out of range"),
    "huge batch": (tiny(**{"train.batch_size": 10**12}), "batch_size = 1000000000000 is out of range"),
    "batch above data": (tiny(**{"train.batch_size": 2048}), "batch_size = 2048 is more than data.num_train"),
    "memory": (tiny(**{"data.num_val": 9_000_000}), "the run needs .* GiB of memory"),
    "digits too small": (tiny(**{"data.name": "digits", "data.num_train": 1700}), "holds 1,797 images"),
    "tiny width": (tiny(**{"supernet.width_mult": 1e-9}), "width_mult = 1e-09 is out of range"),
    "negative seed": (tiny(seed=-1), "seed = -1 is out of range"),
    "fewer classes than data": (tiny(**{"supernet.num_classes": 3}), "fewer than the 10 classes"),
    "bad objective": (tiny(**{"search.objectives": ["accuracy:max", "latency_ms:max"]}),
                      r"search.objectives\[1\] = 'latency_ms:max' is not allowed"),
    "removed key": (tiny(**{"export.onnx": False}), "unknown key export.onnx"),
    "unreachable budget": (tiny(**{"targets.1.budgets_ms": [0.001]}),
                           r"targets\[1\] \(pixel-7\): target 'pixel-7@0.001'.* latency_ms<=0.001 cannot be met.*best achievable"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_validate_refuses_what_a_run_would_fail_on_or_misread(case, tmp_path, capsys):
    config, message = CONFIG_CASES[case]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    line = one_error_line(capsys)
    assert str(path) in line
    assert re.search(message, line), line


def test_run_refuses_the_same_before_writing_anything(tmp_path, capsys):
    config, _ = CONFIG_CASES["unknown device"]
    config["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    assert "unknown device" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_duplicate_keys_and_non_utf8_configs_are_refused(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text(TINY.read_text() + "seed: 3\n")
    assert main(["validate", str(path)]) == 2
    assert "key 'seed' is given twice (first at line 7)" in one_error_line(capsys)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(TINY.read_text().replace("name: quickstart_tiny", "name: caf\u00e9").encode("latin-1"))
    assert main(["validate", str(path)]) == 2
    assert "not UTF-8 text (byte 0xe9" in one_error_line(capsys)


def test_input_paths_are_relative_to_the_config_file(tmp_path, capsys, monkeypatch):
    data = tmp_path / "configs" / "data"
    data.mkdir(parents=True)
    config = tiny(**{"data.name": "npz", "data.root": "data/set.npz"})
    path = tmp_path / "configs" / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(path)]) == 2
    assert f"'{data / 'set.npz'}' is not an existing file" in one_error_line(capsys)
    (data / "set.npz").write_bytes(b"")
    assert main(["validate", str(path)]) == 0


CLI_CASES = [
    ["sample", "nb201", "--seed", "-5"],
    ["sample", "nb201", "-n", "1000000000000"],
    ["search", "--space", "nb201", "--evaluator", "table:t.csv", "--budget", "3", "--seed", "-1", "--out", "OUT"],
    ["search", "--space", "nb201", "--evaluator", "table:t.csv", "--budget", "3", "--population", "-3",
     "--out", "OUT"],
    ["search", "--space", "nb201", "--evaluator", "table:t.csv", "--budget", "3", "--population", "0",
     "--out", "OUT"],
    ["search", "--space", "nb201", "--evaluator", "table:t.csv", "--budget", "0", "--out", "OUT"],
    ["profile", "--space", "nb201", "--device", "host-cpu", "--out", "OUT", "--num-classes", "0"],
    ["profile", "--space", "ofa_mbv3", "--device", "host-cpu", "--out", "OUT", "--width-mult", "-1"],
    ["profile", "--space", "ofa_mbv3", "--device", "host-cpu", "--out", "OUT", "--repeats", "nan"],
    ["train", "tiny_train", "--max-steps", "-2"],
]


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_out_of_range_options_exit_2_and_leave_no_output(argv, tmp_path, capsys):
    argv = [str(tmp_path / "OUT") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = one_error_line(capsys)
    assert "out of range" in line or "is not an integer" in line, line
    assert not (tmp_path / "OUT").exists()


def test_latency_fit_and_predict_never_overwrite(tmp_path, capsys):
    out = tmp_path / "model.json"
    out.write_text("mine")
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(tmp_path / "m.csv"),
                 "--out", str(out)]) == 2
    assert "never overwrites" in one_error_line(capsys) and out.read_text() == "mine"
    predictions = tmp_path / "p.csv"
    predictions.write_text("mine")
    assert main(["latency", "predict", "--model", str(out), "--archs", str(tmp_path / "a.csv"),
                 "--out", str(predictions)]) == 2
    assert "never overwrites" in one_error_line(capsys) and predictions.read_text() == "mine"


def test_report_keeps_a_users_own_report_files(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("step,phase,loss\n1,full,2.0\n")
    (tmp_path / "report.html").write_text("<html>my notes</html>")
    assert main(["report", str(tmp_path)]) == 2
    assert "was not written by `nas report`" in one_error_line(capsys)
    assert (tmp_path / "report.html").read_text() == "<html>my notes</html>"
    assert not (tmp_path / "report").exists()


def test_unwritable_output_is_one_line_not_a_traceback(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    table = tmp_path / "t.csv"
    table.write_text("arch,accuracy\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10\n")
    assert main(["search", "--space", "nb201", "--evaluator", f"table:{table}", "--budget", "3",
                 "--out", str(blocked / "out")]) == 2
    assert f"cannot write or read {blocked / 'out'}" in one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_run_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("step,phase,loss\n1,full,2.0\n")
    tmp_path.chmod(0o555)
    try:
        assert main(["report", str(tmp_path)]) == 2
        assert "Permission denied" in one_error_line(capsys)
    finally:
        tmp_path.chmod(0o755)


NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NB201_B = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


@pytest.mark.parametrize("rows, message", [
    ([f"{NB201_A},70,-3"], "column 'latency_ms' is -3 at line 2"),
    ([f"{NB201_A},70,inf"], "column 'latency_ms' is inf at line 2"),
    ([f"{NB201_A},inf,2"], "column 'accuracy' is inf at line 2"),
    ([f"{NB201_A},70,2", f"{NB201_B},60,1", f"{NB201_A},71,2"], "listed at lines 2 and 4 with different accuracy"),
])
def test_search_refuses_a_table_with_impossible_or_conflicting_values(rows, message, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("arch,accuracy,latency_ms\n" + "\n".join(rows) + "\n")
    assert main(["search", "--space", "nb201", "--evaluator", f"table:{table}", "--budget", "3",
                 "--out", str(tmp_path / "out")]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def _table_json(entries: str) -> str:
    from latency_models import lut

    metadata = {key: "x" for key in lut.METADATA_KEYS} | {"method": lut.METHODS[0]}
    return (f'{{"schema": "{lut.SCHEMA}", "schema_version": {lut.SCHEMA_VERSION}, '
            f'"metadata": {json.dumps(metadata)}, "entries": {{{entries}}}}}')


@pytest.mark.parametrize("entries, message", [
    ('"L": {"mean": -3.0, "std": 0.1, "count": 5}', "'entries.L.mean': -3.0 is not allowed"),
    ('"L": {"mean": Infinity, "std": 0.1, "count": 5}', "'entries.L.mean': inf is not allowed"),
    ('"L": {"mean": 1.0, "std": 0.1, "count": 5}, "L": {"mean": 3.0, "std": 0.1, "count": 5}',
     "key 'L' is given twice"),
])
def test_lookup_tables_with_impossible_or_repeated_entries_are_refused(entries, message, tmp_path):
    from latency_models.lut import LookupTable
    from search_spaces.errors import UserInputError

    path = tmp_path / "t.json"
    path.write_text(_table_json('"L": {"mean": 1.0, "std": 0.1, "count": 5}'))
    assert LookupTable.load(path).entries["L"]["mean"] == 1.0
    path.write_text(_table_json(entries))
    with pytest.raises(UserInputError, match=re.escape(message)):
        LookupTable.load(path)


def test_measurements_of_one_architecture_that_disagree_are_refused(tmp_path, capsys):
    from search_spaces import get_space

    space = get_space("nb201")
    archs = [space.to_string(a) for a in space.sample(6, 0)]
    rows = [f"{a},{1.0 + i}" for i, a in enumerate(archs)] + [f"{archs[2]},{9.0}"]
    (tmp_path / "m.csv").write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "p.json")]) == 2
    assert "lines 4 and 8" in one_error_line(capsys) and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("constraint, message", [
    ("latency_ms<=0.5", "latency_ms<=0.5 cannot be met by any architecture of space 'nb201'; the best "
                        "achievable latency_ms is 1"),
    ("lat<=5", "metric 'lat' is not produced"),
])
def test_table_search_config_with_unmeetable_or_unknown_constraint_is_refused(constraint, message, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text(f"arch,accuracy,latency_ms\n{NB201_A},70,2\n{NB201_B},60,1\n")
    config = {"name": "t", "space": {"name": "nb201"},
              "search": {"evaluator": "table:t.csv", "constraints": [constraint]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    assert message in one_error_line(capsys)


def test_search_refuses_a_table_constraint_no_row_meets(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text(f"arch,accuracy,latency_ms\n{NB201_A},70,2\n{NB201_B},60,1\n")
    assert main(["search", "--space", "nb201", "--evaluator", f"table:{table}", "--constraint", "latency_ms<=0.5",
                 "--budget", "2", "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert "latency_ms<=0.5 cannot be met" in line and f"best achievable latency_ms is 1 ({NB201_B})" in line
    assert not (tmp_path / "out").exists()
