"""Elastic batch norm: the hand-written training backward equals autodiff of `normalize`; the running update moves
only the channels the batch used."""

import jax
import jax.numpy as jnp
import numpy as np

from supernets.elastic_bn import ElasticBatchNorm, batch_norm_train


def test_training_backward_equals_autodiff_of_normalize():
    """A BN of 12 channels used at 8: output, and gradients of scale, bias (zero beyond 8), running statistics
    (zero) and input."""
    rng = np.random.default_rng(0)
    p = jax.tree.map(lambda a: a + jnp.asarray(rng.standard_normal(a.shape), a.dtype), ElasticBatchNorm(12).arrays())
    x = jnp.asarray(rng.standard_normal((4, 5, 5, 8)) * 3 + 1, jnp.float32)
    dy = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    y, backward = batch_norm_train(p, x, 8)
    want_y, want_vjp = jax.vjp(lambda p, x: ElasticBatchNorm.normalize(p, x, 8, "train")[0], p, x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)
    got, want = backward(dy), want_vjp(dy)
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))
    assert not np.any(got[0]["scale"][8:]) and not np.any(got[0]["mean"])


def test_running_update_moves_only_the_active_channels():
    bn = ElasticBatchNorm(6)
    bn.update((jnp.full((6,), 2.0), jnp.full((6,), 3.0), jnp.int32(4)), momentum=0.1)
    np.testing.assert_allclose(bn.mean[...], [0.2] * 4 + [0.0] * 2, rtol=1e-6)
    np.testing.assert_allclose(bn.var[...], [1.2] * 4 + [1.0] * 2, rtol=1e-6)
