"""`nas train CONFIG [--resume] [--max-steps N]`: train the supernet of an experiment config into runs/<name>/."""

from __future__ import annotations

from nas.commands import bounded


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the weight-sharing supernet of an experiment config",
                              description="Train the supernet of CONFIG with progressive shrinking into "
                              "<runs_dir>/<name>/ (config.yaml, checkpoints/, metrics.csv).")
    p.add_argument("config", help="experiment YAML file, or the name of a bundled one (e.g. tiny_train)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run from its latest checkpoint (the stored config must equal CONFIG)")
    p.add_argument("--max-steps", type=bounded(int, ge=1), default=None, metavar="N",
                   help="stop after global step N (checkpointed; --resume continues)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from nas.bundled_configs import resolve_config
    from nas.config import load_config
    from nas.preflight import check_run
    from nas.train import train_and_evaluate

    config = load_config(resolve_config(args.config))
    check_run(config, need_targets=False)
    summary = train_and_evaluate(config, resume=args.resume, max_steps=args.max_steps,
                                 progress=not args.no_progress)
    done = "finished" if summary["step"] >= summary["total_steps"] else "stopped"
    print(f"{done} at step {summary['step']} of {summary['total_steps']}; run directory {summary['run_dir']}")
    for key in ("val_acc_largest", "val_acc_smallest"):
        if key in summary:
            print(f"{key}: {summary[key]:.4f}")
    print(f"peak memory (max RSS): {summary['peak_rss_gib']:.2f} GiB")
    return 0
