"""The hwnas product surface: Python API, the `nas` CLI, configs, data, training, search, export, report."""

from nas.jax_cache import enable_compilation_cache

enable_compilation_cache()


def load_subnet(path):
    """An exported subnet directory (arch.json + params/) as a callable model, without the supernet."""
    from nas.export import load_subnet as _load

    return _load(path)
