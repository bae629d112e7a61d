"""Tests for supernets.ofa_mbv3: one compilation serves every subnet; BN, depth, expand and channel sorting."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from search_spaces import get_space
from search_spaces.ofa_mbv3 import DEPTH, EXPAND, KERNEL
from supernets.ofa_mbv3 import OFAMobileNetV3

RES = 16


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3", resolutions=(RES,))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((4, RES, RES, 3)), jnp.float32),
            jnp.asarray(rng.integers(0, 5, 4), jnp.int32))


def _model(space, seed=0, trained_scales=True):
    """A fresh supernet; with `trained_scales` every BN scale is 1, as residual branches are after training (they
    start at 0), so depth and the residual blocks' choices change the output."""
    model = OFAMobileNetV3(space, width_mult=0.25, num_classes=5, rngs=nnx.Rngs(seed))
    if trained_scales:
        for bn in model.batch_norms():
            bn.scale[...] = jnp.ones_like(bn.scale[...])
    return model


def test_residual_blocks_start_as_identity_so_a_deep_subnet_starts_as_its_shallow_part(space, batch):
    model = _model(space, trained_scales=False)
    shallow = space.smallest()
    deep = shallow.copy()
    residual = np.array([i for i, block in enumerate(model.blocks) if block.residual])
    deep[DEPTH] = 2
    deep[KERNEL.start + residual] = 2
    deep[EXPAND.start + residual] = 2
    np.testing.assert_array_equal(_eval(model, batch[0], jnp.asarray(shallow)),
                                  _eval(model, batch[0], jnp.asarray(deep)))
    assert len(residual) and all(np.all(np.asarray(model.blocks[int(i)].project_bn.scale[...]) == 0) for i in residual)
    assert all(np.all(np.asarray(b.project_bn.scale[...]) == 1) for b in model.blocks if not b.residual)


TRACES = {"train": 0, "eval": 0}


@nnx.jit
def _train_step(model, x, y, arch):
    TRACES["train"] += 1

    def loss(m):
        logits = m(x, arch, train=True)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), y])

    value, grads = nnx.value_and_grad(loss)(model)
    nnx.update(model, jax.tree.map(lambda p, g: p - 0.01 * g, nnx.state(model, nnx.Param), grads))
    return value


@nnx.jit
def _eval(model, x, arch):
    TRACES["eval"] += 1
    return model(x, arch, train=False)


def test_one_compilation_serves_every_subnet_in_train_and_eval(space, batch):
    model = _model(space)
    archs = np.concatenate([space.largest()[None], space.smallest()[None], space.sample(20, 1)])
    assert len(set(space.strings(archs))) == len(archs) >= 20
    losses, outputs = [], []
    for arch in archs:
        losses.append(float(_train_step(model, *batch, jnp.asarray(arch))))
        outputs.append(np.asarray(_eval(model, batch[0], jnp.asarray(arch))))
    assert TRACES == {"train": 1, "eval": 1}
    assert np.all(np.isfinite(losses)) and all(o.shape == (4, 5) for o in outputs)
    assert len({o.tobytes() for o in outputs}) == len(archs)


def test_choices_of_blocks_beyond_the_stage_depth_do_not_matter(space, batch):
    model = _model(space)
    arch = space.smallest()
    other = arch.copy()
    for s in range(5):
        other[KERNEL.start + 4 * s + 2 : KERNEL.start + 4 * s + 4] = 2
        other[EXPAND.start + 4 * s + 2 : EXPAND.start + 4 * s + 4] = 2
    np.testing.assert_array_equal(_eval(model, batch[0], jnp.asarray(arch)), _eval(model, batch[0], jnp.asarray(other)))
    deeper = arch.copy()
    deeper[DEPTH.start] = 1
    shallow_out, deeper_out = _eval(model, batch[0], jnp.asarray(arch)), _eval(model, batch[0], jnp.asarray(deeper))
    assert not np.allclose(shallow_out, deeper_out, rtol=1e-3, atol=0)


def test_training_updates_running_statistics_of_active_channels_only(space, batch):
    model = _model(space)
    before = [(np.asarray(bn.mean[...]), np.asarray(bn.var[...])) for bn in model.batch_norms()]
    _train_step(model, *batch, jnp.asarray(space.smallest()))
    block = model.blocks[0]
    active = block.mid_choices[0]
    mean = np.asarray(block.expand_bn.mean[...])
    assert not np.allclose(mean[:active], 0) and np.all(mean[active:] == 0)
    skipped = model.blocks[3]
    for bn in skipped.batch_norms():
        np.testing.assert_array_equal(bn.mean[...], 0)
        np.testing.assert_array_equal(bn.var[...], 1)
    changed = [not np.array_equal(b[0], bn.mean[...]) for b, bn in zip(before, model.batch_norms())]
    assert sum(changed) == 4 + 3 * 2 * 5


def test_sort_channels_orders_by_importance_and_keeps_the_function(space, batch):
    model = _model(space)
    _train_step(model, *batch, jnp.asarray(space.largest()))
    before = np.asarray(_eval(model, batch[0], jnp.asarray(space.largest())))
    model.sort_channels()
    after = np.asarray(_eval(model, batch[0], jnp.asarray(space.largest())))
    np.testing.assert_allclose(after, before, atol=1e-5, rtol=1e-5)
    for block in model.blocks:
        importance = np.abs(np.asarray(block.project_kernel[...])).sum(axis=1)
        assert np.all(np.diff(importance) <= 0)


def test_sort_channels_in_a_later_expand_phase_keeps_trained_groups(space):
    model = _model(space)
    block = model.blocks[4]
    middle = sorted(block.mid_choices)[1]
    kernel = np.asarray(block.project_kernel[...]).copy()
    kernel[:middle] *= 0.01
    block.project_kernel[...] = jnp.asarray(kernel)
    columns = lambda: {c.tobytes() for c in np.asarray(block.expand_kernel[...])[:, :middle].T}
    group = columns()
    block.sort_channels(expand_stage=1)
    assert columns() == group
    block.sort_channels(expand_stage=0)
    assert columns() != group


def test_config_round_trips_through_json(space):
    model = _model(space)
    config = json.loads(json.dumps(model.config()))
    assert OFAMobileNetV3.from_config(config, rngs=nnx.Rngs(1)).config() == model.config()
    assert model.config()["width_mult"] == 0.25 and model.config()["space"]["resolutions"] == [RES]
