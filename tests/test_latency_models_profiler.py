"""Profiler: tables written as it goes, resume continues, settings must match, real export of a tiny layer."""

import json

import numpy as np
import pytest

import latency_models.profiler as profiler
from latency_models.layers import Layer, space_layers
from latency_models.lut import LookupTable
from search_spaces import get_space
from search_spaces.errors import UserInputError

FAST = profiler.TimingConfig(warmup=1, repeats=3)


@pytest.fixture
def fake_export(monkeypatch):
    """Times an identity model of the layer's input instead of exporting it (the timing path stays real)."""
    exported = []

    def export(layer, batch_size=1):
        exported.append(layer.key)
        return profiler.identity_model((batch_size, layer.hw, layer.hw, layer.cin))
    monkeypatch.setattr(profiler, "export_layer", export)
    return exported


def test_profile_writes_every_layer_with_metadata(tmp_path, fake_export):
    space = get_space("nb201")
    table = profiler.profile(space, "host-cpu", tmp_path / "t.json", timing=FAST, progress=False)
    loaded = LookupTable.load(tmp_path / "t.json")
    assert set(loaded.entries) == set(space_layers(space).keys)
    meta = loaded.metadata
    assert meta["method"] == "measured" and meta["device"] == "host-cpu" and meta["threads"] == 1
    assert meta["runtime"] == "onnxruntime" and meta["overhead_ms"] > 0
    assert all(e["count"] == 3 for k, e in loaded.entries.items() if not k.startswith("identity"))
    assert all(loaded.entries[k]["mean"] == 0 for k in loaded.entries if k.startswith("identity"))
    assert table.predict(space, space.sample(5, 0)).shape == (5,)


def test_resume_measures_only_missing_layers(tmp_path, fake_export):
    space = get_space("nb201")
    path = tmp_path / "t.json"
    profiler.profile(space, "host-cpu", path, timing=FAST, progress=False)
    data = json.loads(path.read_text())
    dropped = sorted(k for k in data["entries"] if not k.startswith("identity"))[:3]
    for key in dropped:
        del data["entries"][key]
    path.write_text(json.dumps(data))
    fake_export.clear()
    profiler.profile(space, "host-cpu", path, resume=True, timing=FAST, progress=False)
    assert sorted(fake_export) == dropped
    with pytest.raises(UserInputError, match="--resume"):
        profiler.profile(space, "host-cpu", path, timing=FAST, progress=False)
    with pytest.raises(UserInputError, match="threads"):
        profiler.profile(space, "host-cpu", path, resume=True, progress=False,
                         timing=profiler.TimingConfig(warmup=1, repeats=3, threads=2))


def test_bad_timing_settings_are_errors(tmp_path):
    with pytest.raises(UserInputError, match="repeats"):
        profiler.profile(get_space("nb201"), "host-cpu", tmp_path / "t.json",
                         timing=profiler.TimingConfig(repeats=0), progress=False)
    with pytest.raises(UserInputError, match="provider"):
        profiler.time_model(profiler.identity_model((1, 2)), profiler.TimingConfig(provider="NoSuchProvider"))
    with pytest.raises(UserInputError, match="single-threaded"):
        profiler.TimingConfig(threads=2, clock="thread").check()
    assert profiler.TimingConfig(threads=2).check().resolved_clock == "wall"


def test_interleaved_timing_gives_one_sample_set_per_model():
    models = [profiler.identity_model((1, n)) for n in (4, 400, 40000)]
    times = profiler.time_models(models, profiler.TimingConfig(warmup=1, repeats=7))
    assert [t.shape for t in times] == [(7,)] * 3 and all((t >= 0).all() for t in times)


def test_energy_recorded_with_a_power_reader(tmp_path, fake_export):
    table = profiler.profile(get_space("nb201"), "host-cpu", tmp_path / "t.json", timing=FAST, progress=False,
                             power_reader=lambda: 5.0)
    conv = next(e for k, e in table.entries.items() if k.startswith("relu_conv_bn"))
    assert conv["energy_mj"]["mean"] == pytest.approx(5.0 * conv["median"])


def test_exported_layer_matches_the_module():
    import onnxruntime as ort
    from latency_models.layer_modules import build_module, input_shape
    layer = Layer("mbconv", 4, 8, 8, 3, 1, 16, 8, "hswish")
    session = ort.InferenceSession(profiler.export_layer(layer))
    x = np.random.default_rng(0).standard_normal(input_shape(layer)).astype(np.float32)
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(onnx_out, np.asarray(build_module(layer)(x)), rtol=1e-4, atol=1e-4)
