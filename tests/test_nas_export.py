"""Exported subnets take raw images: ONNX Runtime matches JAX, the file passes ONNX's full check and loads without
warnings, params reload without the supernet, nothing is overwritten."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from nas.export import deployable, export_onnx, export_subnet, load_subnet, onnx_parity
from search_spaces import UserInputError
from supernets.static import StaticMobileNetV3

TINY_NETWORK = {
    "name": "StaticMobileNetV3",
    "first_conv": {"name": "ConvBNAct", "in_channels": 3, "out_channels": 8, "kernel": 3, "stride": 2,
                   "act": "hswish"},
    "blocks": [
        {"name": "MBConvBlock", "in_channels": 8, "out_channels": 8, "kernel": 3, "stride": 1, "expand_channels": 8,
         "act": "relu", "se": False},
        {"name": "MBConvBlock", "in_channels": 8, "out_channels": 16, "kernel": 5, "stride": 2,
         "expand_channels": 32, "act": "hswish", "se": True},
    ],
    "final_expand": {"name": "ConvBNAct", "in_channels": 16, "out_channels": 32, "kernel": 1, "act": "hswish"},
    "feature_mix": {"name": "ConvBNAct", "in_channels": 32, "out_channels": 48, "kernel": 1, "act": "hswish",
                    "use_bn": False},
    "classifier": {"name": "Classifier", "in_features": 48, "out_features": 5},
}


NORMALIZATION = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}


def perturbed_model():
    """The tiny network with BN statistics and scales away from their initial values, so a missing or wrong
    normalisation or BN mode changes the logits."""
    model = StaticMobileNetV3.from_config(TINY_NETWORK, rngs=nnx.Rngs(3))
    rng = np.random.default_rng(1)
    for path, variable in nnx.iter_graph(model):
        if isinstance(variable, nnx.BatchStat) and path[-1] == "var":
            variable.set_value(rng.uniform(0.5, 2.0, variable.shape).astype(np.float32))
        elif isinstance(variable, nnx.BatchStat):
            variable.set_value(rng.normal(0, 0.3, variable.shape).astype(np.float32))
    return model


def normalized(images):
    return (images - np.float32(NORMALIZATION["mean"])) / np.float32(NORMALIZATION["std"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = perturbed_model()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (300, 16, 16, 3)).astype(np.float32)
    # labels the model itself predicts on 2 of 3 images: the recorded accuracy must come out near 2/3
    predicted = np.argmax(np.asarray(model(normalized(images), train=False)), axis=-1)
    labels = np.where(np.arange(300) % 3 == 0, (predicted + 1) % 5, predicted)
    out = tmp_path_factory.mktemp("run") / "subnets" / "host-cpu-0"
    metrics = export_subnet(model, out, info={"arch": "tiny", "target": "host-cpu", "budget_ms": 1.0},
                            input_shape=(16, 16, 3), normalization=NORMALIZATION, test_images=images,
                            test_labels=labels, predicted_host_cpu_ms=0.5)
    return model, images, out, metrics


def test_onnx_on_raw_images_matches_jax_and_metrics_are_recorded(exported):
    import onnxruntime as ort

    model, images, out, metrics = exported
    assert metrics["onnx_parity_ok"] and metrics["onnx_max_abs_diff"] <= 1e-4
    assert metrics["host_cpu_latency_ms_measured"] > 0
    assert metrics["num_test"] == 300 and metrics["test_accuracy"] == pytest.approx(200 / 300)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {p.name for p in out.iterdir()} == {"arch.json", "params", "model.onnx", "metrics.json"}
    session = ort.InferenceSession(str(out / "model.onnx"))
    theirs = session.run(None, {"images": images[:8]})[0]
    np.testing.assert_allclose(theirs, np.asarray(model(normalized(images[:8]), train=False)), atol=1e-4)


def test_onnx_file_passes_the_full_check_and_loads_without_warnings(exported):
    import onnx

    onnx.checker.check_model(onnx.load(str(exported[2] / "model.onnx")), full_check=True)
    script = ("import onnxruntime as ort; o = ort.SessionOptions(); o.log_severity_level = 1; "
              f"ort.InferenceSession({str(exported[2] / 'model.onnx')!r}, o)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Error merging shape info" not in result.stderr and "[W:" not in result.stderr, result.stderr[-2000:]


def test_export_prints_no_warning_per_layer(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
              "from pathlib import Path; from test_nas_export import perturbed_model; "
              "from nas.export import deployable, export_onnx; "
              f"export_onnx(deployable(perturbed_model(), {NORMALIZATION!r}), (16, 16, 3), "
              f"Path({str(tmp_path / 'm.onnx')!r}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "WARNING" not in result.stderr and "BatchNorm" not in result.stderr, result.stderr[-2000:]


def test_onnx_graph_uses_grouped_conv_for_depthwise(exported):
    import onnx

    graph = onnx.load(str(exported[2] / "model.onnx")).graph
    groups = [a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert 32 in groups and 8 in groups


def test_load_subnet_takes_raw_float_uint8_and_single_images(exported):
    model, images, out, _ = exported
    subnet = load_subnet(out)
    assert subnet.arch == "tiny"
    expected = np.asarray(model(normalized(images[:8]), train=False))
    np.testing.assert_allclose(np.asarray(subnet(images[:8])), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(subnet(images[0])), expected[0], atol=1e-5)
    as_uint8 = np.round(images[:4] * 255).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(subnet(as_uint8)),
                               np.asarray(model(normalized(as_uint8 / np.float32(255)), train=False)), atol=1e-5)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 8, 8, 3), np.float32), "shape"),
    (np.zeros((2, 3, 16, 16), np.float32), "shape"),
    (np.full((2, 16, 16, 3), 200.0, np.float32), r"\[0, 1\]"),
    (np.zeros((2, 16, 16, 3), np.int64), "dtype"),
])
def test_load_subnet_rejects_input_it_would_misread(exported, images, message):
    with pytest.raises(UserInputError, match=message):
        load_subnet(exported[2])(images)


def test_export_never_overwrites_and_load_checks_layout(exported, tmp_path):
    model, images, out, _ = exported
    before = (out / "model.onnx").read_bytes()
    with pytest.raises(UserInputError, match="never overwrite"):
        export_subnet(model, out, info={"arch": "tiny"}, input_shape=(16, 16, 3), normalization=NORMALIZATION,
                      test_images=images, test_labels=np.zeros(300, int))
    assert (out / "model.onnx").read_bytes() == before
    with pytest.raises(UserInputError, match="not an exported subnet"):
        load_subnet(tmp_path)


class WideClassifier(nnx.Module):
    """2.3 MB of weights: above the size at which ONNX writers spill initializers into a sidecar file."""

    def __init__(self):
        self.linear = nnx.Linear(12 * 12 * 4, 1000, rngs=nnx.Rngs(0))

    def __call__(self, x, train=False):
        return self.linear(x.reshape(x.shape[0], -1))


def test_large_weights_stay_inside_the_one_onnx_file(tmp_path):
    model = WideClassifier()
    normalization = {"mean": [0.0] * 4, "std": [1.0] * 4}
    path = export_onnx(deployable(model, normalization), (12, 12, 4), tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    images = np.random.default_rng(0).uniform(0, 1, (3, 12, 12, 4)).astype(np.float32)
    diff, _ = onnx_parity(model, normalization, path, images)
    assert diff < 1e-4
