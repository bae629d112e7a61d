"""`nas validate CONFIG`: checks an experiment config against the schema without running anything; `--explain`
prints the reference of every config key."""

from __future__ import annotations

from nas.bundled_configs import resolve_config
from nas.config import load_config
from nas.preflight import check_run


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check an experiment config (YAML) against the schema")
    p.add_argument("config", nargs="?", help="path to the experiment YAML, or the name of a bundled one "
                   "(e.g. quickstart)")
    p.add_argument("--explain", action="store_true", help="print every config key with its type, default, allowed "
                   "values and meaning (the reference in docs/config.md)")
    p.set_defaults(func=run, validate_parser=p)


def run(args) -> int:
    if args.config is None and not args.explain:
        args.validate_parser.error("the following arguments are required: config (or --explain)")
    if args.explain:
        from nas.config_reference import config_reference

        print(config_reference(), end="")
    if args.config is not None:
        path = resolve_config(args.config)
        config = load_config(path)
        estimate = check_run(config, need_targets=False)
        shown = args.config if str(path) == args.config else f"{args.config} ({path})"
        devices = ", ".join(t.device for t in config.targets) or (
            "a table search" if config.search.evaluator else "no targets: valid for `nas train`, `nas run` needs "
            "targets")
        cost = f"; {estimate.describe()}" if estimate else ""
        print(f"{shown}: valid (experiment {config.name!r}, space {config.space.name!r}, {devices}{cost})")
    return 0
