"""The device registry: one JSON spec per device (peak compute per precision, bandwidth, power, runtime, sources),
shipped in `latency_models/devices/` and added by users from `$HWNAS_DEVICES_DIR` or an explicit directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from latency_models.json_files import read_json
from search_spaces.errors import UserInputError

SCHEMA_VERSION = 1
BUILTIN_DIR = Path(__file__).resolve().parent / "devices"
TABLES_DIR = Path(__file__).resolve().parent / "tables"
DEVICES_ENV = "HWNAS_DEVICES_DIR"
KINDS = ("cpu", "gpu", "npu")
PRECISIONS = ("fp32", "fp16", "int8")
REQUIRED = ("name", "kind", "runtime", "peak_gflops", "memory_bandwidth_gbs", "power_w", "energy", "sources")
SOURCED = ("peak_gflops", "memory_bandwidth_gbs", "power_w", "energy")


@dataclass(frozen=True)
class Device:
    """A device spec. `peak_gflops` is per precision (GOP/s for int8); power in W; energy constants in pJ."""

    name: str
    kind: str
    runtime: dict
    peak_gflops: dict
    memory_bandwidth_gbs: float
    power_w: dict
    energy: dict
    sources: dict
    description: str = ""
    default_precision: str = "fp32"
    path: str = ""
    extra: dict = field(default_factory=dict)

    def peak(self, precision: str | None = None) -> float:
        """Peak GFLOP/s at `precision` (default: the device's default precision)."""
        precision = precision or self.default_precision
        if precision not in self.peak_gflops:
            raise UserInputError(f"device {self.name!r} ({self.path}) has no peak_gflops for precision "
                                 f"{precision!r}; it lists {sorted(self.peak_gflops)}")
        return float(self.peak_gflops[precision])

    def pj_per_mac(self, precision: str | None = None) -> float:
        precision = precision or self.default_precision
        table = self.energy["pj_per_mac"]
        if precision not in table:
            raise UserInputError(f"device {self.name!r} ({self.path}) has no energy.pj_per_mac for precision "
                                 f"{precision!r}; it lists {sorted(table)}")
        return float(table[precision])

    @property
    def runtime_name(self) -> str:
        return str(self.runtime.get("name", ""))

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION, "name": self.name, "description": self.description,
               "kind": self.kind, "runtime": self.runtime, "default_precision": self.default_precision,
               "peak_gflops": self.peak_gflops, "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
               "power_w": self.power_w, "energy": self.energy, "sources": self.sources}
        return {**out, **self.extra}


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserInputError(f"{where}: must be a positive number, got {value!r}")
    return float(value)


def _check_numbers(data: dict, where: str) -> None:
    peak = data["peak_gflops"]
    if not isinstance(peak, dict) or not peak:
        raise UserInputError(f"{where} key 'peak_gflops': must map precisions {list(PRECISIONS)} to GFLOP/s")
    for precision, value in peak.items():
        if precision not in PRECISIONS:
            raise UserInputError(f"{where} key 'peak_gflops.{precision}': unknown precision; allowed {PRECISIONS}")
        _positive(value, f"{where} key 'peak_gflops.{precision}'")
    _positive(data["memory_bandwidth_gbs"], f"{where} key 'memory_bandwidth_gbs'")
    for key in ("active", "idle"):
        _positive(data["power_w"].get(key) if isinstance(data["power_w"], dict) else None,
                  f"{where} key 'power_w.{key}'")
    energy = data["energy"]
    if not isinstance(energy, dict) or not isinstance(energy.get("pj_per_mac"), dict):
        raise UserInputError(f"{where} key 'energy': needs 'pj_per_mac' (per precision) and 'pj_per_byte'")
    for precision, value in energy["pj_per_mac"].items():
        _positive(value, f"{where} key 'energy.pj_per_mac.{precision}'")
    _positive(energy.get("pj_per_byte"), f"{where} key 'energy.pj_per_byte'")


def parse_device(data: dict, where: str) -> Device:
    """Validates a device spec dict (from `where`, named in errors) and builds the Device."""
    if not isinstance(data, dict):
        raise UserInputError(f"{where}: a device spec must be a JSON object")
    if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise UserInputError(f"{where} key 'schema_version': {data.get('schema_version')!r} is not supported; "
                             f"this version reads {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UserInputError(f"{where}: missing keys {missing}; a device spec needs {list(REQUIRED)}")
    if data["kind"] not in KINDS:
        raise UserInputError(f"{where} key 'kind': {data['kind']!r} is not one of {list(KINDS)}")
    if not isinstance(data["runtime"], dict) or "name" not in data["runtime"]:
        raise UserInputError(f"{where} key 'runtime': must be an object with a 'name' (e.g. onnxruntime, tensorrt, "
                             "litert)")
    _check_numbers(data, where)
    sources = data["sources"]
    unsourced = [k for k in SOURCED if not (isinstance(sources, dict) and str(sources.get(k, "")).strip())]
    if unsourced:
        raise UserInputError(f"{where} key 'sources': every number needs its source (datasheet, paper or "
                             f"measurement); missing for {unsourced}")
    default_precision = data.get("default_precision", "fp32")
    if default_precision not in data["peak_gflops"]:
        raise UserInputError(f"{where} key 'default_precision': {default_precision!r} has no peak_gflops entry; "
                             f"listed {sorted(data['peak_gflops'])}")
    known = set(REQUIRED) | {"schema_version", "description", "default_precision"}
    return Device(name=str(data["name"]), kind=data["kind"], runtime=dict(data["runtime"]),
                  peak_gflops=dict(data["peak_gflops"]), memory_bandwidth_gbs=float(data["memory_bandwidth_gbs"]),
                  power_w=dict(data["power_w"]), energy=dict(data["energy"]), sources=dict(sources),
                  description=str(data.get("description", "")), default_precision=default_precision,
                  path=where, extra={k: v for k, v in data.items() if k not in known})


def load_device_file(path) -> Device:
    path = Path(path)
    data = read_json(path, "device file")
    device = parse_device(data, str(path))
    if device.name != path.stem:
        raise UserInputError(f"device file {path}: key 'name' is {device.name!r} but the file is named "
                             f"{path.stem!r}; they must match")
    return device


def device_dirs(devices_dir=None) -> list[Path]:
    """Directories searched, later ones overriding earlier: built-in, $HWNAS_DEVICES_DIR, `devices_dir`."""
    dirs = [BUILTIN_DIR]
    for extra in (os.environ.get(DEVICES_ENV), devices_dir):
        if extra:
            path = Path(extra).expanduser()
            if not path.is_dir():
                raise UserInputError(f"devices directory {path} does not exist (from "
                                     f"{'$' + DEVICES_ENV if extra != devices_dir else '--devices-dir'})")
            dirs.append(path)
    return dirs


def device_files(devices_dir=None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for directory in device_dirs(devices_dir):
        for path in sorted(directory.glob("*.json")):
            files[path.stem] = path
    return files


def list_devices(devices_dir=None) -> list[str]:
    return sorted(device_files(devices_dir))


def get_device(name, devices_dir=None) -> Device:
    """The device called `name` (a Device passes through); unknown names list the known ones."""
    if isinstance(name, Device):
        return name
    files = device_files(devices_dir)
    if name not in files:
        raise UserInputError(f"unknown device {name!r}; known devices: {sorted(files)} (add one as a JSON file in "
                             f"${DEVICES_ENV} or --devices-dir)")
    return load_device_file(files[name])


def measured_tables(device_name: str, tables_dir=None) -> list[Path]:
    """Shipped (and user) lookup tables for a device: files named `<device>-*.json`."""
    dirs = [TABLES_DIR] + ([Path(tables_dir)] if tables_dir else [])
    return sorted(p for d in dirs if d.is_dir() for p in d.glob(f"{device_name}-*.json"))
