"""Exporting a chosen subnet: standalone Orbax params, an ONNX model checked by ONNX Runtime, and loading it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nas.checkpoint import Checkpoints
from search_spaces.errors import UserInputError
from supernets.static import StaticMobileNetV3

SUBNET_KIND = "hwnas-subnet"


def save_params(model: nnx.Module, directory: Path) -> None:
    checkpoints = Checkpoints(directory, kind=SUBNET_KIND, trees=("state",), max_to_keep=1)
    checkpoints.save(0, {"state": nnx.state(model).to_pure_dict()}, {})
    checkpoints.close()


def restore_params(model: nnx.Module, directory: Path) -> nnx.Module:
    checkpoints = Checkpoints(directory, kind=SUBNET_KIND, trees=("state",), create=False)
    state = nnx.state(model)
    trees, _ = checkpoints.restore({"state": state.to_pure_dict()})
    checkpoints.close()
    nnx.replace_by_pure_dict(state, trees["state"])
    nnx.update(model, state)
    return model


@nnx.jit
def _logits(model: nnx.Module, images):
    return model(images, train=False)


def export_onnx(model: nnx.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Writes `model` (inference mode, NHWC input with a dynamic batch) as one self-contained ONNX file through
    jax2onnx (weights embedded, never spilled into a `.onnx.data` sidecar)."""
    from jax2onnx import to_onnx

    to_onnx(lambda x: model(x, train=False), [("B", *input_shape)], model_name=path.stem,
            return_mode="file", output_path=str(path), input_names=["images"], output_names=["logits"],
            export_mode="web")
    return path


def onnx_parity(model: nnx.Module, path: Path, images: np.ndarray) -> tuple[float, float]:
    """(max absolute difference between ONNX Runtime's and JAX's logits on `images`, largest |logit|)."""
    from latency_models.profiler import TimingConfig, make_session

    session = make_session(path.read_bytes(), TimingConfig())
    ours = np.asarray(_logits(model, jnp.asarray(images)))
    theirs = session.run(None, {session.get_inputs()[0].name: np.asarray(images, np.float32)})[0]
    return float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(ours)))


def measure_onnx_latency(path: Path, *, warmup: int = 10, repeats: int = 50) -> dict:
    """Batch-1 latency of the ONNX model with ONNX Runtime on this CPU, timed exactly as the profiler times the
    layers of a lookup table (same session options and clock): median and spread in ms."""
    from latency_models.profiler import TimingConfig, time_model

    times = time_model(path.read_bytes(), TimingConfig(warmup=warmup, repeats=repeats).check())
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
            "p90_ms": float(np.percentile(times, 90)), "repeats": repeats}


def accuracy(model: nnx.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = _logits(model, jnp.asarray(images[start:start + batch_size]))
        correct += int(np.sum(np.argmax(np.asarray(logits), axis=-1) == labels[start:start + batch_size]))
    return correct / max(len(images), 1)


def export_subnet(model: StaticMobileNetV3, out_dir: str | Path, *, info: dict, input_shape: tuple[int, int, int],
                  test_images: np.ndarray, test_labels: np.ndarray, parity_atol: float = 1e-4,
                  predicted_host_cpu_ms: float | None = None) -> dict:
    """Writes `arch.json`, `params/`, `model.onnx` and `metrics.json` into a new directory `out_dir`.

    `info` (architecture string, space, target, budget, predicted metrics, normalisation) goes into arch.json with
    the network config, so `load_subnet` rebuilds the model without the supernet. Returns the metrics."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UserInputError(f"subnet directory {out_dir} exists already; exports never overwrite")
    out_dir.mkdir(parents=True)
    arch_info = {**info, "input_shape": list(input_shape), "network": model.to_config()}
    (out_dir / "arch.json").write_text(json.dumps(arch_info, indent=2))
    save_params(model, out_dir / "params")
    onnx_path = export_onnx(model, input_shape, out_dir / "model.onnx")
    diff, scale = onnx_parity(model, onnx_path, test_images[:16])
    latency = measure_onnx_latency(onnx_path)
    # float32 rounding grows with the logits' magnitude: the tolerance scales with the largest logit beyond 1
    tolerance = parity_atol * max(1.0, scale)
    metrics = {"onnx_max_abs_diff": diff, "onnx_max_abs_logit": scale, "onnx_parity_atol": parity_atol,
               "onnx_parity_tolerance": tolerance, "onnx_parity_ok": diff <= tolerance,
               "host_cpu_latency_ms_measured": latency["median_ms"], "host_cpu_latency_spread_ms":
               [latency["p10_ms"], latency["p90_ms"]], "test_accuracy": accuracy(model, test_images, test_labels),
               "num_test": int(len(test_images))}
    if predicted_host_cpu_ms is not None:
        metrics["host_cpu_latency_ms_predicted"] = float(predicted_host_cpu_ms)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@dataclass
class LoadedSubnet:
    """An exported subnet as a callable: `subnet(images)` returns logits for NHWC float images."""

    model: StaticMobileNetV3
    info: dict

    def __call__(self, images) -> jax.Array:
        return self.model(jnp.asarray(images, jnp.float32), train=False)

    @property
    def arch(self) -> str:
        return self.info["arch"]


def load_subnet(path: str | Path) -> LoadedSubnet:
    """Rebuilds an exported subnet from its directory (arch.json + params/), without the supernet."""
    path = Path(path)
    arch_file = path / "arch.json"
    if not arch_file.is_file() or not (path / "params").is_dir():
        raise UserInputError(f"{path} is not an exported subnet: expected arch.json and params/ inside it")
    info = json.loads(arch_file.read_text())
    model = nnx.eval_shape(lambda: StaticMobileNetV3.from_config(info["network"], rngs=nnx.Rngs(0)))
    return LoadedSubnet(restore_params(model, path / "params"), info)
