"""A Ray head node started as a user starts one (`ray start --head --block`) for the tests that join a cluster: in a
session of its own, so killing that process group ends exactly this cluster, with a private temp dir, so other Ray
users on the machine never auto-connect to it."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def ray_head(num_cpus: int, env: dict, timeout_s: float = 60):
    """Yields (address, process) once the head listens; kills its process group and removes its files after."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="hwnas-ray-", dir="/tmp")
    process = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                                f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
                                f"--temp-dir={temp_dir}", "--block"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _listening(port):
            assert process.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
