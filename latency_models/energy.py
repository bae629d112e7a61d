"""Energy: per-layer MACs × energy/MAC + bytes × energy/byte + active power × latency (device constants with
sources), calibration from measured (latency, energy) pairs, and Jetson power-rail readers (INA3221, tegrastats)."""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latency_models.devices import get_device
from latency_models.layers import layer_bytes, layer_macs, space_layers
from latency_models.roofline import BYTES_PER_ELEMENT
from search_spaces.errors import UserInputError


@dataclass(frozen=True)
class EnergyModel:
    """energy_mJ = MACs × pj_per_mac·1e-9 + bytes × pj_per_byte·1e-9 + active_power_w × latency_ms."""

    pj_per_mac: float
    pj_per_byte: float
    active_power_w: float
    bytes_per_element: int = 4
    source: str = ""

    @classmethod
    def from_device(cls, device, precision: str | None = None) -> "EnergyModel":
        device = get_device(device)
        precision = precision or device.default_precision
        return cls(device.pj_per_mac(precision), float(device.energy["pj_per_byte"]),
                   float(device.power_w["active"]), BYTES_PER_ELEMENT[precision],
                   f"device {device.name}: {device.sources['energy']}; power: {device.sources['power_w']}")

    def energy_mj(self, macs, bytes_moved, latency_ms) -> np.ndarray:
        macs, bytes_moved, latency_ms = (np.asarray(v, dtype=np.float64) for v in (macs, bytes_moved, latency_ms))
        return macs * self.pj_per_mac * 1e-9 + bytes_moved * self.pj_per_byte * 1e-9 + self.active_power_w * latency_ms

    def per_layer(self, layers, latency_ms) -> np.ndarray:
        """(U,) energy in mJ of each layer, given its latency in ms."""
        macs = np.array([layer_macs(l) for l in layers], dtype=np.float64)
        moved = np.array([layer_bytes(l, self.bytes_per_element) for l in layers], dtype=np.float64)
        return self.energy_mj(macs, moved, latency_ms)

    def evaluator(self, space, latency_per_layer, overhead_ms: float = 0.0, **layer_options):
        """`f(archs) -> (N,)` energy in mJ, one gather + sum like the lookup table's latency."""
        layers = space_layers(space, **layer_options)
        summed = layers.compile(self.per_layer(layers.layers, latency_per_layer))
        fixed = self.active_power_w * overhead_ms
        return lambda archs: summed(archs) + fixed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EnergyModel":
        return cls(**data)


def fit_energy_model(macs, bytes_moved, latency_ms, energy_mj, *, bytes_per_element: int = 4,
                     source: str = "fitted") -> EnergyModel:
    """Non-negative least squares of measured energies on (MACs, bytes, latency): the calibrated constants."""
    from scipy.optimize import nnls
    features = np.stack([np.asarray(macs, np.float64) * 1e-9, np.asarray(bytes_moved, np.float64) * 1e-9,
                         np.asarray(latency_ms, np.float64)], axis=1)
    target = np.asarray(energy_mj, dtype=np.float64)
    if features.shape[0] < 3 or target.shape != (features.shape[0],):
        raise UserInputError(f"energy fit needs at least 3 (latency, energy) pairs of equal length, got "
                             f"{features.shape[0]} architectures and {target.shape[0]} energies")
    scale = np.maximum(np.abs(features).max(0), 1e-30)
    coef, _ = nnls(features / scale, target)
    coef = coef / scale
    return EnergyModel(float(coef[0]), float(coef[1]), float(coef[2]), bytes_per_element,
                       f"{source}: NNLS on {len(target)} measured (latency, energy) pairs")


def fit_for_space(space, archs, latency_ms, energy_mj, *, bytes_per_element: int = 4, **layer_options):
    """Calibrates an EnergyModel from measured per-architecture latency and energy."""
    totals = space_layers(space, **layer_options).table(archs).totals(bytes_per_element)
    return fit_energy_model(totals["macs"], totals["bytes"], latency_ms, energy_mj,
                            bytes_per_element=bytes_per_element, source=f"fitted on {space.name}")


# ---------------------------------------------------------------- Jetson power rails

INA3221_HWMON = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
INA3221_IIO = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


class PowerRails:
    """Reads a Jetson's INA3221 rails from sysfs: JetPack 5+ hwmon (`in<i>_label`, `in<i>_input` mV,
    `curr<i>_input` mA) and JetPack 4 iio (`rail_name_<i>`, `in_power<i>_input` mW). `root` is '/' on a board."""

    def __init__(self, root="/"):
        self.root = Path(root)
        self.rails = self._discover()
        if not self.rails:
            raise UserInputError(f"no INA3221 power rails under {self.root} (looked for {INA3221_HWMON} and "
                                 f"{INA3221_IIO}); energy measurement needs a Jetson or a sysfs copy")

    def _discover(self) -> dict[str, tuple]:
        rails: dict[str, tuple] = {}
        for hwmon in sorted(self.root.glob(INA3221_HWMON)):
            for label in sorted(hwmon.glob("in*_label")):
                i = label.name[2:-len("_label")]
                volt, curr = hwmon / f"in{i}_input", hwmon / f"curr{i}_input"
                if volt.exists() and curr.exists():
                    rails[label.read_text().strip()] = ("hwmon", volt, curr)
        for iio in sorted(self.root.glob(INA3221_IIO)):
            for name in sorted(iio.glob("rail_name_*")):
                i = name.name[len("rail_name_"):]
                power = iio / f"in_power{i}_input"
                if power.exists():
                    rails[name.read_text().strip()] = ("iio", power)
        return rails

    def read(self) -> dict[str, float]:
        """Instantaneous power per rail in W."""
        out = {}
        for name, spec in self.rails.items():
            if spec[0] == "hwmon":
                out[name] = _read_number(spec[1]) * _read_number(spec[2]) * 1e-6
            else:
                out[name] = _read_number(spec[1]) * 1e-3
        return out

    def total(self) -> float:
        """Board input power in W (VDD_IN / POM_5V_IN when present, else the sum of rails)."""
        powers = self.read()
        for name in TOTAL_RAILS:
            if name in powers:
                return powers[name]
        return float(sum(powers.values()))


_TEGRASTATS_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Instantaneous rail powers in W from one tegrastats line ('VDD_IN 5011mW/4990mW' or 'POM_5V_IN 3018/3018')."""
    return {name: int(now) * 1e-3 for name, now, _ in _TEGRASTATS_RAIL.findall(line)
            if name.startswith(("VDD", "POM", "VIN"))}


class PowerSampler:
    """Samples a power reader (`() -> W`) on a background thread; `samples` (W) after the `with` block."""

    def __init__(self, read_power, interval_s: float = 0.01):
        self.read_power = read_power
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(float(self.read_power()))
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if not self.samples:
            self.samples.append(float(self.read_power()))
