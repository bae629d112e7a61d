"""Test-session setup: the persistent JAX compilation cache, shared with the `nas` subprocesses tests start."""

from nas.jax_cache import enable_compilation_cache

enable_compilation_cache()
