"""The SPOS supernet of nb201: one compilation for every cell, untaken operations untouched (momentum and decay
included), few-shot split, extraction and ONNX parity, and `nas train` resuming after SIGKILL exactly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from flax import nnx

from nas import train
from nas.config import TrainConfig, load_config
from nas.run_dir import RunDir
from search_spaces import get_space
from search_spaces.nb201 import OPS
from supernets import bn_calibration
from supernets.bn_calibration import calibrate_bn
from supernets.nb201_spos import CONV_1X1, CONV_3X3, NB201Supernet, extract
from supernets.nb201_static import StaticNB201
from supernets.pointwise import conv_forward_grads, xla_conv

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "nas" / "experiments" / "nb201_spos_tiny.yaml"
SPACE = get_space("nb201")


def model(split_decision=None, seed=0):
    return NB201Supernet(SPACE, channels=4, cells=2, num_classes=5, split_decision=split_decision,
                         rngs=nnx.Rngs(seed))


def images(n=8, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((n, 16, 16, 3)), jnp.float32)


def step(net, optimizer, arch, lr=0.1):
    labels = np.arange(8) % 5
    return train.train_step(net, optimizer, images(), train.smoothed_targets(labels, 5, 0.1),
                            jnp.asarray(np.atleast_2d(arch), jnp.int32), jnp.float32(lr), jnp.bool_(False),
                            jnp.int32(1))


def sgd(net):
    optimizer = train.create_optimizer(net, TrainConfig(optimizer="sgd", momentum=0.9, weight_decay=5e-4))
    train.commit_to_device(net, optimizer)
    return optimizer


def pure(tree):
    return jax.tree.map(np.array, nnx.to_pure_dict(tree))


def test_one_compilation_trains_and_calibrates_every_cell():
    net = model()
    optimizer = sgd(net)
    cells = SPACE.sample(24, rng=1)
    step(net, optimizer, cells[0])
    traces, calibrations = train.TRACES["train_step"], bn_calibration.TRACES["batch_statistics"]
    for cell in cells[1:]:
        step(net, optimizer, cell)
        calibrate_bn(net, cell, [images(seed=1)])
    assert train.TRACES["train_step"] == traces
    assert bn_calibration.TRACES["batch_statistics"] <= calibrations + 1


def test_operations_a_step_does_not_take_stay_bit_identical_momentum_included():
    net = model()
    optimizer = sgd(net)
    all_3x3, all_1x1 = np.full(6, CONV_3X3), np.full(6, CONV_1X1)
    initial_1x1 = pure(nnx.state(net))["conv1x1"]
    step(net, optimizer, all_3x3)
    after_first = pure(nnx.state(net)), pure(nnx.state(optimizer))
    assert jax.tree.all(jax.tree.map(np.array_equal, after_first[0]["conv1x1"], initial_1x1)), \
        "1x1 convolutions changed in a step that took none (weight decay or momentum leaked)"
    step(net, optimizer, all_1x1)
    params, opt = pure(nnx.state(net)), pure(nnx.state(optimizer))
    assert jax.tree.all(jax.tree.map(np.array_equal, params["conv3x3"], after_first[0]["conv3x3"]))
    momentum = opt["opt_state"]["inner_state"][1][0]["trace"]
    first_momentum = after_first[1]["opt_state"]["inner_state"][1][0]["trace"]
    assert jax.tree.all(jax.tree.map(np.array_equal, momentum["conv3x3"], first_momentum["conv3x3"]))
    assert not np.array_equal(params["conv1x1"][0], initial_1x1[0]), "the taken 1x1 convolutions must train"
    assert np.abs(momentum["conv3x3"][0]).max() > 0, "the first step's momentum must be kept, not zeroed"
    running = params["cell_mean"][0][0]  # (cells, edges, slot, C): slot 1 (3x3) was last set by the first step
    assert np.array_equal(running[:, :, 1], after_first[0]["cell_mean"][0][0][:, :, 1])


def test_edges_that_do_not_reach_the_output_are_not_trained():
    net = model()
    optimizer = sgd(net)
    before = pure(nnx.state(net))["conv3x3"]
    dead = SPACE.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    step(net, optimizer, dead)
    after = pure(nnx.state(net))["conv3x3"]
    assert jax.tree.all(jax.tree.map(np.array_equal, after, before))


def test_few_shot_split_copies_the_weights_and_trains_one_sub_supernet_per_operation():
    net = model(split_decision="edge_3_0")
    optimizer = sgd(net)
    step(net, optimizer, SPACE.sample(1, rng=0)[0])
    net.split()
    split = pure(nnx.state(net, nnx.Param))
    for leaf in jax.tree.leaves(split):
        assert all(np.array_equal(leaf[k], leaf[0]) for k in range(len(OPS)))
    cell = np.full(6, CONV_3X3)
    cell[SPACE.column("edge_3_0")] = CONV_1X1
    step(net, sgd(net), cell)
    stem = pure(nnx.state(net, nnx.Param))["stem"]
    changed = [k for k in range(len(OPS)) if not np.array_equal(stem[k], split["stem"][k])]
    assert changed == [CONV_1X1]


def test_extracted_cells_equal_the_supernet_after_calibration():
    net = model(seed=3)
    optimizer = sgd(net)
    for cell in SPACE.sample(6, rng=2):
        step(net, optimizer, cell)
    cells = np.vstack([SPACE.sample(10, rng=4), np.full((1, 6), CONV_3X3), np.zeros((1, 6), int)])
    x = images(seed=5)
    for cell in cells:
        calibrate_bn(net, cell, [images(seed=6), images(seed=7)])
        static = extract(net, cell)
        rebuilt = StaticNB201.from_config(static.to_config(), rngs=nnx.Rngs(1))
        nnx.update(rebuilt, nnx.state(static))
        ours = np.asarray(net(x, jnp.asarray(cell, jnp.int32)))
        assert np.abs(ours - np.asarray(static(x))).max() <= 1e-5, SPACE.to_string(cell)
        assert np.array_equal(np.asarray(rebuilt(x)), np.asarray(static(x)))


def test_onnx_runtime_matches_the_extracted_cell(tmp_path):
    from nas.export import export_onnx, onnx_logits, onnx_session

    net = model(seed=1)
    cell = SPACE.from_string("|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|"
                             "nor_conv_3x3~2|")
    calibrate_bn(net, cell, [images(seed=2)])
    static = extract(net, cell)
    path = export_onnx(lambda x: static(x), (16, 16, 3), tmp_path / "cell.onnx")
    x = np.asarray(images(seed=3))
    ours, theirs = np.asarray(static(jnp.asarray(x))), onnx_logits(onnx_session(path), x)
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(ours).max())


def test_forward_convolution_gradients_match_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 7, 9, 3)), jnp.float32)
    for k in (1, 3):
        kernel = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)
        loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
        ours = jax.grad(loss(conv_forward_grads), argnums=(0, 1))(x, kernel)
        reference = jax.grad(loss(xla_conv), argnums=(0, 1))(x, kernel)
        for a, b in zip(ours, reference):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_training_edge_gradients_match_autodiff_for_every_operation():
    """`train_edge`'s hand-written derivative against autodiff through `lax.switch`, operation by operation."""
    from supernets.nb201_spos import _edge_forward, train_edge

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 6, 5, 4)), jnp.float32)
    k1, k3 = (jnp.asarray(rng.normal(size=(k, k, 4, 4)), jnp.float32) for k in (1, 3))
    weights = jnp.asarray(rng.normal(size=(3, 6, 5, 4)), jnp.float32)
    for op in range(len(OPS)):
        loss = lambda edge: lambda x, k1, k3: jnp.sum(jnp.sin(edge(jnp.int32(op), x, k1, k3)[0]) * weights)
        ours = jax.grad(loss(train_edge), argnums=(0, 1, 2))(x, k1, k3)
        reference = jax.grad(loss(_edge_forward), argnums=(0, 1, 2))(x, k1, k3)
        for a, b in zip(ours, reference):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=OPS[op])
        assert np.abs(np.asarray(ours[0])).max() > 0 or OPS[op] == "none"


def test_model_config_round_trips_through_json():
    net = model(split_decision="edge_2_1")
    again = NB201Supernet.from_config(yaml.safe_load(yaml.safe_dump(net.config())), rngs=nnx.Rngs(0))
    assert jax.tree.map(np.shape, pure(nnx.state(again))) == jax.tree.map(np.shape, pure(nnx.state(net)))


def nas_train(config_file, *extra, wait=True):
    command = [sys.executable, "-m", "nas.cli", "train", str(config_file), "--no-progress", *extra]
    if wait:
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tiny_config_file(tmp_path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["runs_dir"] = str(tmp_path / "runs")
    data["train"]["checkpoint_every"] = 2
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def params_of(run_dir):
    net, _, _ = train.load_trained_supernet(run_dir)
    return nnx.to_pure_dict(nnx.state(net))


def test_sigkill_then_resume_ends_with_the_uninterrupted_parameters(tmp_path):
    """Across the few-shot split: the split flag and every copy come back from the checkpoint."""
    whole = tiny_config_file(tmp_path / "whole")
    done = nas_train(whole)
    assert done.returncode == 0, done.stderr[-3000:]
    total = max(int(p.name) for p in RunDir.of(load_config(whole)).checkpoints.iterdir()
                                 if p.name.isdigit())
    killed = tiny_config_file(tmp_path / "killed")
    run = RunDir.of(load_config(killed))
    process = nas_train(killed, wait=False)
    while process.poll() is None and not any(p.name.isdigit() and int(p.name) >= total - 2
                                             for p in (run.checkpoints.iterdir() if run.checkpoints.is_dir() else [])):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    resumed = nas_train(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = params_of(RunDir.of(load_config(whole)).root), params_of(run.root)
    assert jax.tree.all(jax.tree.map(np.array_equal, got, expected))
    assert int(np.asarray(got["split_flag"])) == 1


def test_gradients_equal_the_static_networks_for_random_cells():
    """The supernet's gradient for a cell is the standalone network's: edges, stem and classifier alike."""
    from search_spaces.nb201 import EDGES

    net = model(seed=2)
    x = images(seed=4)
    for cell in SPACE.sample(5, rng=3):
        arch = jnp.asarray(cell, jnp.int32)
        static = nnx.view(extract(net, cell), use_running_average=False, raise_if_not_found=False)
        ours = nnx.grad(lambda m: jnp.sum(jnp.sin(m.forward(x, arch, "train")[0])))(net)
        theirs = nnx.grad(lambda n: jnp.sum(jnp.sin(n(x))))(static)
        np.testing.assert_allclose(ours["stem"][...][0], theirs["stem"]["kernel"][...], atol=1e-4)
        np.testing.assert_allclose(ours["classifier_kernel"][...][0], theirs["classifier"]["kernel"][...], atol=1e-4)
        ops = static.to_config()["ops"]
        for j, (to, src) in enumerate(EDGES):
            if ops[j] in ("nor_conv_1x1", "nor_conv_3x3"):
                edge = (ours["conv1x1"] if ops[j] == "nor_conv_1x1" else ours["conv3x3"])[0][...][0, 0, j]
                expected = theirs["stages"][0][0]["convs"][f"edge_{to}_{src}"]["conv"]["kernel"][...]
                np.testing.assert_allclose(edge.reshape(expected.shape), expected, atol=1e-4)


def test_each_step_changes_exactly_the_convolutions_its_cell_takes_edge_by_edge():
    from supernets.nb201_spos import effective_ops

    net = model(seed=4)
    optimizer = sgd(net)
    for cell in SPACE.sample(4, rng=7):
        before = pure(nnx.state(net, nnx.Param))
        step(net, optimizer, cell, lr=0.01)
        after = pure(nnx.state(net, nnx.Param))
        ops = np.asarray(effective_ops(jnp.asarray(cell, jnp.int32)))
        for name, op in (("conv1x1", CONV_1X1), ("conv3x3", CONV_3X3)):
            for stage in range(3):
                changed = [bool((before[name][stage][0, :, j] != after[name][stage][0, :, j]).any())
                           for j in range(6)]
                assert changed == [bool(o == op) for o in ops], (SPACE.to_string(cell), name, stage)
