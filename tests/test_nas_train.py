"""Supernet training: optimizer rules, the sandwich step, a tiny run end to end, and exact resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from flax import nnx

from nas import train
from nas.config import TrainConfig, dump_config, load_config
from nas.run_dir import MetricsLog, RunDir, open_run
from search_spaces.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "nas" / "experiments" / "tiny_train.yaml"


class Toy(nnx.Module):
    """A linear classifier whose arch[1] scales its input, with a running mean standing in for BN statistics."""

    def __init__(self, rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (12, 5)) * 0.3)
        self.b = nnx.Param(jnp.full((5,), 0.5))
        self.mean = nnx.BatchStat(jnp.zeros((12,)))

    def __call__(self, x, arch, train=False):
        x = x.reshape(x.shape[0], -1) * (1.0 + arch[1]).astype(x.dtype)
        if train:
            self.mean[...] = 0.9 * self.mean[...] + 0.1 * x.mean(axis=0)
        return x @ self.w[...] + self.b[...]


def optimizer_config(**kwargs):
    return TrainConfig(**{"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, **kwargs})


def toy_batch():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(8, 2, 2, 3)), jnp.float32)
    return images, train.smoothed_targets(rng.integers(0, 5, 8), 5, 0.1)


def step_delta(archs, distill=False):
    model = Toy(nnx.Rngs(0))
    optimizer = train.create_optimizer(model, optimizer_config())
    before = model.w[...]
    loss = train.train_step(model, optimizer, *toy_batch(), jnp.asarray(archs, jnp.int32), jnp.float32(0.1),
                            distill=distill)
    return model.w[...] - before, model.mean[...], float(loss)


@pytest.mark.parametrize("name, first_step_factor", [("sgd", 1.9), ("adamw", 1.0)])
def test_weight_decay_applies_to_kernels_not_to_biases_or_bn(name, first_step_factor):
    """Zero gradients: kernels shrink by lr * wd (times 1 + momentum for Nesterov's first step), biases stay."""
    model = Toy(nnx.Rngs(0))
    optimizer = train.create_optimizer(model, optimizer_config(optimizer=name, weight_decay=0.5))
    optimizer.opt_state.hyperparams["learning_rate"][...] = jnp.float32(0.1)
    w, b = model.w[...], model.b[...]
    optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    np.testing.assert_allclose(model.w[...], w * (1 - 0.1 * 0.5 * first_step_factor), rtol=1e-6)
    np.testing.assert_array_equal(model.b[...], b)


def test_smoothed_targets():
    targets = np.asarray(train.smoothed_targets(np.array([2, 0]), 4, 0.2))
    np.testing.assert_allclose(targets[0], [0.05, 0.05, 0.85, 0.05], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


def test_train_step_sums_the_gradients_of_its_subnets():
    arch = [0, 1]
    single, mean_once, _ = step_delta([arch])
    double, mean_twice, _ = step_delta([arch, arch])
    np.testing.assert_allclose(double, 2 * single, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean_once, mean_twice)


def test_distilled_subnets_learn_from_the_first_subnet():
    model = Toy(nnx.Rngs(0))
    images, hard = toy_batch()
    teacher = model(images, jnp.array([0, 2]))
    student = model(images, jnp.array([0, 0]))
    expected = (optax.softmax_cross_entropy(teacher, hard).mean()
                + optax.softmax_cross_entropy(student, jax.nn.softmax(teacher)).mean()) / 2
    _, _, loss = step_delta([[0, 2], [0, 0]], distill=True)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    _, _, loss = step_delta([[0, 2], [0, 0]], distill=False)
    assert loss == pytest.approx(float(optax.softmax_cross_entropy(teacher, hard).mean()
                                       + optax.softmax_cross_entropy(student, hard).mean()) / 2, rel=1e-5)


def tiny_config_file(tmp_path, **train_overrides) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["runs_dir"] = str(tmp_path / "runs")
    data["train"].update(train_overrides)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def params_of(run_dir):
    model, _, _ = train.load_trained_supernet(run_dir)
    return nnx.to_pure_dict(nnx.state(model))


def nas_train(config_file, *extra, wait=True):
    """`nas train` in a subprocess, sharing the test session's persistent compilation cache (JAX logs every
    compilation to stderr, cache hits included)."""
    env = dict(os.environ, JAX_LOG_COMPILES="1")
    command = [sys.executable, "-m", "nas.cli", "train", str(config_file), "--no-progress", *extra]
    if wait:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One uninterrupted `nas train` of the tiny config (JAX logs every compilation to stderr)."""
    tmp_path = tmp_path_factory.mktemp("tiny")
    config_file = tiny_config_file(tmp_path)
    done = nas_train(config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    config = load_config(config_file)
    rows = MetricsLog(RunDir.of(config).metrics, train.METRIC_FIELDS).rows()
    return tmp_path, config, rows, done.stderr


def test_train_step_compiles_once_per_image_shape():
    """New subnets, subnet counts, distillation on or off, learning rates and a phase's optimizer reset reuse the
    compiled step; a new resolution does not."""
    model = Toy(nnx.Rngs(0))
    optimizer = train.create_optimizer(model, optimizer_config())
    train.commit_to_device(model, optimizer)
    images, targets = toy_batch()
    before = train_step_cache_size()
    for step, (arch, count, distill) in enumerate([([0, 0], 1, False), ([0, 2], 2, True), ([0, 1], 2, True),
                                                   ([0, 2], 1, False)]):
        if step == 2:
            train.reset_optimizer(optimizer, model)
        train.train_step(model, optimizer, images, targets, jnp.asarray([arch, [0, 0]]), jnp.float32(0.1 / (step + 1)),
                         jnp.bool_(distill), jnp.int32(count))
    assert train_step_cache_size() == before + 1
    fresh = Toy(nnx.Rngs(1))
    fresh_optimizer = train.create_optimizer(fresh, optimizer_config())
    train.commit_to_device(fresh, fresh_optimizer)
    train.train_step(fresh, fresh_optimizer, images, targets, jnp.asarray([[0, 1], [0, 0]]), jnp.float32(0.1),
                     jnp.bool_(True), jnp.int32(2))
    assert train_step_cache_size() == before + 1, "a new model and optimizer of the same config retraced"
    wider = jnp.concatenate([images, images], axis=2)
    model = Toy(nnx.Rngs(0))
    model.w = nnx.Param(jnp.zeros((24, 5)))
    model.mean = nnx.BatchStat(jnp.zeros((24,)))
    optimizer = train.create_optimizer(model, optimizer_config())
    train.commit_to_device(model, optimizer)
    for _ in range(2):
        train.train_step(model, optimizer, wider, targets, jnp.asarray([[0, 1], [0, 0]]), jnp.float32(0.1),
                         jnp.bool_(True), jnp.int32(2))
    assert train_step_cache_size() == before + 2


def test_rows_beyond_the_subnet_count_are_not_trained():
    model = Toy(nnx.Rngs(0))
    optimizer = train.create_optimizer(model, optimizer_config())
    before = model.w[...]
    loss = train.train_step(model, optimizer, *toy_batch(), jnp.asarray([[0, 2], [0, 1]], jnp.int32),
                            jnp.float32(0.1), jnp.bool_(True), jnp.int32(1))
    np.testing.assert_array_equal(train.padded_subnets(np.array([[0, 2]]), 3), [[0, 2], [0, 0], [0, 0]])
    alone, mean, alone_loss = step_delta([[0, 2]])
    np.testing.assert_allclose(model.w[...] - before, alone, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.mean[...], mean, rtol=1e-6)
    assert float(loss) == pytest.approx(alone_loss, rel=1e-6)


def train_step_cache_size():
    return train.TRACES["train_step"]


def test_tiny_run_compiles_its_step_once(tiny_run):
    _, _, rows, stderr = tiny_run
    steps = [r for r in rows if r["loss"]]
    assert [r["step"] for r in steps] == [str(s) for s in range(1, len(steps) + 1)]
    assert {(r["resolution"], r["subnets"]) for r in steps} == {("32", "3")}
    assert stderr.count("Compiling jit(train_step)") == 1
    assert stderr.count("Compiling jit(eval_step)") == 1


def test_tiny_run_logs_metrics_and_phase_end_accuracies(tiny_run):
    _, config, rows, _ = tiny_run
    evals = [r for r in rows if r["val_acc_largest"]]
    assert [r["phase"] for r in evals] == [p.name for p in config.train.phases]
    assert all(0 <= float(r["val_acc_smallest"]) <= 1 for r in evals)
    assert all(np.isfinite(float(r["loss"])) and float(r["lr"]) > 0 for r in rows if r["loss"])
    assert {int(r["resolution"]) for r in rows if r["loss"]} <= set(config.space.resolutions)


def test_tiny_run_updates_the_supernet_it_checkpoints(tiny_run):
    """The trainer's cached step writes into the model it checkpoints: the fixed layers' kernels and the first
    elastic block's projection moved away from their initialisation (same seed)."""
    _, config, _, _ = tiny_run
    trained, _, _ = train.load_trained_supernet(RunDir.of(config).root)
    initial = train.create_model(config, config.build_space(), trained.num_classes)
    for name in ("first_conv_kernel", "final_expand_kernel", "feature_mix_kernel", "classifier_kernel"):
        assert not np.allclose(getattr(trained, name)[...], getattr(initial, name)[...]), name
    assert not np.allclose(trained.blocks[0].project_kernel[...], initial.blocks[0].project_kernel[...])


def test_a_new_run_never_overwrites_an_existing_one(tiny_run):
    _, config, _, _ = tiny_run
    before = RunDir.of(config).metrics.read_bytes()
    with pytest.raises(UserInputError, match="already exists"):
        train.train_and_evaluate(config, progress=False)
    assert RunDir.of(config).metrics.read_bytes() == before


def test_corrupt_checkpoint_is_refused_on_resume_and_left_alone(tiny_run, tmp_path):
    _, config, _, _ = tiny_run
    checkpoints = RunDir.of(config).checkpoints
    latest = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    corrupt_config = load_config(tiny_config_file(tmp_path))
    run = open_run(corrupt_config, dump_config(corrupt_config), resume=False)
    target = run.checkpoints / str(latest)
    target.mkdir(parents=True)
    (target / "meta").mkdir()
    (target / "meta" / "metadata").write_text("{ not json")
    with pytest.raises(UserInputError, match="checkpoint .* cannot be restored"):
        train.train_and_evaluate(corrupt_config, resume=True, progress=False)
    assert (target / "meta" / "metadata").read_text() == "{ not json"


def test_sigkill_mid_phase_then_resume_ends_with_the_uninterrupted_parameters(tiny_run, tmp_path):
    source_dir, config, rows, _ = tiny_run
    total = max(int(r["step"]) for r in rows)
    config_file = tiny_config_file(tmp_path)
    run = RunDir.of(load_config(config_file))
    process = nas_train(config_file, wait=False)
    kill_after = total - 3  # a checkpoint inside the last phase (checkpoints every 3 steps, phases of 4)
    while process.poll() is None and not any(int(p.name) >= kill_after for p in _steps(run.checkpoints)):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert max(int(p.name) for p in _steps(run.checkpoints)) < total
    resumed = nas_train(config_file, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = params_of(RunDir.of(config).root), params_of(run.root)
    assert jax.tree.all(jax.tree.map(np.array_equal, got, expected))
    steps = [r["step"] for r in MetricsLog(run.metrics, train.METRIC_FIELDS).rows() if r["loss"]]
    assert steps == [str(s) for s in range(1, total + 1)]


def _steps(directory):
    return [p for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
