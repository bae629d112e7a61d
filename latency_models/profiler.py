"""The on-device profiler: every unique layer of a space exported to a tiny ONNX model (jax2onnx) and timed with
ONNX Runtime (warm-up, repeats, median, spread); the table is written as it goes and `resume` continues it."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_models.devices import get_device
from latency_models.layers import Layer, space_layers
from latency_models.lut import LookupTable, default_metadata, entry
from latency_models.roofline import FREE_OPS
from search_spaces.errors import UserInputError

RESUME_MUST_MATCH = ("device", "runtime", "runtime_version", "batch_size", "provider", "threads", "clock",
                     "layer_options")
CLOCKS = ("auto", "wall", "thread")


@dataclass
class TimingConfig:
    """How models are timed: warm-up runs, timed runs, ONNX Runtime threads and execution provider, the clock
    ('wall'; 'thread' = CPU time of the calling thread, which a single-threaded CPU session runs on, immune to
    other processes sharing the cores; 'auto' = thread for 1-thread CPU sessions, else wall) and how many layer
    models are timed interleaved (one run of each in turn, so caches hold other layers' weights as in a network)."""

    warmup: int = 10
    repeats: int = 50
    threads: int = 1
    provider: str = "CPUExecutionProvider"
    batch_size: int = 1
    clock: str = "auto"
    group: int = 16

    def check(self) -> "TimingConfig":
        for name in ("warmup", "repeats", "threads", "batch_size", "group"):
            low = 0 if name == "warmup" else 1
            if getattr(self, name) < low:
                raise UserInputError(f"profiler: {name} must be >= {low}, got {getattr(self, name)}")
        if self.clock not in CLOCKS:
            raise UserInputError(f"profiler: clock must be one of {list(CLOCKS)}, got {self.clock!r}")
        if self.resolved_clock == "thread" and (self.threads != 1 or self.provider != "CPUExecutionProvider"):
            raise UserInputError("profiler: clock 'thread' needs a single-threaded CPUExecutionProvider session; "
                                 "use --clock wall")
        return self

    @property
    def resolved_clock(self) -> str:
        if self.clock != "auto":
            return self.clock
        return "thread" if self.threads == 1 and self.provider == "CPUExecutionProvider" else "wall"


def export_layer(layer: Layer, batch_size: int = 1) -> bytes:
    """The layer as a serialized ONNX model (NHWC input), exported with jax2onnx like a whole subnet."""
    import jax2onnx
    from latency_models.layer_modules import build_module, input_shape, onnx_export_context
    with onnx_export_context():
        proto = jax2onnx.to_onnx(build_module(layer), [input_shape(layer, batch_size)], model_name=layer.op)
    return proto.SerializeToString()


def identity_model(shape) -> bytes:
    """An ONNX model that returns its input: timing it gives the fixed cost of one inference call."""
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def make_session(model: bytes, timing: TimingConfig):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = timing.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    available = ort.get_available_providers()
    if timing.provider not in available:
        raise UserInputError(f"profiler: execution provider {timing.provider!r} is not available here; "
                             f"available: {available}")
    return ort.InferenceSession(model, options, providers=[timing.provider])


def _feeds(session, batch_size: int = 1, seed: int = 0) -> dict:
    """Random inputs for every model input; a symbolic dimension (a dynamic batch) becomes `batch_size`."""
    rng = np.random.default_rng(seed)
    return {spec.name: rng.standard_normal([d if isinstance(d, int) else batch_size for d in spec.shape])
            .astype(np.float32) for spec in session.get_inputs()}


def time_models(models: list[bytes], timing: TimingConfig) -> list[np.ndarray]:
    """Times in ms of `timing.repeats` runs of each model after `timing.warmup` runs; the models take turns, one
    run each per round, so each run finds the caches as the previous layers left them."""
    clock = time.thread_time if timing.resolved_clock == "thread" else time.perf_counter
    sessions = [make_session(m, timing) for m in models]
    feeds = [_feeds(s, timing.batch_size) for s in sessions]
    for session, feed in zip(sessions, feeds):
        for _ in range(timing.warmup):
            session.run(None, feed)
    times = np.empty((len(models), timing.repeats))
    for i in range(timing.repeats):
        for j, (session, feed) in enumerate(zip(sessions, feeds)):
            start = clock()
            session.run(None, feed)
            times[j, i] = clock() - start
    return list(times * 1e3)


def time_model(model: bytes, timing: TimingConfig) -> np.ndarray:
    """Times in ms of `timing.repeats` runs of one model."""
    return time_models([model], timing)[0]


def measure_overhead(shape, timing: TimingConfig) -> np.ndarray:
    """Per-inference fixed cost in ms (session call, input and output handling), measured on an identity model."""
    return time_model(identity_model(shape), TimingConfig(timing.warmup, max(timing.repeats, 100), timing.threads,
                                                          timing.provider, timing.batch_size, timing.clock))


def _runtime_version() -> str:
    import onnxruntime as ort
    return ort.__version__


def _new_table(space, device, timing: TimingConfig, layer_options: dict, overhead: np.ndarray) -> LookupTable:
    import jax2onnx
    stats = entry(overhead)
    metadata = default_metadata(
        device, "measured", runtime="onnxruntime", runtime_version=_runtime_version(),
        batch_size=timing.batch_size, precision="fp32", provider=timing.provider, threads=timing.threads,
        clock=timing.resolved_clock, group=timing.group,
        warmup=timing.warmup, repeats=timing.repeats, space=space.config(), layer_options=layer_options,
        overhead_ms=stats["median"], overhead=stats, exporter=f"jax2onnx {getattr(jax2onnx, '__version__', '')}",
        host=f"{platform.node()} {platform.machine()} {_cpu_model()}", machine=machine_description(),
        notes="entry = per-layer model time minus the measured per-inference overhead; overhead_ms is added once "
              "per network")
    return LookupTable({}, metadata)


def machine_description() -> str:
    """The CPU a host-cpu table describes: architecture, model name and core count."""
    return f"{platform.machine()} {_cpu_model()} {os.cpu_count()} CPUs"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _resume_table(path: Path, device, timing: TimingConfig, layer_options: dict) -> LookupTable:
    table = LookupTable.load(path)
    expected = {"device": device.name, "runtime": "onnxruntime", "runtime_version": _runtime_version(),
                "batch_size": timing.batch_size, "provider": timing.provider, "threads": timing.threads,
                "clock": timing.resolved_clock, "layer_options": layer_options}
    for key in RESUME_MUST_MATCH:
        if table.metadata.get(key) != expected[key]:
            raise UserInputError(f"cannot resume {path}: its metadata {key!r} is {table.metadata.get(key)!r} but "
                                 f"this run has {expected[key]!r}; use another --out or the same settings")
    return table


def profile(space, device, out, *, resume: bool = False, timing: TimingConfig | None = None,
            layer_options: dict | None = None, power_reader=None, progress: bool = True,
            calibrate_subnets: int = 0) -> LookupTable:
    """Measures every unique layer of `space` not yet in the table at `out`; saves after each layer.

    `power_reader` (`() -> W`, e.g. `PowerRails(root).total`) adds per-layer energy = mean power × latency.
    `calibrate_subnets` > 0 (ofa_mbv3) then times that many whole subnets and fits the per-layer boundary
    correction (`latency_models.subnet_timing`), unless the table already has one."""
    from tqdm import tqdm
    timing = (timing or TimingConfig()).check()
    device = get_device(device)
    layer_options = dict(layer_options or {})
    out = Path(out)
    if out.exists() and not resume:
        raise UserInputError(f"{out} exists; pass --resume to continue it, or choose another --out")
    layers = space_layers(space, **layer_options).layers
    if resume and out.exists():
        table = _resume_table(out, device, timing, layer_options)
    else:
        first = layers[0]
        shape = (timing.batch_size, first.hw, first.hw, first.cin)
        table = _new_table(space, device, timing, layer_options, measure_overhead(shape, timing))
        table.save(out)
    overhead = float(table.metadata["overhead_ms"])
    todo = [l for l in layers if l.key not in table.entries]
    with tqdm(total=len(todo), desc=f"profiling {space.name} on {device.name}", unit="layer",
              disable=not progress) as bar:
        for start in range(0, len(todo), timing.group):
            group = todo[start:start + timing.group]
            table.entries.update(_measure_group(group, timing, overhead, power_reader))
            table.save(out)
            bar.update(len(group))
    spaces = table.metadata.setdefault("spaces", [])
    if space.config() not in spaces:
        spaces.append(space.config())
        table.save(out)
    if calibrate_subnets > 0 and "calibration" not in table.metadata:
        if space.name != "ofa_mbv3":
            raise UserInputError(f"profiler: whole-subnet calibration is implemented for ofa_mbv3, not "
                                 f"{space.name!r}; profile without --calibrate-subnets")
        from latency_models.subnet_timing import calibrate_table
        calibrate_table(table, space, timing, calibrate_subnets, progress)
        table.save(out)
    return table


FREE_ENTRY = {"mean": 0.0, "std": 0.0, "count": 0, "median": 0.0,
              "note": "free: the runtime's graph optimizer removes it inside a network"}


def _measure_group(layers: list[Layer], timing: TimingConfig, overhead_ms: float, power_reader) -> dict:
    """Entries for a group of layers timed interleaved; with a power reader, energy = mean power x latency."""
    timed = [l for l in layers if l.op not in FREE_OPS]
    models = [export_layer(l, timing.batch_size) for l in timed]
    if power_reader is None:
        samples, power = time_models(models, timing), None
    else:
        from latency_models.energy import PowerSampler
        with PowerSampler(power_reader) as sampler:
            samples = time_models(models, timing)
        power = np.asarray(sampler.samples)
    entries = {l.key: dict(FREE_ENTRY) for l in layers if l.op in FREE_OPS}
    for layer, times in zip(timed, samples):
        result = {**entry(np.maximum(times - overhead_ms, 0.0)), "raw_median": float(np.median(times))}
        if power is not None:
            result["energy_mj"] = {"mean": float(power.mean() * result["median"]),
                                   "std": float(power.std() * result["median"]), "count": int(power.size)}
            result["power_w"] = float(power.mean())
        entries[layer.key] = result
    return entries
