"""The analytic roofline model for devices not at hand: per layer max(compute / (peak × op efficiency),
bytes / bandwidth) + a per-layer overhead, with op efficiencies per device kind; its tables are labelled estimated."""

from __future__ import annotations

import numpy as np

from latency_models.devices import Device, get_device
from latency_models.layers import Layer, layer_bytes, layer_macs, space_layers
from latency_models.lut import LookupTable, default_metadata

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}

# Fraction of peak compute an op reaches at batch 1, per device kind; a device file may override them under
# "op_efficiency". CPU values: dense convolutions set so the roofline's median latency matches the public
# NAS-Bench-201 Raspberry Pi 5 ONNX Runtime measurements (HW-NAS-Bench-360; ratio 0.98, Spearman 0.78 over all
# 15,625 cells); depthwise-heavy blocks and matrix-vector layers reach less (MobileNet latency studies).
# GPU/NPU values: defaults from the same reasoning, not calibrated on a board here.
OP_EFFICIENCY = {
    "cpu": {"conv_bn_act": 0.15, "relu_conv_bn": 0.15, "resblock": 0.15, "mbconv": 0.08, "linear": 0.1,
            "default": 0.1},
    "gpu": {"conv_bn_act": 0.3, "relu_conv_bn": 0.3, "resblock": 0.3, "mbconv": 0.1, "linear": 0.05,
            "default": 0.1},
    "npu": {"conv_bn_act": 0.4, "relu_conv_bn": 0.4, "resblock": 0.4, "mbconv": 0.15, "linear": 0.05,
            "default": 0.1},
}
# Fixed cost per layer (ms): operator dispatch on CPUs, kernel launches on GPUs, per-op scheduling on NPUs.
LAYER_OVERHEAD_MS = {"cpu": 0.005, "gpu": 0.02, "npu": 0.01}
# Fixed cost per inference (ms): session/run call, input and output copies.
INFERENCE_OVERHEAD_MS = {"cpu": 0.02, "gpu": 0.1, "npu": 0.2}
FREE_OPS = ("identity",)


def op_efficiency(device: Device, op: str) -> float:
    table = {**OP_EFFICIENCY[device.kind], **device.extra.get("op_efficiency", {})}
    return float(table.get(op, table["default"]))


def layer_overhead_ms(device: Device) -> float:
    return float(device.extra.get("layer_overhead_ms", LAYER_OVERHEAD_MS[device.kind]))


def layer_latency_ms(layer: Layer, device: Device, precision: str | None = None) -> float:
    """Roofline latency of one layer at batch 1."""
    if layer.op in FREE_OPS:
        return 0.0
    precision = precision or device.default_precision
    compute_s = 2.0 * layer_macs(layer) / (device.peak(precision) * 1e9 * op_efficiency(device, layer.op))
    memory_s = layer_bytes(layer, BYTES_PER_ELEMENT[precision]) / (device.memory_bandwidth_gbs * 1e9)
    return max(compute_s, memory_s) * 1e3 + layer_overhead_ms(device)


def roofline_latencies(layers, device, precision: str | None = None) -> np.ndarray:
    device = get_device(device)
    return np.array([layer_latency_ms(l, device, precision) for l in layers], dtype=np.float64)


def roofline_table(space, device, precision: str | None = None, **layer_options) -> LookupTable:
    """An estimated lookup table for every layer of `space` on `device` (method 'roofline')."""
    device = get_device(device)
    precision = precision or device.default_precision
    layers = space_layers(space, **layer_options).layers
    latencies = roofline_latencies(layers, device, precision)
    entries = {l.key: {"mean": float(t), "std": 0.0, "count": 0} for l, t in zip(layers, latencies)}
    overhead = float(device.extra.get("inference_overhead_ms", INFERENCE_OVERHEAD_MS[device.kind]))
    metadata = default_metadata(device, "roofline", precision=precision, space=space.config(),
                                layer_options=layer_options, overhead_ms=overhead,
                                notes="analytic roofline estimate from the device spec; not a measurement")
    return LookupTable(entries, metadata)
