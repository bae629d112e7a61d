"""Tests for nas.ray_pool: actors built once from a shared payload, work spread in order, crashes retried."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from nas.ray_pool import ActorPool, ensure_ray  # noqa: E402
from search_spaces.errors import UserInputError  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class TinyJaxModel:
    """A one-layer JAX model whose weights come from the pool's payload."""

    def __init__(self, payload):
        import jax
        import jax.numpy as jnp

        self.weights = jnp.asarray(payload["weights"])
        self.builds_marker = payload["marker_dir"]
        self._forward = jax.jit(lambda w, x: jnp.tanh(x @ w).sum(axis=1))

    def predict(self, x):
        return np.asarray(self._forward(self.weights, np.asarray(x, np.float32)))

    def slow_predict(self, x):
        with open(os.path.join(self.builds_marker, f"attempt-{time.time_ns()}"), "w"):
            pass
        time.sleep(1.0)
        return self.predict(x)


def reference(weights, x):
    return np.tanh(np.asarray(x, np.float32) @ weights).sum(axis=1)


@pytest.fixture(scope="module")
def ray_session():
    started = ensure_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def payload(tmp_path):
    rng = np.random.default_rng(0)
    return {"weights": rng.normal(size=(5, 3)).astype(np.float32), "marker_dir": str(tmp_path)}


def test_map_returns_results_in_input_order(ray_session, payload):
    pool = ActorPool(TinyJaxModel, payload, num_actors=2)
    try:
        inputs = [np.full((2, 5), i / 10, np.float32) for i in range(7)]
        results = pool.map("predict", inputs)
        for x, got in zip(inputs, results):
            np.testing.assert_allclose(got, reference(payload["weights"], x), rtol=1e-5)
        assert len(set(pool.pids())) == 2
    finally:
        pool.close()


def test_default_size_is_the_cluster_cpus(ray_session, payload):
    pool = ActorPool(TinyJaxModel, payload)
    try:
        assert pool.num_actors == 2
    finally:
        pool.close()


def test_killed_actor_process_loses_no_task(ray_session, payload, tmp_path):
    pool = ActorPool(TinyJaxModel, payload, num_actors=1)
    try:
        (pid,) = pool.pids()
        inputs = [np.ones((1, 5), np.float32), np.zeros((1, 5), np.float32)]
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(results=pool.map("slow_predict", inputs)))
        worker.start()
        deadline = time.time() + 30
        while not os.listdir(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert os.listdir(tmp_path), "the task never started"
        os.kill(pid, signal.SIGKILL)
        worker.join(timeout=45)
        assert not worker.is_alive()
        for x, got in zip(inputs, outcome["results"]):
            np.testing.assert_allclose(got, reference(payload["weights"], x), rtol=1e-5)
        assert len(os.listdir(tmp_path)) >= 3, "the interrupted task should have been run again"
        assert pool.pids() != [pid]
    finally:
        pool.close()


def test_bad_actor_count_is_a_user_error(ray_session, payload):
    with pytest.raises(UserInputError, match="num_actors"):
        ActorPool(TinyJaxModel, payload, num_actors=0)
