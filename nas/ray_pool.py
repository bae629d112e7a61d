"""Ray for expensive evaluators: start a private local Ray or join a cluster with its token, and a pool of
restartable actors sharing one payload."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from search_spaces.errors import UserInputError

SINGLE_THREAD_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "JAX_PLATFORMS": "cpu",
                     "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOKEN_HELP = ("run `ray get-auth-token` on its head node and export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<that "
              "token> (or RAY_AUTH_TOKEN_PATH=<a file holding it>) here")
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_watchdog: tuple[subprocess.Popen, str] | None = None


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Starts a new local Ray (`num_cpus` default: this machine's cores; never a cluster `ray start` left running)
    or joins the cluster at `address`.

    The local Ray listens on loopback only and ends with this process, even when it is killed. Joining sets up the
    cluster's token authentication and fails in one line (UserInputError) when the token is missing or wrong.
    Returns True when this call started or joined Ray (the caller then owns `ray.shutdown()`), False when Ray was
    already initialised in this process."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        _join(address)
    else:
        _start_local(num_cpus or os.cpu_count() or 1)
    return True


def _init(**options) -> None:
    """`ray.init` without its start-up notices (INFO lines; JAX's fork warning for each process Ray spawns, which
    execs right away); Ray's warnings and errors still show."""
    import ray

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **options)


def _start_local(num_cpus: int) -> None:
    """A Ray of this machine alone: token authentication as Ray defaults it (without its notice), every server on
    127.0.0.1, and its files in a temp dir whose processes a watchdog kills once this process ends."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    if _auth_mode() is None:
        _enable_token_auth()
    with _single_machine_mode():
        _init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=_watched_temp_dir())


@contextlib.contextmanager
def _single_machine_mode():
    """Ray's mode for machines it does not cluster (macOS, Windows) while Ray starts: the node's address is
    127.0.0.1, so the GCS, raylet, object manager, agents and metrics exporters bind loopback only. The processes Ray
    starts inherit the environment variable; this process's setting is restored afterwards, for joining a cluster
    later."""
    from ray._private import ray_constants

    saved = os.environ.get(_SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_MACHINE_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]
        if saved[0] is None:
            del os.environ[_SINGLE_MACHINE_ENV]
        else:
            os.environ[_SINGLE_MACHINE_ENV] = saved[0]


def _auth_mode() -> str | None:
    """RAY_AUTH_MODE as set here (None: unset); Ray would take an unknown value as no authentication."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode not in (None, "token", "disabled"):
        raise UserInputError(f"RAY_AUTH_MODE={mode!r}: allowed are 'token' and 'disabled'")
    return mode


def _watched_temp_dir() -> str:
    """This process's Ray temp dir, short enough for Ray's socket paths, watched by a process of its own session
    (so a Ctrl-C or hang-up of the terminal leaves it running) that cleans up after this process ends."""
    global _watchdog
    if _watchdog is None or _watchdog[0].poll() is not None:
        temp_dir = tempfile.mkdtemp(prefix="hwnas-localray-", dir="/tmp")
        watchdog = subprocess.Popen([sys.executable, "-m", "nas.ray_pool", temp_dir], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                    cwd=Path(__file__).resolve().parents[1])
        _watchdog = watchdog, temp_dir
    return _watchdog[1]


def _reap_after_driver(temp_dir: str, wait_s: float = 30.0) -> None:
    """The watchdog: waits until the process that started it ends (its stdin reaches EOF, however that process
    ended; a process exiting normally closes it as it finishes), kills every other process still holding a file
    under `temp_dir` (Ray's processes there log into it; its agents otherwise outlive a killed driver by a minute),
    then removes the directory."""
    driver = os.getppid()
    sys.stdin.buffer.read()
    deadline = time.monotonic() + wait_s
    while (pids := _processes_holding(temp_dir) - {driver}) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _processes_holding(directory: str) -> set[int]:
    """Processes (other than this one) with a file under `directory` open, from /proc (empty where there is none)."""
    prefix = os.path.join(directory, "")
    holders = set()
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path).startswith(prefix):
                        holders.add(int(entry.name))
                        break
    return holders


def _join(address: str) -> None:
    """Joins the cluster at `address` (host:port, "auto", or a ray:// client address) after checking that a Ray
    cluster answers there and accepts this process's token, so a mistake fails fast instead of Ray retrying."""
    if "://" not in address:
        from ray._private.services import canonicalize_bootstrap_address

        try:
            gcs = canonicalize_bootstrap_address(address)
        except (ConnectionError, ValueError) as e:
            raise UserInputError(f"--ray-address {address!r}: no Ray cluster found there ({e}); give the address a "
                                 "running `ray start --head` printed, e.g. 127.0.0.1:6379") from None
        _check_reachable(address, gcs)
        _authenticate(address, gcs)
    try:
        _init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserInputError(f"--ray-address {address!r}: cannot join a Ray cluster there ({e}); give the "
                             "address a running `ray start --head` printed, e.g. 127.0.0.1:6379") from None


def _check_reachable(address: str, gcs: str, timeout_s: float = 10.0) -> None:
    """Fails fast on a `host:port` nobody listens on (Ray itself retries such an address for minutes)."""
    host, _, port = gcs.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserInputError(f"--ray-address {address!r}: cannot join a Ray cluster there, nothing answers ({e}); "
                             "give the address a running `ray start --head` printed, e.g. 127.0.0.1:6379") from None


def _authenticate(address: str, gcs: str) -> None:
    """Makes this process use the token of the cluster whose GCS is at `gcs` when that cluster requires one.

    With RAY_AUTH_MODE unset, token mode is switched on for a token the user gave (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH) or, for a cluster on this machine, the one in ~/.ray/auth_token (as Ray does for "auto");
    a token this process would send is first checked against the cluster."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    mode = _auth_mode()
    if _gcs_accepts(gcs, None):
        return
    needs = f"--ray-address {address!r}: the Ray cluster there requires its authentication token"
    if mode == "disabled":
        raise UserInputError(f"{needs}, but RAY_AUTH_MODE=disabled here; {TOKEN_HELP}")
    token, source = _token()
    if token is None:
        raise UserInputError(f"{needs} and this machine has none; {TOKEN_HELP}")
    if mode is None and source == "~/.ray/auth_token" and not _on_this_machine(gcs.rpartition(":")[0]):
        raise UserInputError(f"{needs}; ~/.ray/auth_token is sent only to clusters on this machine; {TOKEN_HELP}")
    if not _gcs_accepts(gcs, token):
        raise UserInputError(f"{needs}, and the token from {source} is not it; {TOKEN_HELP}")
    if mode is None:
        _enable_token_auth()


def _token() -> tuple[str | None, str]:
    """The token Ray would send from here, and where it comes from (Ray's order: RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."""
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    source = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN", "").strip()
              else f"RAY_AUTH_TOKEN_PATH={path}" if path else "~/.ray/auth_token")
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    try:
        if not loader.has_token(ignore_auth_mode=True):
            return None, source
    except AuthenticationError:
        raise UserInputError(f"RAY_AUTH_TOKEN_PATH={path!r}: no token there (missing or empty file); give a file "
                             "holding the cluster's token") from None
    return loader.get_raw_token(ignore_auth_mode=True), source


def _gcs_accepts(gcs: str, token: str | None) -> bool:
    """Whether the Ray GCS at `gcs` answers a request carrying `token` (None: no token); True also when it answers
    with another failure, which `ray.init` then reports (a TLS cluster, for one)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(gcs) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=10, metadata=metadata)
        except grpc.RpcError as e:
            return e.code() != grpc.StatusCode.UNAUTHENTICATED
    return True


def _on_this_machine(host: str) -> bool:
    """Whether `host` is an address of this machine (a socket can bind to it)."""
    with contextlib.suppress(OSError):
        for family, _, _, _, sockaddr in socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM):
            with socket.socket(family, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
                probe.bind((sockaddr[0], 0))
                return True
    return False


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
    thread pools from the affinity, so actors do not oversubscribe cores), builds its object from the shared payload
    at its first call and runs its methods on request.

    The payload's reference travels boxed in a list with each call rather than once at creation, where Ray would
    warn that restarts depend on it: a restarted actor rebuilds its object at its next call."""

    def __init__(self, factory: Callable[[Any], Any], pin_cpus: int = 0, scope: str = ""):
        self.cpus, self._cpu_locks = claim_cpus(pin_cpus, scope) if pin_cpus else (set(), [])
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        self._factory, self._target = factory, None

    def pid(self) -> int:
        return os.getpid()

    def affinity(self) -> list[int]:
        return sorted(os.sched_getaffinity(0))

    def call(self, boxed_payload: list, method: str, *args) -> Any:
        if self._target is None:
            import ray

            self._target = self._factory(ray.get(boxed_payload[0]))
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
        self._boxed_payload = [ray.put(payload)]
        remote_worker = ray.remote(_PoolWorker).options(
            num_cpus=num_cpus_per_actor, max_restarts=max_restarts, max_task_retries=max_task_retries,
            runtime_env={"env_vars": dict(SINGLE_THREAD_ENV if env_vars is None else env_vars)})
        cores = math.ceil(num_cpus_per_actor) if pin_cpus else 0
        scope = hashlib.sha1(ray.get_runtime_context().gcs_address.encode()).hexdigest()[:12]
        self.actors = [remote_worker.remote(factory, cores, scope) for _ in range(self.num_actors)]
        self._queue, self._tickets, self._free, self._running = collections.deque(), 0, list(self.actors), {}

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

        return ray.get([actor.call.remote(self._boxed_payload, method, *args) for actor in self.actors])

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
                running[actor.call.remote(self._boxed_payload, method, item)] = (index, actor)
            (done,), _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(done)
            results[index] = ray.get(done)
            idle.append(actor)
        return results

    def submit(self, method: str, item: Any) -> int:
        """Queues `target.method(item)` for the next free actor; returns its ticket for `completed`. (Not to be
        mixed with a `map` running at the same time.)"""
        self._tickets += 1
        self._queue.append((self._tickets, method, item))
        return self._tickets

    def completed(self) -> list[tuple[int, Any]]:
        """Starts queued calls on free actors, waits until at least one call finishes and returns every finished
        (ticket, result); an actor takes its next call as soon as it is free, whatever the others do."""
        import ray

        while self._queue and self._free:
            ticket, method, item = self._queue.popleft()
            actor = self._free.pop()
            self._running[actor.call.remote(self._boxed_payload, method, item)] = (ticket, actor)
        if not self._running:
            return []
        ray.wait(list(self._running), num_returns=1)
        done, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        finished = []
        for ref in done:
            ticket, actor = self._running.pop(ref)
            finished.append((ticket, ray.get(ref)))
            self._free.append(actor)
        return finished

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


if __name__ == "__main__":
    _reap_after_driver(sys.argv[1])
