"""Test-session setup: every test process (and the subprocesses it starts) shares JAX's persistent compilation cache,
so the supernet programs the tests share compile once per machine."""

from nas.jax_cache import enable_compilation_cache

enable_compilation_cache()
