"""Lookup tables: layer configuration key -> {mean, std, count} in ms (optionally energy), with device and runtime
metadata, a versioned JSON schema, strict loading, and vectorized subnet latency = sum of entries + overhead."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import numpy as np

from latency_models.layers import space_layers
from latency_models.json_files import read_json
from search_spaces.errors import UserInputError

SCHEMA = "hwnas-lut"
SCHEMA_VERSION = 1
METHODS = ("measured", "roofline", "calibrated")
METADATA_KEYS = ("device", "runtime", "runtime_version", "batch_size", "precision", "date", "method")
ENTRY_KEYS = ("mean", "std", "count")


def entry(values_ms) -> dict:
    """The {mean, std, count, median} entry of a sample of timings in ms."""
    values = np.asarray(values_ms, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()), "count": int(values.size),
            "median": float(np.median(values))}


def default_metadata(device, method: str, *, runtime_version: str = "", batch_size: int = 1,
                     precision: str = "fp32", **extra) -> dict:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    name = device if isinstance(device, str) else device.name
    runtime = "" if isinstance(device, str) else device.runtime_name
    return {"device": name, "runtime": extra.pop("runtime", runtime), "runtime_version": runtime_version,
            "batch_size": batch_size, "precision": precision,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "method": method,
            "estimated": method == "roofline", **extra}


class LookupTable:
    """Per-layer latency entries (ms) plus metadata; `overhead_ms` (in metadata) is added once per inference."""

    def __init__(self, entries: dict[str, dict], metadata: dict, path: str = ""):
        self.entries = dict(entries)
        self.metadata = dict(metadata)
        self.path = path
        self._compiled: dict = {}

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path) -> "LookupTable":
        path = Path(path)
        data = read_json(path, "lookup table")
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "<lookup table>") -> "LookupTable":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UserInputError(f"{where}: not a hwnas lookup table (key 'schema' must be {SCHEMA!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UserInputError(f"{where} key 'schema_version': {data.get('schema_version')!r} is not supported; "
                                 f"this version reads {SCHEMA_VERSION}; re-create the table with `nas profile`")
        metadata, entries = data.get("metadata"), data.get("entries")
        if not isinstance(metadata, dict) or not isinstance(entries, dict):
            raise UserInputError(f"{where}: needs objects 'metadata' and 'entries'")
        missing = [k for k in METADATA_KEYS if k not in metadata]
        if missing:
            raise UserInputError(f"{where} key 'metadata': missing {missing}; required {list(METADATA_KEYS)}")
        if metadata["method"] not in METHODS:
            raise UserInputError(f"{where} key 'metadata.method': {metadata['method']!r} is not one of "
                                 f"{list(METHODS)}")
        for key, value in entries.items():
            bad = [k for k in ENTRY_KEYS if not isinstance(value, dict) or not isinstance(value.get(k), (int, float))]
            if bad:
                raise UserInputError(f"{where} key 'entries.{key}': missing or non-numeric {bad}; each entry needs "
                                     f"{list(ENTRY_KEYS)} (ms)")
            wrong = [k for k, v in value.items() if isinstance(v, (int, float)) and not (math.isfinite(v) and v >= 0)]
            if wrong:
                raise UserInputError(f"{where} key 'entries.{key}.{wrong[0]}': {value[wrong[0]]!r} is not allowed; "
                                     "allowed: a finite number >= 0")
        return cls(entries, metadata, where)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "metadata": self.metadata,
                "entries": self.entries}

    def save(self, path) -> Path:
        """Writes atomically (a partial table on disk is always a valid table)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        self.path = str(path)
        return path

    # ------------------------------------------------------------------ queries
    @property
    def overhead_ms(self) -> float:
        return float(self.metadata.get("overhead_ms", 0.0))

    @property
    def estimated(self) -> bool:
        return bool(self.metadata.get("estimated", self.metadata["method"] == "roofline"))

    def _options(self, layer_options: dict) -> dict:
        """Layer enumeration options (num_classes, width_mult): the table's own, overridden by the caller's."""
        return {**self.metadata.get("layer_options", {}), **layer_options}

    def missing(self, space, **layer_options) -> list[str]:
        layer_options = self._options(layer_options)
        return [k for k in space_layers(space, **layer_options).keys if k not in self.entries]

    def check_covers(self, space, **layer_options) -> None:
        layer_options = self._options(layer_options)
        missing = self.missing(space, **layer_options)
        if missing:
            total = len(space_layers(space, **layer_options).keys)
            raise UserInputError(
                f"lookup table {self.path or '<in memory>'} (device {self.metadata.get('device')!r}) has no entry "
                f"for layer {missing[0]!r} needed by space {space.config()}; {len(missing)} of {total} layers are "
                f"missing; fill them with `nas profile --space {space.name} --resume --out {self.path or 'LUT.json'}`")

    def per_layer(self, space, field: str = "latency", **layer_options) -> np.ndarray:
        """(U,) values for the space's unique layers: latency (median if recorded, else mean) or energy_mj."""
        layer_options = self._options(layer_options)
        self.check_covers(space, **layer_options)
        keys = space_layers(space, **layer_options).keys
        if field == "energy_mj":
            absent = [k for k in keys if "energy_mj" not in self.entries[k]]
            if absent:
                raise UserInputError(f"lookup table {self.path}: layer {absent[0]!r} has no 'energy_mj' entry "
                                     f"({len(absent)} of {len(keys)} layers lack energy)")
            return np.array([self.entries[k]["energy_mj"]["mean"] for k in keys])
        stat = "median" if all("median" in self.entries[k] for k in keys) else "mean"
        return np.array([self.entries[k][stat] for k in keys], dtype=np.float64)

    def has_energy(self, space, **layer_options) -> bool:
        layer_options = self._options(layer_options)
        keys = space_layers(space, **layer_options).keys
        return all(k in self.entries and "energy_mj" in self.entries[k] for k in keys)

    def evaluator(self, space, field: str = "latency", correction: float = 0.0, **layer_options):
        """`f(archs) -> (N,)` for this table and space, compiled once (gather + sum); `correction` (ms) is taken
        off every timed layer's entry (never below 0)."""
        layer_options = self._options(layer_options)
        key = (repr(space.config()), field, correction, tuple(sorted(layer_options.items())))
        if key not in self._compiled:
            values = self.per_layer(space, field, **layer_options)
            if correction:
                values = np.where(values > 0, np.maximum(values - correction, 0.0), values)
            self._compiled[key] = space_layers(space, **layer_options).compile(values)
        return self._compiled[key]

    @property
    def layer_correction_ms(self) -> float:
        return float(self.metadata.get("layer_correction_ms", 0.0))

    @property
    def network_offset_ms(self) -> float:
        return float(self.metadata.get("network_offset_ms", 0.0))

    def predict(self, space, archs, layer_correction_ms: float | None = None, network_offset_ms: float | None = None,
                **layer_options) -> np.ndarray:
        """Latency in ms of each architecture: the sum of its layers' entries plus the fixed overhead. Entries
        are lowered by the table's fitted per-layer boundary correction (`layer_correction_ms`, 0 if none) and the
        fitted per-network offset of the deployed graph is added (`network_offset_ms`, 0 if none)."""
        correction = self.layer_correction_ms if layer_correction_ms is None else layer_correction_ms
        offset = self.network_offset_ms if network_offset_ms is None else network_offset_ms
        return self.evaluator(space, correction=correction, **layer_options)(archs) + self.overhead_ms + offset

    def predict_energy(self, space, archs, **layer_options) -> np.ndarray:
        """Energy in mJ from per-layer energy entries (tables profiled with a power reader)."""
        overhead = float(self.metadata.get("overhead_energy_mj", 0.0))
        return self.evaluator(space, "energy_mj", **layer_options)(archs) + overhead

    def describe(self) -> dict:
        return {"path": self.path, "entries": len(self.entries), **self.metadata}
