"""Ray for expensive evaluators: start or join a cluster, and a pool of restartable actors sharing one payload."""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from search_spaces.errors import UserInputError

SINGLE_THREAD_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "JAX_PLATFORMS": "cpu",
                     "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Starts a new local Ray (`num_cpus` default: this machine's cores; never a cluster `ray start` left running)
    or joins the cluster at `address`.

    Returns True when this call started or joined Ray (the caller then owns `ray.shutdown()`), False when Ray was
    already initialised in this process."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserInputError(f"--ray-address {address!r}: cannot join a Ray cluster there ({e}); give the "
                                 "address a running `ray start --head` printed, e.g. 127.0.0.1:6379") from None
        return True
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=False)
    return True


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fails fast on a `host:port` nobody listens on (Ray itself retries such an address for minutes)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserInputError(f"--ray-address {address!r}: cannot join a Ray cluster there, nothing answers ({e}); "
                             "give the address a running `ray start --head` printed, e.g. 127.0.0.1:6379") from None


def cluster_cpus() -> int:
    """CPUs the Ray cluster offers in all (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def claim_cpus(count: int, scope: str, wait_s: float = 3.0) -> tuple[set[int], list]:
    """Up to `count` of this process's allowed CPUs that no other live process of the same `scope` (one Ray
    cluster) on this node has claimed, each held by an exclusive lock file (released when the process ends, so a
    restarted actor can take it again). Waits up to `wait_s` for CPUs that actors of a pool just closed still hold.

    Returns the claimed CPUs (empty when every CPU is taken) and the open lock files to keep alive."""
    lock_dir = Path(tempfile.gettempdir()) / f"hwnas-cpus-{scope}"
    lock_dir.mkdir(exist_ok=True)
    claimed, handles = set(), []
    deadline = time.monotonic() + wait_s
    while True:
        for cpu in sorted(os.sched_getaffinity(0) - claimed):
            if len(claimed) == count:
                break
            handle = open(lock_dir / f"hwnas-cpu-{cpu}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            claimed.add(cpu)
            handles.append(handle)
        if len(claimed) == count or time.monotonic() > deadline:
            return claimed, handles
        time.sleep(0.2)


class _PoolWorker:
    """One actor: pins itself to CPUs no other actor on its node holds (as many as Ray granted it; JAX sizes its
    thread pools from the affinity, so actors do not oversubscribe cores), then builds its object once from the
    shared payload and runs its methods on request."""

    def __init__(self, factory: Callable[[Any], Any], payload: Any, pin_cpus: int = 0, scope: str = ""):
        self.cpus, self._cpu_locks = claim_cpus(pin_cpus, scope) if pin_cpus else (set(), [])
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        self._target = factory(payload)

    def pid(self) -> int:
        return os.getpid()

    def affinity(self) -> list[int]:
        return sorted(os.sched_getaffinity(0))

    def call(self, method: str, *args) -> Any:
        return getattr(self._target, method)(*args)


class ActorPool:
    """`num_actors` Ray actors, each `factory(payload)`; the payload goes into the object store once.

    Actors restart after a crash (`max_restarts`) and a task running on a crashed actor is retried
    (`max_task_retries`), so killing a worker process loses no work. `env_vars` go into each actor's runtime_env
    (default: single-threaded XLA, BLAS and OpenMP). With `pin_cpus` (default) each actor binds itself to
    ceil(`num_cpus_per_actor`) cores of its node that no other actor holds, so N actors on N cores each get one."""

    def __init__(self, factory: Callable[[Any], Any], payload: Any, *, num_actors: int | None = None,
                 num_cpus_per_actor: float = 1, env_vars: dict[str, str] | None = None, max_restarts: int = 4,
                 max_task_retries: int = 4, pin_cpus: bool = True):
        import ray

        if num_actors is not None and num_actors < 1:
            raise UserInputError(f"num_actors must be >= 1, got {num_actors}")
        self.num_actors = num_actors or max(1, int(cluster_cpus() // num_cpus_per_actor))
        self._payload_ref = ray.put(payload)
        remote_worker = ray.remote(_PoolWorker).options(
            num_cpus=num_cpus_per_actor, max_restarts=max_restarts, max_task_retries=max_task_retries,
            runtime_env={"env_vars": dict(SINGLE_THREAD_ENV if env_vars is None else env_vars)})
        cores = math.ceil(num_cpus_per_actor) if pin_cpus else 0
        scope = hashlib.sha1(ray.get_runtime_context().gcs_address.encode()).hexdigest()[:12]
        self.actors = [remote_worker.remote(factory, self._payload_ref, cores, scope) for _ in range(self.num_actors)]

    def pids(self) -> list[int]:
        """The current process id of every actor (waits until all are up)."""
        import ray

        return ray.get([actor.pid.remote() for actor in self.actors])

    def affinities(self) -> list[list[int]]:
        """The CPUs each actor may run on."""
        import ray

        return ray.get([actor.affinity.remote() for actor in self.actors])

    def broadcast(self, method: str, *args) -> list[Any]:
        """`target.method(*args)` on every actor (e.g. to compile before timing); one result per actor."""
        import ray

        return ray.get([actor.call.remote(method, *args) for actor in self.actors])

    def map(self, method: str, items: Sequence[Any], in_flight_per_actor: int = 2) -> list[Any]:
        """`target.method(item)` for every item, spread over the actors as each becomes free; results in order.

        Each actor has up to `in_flight_per_actor` tasks queued, so it never waits for the driver between tasks."""
        import ray

        results: list[Any] = [None] * len(items)
        waiting = list(enumerate(items))[::-1]
        idle = [actor for _ in range(max(1, in_flight_per_actor)) for actor in self.actors]
        running: dict[Any, tuple[int, Any]] = {}
        while waiting or running:
            while waiting and idle:
                index, item = waiting.pop()
                actor = idle.pop()
                running[actor.call.remote(method, item)] = (index, actor)
            (done,), _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(done)
            results[index] = ray.get(done)
            idle.append(actor)
        return results

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
