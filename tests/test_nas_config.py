"""Experiment configs: valid files load with defaults; every bad key or value names the file, key path and allowed."""

import pytest
import yaml

from nas.config import config_from_dict, dump_config, load_config
from search_spaces import UserInputError

VALID = {
    "name": "demo",
    "space": {"name": "ofa_mbv3", "resolutions": [32, 48]},
    "train": {"phases": [{"name": "full", "epochs": 1}, {"name": "kernel", "kernel": [3, 5, 7], "lr": 0.01}]},
    "targets": [{"device": "host-cpu", "budgets_ms": [1.5, 3]}],
}


def test_valid_config_fills_defaults_and_round_trips(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(VALID))
    config = load_config(path)
    assert config.train.phases[1].kernel == [3, 5, 7]
    assert config.targets[0].budgets_ms == [1.5, 3.0]
    assert config.build_space().resolutions == (32, 48)
    assert config.build_space().stage_strides == (2, 2, 2, 1, 2)
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))
    assert load_config(again) == config


def test_search_takes_any_number_of_objectives_each_once():
    objectives = ["accuracy:max", "latency_ms:min", "energy_mj:min", "params:min", "flops:min"]
    config = config_from_dict({**VALID, "search": {"objectives": objectives}}, source="exp.yaml")
    assert config.search.objectives == objectives
    with pytest.raises(UserInputError, match="each once"):
        config_from_dict({**VALID, "search": {"objectives": objectives + ["params:min"]}}, source="exp.yaml")


@pytest.mark.parametrize("patch, fragment", [
    ({"trian": {}}, "unknown key trian; allowed keys at top level"),
    ({"train": {"batch_size": 0}}, "train.batch_size = 0 is out of range; allowed: >= 1"),
    ({"train": {"optimizer": "lamb"}}, "train.optimizer = 'lamb' is not allowed; allowed: ['sgd', 'adamw']"),
    ({"train": {"phases": [{"name": "k", "kernel": [4]}]}}, "train.phases[0].kernel = [4]"),
    ({"train": {"phases": [{"name": "k", "lr": "fast"}]}}, "train.phases[0].lr must be a number"),
    ({"space": {"name": "resnet"}}, "unknown search space 'resnet'"),
    ({"space": {"name": "ofa_mbv3", "resolutions": [4]}}, "space.resolutions = 4 is out of range"),
    ({"space": {"name": "ofa_mbv3", "stage_strides": [1, 2]}},
     "space: ofa_mbv3: stage_strides must be 5 strides, each 1 or 2, got [1, 2]"),
    ({"data": {"name": "cifar10"}}, "data.root is required"),
    ({"targets": [{"device": "a"}, {"device": "a"}]}, "list a device twice"),
    ({"targets": [{"device": "a", "budgets_ms": [-1]}]}, "targets[0].budgets_ms = -1.0 is out of range"),
    ({"name": "../escape"}, "plain directory name"),
])
def test_bad_values_name_file_and_key(patch, fragment):
    with pytest.raises(UserInputError) as err:
        config_from_dict({**VALID, **patch}, source="exp.yaml")
    assert str(err.value).startswith("exp.yaml: ")
    assert fragment in str(err.value)


def test_missing_name_and_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="missing required key name"):
        config_from_dict({})
    with pytest.raises(UserInputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
