"""JAX's persistent compilation cache for hwnas: a supernet compiles once per machine, not once per process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
MIN_SECONDS_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
DEFAULT_DIR = Path.home() / ".cache" / "hwnas" / "jax"


def enable_compilation_cache(directory: str | Path | None = None, min_compile_seconds: float = 1.0) -> str:
    """Points JAX's persistent cache at `directory` (default: $JAX_COMPILATION_CACHE_DIR, else
    ~/.cache/hwnas/jax) and returns it. Set through the environment, so Ray workers and subprocesses (training,
    evaluation actors, export) share it: a resumed run or a search actor reuses the supernet's compiled steps."""
    directory = str(directory or os.environ.get(CACHE_ENV) or DEFAULT_DIR)
    os.environ[CACHE_ENV] = directory
    os.environ.setdefault(MIN_SECONDS_ENV, str(min_compile_seconds))
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ[MIN_SECONDS_ENV]))
    return directory
