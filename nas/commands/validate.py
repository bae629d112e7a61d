"""`nas validate CONFIG`: checks an experiment config against the schema without running anything."""

from __future__ import annotations

from nas.config import load_config


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check an experiment config (YAML) against the schema")
    p.add_argument("config", help="path to the experiment YAML")
    p.set_defaults(func=run)


def run(args) -> int:
    config = load_config(args.config)
    print(f"{args.config}: valid (experiment {config.name!r}, space {config.space.name!r}, "
          f"{len(config.targets)} target(s))")
    return 0
