"""`nas latency fit|predict`: calibrate a latency/energy predictor on measured architectures, then apply it."""

from __future__ import annotations

from nas.commands import SEED, bounded, new_output


def register(subparsers) -> None:
    p = subparsers.add_parser("latency", help="fit a calibrated latency/energy predictor from end-to-end "
                              "measurements, or predict with one")
    sub = p.add_subparsers(dest="latency_command", metavar="SUBCOMMAND", required=True)
    fit = sub.add_parser("fit", help="fit a predictor from a CSV of measured architectures")
    fit.add_argument("--space", required=True, help="search space name (see `nas spaces`)")
    fit.add_argument("--resolution", type=bounded(int, ge=8, le=1024), nargs="+",
                     help="input resolutions of the space (ofa_mbv3)")
    fit.add_argument("--measurements", required=True,
                     help="CSV with columns arch (the space's string form) and latency_ms, optionally energy_mj")
    fit.add_argument("--out", required=True, help="predictor JSON to write (must not exist)")
    fit.add_argument("--device", default="", help="name of the measured device, recorded in the model file")
    fit.add_argument("--seed", type=SEED, default=0, help="seed of the subsample when there are too many rows")
    fit.set_defaults(func=run_fit)
    predict = sub.add_parser("predict", help="predict latency (and energy) of the architectures in a CSV")
    predict.add_argument("--model", required=True, help="predictor JSON made by `nas latency fit`")
    predict.add_argument("--archs", required=True, help="CSV with a column arch (other columns are ignored)")
    predict.add_argument("--out", required=True, help="CSV to write: arch,latency_ms[,energy_mj] (must not exist)")
    predict.set_defaults(func=run_predict)


def run_fit(args) -> int:
    from latency_models.predictor import CalibratedPredictor, read_measurements
    from search_spaces import get_space
    from search_spaces.errors import UserInputError

    if args.resolution and args.space != "ofa_mbv3":
        raise UserInputError(f"--resolution applies to ofa_mbv3 only; space {args.space!r} has a fixed input")
    new_output(args.out)
    space = get_space(args.space, **({"resolutions": tuple(args.resolution)} if args.resolution else {}))
    archs, measured = read_measurements(args.measurements, space)
    predictor = CalibratedPredictor.fit(space, archs, measured, device=args.device, source=str(args.measurements),
                                        seed=args.seed)
    predictor.save(args.out)
    for metric, model in predictor.models.items():
        s = model.stats
        print(f"{metric}: {s['n']} distinct architectures, {model.target} target, leave-one-out Spearman "
              f"{s['loo_spearman']:.3f}, within +-10% {100 * s['loo_within_10pct']:.1f}%, RMSE {s['loo_rmse']:.4g}")
    print(f"wrote {args.out}")
    return 0


def run_predict(args) -> int:
    from latency_models.predictor import CalibratedPredictor, read_architectures, write_predictions

    new_output(args.out)
    predictor = CalibratedPredictor.load(args.model)
    space = predictor.space()
    archs, rows = read_architectures(args.archs, space)
    predicted = predictor.predict(space, archs)
    write_predictions(args.out, [row["arch"] for row in rows], predicted)
    print(f"wrote {len(archs)} predictions ({', '.join(predicted)}) to {args.out}")
    return 0
