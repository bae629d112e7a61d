"""Bundled experiment configs: a bare name resolves to the packaged YAML, a path stays a path, unknown names fail."""

from pathlib import Path

import pytest

from nas.bundled_configs import EXPERIMENTS_DIR, bundled_names, resolve_config
from nas.config import load_config
from search_spaces.errors import UserInputError

SHIPPED = ["nb201_spos", "nb201_spos_tiny", "nb201_table", "ofa_cifar10", "quickstart", "quickstart_tiny", "tiny_train"]


def test_the_experiments_ship_inside_the_package():
    import nas

    assert EXPERIMENTS_DIR == Path(nas.__file__).resolve().parent / "experiments"
    assert bundled_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_bundled_name_resolves_and_validates(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_config(name)
    assert path == EXPERIMENTS_DIR / f"{name}.yaml"
    assert load_config(path).name == name


def test_paths_stay_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("name: mine\n")
    assert resolve_config("quickstart") == Path("quickstart")
    (tmp_path / "tiny_train").mkdir()
    assert resolve_config("tiny_train") == EXPERIMENTS_DIR / "tiny_train.yaml"
    assert resolve_config("quickstart.yaml") == Path("quickstart.yaml")
    assert resolve_config("configs/quickstart") == Path("configs/quickstart")
    assert resolve_config(tmp_path / "x.yml") == tmp_path / "x.yml"


def test_unknown_bare_name_names_the_allowed_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=r"config 'quikstart' is neither a file nor a bundled experiment; "
                                             r"allowed: .*'quickstart'"):
        resolve_config("quikstart")
