"""Latency and energy models: devices, layer enumeration, lookup tables, profiler, roofline, energy, predictors."""

from latency_models.cost_model import CostModel, build_cost_model

__all__ = ["CostModel", "build_cost_model"]
