"""`nas validate`: a path or a bundled name validates; --explain prints the reference with or without a config."""

import subprocess
import sys

from nas.bundled_configs import EXPERIMENTS_DIR
from nas.cli import main
from nas.config_reference import config_reference


def test_a_bundled_name_validates_from_any_directory(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nas.cli", "validate", "quickstart_tiny"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("quickstart_tiny (") and "valid (experiment 'quickstart_tiny'" in out.stdout


def test_a_path_validates_as_given(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text((EXPERIMENTS_DIR / "tiny_train.yaml").read_text().replace("name: tiny_train", "name: mine"))
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: valid (experiment 'mine', space 'ofa_mbv3'")


def test_explain_needs_no_config(capsys):
    assert main(["validate", "--explain"]) == 0
    assert capsys.readouterr().out == config_reference()


def test_explain_with_a_config_also_validates_it(capsys):
    assert main(["validate", "--explain", "tiny_train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(config_reference()) and "valid (experiment 'tiny_train'" in out


def test_neither_config_nor_explain_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "nas.cli", "validate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "the following arguments are required: config" in out.stderr


def test_unknown_name_exits_2_in_one_line():
    out = subprocess.run([sys.executable, "-m", "nas.cli", "validate", "quikstart"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == ("nas validate: error: config 'quikstart' is neither a file nor a bundled "
                                  "experiment; allowed: a path to an experiment YAML or one of ['nb201_spos', "
                                  "'nb201_spos_tiny', 'nb201_table', "
                                  "'ofa_cifar10', 'quickstart', 'quickstart_tiny', 'tiny_train']")
