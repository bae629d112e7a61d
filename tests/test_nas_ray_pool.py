"""Tests for nas.ray_pool against a Ray cluster started with `ray start --head` with token authentication (joined by
address with its token): actors built once from a shared payload, work spread in order, a killed actor's task
retried, and a search run on the cluster."""

import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from nas.ray_pool import ActorPool, ensure_ray  # noqa: E402
from nas.search import run_search  # noqa: E402
from ray_head import free_port, ray_head  # noqa: E402
from search_spaces import IntRange, Space  # noqa: E402
from search_spaces.errors import UserInputError  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class TinyJaxModel:
    """A one-layer JAX model whose weights come from the pool's payload."""

    def __init__(self, payload):
        import jax
        import jax.numpy as jnp

        self.weights = jnp.asarray(payload["weights"])
        self.marker_dir = payload["marker_dir"]
        self._forward = jax.jit(lambda w, x: jnp.tanh(x @ w).sum(axis=1))

    def predict(self, x):
        return np.asarray(self._forward(self.weights, np.asarray(x, np.float32)))

    def slow_predict(self, x):
        Path(self.marker_dir, f"attempt-{os.getpid()}-{time.time_ns()}").touch()
        time.sleep(1.0)
        return self.predict(x)


def reference(weights, x):
    return np.tanh(np.asarray(x, np.float32) @ weights).sum(axis=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-CPU head node with token authentication, joined with that token."""
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    saved_env = dict(os.environ)  # joining sets RAY_AUTH_MODE=token here
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    try:
        with ray_head(2, env) as (address, head):
            deadline = time.time() + 60
            while True:
                try:
                    ensure_ray(address)
                    break
                except UserInputError:
                    if time.time() > deadline or head.poll() is not None:
                        raise
                    time.sleep(1)
            try:
                yield address
            finally:
                ray.shutdown()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    rng = np.random.default_rng(0)
    return {"weights": rng.normal(size=(3, 2)).astype(np.float32),
            "marker_dir": str(tmp_path_factory.mktemp("attempts"))}


def test_bad_actor_count_and_address_are_user_errors(cluster, payload):
    with pytest.raises(UserInputError, match="num_actors"):
        ActorPool(TinyJaxModel, payload, num_actors=0)
    ray.shutdown()
    try:
        with pytest.raises(UserInputError, match="nothing answers"):
            ensure_ray(f"127.0.0.1:{free_port()}")
    finally:
        ensure_ray(cluster)


@pytest.fixture(scope="module")
def pool(cluster, payload):
    """One pool for the module, sized to the cluster (actor processes are slow to start on a busy machine)."""
    actors = ActorPool(TinyJaxModel, payload)
    yield actors
    actors.close()


def test_map_returns_results_in_order_and_sizes_to_the_cluster(pool, payload):
    assert pool.num_actors == 2
    inputs = [np.full((2, 3), i / 10, np.float32) for i in range(7)]
    for x, got in zip(inputs, pool.map("predict", inputs)):
        np.testing.assert_allclose(got, reference(payload["weights"], x), rtol=1e-5)
    assert len(set(pool.pids())) == 2
    assert len(pool.broadcast("predict", inputs[1])) == 2


def assert_one_core_each(pool):
    if len(os.sched_getaffinity(0)) < pool.num_actors:
        pytest.skip("fewer cores than actors here: actors beyond the cores run unpinned")
    affinities = pool.affinities()
    assert all(len(cpus) == 1 for cpus in affinities), affinities
    assert len({cpus[0] for cpus in affinities}) == pool.num_actors, affinities


def test_actors_hold_one_distinct_core_each(pool):
    assert_one_core_each(pool)


def test_killed_actor_process_loses_no_task(pool, payload):
    marker_dir = Path(payload["marker_dir"])
    pids = pool.pids()
    inputs = [np.full((1, 3), i, np.float32) for i in range(4)]
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(results=pool.map("slow_predict", inputs)))
    worker.start()
    started_on_victim = lambda: any(p.name.startswith(f"attempt-{pids[0]}-") for p in marker_dir.iterdir())
    deadline = time.time() + 30
    while not started_on_victim() and time.time() < deadline:  # kill it mid-task, not before it took one
        time.sleep(0.05)
    assert started_on_victim(), "no task started on the actor to kill"
    os.kill(pids[0], signal.SIGKILL)
    worker.join(timeout=60)
    assert not worker.is_alive()
    for x, got in zip(inputs, outcome["results"]):
        np.testing.assert_allclose(got, reference(payload["weights"], x), rtol=1e-5)
    assert len(list(marker_dir.iterdir())) >= 5, "the interrupted task should have been run again"
    assert pids[0] not in pool.pids()
    assert_one_core_each(pool)  # the restarted actor took the core its killed process held


def test_submitted_calls_finish_on_free_actors_while_one_is_slow(pool, payload):
    slow = pool.submit("slow_predict", np.full((1, 3), 9, np.float32))
    fast = {pool.submit("predict", np.full((1, 3), i, np.float32)): i for i in range(6)}
    order, results = [], {}
    while len(order) < 7:
        for ticket, result in pool.completed():
            order.append(ticket)
            results[ticket] = result
    assert order[-1] == slow, "the other actor should finish every quick call during the slow one"
    for ticket, i in fast.items():
        np.testing.assert_allclose(results[ticket], reference(payload["weights"], np.full((1, 3), i)), rtol=1e-5)
    assert pool.completed() == []


class PooledEvaluator:
    """An expensive evaluator whose `accuracy` the cluster's actors compute with the tiny JAX model."""

    metrics = ("accuracy",)

    def __init__(self, space, pool):
        self.space, self.pool = space, pool

    def evaluate(self, archs):
        features = self.space.values(archs).astype(np.float32)
        return {"accuracy": np.concatenate(self.pool.map("predict", [features[i:i + 1] for i in range(len(archs))]))}


def test_search_runs_on_the_joined_cluster(pool, payload, tmp_path):
    space = Space("tiny", [IntRange("a", 0, 3), IntRange("b", 0, 3), IntRange("c", 0, 3)])
    result = run_search(space, PooledEvaluator(space, pool), ["accuracy:max"], out=tmp_path / "s", budget=12,
                        population=6, strategy="random", progress=False)
    archs = space.parse(list(result.history["arch"]))
    np.testing.assert_allclose(result.history["accuracy"],
                               reference(payload["weights"], space.values(archs).astype(np.float32)), rtol=1e-5)
    assert len(result.history["arch"]) == 12
