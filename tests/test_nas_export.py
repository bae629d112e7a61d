"""Exported subnets: ONNX Runtime matches JAX, params reload without the supernet, nothing is overwritten."""

import json

import numpy as np
import pytest
from flax import nnx

from nas.export import export_onnx, export_subnet, load_subnet, onnx_parity
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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = StaticMobileNetV3.from_config(TINY_NETWORK, rngs=nnx.Rngs(3))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 5, 24)
    out = tmp_path_factory.mktemp("run") / "subnets" / "host-cpu-0"
    metrics = export_subnet(model, out, info={"arch": "tiny", "target": "host-cpu", "budget_ms": 1.0},
                            input_shape=(16, 16, 3), test_images=images, test_labels=labels,
                            predicted_host_cpu_ms=0.5)
    return model, images, out, metrics


def test_onnx_matches_jax_and_metrics_are_recorded(exported):
    _, _, out, metrics = exported
    assert metrics["onnx_parity_ok"] and metrics["onnx_max_abs_diff"] <= 1e-4
    assert metrics["host_cpu_latency_ms_measured"] > 0 and 0 <= metrics["test_accuracy"] <= 1
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {p.name for p in out.iterdir()} == {"arch.json", "params", "model.onnx", "metrics.json"}


def test_onnx_graph_uses_grouped_conv_for_depthwise(exported):
    import onnx

    graph = onnx.load(str(exported[2] / "model.onnx")).graph
    groups = [a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert 32 in groups and 8 in groups


def test_load_subnet_reproduces_the_model(exported):
    model, images, out, _ = exported
    subnet = load_subnet(out)
    assert subnet.arch == "tiny"
    np.testing.assert_allclose(np.asarray(subnet(images)), np.asarray(model(images, train=False)), atol=1e-6)


def test_export_never_overwrites_and_load_checks_layout(exported, tmp_path):
    model, images, out, _ = exported
    before = (out / "model.onnx").read_bytes()
    with pytest.raises(UserInputError, match="never overwrite"):
        export_subnet(model, out, info={"arch": "tiny"}, input_shape=(16, 16, 3), test_images=images,
                      test_labels=np.zeros(24, int))
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
    path = export_onnx(model, (12, 12, 4), tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    images = np.random.default_rng(0).standard_normal((3, 12, 12, 4)).astype(np.float32)
    diff, _ = onnx_parity(model, path, images)
    assert diff < 1e-4
