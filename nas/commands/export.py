"""`nas export RUN_DIR [--target T]`: extract, export (Orbax + ONNX) and verify the chosen subnets of a run."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the chosen subnets of a searched run (ONNX checked by ORT)")
    p.add_argument("run_dir", help="run directory written by `nas run` (runs/<name>)")
    p.add_argument("--target", default=None, help="only this target (name or device)")
    p.set_defaults(func=run)


def run(args) -> int:
    from nas.run import open_existing, stage_export

    summary = stage_export(open_existing(args.run_dir), only=args.target)
    for subnet in summary["subnets"]:
        print(f"{args.run_dir}/subnets/{subnet}")
    return 0
