"""Whole-subnet timing: ofa_mbv3 subnets exported whole as a user deploys them (jax2onnx, dynamic batch, input
normalisation inside) and timed like the layers, and the calibration a table fits from a few of them: a per-layer
boundary correction (a layer timed alone pays input/output layout conversions and buffer set-up that a network pays
once) and a per-network offset (the deployed graph's own ops: normalisation, dynamic-shape bookkeeping)."""

from __future__ import annotations

import numpy as np

from latency_models.layers import space_layers
from latency_models.lut import LookupTable
from latency_models.profiler import TimingConfig, time_models

CALIBRATION_SEED = 12345


def export_ofa_subnet(space, arch, **layer_options) -> bytes:
    """One ofa_mbv3 architecture as a whole `supernets.static.StaticMobileNetV3` ONNX model (random weights) in
    the form `nas export` writes: a dynamic batch and a per-channel input scale and shift before the network."""
    import jax2onnx
    from flax import nnx
    from latency_models.layer_modules import filled, ofa_static_config, onnx_export_context
    from supernets.static import StaticMobileNetV3
    config = ofa_static_config(space, arch, **layer_options)
    resolution = int(space.values(arch)[0, 0])
    with onnx_export_context():
        model = filled(lambda: StaticMobileNetV3.from_config(config, rngs=nnx.Rngs(0)))
        scale, shift = np.float32([4.1, 4.2, 4.3]), np.float32([-2.0, -2.1, -2.2])
        proto = jax2onnx.to_onnx(lambda x: model(x * scale + shift, False), [("B", resolution, resolution, 3)],
                                 model_name="subnet")
    return proto.SerializeToString()


def time_subnets(space, archs, timing: TimingConfig, layer_options: dict | None = None,
                 progress: bool = True) -> np.ndarray:
    """Median time in ms of each whole subnet (exported, then timed interleaved like the layers)."""
    from tqdm import tqdm
    options = dict(layer_options or {})
    models = [export_ofa_subnet(space, a[None], **options)
              for a in tqdm(archs, desc="export subnets", unit="subnet", disable=not progress)]
    return np.array([np.median(t) for t in time_models(models, timing)])


def fit_calibration(table: LookupTable, space, archs, measured_ms) -> tuple[float, float]:
    """Least squares (c, d): measured ~ sum(entries) + overhead - c x layers run + d, with c >= 0 (ms per layer)
    and d the per-network offset (ms)."""
    predicted = table.predict(space, archs, layer_correction_ms=0.0, network_offset_ms=0.0)
    layers_run = space_layers(space, **table.metadata.get("layer_options", {})).table(archs).count.sum(1)
    residual = np.asarray(measured_ms) - predicted
    design = np.stack([-layers_run.astype(np.float64), np.ones(len(layers_run))], axis=1)
    (correction, offset), *_ = np.linalg.lstsq(design, residual, rcond=None)
    if correction < 0 or len(layers_run) < 2 or np.ptp(layers_run) == 0:
        correction, offset = 0.0, float(np.mean(residual))
    return float(correction), float(offset)


def calibrate_table(table: LookupTable, space, timing: TimingConfig, n: int = 6, progress: bool = True) -> dict:
    """Times `n` random whole subnets, fits the per-layer correction into the table's metadata; returns a summary."""
    archs = space.sample(n, CALIBRATION_SEED)
    measured = time_subnets(space, archs, timing, table.metadata.get("layer_options"), progress)
    before = table.predict(space, archs, layer_correction_ms=0.0, network_offset_ms=0.0)
    correction, offset = fit_calibration(table, space, archs, measured)
    table.metadata["layer_correction_ms"] = correction
    table.metadata["network_offset_ms"] = offset
    after = table.predict(space, archs)
    summary = {"subnets": n, "seed": CALIBRATION_SEED, "layer_correction_ms": correction, "network_offset_ms": offset,
               "median_abs_error_before": float(np.median(np.abs(before - measured) / measured)),
               "median_abs_error_after": float(np.median(np.abs(after - measured) / measured))}
    table.metadata["calibration"] = summary
    return summary
