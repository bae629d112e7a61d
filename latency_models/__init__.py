"""Latency and energy models: devices, layer enumeration, lookup tables, profiler, roofline, energy, predictors."""
