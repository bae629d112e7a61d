"""Cheap, vectorized metrics: latency and energy from a device's cost model, parameters and FLOPs from layers."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from search_spaces.errors import UserInputError

from nas.evaluators.base import CheapMetrics

DEVICE_METRICS = ("latency_ms", "energy_mj")
SIZE_METRICS = ("params", "flops", "macs")


def split_metric(name: str) -> tuple[str, str | None]:
    """`latency_ms@pi5` -> ("latency_ms", "pi5"); `accuracy` -> ("accuracy", None)."""
    base, sep, device = name.partition("@")
    if sep and (not base or not device):
        raise UserInputError(f"metric {name!r} is malformed; write NAME or NAME@DEVICE, e.g. latency_ms@pi5")
    return base, (device or None)


class CostModelMetrics:
    """Latency and energy from `latency_models.build_cost_model(space, device, kind, path)`, named
    `latency_ms@DEVICE` / `energy_mj@DEVICE`, or plain `latency_ms` / `energy_mj` for a search's own device."""

    expensive = False

    def __init__(self, space, device: str, kind: str = "lut", path: str | None = None, *, plain_names=False,
                 layer_options: Mapping | None = None):
        import latency_models

        self.device = device
        self.model = latency_models.build_cost_model(space, device, kind, path,
                                                     layer_options=dict(layer_options or {}))
        self._names = {m: m if plain_names else f"{m}@{device}" for m in DEVICE_METRICS}
        self.metrics = tuple(self._names.values())

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        predicted = self.model.predict(np.asarray(archs))
        return {name: np.asarray(predicted[m], np.float64) for m, name in self._names.items()}

    def close(self) -> None:
        pass


class SizeMetrics:
    """`params` (of the layers an architecture runs), `macs` and `flops` (= 2 x MACs) from
    `latency_models.layers`."""

    expensive = False
    metrics = SIZE_METRICS

    def __init__(self, space, **layer_options):
        from latency_models.layers import space_layers

        self.space = space
        self.layers = space_layers(space, **layer_options)

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        totals = self.layers.table(archs).totals()
        return {"params": totals["params"], "macs": totals["macs"], "flops": 2.0 * totals["macs"]}

    def close(self) -> None:
        pass


def cheap_metrics_for(space, names: Iterable[str], *, free_sources: Iterable = (), device: str | None = None,
                      latency_model: str = "lut", latency_paths: Mapping[str, str] | None = None,
                      layer_options: Mapping | None = None) -> CheapMetrics:
    """The cheap sources that produce `names`: `free_sources` (e.g. a table's free columns) first, then a cost
    model per device (`latency_ms@DEVICE`; plain `latency_ms` means `device`), then sizes. A name none of them
    produces is a UserInputError."""
    sources = list(free_sources)
    covered = {m for s in sources for m in s.metrics}
    devices: dict[tuple[str, bool], None] = {}
    for name in names:
        if name in covered:
            continue
        base, named_device = split_metric(name)
        if base in DEVICE_METRICS and (named_device or device):
            devices[(named_device or device, named_device is None)] = None
        elif base in SIZE_METRICS and named_device is None:
            if not any(isinstance(s, SizeMetrics) for s in sources):
                sources.append(SizeMetrics(space, **dict(layer_options or {})))
        else:
            hint = " (name a device: latency_ms@DEVICE)" if base in DEVICE_METRICS else ""
            raise UserInputError(f"metric {name!r} is not produced by the evaluator or any cheap source{hint}; "
                                 f"cheap metrics: {sorted(covered)} + latency_ms@DEVICE, energy_mj@DEVICE, "
                                 f"{', '.join(SIZE_METRICS)}")
    paths = dict(latency_paths or {})
    sources += [CostModelMetrics(space, d, latency_model, paths.get(d), plain_names=plain,
                                 layer_options=layer_options) for d, plain in devices]
    return CheapMetrics(sources)
