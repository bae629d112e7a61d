"""`nas run CONFIG`: the whole experiment, from config to exported, verified subnets and a report."""

from __future__ import annotations

from nas.stages import STAGES


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="train, measure, search, export and report, all from one config")
    p.add_argument("config", help="experiment YAML, or the name of a bundled one (quickstart, quickstart_tiny, ...)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run directory: finished stages are skipped, an interrupted one continues; a "
                   "changed config is taken when it only touches stages not yet finished")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE", choices=STAGES,
                   help="with --resume: redo STAGE and the stages that read its results, discarding what they wrote "
                   f"(stages: {', '.join(STAGES)})")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster (default: start Ray locally)")
    p.add_argument("--stop-after", default=None, metavar="STAGE", help=f"stop after this stage ({', '.join(STAGES)})")
    p.set_defaults(func=run)


def run(args) -> int:
    from nas.bundled_configs import resolve_config
    from nas.run import run_experiment

    run_dir = run_experiment(resolve_config(args.config), resume=args.resume, ray_address=args.ray_address,
                             stop_after=args.stop_after, from_stage=args.from_stage)
    report = run_dir.root / "report.html"
    if report.exists():
        print(f"report: {report.resolve()}")
    else:
        print(f"run directory: {run_dir.root.resolve()} (stopped after {args.stop_after})")
    return 0
