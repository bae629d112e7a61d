"""The hwnas product surface: Python API, the `nas` CLI, configs, data, training, search, export, report."""
