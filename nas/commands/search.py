"""`nas search`: a hardware-aware search over a space with a table or supernet evaluator, one or many targets."""

from __future__ import annotations

import argparse
import sys

from nas.commands import SEED, bounded
from nas.strategies import DEFAULT_STRATEGY

STRATEGIES = ("evolution", "nsga2", "predictor", "random", "optuna-nsga2", "optuna-tpe")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search architectures under latency/energy budgets",
        description="Searches a space with an evaluator, writing OUT/history.csv (every evaluation, in order), "
        "OUT/pareto.csv and OUT/state.json after every generation; with --target, one subdirectory per device "
        "and budget, sharing expensive evaluations.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", help="search space (see `nas spaces`); default with a supernet: the run's space")
    p.add_argument("--resolutions", help="ofa_mbv3 input resolutions, comma-separated, e.g. 32,48,64")
    p.add_argument("--evaluator", required=True, metavar="table:PATH|supernet:RUN_DIR",
                   help="where accuracy comes from")
    p.add_argument("--objective", action="append", metavar="NAME:max|min",
                   help="repeatable; default accuracy:max and latency_ms:min with --target, else accuracy:max")
    p.add_argument("--constraint", action="append", default=[], metavar="NAME<=X",
                   help="repeatable, e.g. latency_ms@pi5<=5")
    p.add_argument("--device", help="the device plain latency_ms / energy_mj refer to")
    p.add_argument("--target", action="append", default=[], metavar="DEVICE:MS[,MS...]",
                   help="repeatable: one search per device and latency budget, written to OUT/<device>@<ms>ms")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=STRATEGIES)
    p.add_argument("--budget", type=bounded(int, ge=1, le=1_000_000), required=True,
                   help="expensive evaluations per target")
    p.add_argument("--population", type=bounded(int, ge=2, le=100_000), default=32, help="architectures per generation")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", required=True, help="search directory (must not exist unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the search in OUT")
    p.add_argument("--free-columns", default="", metavar="COL[,COL...]",
                   help="table columns known without spending budget (e.g. measured latency_ms)")
    p.add_argument("--latency-model", default="lut", help="latency model kind for NAME@DEVICE metrics")
    p.add_argument("--latency-path", action="append", default=[], metavar="DEVICE=PATH",
                   help="file of a device's latency model (lookup table or fitted predictor)")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting one (supernet evaluator)")
    p.add_argument("--num-actors", type=bounded(int, ge=1, le=4096),
                   help="Ray actors for the supernet evaluator (default: cluster CPUs)")
    p.add_argument("--asynchronous", action="store_true",
                   help="supernet evaluator: keep every Ray actor busy, no barrier per generation (not optuna-*); "
                   "a resumed search then need not reproduce the uninterrupted front")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite under OUT)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _space(args):
    from search_spaces import get_space
    from search_spaces.errors import UserInputError

    if args.space is None:
        kind, _, run_dir = args.evaluator.partition(":")
        if kind != "supernet":
            raise UserInputError("--space is required unless the evaluator is supernet:RUN_DIR")
        from nas.config import load_config

        return load_config(f"{run_dir}/config.yaml").build_space()
    hparams = {}
    if args.resolutions:
        try:
            hparams["resolutions"] = tuple(int(r) for r in args.resolutions.split(","))
        except ValueError:
            raise UserInputError(f"--resolutions {args.resolutions!r} must be integers separated by commas") \
                from None
    return get_space(args.space, **hparams)


def _targets(args):
    from nas.search import Target, parse_constraint
    from search_spaces.errors import UserInputError

    if not args.target:
        return [Target("search", tuple(args.objective or ["accuracy:max"]), tuple(args.constraint),
                       device=args.device)]
    targets = []
    for spec in args.target:
        device, sep, budgets = spec.partition(":")
        try:
            values = [float(b) for b in budgets.split(",")] if sep and device else []
        except ValueError:
            values = []
        if not values:
            raise UserInputError(f"--target {spec!r} is malformed; write DEVICE:MS[,MS...], e.g. pi5:5,10,20")
        targets += [Target(f"{device}@{b:g}ms", tuple(args.objective or ["accuracy:max", "latency_ms:min"]),
                           (parse_constraint(f"latency_ms<={b}"), *args.constraint), device=device)
                    for b in values]
    return targets


def _latency_paths(args) -> dict:
    from search_spaces.errors import UserInputError

    paths = {}
    for item in args.latency_path:
        device, sep, path = item.partition("=")
        if not sep or not device or not path:
            raise UserInputError(f"--latency-path {item!r} is malformed; write DEVICE=PATH")
        paths[device] = path
    return paths


def _run_pricing(args, devices) -> tuple[dict, dict]:
    """With `supernet:RUN`: the run's layer options (width, classes) and its latency tables, so an architecture is
    priced exactly as `nas run` priced it; host-cpu means this machine (its own table when the run's is from
    another). Explicit --latency-path entries win."""
    kind, _, run_dir = args.evaluator.partition(":")
    if kind != "supernet":
        return {}, {}
    from nas.run import HOST_DEVICE, host_table_here, lut_path, open_existing, read_stages
    from search_spaces.errors import UserInputError

    ctx = open_existing(run_dir, progress=not args.no_progress)
    num_classes = read_stages(ctx.run.root).get("data", {}).get("num_classes")
    if num_classes is None:
        raise UserInputError(f"{run_dir}: the run's data stage has not finished; run `nas run {ctx.run.config} "
                             "--resume` first")
    paths = {}
    for device in devices:
        if device == HOST_DEVICE and any(t.device == HOST_DEVICE for t in ctx.config.targets):
            paths[device] = str(host_table_here(ctx))
        elif lut_path(ctx, device).is_file():
            paths[device] = str(lut_path(ctx, device))
    return ctx.layer_options(num_classes), paths


def _devices(args, targets) -> list[str]:
    from nas.evaluators import split_metric

    named = {split_metric(name)[1] for t in targets for name in t.metric_names}
    return sorted({d for d in named if d} | {t.device for t in targets if t.device})


def run(args) -> int:
    from nas.search import run_multi_target_search

    space = _space(args)
    targets = _targets(args)
    layer_options, run_paths = _run_pricing(args, _devices(args, targets))
    if args.ray_address and args.evaluator.startswith("table:"):
        print("nas search: note: the table evaluator runs in-process; --ray-address is not used", file=sys.stderr)
    options = {"storage": args.storage} if args.storage else {}
    result = run_multi_target_search(
        space, args.evaluator, targets, out=args.out, budget=args.budget, strategy=args.strategy, seed=args.seed,
        population=args.population, resume=args.resume, strategy_options=options,
        free_columns=[c for c in args.free_columns.split(",") if c], latency_model=args.latency_model,
        latency_paths={**run_paths, **_latency_paths(args)}, layer_options=layer_options,
        ray_address=args.ray_address, num_actors=args.num_actors,
        progress=not args.no_progress, flat=not args.target, asynchronous=args.asynchronous)
    print(f"{result.expensive_evaluations} expensive evaluations this session; results in {result.out}")
    for target, (name, found) in zip(targets, result.targets.items()):
        best = target.objectives[0]
        if len(found.pareto["arch"]):
            print(f"{name}: {len(found.history['arch'])} evaluated, front of {len(found.pareto['arch'])}; best "
                  f"{best.name} {found.pareto[best.name][0]:.4g}: {found.pareto['arch'][0]}")
        else:
            print(f"{name}: {len(found.history['arch'])} evaluated, none feasible")
    return 0
