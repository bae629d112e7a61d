"""Whole-subnet timing: ofa_mbv3 subnets exported whole (jax2onnx) and timed like the layers, and the per-layer
boundary correction a table fits from a few of them (a layer timed alone pays input/output layout conversions
and buffer set-up that a network pays once)."""

from __future__ import annotations

import numpy as np

from latency_models.layers import space_layers
from latency_models.lut import LookupTable
from latency_models.profiler import TimingConfig, time_models

CALIBRATION_SEED = 12345


def export_ofa_subnet(space, arch, **layer_options) -> bytes:
    """One ofa_mbv3 architecture as a whole `supernets.static.StaticMobileNetV3` ONNX model (random weights)."""
    import jax2onnx
    from flax import nnx
    from latency_models.layer_modules import filled, ofa_static_config, onnx_export_context
    from supernets.static import StaticMobileNetV3
    config = ofa_static_config(space, arch, **layer_options)
    resolution = int(space.values(arch)[0, 0])
    with onnx_export_context():
        model = filled(lambda: StaticMobileNetV3.from_config(config, rngs=nnx.Rngs(0)))
        proto = jax2onnx.to_onnx(lambda x: model(x, False), [(1, resolution, resolution, 3)], model_name="subnet")
    return proto.SerializeToString()


def time_subnets(space, archs, timing: TimingConfig, layer_options: dict | None = None,
                 progress: bool = True) -> np.ndarray:
    """Median time in ms of each whole subnet (exported, then timed interleaved like the layers)."""
    from tqdm import tqdm
    options = dict(layer_options or {})
    models = [export_ofa_subnet(space, a[None], **options)
              for a in tqdm(archs, desc="export subnets", unit="subnet", disable=not progress)]
    return np.array([np.median(t) for t in time_models(models, timing)])


def fit_layer_correction(table: LookupTable, space, archs, measured_ms) -> float:
    """Least-squares per-layer correction c >= 0 (ms) with measured ~ sum(entries) + overhead - c x layers run."""
    predicted = table.predict(space, archs, layer_correction_ms=0.0)
    layers_run = space_layers(space, **table.metadata.get("layer_options", {})).table(archs).count.sum(1)
    residual = predicted - np.asarray(measured_ms)
    return max(0.0, float(residual @ layers_run / (layers_run @ layers_run)))


def calibrate_table(table: LookupTable, space, timing: TimingConfig, n: int = 6, progress: bool = True) -> dict:
    """Times `n` random whole subnets, fits the per-layer correction into the table's metadata; returns a summary."""
    archs = space.sample(n, CALIBRATION_SEED)
    measured = time_subnets(space, archs, timing, table.metadata.get("layer_options"), progress)
    before = table.predict(space, archs, layer_correction_ms=0.0)
    correction = fit_layer_correction(table, space, archs, measured)
    table.metadata["layer_correction_ms"] = correction
    after = table.predict(space, archs)
    summary = {"subnets": n, "seed": CALIBRATION_SEED, "layer_correction_ms": correction,
               "median_abs_error_before": float(np.median(np.abs(before - measured) / measured)),
               "median_abs_error_after": float(np.median(np.abs(after - measured) / measured))}
    table.metadata["calibration"] = summary
    return summary
