"""Tests for the local Ray of nas.ray_pool.ensure_ray, started by a driver subprocess as `nas search` starts it: it
listens on loopback only, starts without Ray's notices, and nothing of it outlives its driver, even a SIGKILLed one."""

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
import psutil  # noqa: E402  (Ray brings it)

ROOT = Path(__file__).resolve().parents[1]

# A driver like `nas search` with the supernet evaluator: JAX in use, then Ray and a pool of one actor. It prints
# its private Ray temp dir once the actor answered, logs one real warning through Ray's logger, and runs until its
# stdin closes.
DRIVER = """
import logging, sys
import jax.numpy as jnp
from nas.ray_pool import ActorPool, _watched_temp_dir, ensure_ray

class Echo:
    def __init__(self, payload):
        self.payload = payload

    def echo(self, x):
        return x + self.payload

jnp.ones(3).block_until_ready()
ensure_ray(num_cpus=1)
assert ActorPool(Echo, 1, num_actors=1).map("echo", [1, 2]) == [2, 3]
logging.getLogger("ray").warning("a real warning")
print(_watched_temp_dir(), flush=True)
sys.stdin.read()
"""


def start_driver(tmp_path):
    """The driver process, its Ray temp dir, and every process it started (the watchdog, Ray's processes)."""
    stderr = open(tmp_path / "driver.err", "w+")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=stderr, text=True)
    temp_dir = driver.stdout.readline().strip()
    assert temp_dir, f"the driver did not start Ray: {(tmp_path / 'driver.err').read_text()}"
    return driver, temp_dir, psutil.Process(driver.pid).children(recursive=True)


def still_running(processes) -> list:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_until_gone(processes, timeout_s: float = 20.0) -> list:
    deadline = time.monotonic() + timeout_s
    while (alive := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [f"{p.pid} {p.name()}" for p in alive]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def test_listens_on_loopback_only_starts_quietly_and_ends_with_its_driver(tmp_path):
    driver, temp_dir, started = start_driver(tmp_path)
    try:
        ours = {driver.pid} | {p.pid for p in started}
        listening = [(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in ours]
        assert len({pid for _, _, pid in listening}) >= 4, listening  # GCS, raylet, agents, driver, actor
        assert all(is_loopback(ip) for ip, _, _ in listening), listening
    finally:
        driver.stdin.close()
    assert driver.wait(timeout=60) == 0
    assert wait_until_gone(started) == []
    assert not Path(temp_dir).exists()
    stderr = (tmp_path / "driver.err").read_text()
    for notice in ("Token authentication", "os.fork()", "Started a local Ray instance", "constructor arguments"):
        assert notice not in stderr, stderr
    assert "a real warning" in stderr


def test_nothing_outlives_a_sigkilled_driver(tmp_path):
    driver, temp_dir, started = start_driver(tmp_path)
    assert any(p.name() == "raylet" for p in started)
    driver.kill()
    driver.wait(timeout=10)
    try:
        assert wait_until_gone(started) == [], "Ray processes outlived their killed driver"
        assert not Path(temp_dir).exists()
    finally:
        for process in still_running(started):
            process.kill()
