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
from supernets.registry import static_network_from_config

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


def scale_and_shift(normalization: dict) -> tuple[np.ndarray, np.ndarray]:
    """`(x - mean) / std` per channel as one multiply and one add: (1 / std, -mean / std), float32."""
    mean = np.asarray(normalization["mean"], np.float32)
    std = np.asarray(normalization["std"], np.float32)
    return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)


def deployable(model: nnx.Module, normalization: dict):
    """`raw images -> logits`: normalisation inside, every BatchNorm on its running statistics."""
    network = nnx.view(model, use_running_average=True, raise_if_not_found=False)
    scale, shift = scale_and_shift(normalization)
    return lambda x: network(x * scale + shift, train=False)


@nnx.jit
def _logits(model: nnx.Module, images, scale, shift):
    return model(images * scale + shift, train=False)


def _jax_logits(model: nnx.Module, normalization: dict, images) -> np.ndarray:
    scale, shift = scale_and_shift(normalization)
    return np.asarray(_logits(model, jnp.asarray(images, jnp.float32), jnp.asarray(scale), jnp.asarray(shift)))


def export_onnx(function, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Writes `function` (NHWC float32 input with a dynamic batch named `images`, output `logits`) as one
    self-contained ONNX file through jax2onnx (weights embedded, never spilled into a `.onnx.data` sidecar).

    jax2onnx's intermediate shape annotations can disagree with the tensors it writes (a channel axis in NCHW
    order on an NHWC tensor), which ONNX Runtime reports as warnings at load: they are dropped and inferred again
    by ONNX's own shape inference, and the file must pass `onnx.checker.check_model(full_check=True)`."""
    import onnx
    from jax2onnx import to_onnx

    to_onnx(function, [("B", *input_shape)], model_name=path.stem, return_mode="file", output_path=str(path),
            input_names=["images"], output_names=["logits"], export_mode="web")
    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(proto, full_check=True)
    path.write_bytes(proto.SerializeToString())
    return path


def onnx_session(path: Path):
    """An ONNX Runtime session on this CPU as the profiler opens one (same options and provider)."""
    from latency_models.profiler import TimingConfig, make_session

    return make_session(path.read_bytes(), TimingConfig())


def onnx_logits(session, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: np.asarray(images[i:i + batch_size], np.float32)})[0]
                           for i in range(0, len(images), batch_size)])


def onnx_parity(model: nnx.Module, normalization: dict, path: Path, images: np.ndarray) -> tuple[float, float]:
    """(max absolute difference between ONNX Runtime's and JAX's logits on raw `images`, largest |logit|)."""
    return _parity(_jax_logits(model, normalization, images), onnx_logits(onnx_session(path), images))


def _parity(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    return float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(ours)))


def measure_onnx_latency(path: Path, *, warmup: int = 10, repeats: int = 50) -> dict:
    """Batch-1 latency of the ONNX model with ONNX Runtime on this CPU, timed exactly as the profiler times the
    layers of a lookup table (same session options and clock): median and spread in ms."""
    from latency_models.profiler import TimingConfig, time_model

    times = time_model(path.read_bytes(), TimingConfig(warmup=warmup, repeats=repeats).check())
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
            "p90_ms": float(np.percentile(times, 90)), "repeats": repeats}


def input_spec(input_shape: tuple[int, int, int]) -> dict:
    """How to feed an exported subnet, as arch.json records it."""
    return {"name": "images", "layout": "NHWC", "shape": ["batch", *input_shape], "dtype": "float32",
            "range": [0.0, 1.0], "normalization": "inside the model"}


def export_subnet(model: nnx.Module, out_dir: str | Path, *, info: dict, input_shape: tuple[int, int, int],
                  normalization: dict, test_images: np.ndarray, test_labels: np.ndarray, parity_atol: float = 1e-4,
                  predicted_host_cpu_ms: float | None = None) -> dict:
    """Writes `arch.json`, `params/`, `model.onnx` and `metrics.json` into a new directory `out_dir`.

    `model.onnx` takes raw images as the data loader yields them before normalisation (float32 NHWC in [0, 1]):
    `normalization` ({"mean", "std"} per channel) is inside the graph. `info` (architecture string, space, target,
    budget, predicted metrics) goes into arch.json with the network config, the normalisation and the input spec,
    so `load_subnet` rebuilds the model without the supernet. The test accuracy in metrics.json is measured by
    running `model.onnx` with ONNX Runtime over all of `test_images` (raw). Returns the metrics."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UserInputError(f"subnet directory {out_dir} exists already; exports never overwrite")
    out_dir.mkdir(parents=True)
    normalization = {k: np.asarray(normalization[k], np.float32).tolist() for k in ("mean", "std")}
    arch_info = {**info, "input_shape": list(input_shape), "input": input_spec(input_shape),
                 "normalization": normalization, "network": model.to_config()}
    (out_dir / "arch.json").write_text(json.dumps(arch_info, indent=2))
    save_params(model, out_dir / "params")
    onnx_path = export_onnx(deployable(model, normalization), input_shape, out_dir / "model.onnx")
    onnx_test_logits = onnx_logits(onnx_session(onnx_path), test_images)
    diff, scale = _parity(_jax_logits(model, normalization, test_images[:32]), onnx_test_logits[:32])
    correct = np.argmax(onnx_test_logits, axis=-1) == np.asarray(test_labels)
    latency = measure_onnx_latency(onnx_path)
    # float32 rounding grows with the logits' magnitude: the tolerance scales with the largest logit beyond 1
    tolerance = parity_atol * max(1.0, scale)
    metrics = {"onnx_max_abs_diff": diff, "onnx_max_abs_logit": scale, "onnx_parity_atol": parity_atol,
               "onnx_parity_tolerance": tolerance, "onnx_parity_ok": diff <= tolerance,
               "host_cpu_latency_ms_measured": latency["median_ms"], "host_cpu_latency_spread_ms":
               [latency["p10_ms"], latency["p90_ms"]],
               "test_accuracy": float(np.mean(correct)) if len(correct) else 0.0,
               "test_accuracy_measured_by": "onnxruntime on model.onnx, raw test images",
               "num_test": int(len(test_images))}
    if predicted_host_cpu_ms is not None:
        metrics["host_cpu_latency_ms_predicted"] = float(predicted_host_cpu_ms)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@dataclass
class LoadedSubnet:
    """An exported subnet as a callable: `subnet(images)` returns logits for raw images, as `model.onnx` does.

    `images`: float32 in [0, 1] or uint8 in [0, 255] (divided by 255), NHWC batches or one HWC image (then the
    logits of that image alone, shape (classes,)). Normalisation happens inside."""

    model: nnx.Module
    info: dict

    def __call__(self, images) -> jax.Array:
        images = np.asarray(images)
        expected = tuple(self.info["input_shape"])
        single = images.ndim == 3
        batch = images[None] if single else images
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise UserInputError(f"subnet {self.arch!r} takes images of shape (batch, {', '.join(map(str, expected))})"
                                 f" or one image {expected}, NHWC; got shape {images.shape}")
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32) / 255.0
        elif np.issubdtype(batch.dtype, np.floating):
            batch = batch.astype(np.float32)
            low, high = (float(batch.min()), float(batch.max())) if batch.size else (0.0, 0.0)
            if low < -1e-3 or high > 1 + 1e-3:
                raise UserInputError(f"subnet {self.arch!r} takes raw float images in [0, 1] (or uint8); got values "
                                     f"in [{low:.4g}, {high:.4g}]; do not normalise them, the model does")
        else:
            raise UserInputError(f"subnet {self.arch!r} takes float32 images in [0, 1] or uint8 images; got dtype "
                                 f"{images.dtype}")
        logits = _jax_logits(self.model, self.info["normalization"], batch)
        return jnp.asarray(logits[0] if single else logits)

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
    model = nnx.eval_shape(lambda: static_network_from_config(info["network"], rngs=nnx.Rngs(0)))
    return LoadedSubnet(restore_params(model, path / "params"), info)
