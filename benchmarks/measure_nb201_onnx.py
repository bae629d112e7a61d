"""End-to-end host-CPU latency of NAS-Bench-201 networks (C=16, N=5, 32x32, 100 classes) under ONNX Runtime.

Each architecture's canonical cell is built as an ONNX graph (ReLU-Conv-BN folded to ReLU-Conv, avg_pool 3x3,
identity, dead edges dropped, so isomorphic cells are the same network) and timed with ONNX Runtime on one thread,
alternating run by run with a fixed reference network (all nor_conv_3x3): the reported latency is the ratio of
the two medians times the reference's median over the whole session, which cancels most of the slow drift that
other processes cause on a busy machine. The clock is the calling thread's CPU time (ONNX Runtime with one
intra-op thread computes in the caller's thread); `--clock wall` times wall-clock instead. Writes
`arch,latency_ms` (the space's string form), the input format of `nas latency fit`.

    python benchmarks/measure_nb201_onnx.py -n 1500 --out benchmarks/data/nb201_host_cpu_onnx.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from search_spaces import get_space
from search_spaces.nb201 import EDGES, NUM_NODES, OPS

CHANNELS, CELLS_PER_STAGE, RESOLUTION, NUM_CLASSES = 16, 5, 32, 100


class GraphBuilder:
    """Accumulates ONNX nodes and random initializers with unique names."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, array: np.ndarray, prefix: str) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> str:
        w = self.const(self.rng.normal(0, 0.1, (c_out, c_in, kernel, kernel)), "w")
        b = self.const(self.rng.normal(0, 0.1, (c_out,)), "b")
        pad = kernel // 2
        return self.op("Conv", [x, w, b], kernel_shape=[kernel, kernel], strides=[stride, stride],
                       pads=[pad] * 4)


def edge_op(g: GraphBuilder, x: str, op: str, channels: int) -> str:
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4, count_include_pad=0)
    kernel = 1 if op == "nor_conv_1x1" else 3
    return g.conv(g.op("Relu", [x]), channels, channels, kernel)


def cell(g: GraphBuilder, x: str, ops: tuple[str, ...], active: np.ndarray, channels: int) -> str:
    nodes: dict[int, str | None] = {0: x}
    for target in range(1, NUM_NODES):
        terms = [edge_op(g, nodes[src], op, channels)
                 for j, ((to, src), op) in enumerate(zip(EDGES, ops)) if to == target and active[j]]
        total = terms[0] if terms else None
        for term in terms[1:]:
            total = g.op("Add", [total, term])
        nodes[target] = total
    if nodes[NUM_NODES - 1] is None:
        return g.op("Mul", [x, g.const(np.zeros(()), "zero")])
    return nodes[NUM_NODES - 1]


def reduction(g: GraphBuilder, x: str, c_in: int, c_out: int) -> str:
    a = g.conv(g.op("Relu", [x]), c_in, c_out, 3, stride=2)
    a = g.conv(g.op("Relu", [a]), c_out, c_out, 3)
    shortcut = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    shortcut = g.conv(shortcut, c_in, c_out, 1)
    return g.op("Add", [a, shortcut])


def build_network(space, arch: np.ndarray, seed: int = 0) -> onnx.ModelProto:
    """The NB201 macro network for one architecture (indices, canonicalised here) as an ONNX model."""
    canonical = space.canonical(arch)
    active = space.active(canonical)[0]
    ops = tuple(OPS[i] for i in canonical[0])
    g = GraphBuilder(np.random.default_rng(seed))
    x = g.conv("input", 3, CHANNELS, 3)
    channels = CHANNELS
    for stage in range(3):
        if stage:
            x = reduction(g, x, channels, channels * 2)
            channels *= 2
        for _ in range(CELLS_PER_STAGE):
            x = cell(g, x, ops, active, channels)
    x = g.op("Relu", [x])
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    w = g.const(g.rng.normal(0, 0.1, (channels, NUM_CLASSES)), "fc_w")
    b = g.const(np.zeros(NUM_CLASSES), "fc_b")
    logits = g.op("Add", [g.op("MatMul", [x, w]), b])
    graph = helper.make_graph(
        g.nodes, "nb201", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, RESOLUTION, RESOLUTION])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, NUM_CLASSES])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
REFERENCE_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def session(model: onnx.ModelProto):
    """An ONNX Runtime CPU session on one thread and its input feed."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    runner = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).normal(size=(1, 3, RESOLUTION, RESOLUTION)).astype(np.float32)}
    return lambda: runner.run(None, feed)


def time_interleaved(run_arch, run_reference, warmup: int, repeats: int, clock: str = "cpu") -> tuple[float, float]:
    """Median times in ms of an architecture and of the reference network, timed alternately so that both see
    the same machine load; their ratio is what a busy machine disturbs least."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        run_arch(), run_reference()
    times = np.empty((repeats, 2))
    for i in range(repeats):
        for j, run in enumerate((run_arch, run_reference)):
            start = now()
            run()
            times[i, j] = now() - start
    arch_ms, reference_ms = np.median(times, axis=0) * 1e3
    return float(arch_ms), float(reference_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1500, help="distinct (canonical) architectures to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/data/nb201_host_cpu_onnx.csv"))
    args = parser.parse_args()
    space = get_space("nb201")
    classes = np.unique(space.canonical(space.enumerate()), axis=0)
    chosen = classes[np.random.default_rng(args.seed).permutation(len(classes))[: args.n]]
    run_reference = session(build_network(space, space.from_string(REFERENCE_ARCH)))
    ratios, reference_ms = np.empty(len(chosen)), np.empty(len(chosen))
    for i, arch in enumerate(tqdm(chosen, desc="timing nb201 on host CPU")):
        arch_ms, reference_ms[i] = time_interleaved(session(build_network(space, arch)), run_reference,
                                                    args.warmup, args.repeats, args.clock)
        ratios[i] = arch_ms / reference_ms[i]
    latency = ratios * np.median(reference_ms)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "latency_ms"])
        writer.writerows([space.to_string(arch), f"{ms:.5f}"] for arch, ms in zip(chosen, latency))
    print(f"wrote {len(chosen)} latencies to {args.out}; reference network {np.median(reference_ms):.4f} ms "
          f"(median; 10-90% {np.percentile(reference_ms, 10):.4f}-{np.percentile(reference_ms, 90):.4f})")


if __name__ == "__main__":
    main()
