"""`build_cost_model(space, device, kind, path)`: the one entry point the search uses for latency and energy
of many architectures at once (lookup table, roofline estimate or calibrated predictor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latency_models.devices import get_device, measured_tables
from latency_models.energy import EnergyModel
from latency_models.lut import LookupTable
from latency_models.roofline import roofline_table
from search_spaces.errors import UserInputError

KINDS = ("lut", "roofline", "predictor")
METRICS = ("latency_ms", "energy_mj")


class CostModel:
    """`.predict(archs) -> {"latency_ms": (N,), "energy_mj": (N,)}`; `.describe()` says where numbers came from."""

    def __init__(self, space, device, predict_fn, description: dict, metrics: tuple[str, ...] = METRICS):
        self.space = space
        self.device = device
        self.metrics = tuple(metrics)
        self._predict_fn = predict_fn
        self._description = description

    def predict(self, archs) -> dict[str, np.ndarray]:
        archs = np.asarray(archs)
        archs = archs[None] if archs.ndim == 1 else archs
        out = self._predict_fn(archs)
        return {name: np.asarray(out[name], dtype=np.float64) for name in self.metrics}

    def describe(self) -> dict:
        return dict(self._description)


def _find_measured_table(space, device, tables_dir=None, layer_options: dict | None = None) -> LookupTable | None:
    """A shipped (or user) measured table of the device that covers every layer of the space at these layer
    options (width, classes), if any."""
    for path in measured_tables(device.name, tables_dir):
        table = LookupTable.load(path)
        if table.metadata.get("method") != "roofline" and not table.missing(space, **dict(layer_options or {})):
            return table
    return None


def _table_cost_model(space, device, table: LookupTable, kind: str, layer_options: dict | None = None) -> CostModel:
    options = dict(layer_options or {})
    latency_fn = lambda archs: table.predict(space, archs, **options)
    if table.has_energy(space, **options):
        energy_fn = lambda archs: table.predict_energy(space, archs, **options)
        energy_source = "measured per-layer energy in the table"
    else:
        precision = table.metadata.get("precision") if table.metadata.get("precision") in device.peak_gflops else None
        energy = EnergyModel.from_device(device, precision)
        energy_fn = energy.evaluator(space, table.per_layer(space, **options), table.overhead_ms,
                                     **{**table.metadata.get("layer_options", {}), **options})
        energy_source = f"energy model ({energy.source})"
    description = {"kind": kind, "device": device.name, "space": space.config(), "table": table.describe(),
                   "estimated": table.estimated, "energy": energy_source, "layer_options": options}
    return CostModel(space, device, lambda a: {"latency_ms": latency_fn(a), "energy_mj": energy_fn(a)}, description)


def _predictor_cost_model(space, device, path) -> CostModel:
    if path is None:
        raise UserInputError("latency model 'predictor' needs a path to a fitted predictor (made by "
                             "`nas latency fit`)")
    from latency_models.predictor import CalibratedPredictor
    predictor = CalibratedPredictor.load(path)
    describe = getattr(predictor, "describe", lambda: {})
    description = {"kind": "predictor", "device": device.name, "space": space.config(), "path": str(path),
                   "predictor": describe()}
    return CostModel(space, device, lambda archs: predictor.predict(space, archs), description, predictor.metrics)


def build_cost_model(space, device, kind: str = "lut", path=None, *, devices_dir=None, tables_dir=None,
                     precision: str | None = None, layer_options: dict | None = None) -> CostModel:
    """kind 'lut': the table at `path`, else the device's measured table covering the space, else a roofline
    estimate (labelled estimated); 'roofline': always the estimate; 'predictor': a calibrated model.
    `layer_options` (num_classes, width_mult) say which network is priced: a table must cover its layers at those
    options (a measured table of another width is not used), and estimated tables are built for them."""
    if kind not in KINDS:
        raise UserInputError(f"latency model kind {kind!r} is not one of {list(KINDS)}")
    device = get_device(device, devices_dir)
    if kind == "predictor":
        return _predictor_cost_model(space, device, path)
    if kind == "lut" and path is not None:
        table = LookupTable.load(Path(path))
        table.check_covers(space, **dict(layer_options or {}))
        return _table_cost_model(space, device, table, kind, layer_options)
    table = _find_measured_table(space, device, tables_dir, layer_options) if kind == "lut" else None
    if table is None:
        return _table_cost_model(space, device, roofline_table(space, device, precision, **dict(layer_options or {})),
                                 kind)
    return _table_cost_model(space, device, table, kind, layer_options)
