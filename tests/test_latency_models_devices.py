"""Device registry: shipped specs load with sources, user directories add devices, bad files are clear errors."""

import json

import pytest

from latency_models.devices import get_device, list_devices, load_device_file, measured_tables
from search_spaces.errors import UserInputError

REQUIRED_DEVICES = ("host-cpu", "raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-tx2", "jetson-orin-nano",
                    "jetson-agx-orin", "pixel-4", "pixel-7")


def test_required_devices_ship_with_sources_for_every_number():
    names = list_devices()
    assert set(REQUIRED_DEVICES) <= set(names)
    assert any(get_device(n).kind == "npu" for n in names)
    for name in names:
        device = get_device(name)
        assert device.peak() > 0 and device.memory_bandwidth_gbs > 0
        assert device.power_w["active"] > device.power_w["idle"] > 0
        assert all(device.sources[k] for k in ("peak_gflops", "memory_bandwidth_gbs", "power_w", "energy"))


def test_unknown_device_lists_known_ones():
    with pytest.raises(UserInputError, match="raspberry-pi-5"):
        get_device("raspberry-pi-9")


def _spec(**overrides):
    spec = json.loads(get_device("raspberry-pi-5").path and open(get_device("raspberry-pi-5").path).read())
    spec.update(name="my-board", **overrides)
    return spec


def test_user_directory_adds_a_device(tmp_path, monkeypatch):
    (tmp_path / "my-board.json").write_text(json.dumps(_spec(kind="npu")))
    assert get_device("my-board", tmp_path).kind == "npu"
    monkeypatch.setenv("HWNAS_DEVICES_DIR", str(tmp_path))
    assert "my-board" in list_devices()


@pytest.mark.parametrize("change, message", [
    ({"kind": "fpga"}, "kind"),
    ({"memory_bandwidth_gbs": -1}, "memory_bandwidth_gbs"),
    ({"sources": {"peak_gflops": "x"}}, "sources"),
    ({"peak_gflops": {"fp64": 1.0}}, "fp64"),
])
def test_bad_device_files_name_the_key(tmp_path, change, message):
    path = tmp_path / "my-board.json"
    path.write_text(json.dumps(_spec(**change)))
    with pytest.raises(UserInputError, match=message):
        load_device_file(path)


def test_missing_keys_and_name_mismatch(tmp_path):
    spec = _spec()
    del spec["power_w"]
    (tmp_path / "my-board.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError, match="power_w"):
        load_device_file(tmp_path / "my-board.json")
    (tmp_path / "other.json").write_text(json.dumps(_spec()))
    with pytest.raises(UserInputError, match="must match"):
        load_device_file(tmp_path / "other.json")


def test_measured_tables_found_by_device_prefix(tmp_path):
    (tmp_path / "my-board-ofa_mbv3.json").write_text("{}")
    assert [p.name for p in measured_tables("my-board", tmp_path)] == ["my-board-ofa_mbv3.json"]


def test_precision_without_peak_is_an_error():
    with pytest.raises(UserInputError, match="int8"):
        get_device("jetson-nano").peak("int8")


def test_nas_devices_command(capsys, tmp_path):
    from nas.cli import main
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "jetson-orin-nano" in out and "measured tables" in out
    assert main(["devices", "pixel-7"]) == 0
    assert json.loads(capsys.readouterr().out)["sources"]["peak_gflops"]
    assert main(["devices", "pixel-99"]) == 2
    assert "known devices" in capsys.readouterr().err
    assert main(["profile", "--space", "nb201", "--device", "pixel-99", "--out", str(tmp_path / "t.json")]) == 2
