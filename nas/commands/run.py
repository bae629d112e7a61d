"""`nas run CONFIG`: the whole experiment, from config to exported, verified subnets and a report."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="train, measure, search, export and report, all from one config")
    p.add_argument("config", help="experiment YAML (see experiments/)")
    p.add_argument("--resume", action="store_true", help="continue the run directory from its last finished stage")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster (default: start Ray locally)")
    p.add_argument("--stop-after", default=None, help="stop after this stage (data, train, latency, search, export)")
    p.set_defaults(func=run)


def run(args) -> int:
    from nas.run import run_experiment

    run_dir = run_experiment(args.config, resume=args.resume, ray_address=args.ray_address,
                             stop_after=args.stop_after)
    report = run_dir.root / "report.html"
    if report.exists():
        print(f"report: {report.resolve()}")
    else:
        print(f"run directory: {run_dir.root.resolve()} (stopped after {args.stop_after})")
    return 0
