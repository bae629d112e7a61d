"""Energy: MACs, bytes and active power terms, calibration from measured pairs, Jetson power-rail readers."""

import numpy as np
import pytest

from latency_models.energy import (EnergyModel, PowerRails, PowerSampler, fit_energy_model, fit_for_space,
                                   parse_tegrastats)
from latency_models.layers import layer_table
from search_spaces import get_space
from search_spaces.errors import UserInputError


def test_energy_terms_add_up():
    model = EnergyModel(pj_per_mac=2.0, pj_per_byte=10.0, active_power_w=5.0)
    np.testing.assert_allclose(model.energy_mj(1e9, 1e8, 3.0), 2.0 + 1.0 + 15.0)


def test_from_device_uses_device_constants():
    model = EnergyModel.from_device("raspberry-pi-5")
    assert model.active_power_w == 8.0 and model.pj_per_mac > 0 and "Horowitz" in model.source


def test_fit_recovers_constants():
    rng = np.random.default_rng(0)
    macs, moved, latency = rng.uniform(1e7, 1e9, 40), rng.uniform(1e6, 1e8, 40), rng.uniform(1, 20, 40)
    truth = EnergyModel(3.0, 50.0, 4.0)
    fitted = fit_energy_model(macs, moved, latency, truth.energy_mj(macs, moved, latency))
    np.testing.assert_allclose([fitted.pj_per_mac, fitted.pj_per_byte, fitted.active_power_w], [3.0, 50.0, 4.0],
                               rtol=1e-4)
    with pytest.raises(UserInputError, match="at least 3"):
        fit_energy_model(macs[:2], moved[:2], latency[:2], latency[:2])


def test_fit_for_space_on_nb201():
    space = get_space("nb201")
    archs = space.sample(30, 0)
    totals = layer_table(space, archs).totals()
    latency = totals["macs"] * 1e-7 + 1.0
    energy = EnergyModel(1.0, 20.0, 6.0).energy_mj(totals["macs"], totals["bytes"], latency)
    fitted = fit_for_space(space, archs, latency, energy)
    np.testing.assert_allclose(fitted.energy_mj(totals["macs"], totals["bytes"], latency), energy, rtol=1e-3)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_ina3221_hwmon_tree(tmp_path):
    hwmon = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for i, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400)], start=1):
        _write(hwmon / f"in{i}_label", label + "\n")
        _write(hwmon / f"in{i}_input", f"{mv}\n")
        _write(hwmon / f"curr{i}_input", f"{ma}\n")
    rails = PowerRails(tmp_path)
    assert rails.read() == pytest.approx({"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.0})
    assert rails.total() == pytest.approx(6.0)
    with PowerSampler(rails.total, interval_s=0.001) as sampler:
        pass
    assert sampler.samples and sampler.samples == pytest.approx([6.0] * len(sampler.samples))


def test_ina3221_iio_tree_sums_rails_without_input_rail(tmp_path):
    iio = tmp_path / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for i, (name, mw) in enumerate([("VDD_SYS_GPU", 1500), ("VDD_SYS_SOC", 900)]):
        _write(iio / f"rail_name_{i}", name)
        _write(iio / f"in_power{i}_input", str(mw))
    assert PowerRails(tmp_path).total() == pytest.approx(2.4)


def test_no_rails_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="INA3221"):
        PowerRails(tmp_path)


def test_parse_tegrastats_lines():
    new = "RAM 2000/7620MB CPU [5%@1510] VDD_IN 5011mW/4990mW VDD_CPU_GPU_CV 780mW/770mW VDD_SOC 1400mW/1390mW"
    old = "RAM 1500/3964MB GR3D_FREQ 0% POM_5V_IN 3018/3018 POM_5V_GPU 0/0 POM_5V_CPU 445/445"
    assert parse_tegrastats(new) == pytest.approx({"VDD_IN": 5.011, "VDD_CPU_GPU_CV": 0.78, "VDD_SOC": 1.4})
    assert parse_tegrastats(old)["POM_5V_IN"] == pytest.approx(3.018)
