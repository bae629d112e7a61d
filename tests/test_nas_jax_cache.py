"""The persistent compilation cache: a second process reuses what the first compiled."""

import subprocess
import sys

PROGRAM = """
import nas, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
print(float(f(jnp.ones((64, 64)))))
"""


def test_second_process_hits_the_cache(tmp_path):
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries, "nothing was written to the cache"
    second = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True)
    assert second.stdout == first.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == entries  # hit: no new entry
