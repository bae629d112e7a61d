"""`nas profile`: measure a lookup table for a space on this machine (ONNX Runtime), resumable."""

from __future__ import annotations

from nas.commands import bounded


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="time every unique layer of a space with ONNX Runtime into a lookup "
                              "table (run it on the target board to fill its table)")
    p.add_argument("--space", required=True, help="search space name (ofa_mbv3, nb201)")
    p.add_argument("--device", required=True, help="device name the table is for (see `nas devices`)")
    p.add_argument("--resolution", type=bounded(int, ge=8, le=1024), nargs="+", help="input resolutions (ofa_mbv3)")
    p.add_argument("--out", required=True, help="lookup table JSON to write (written as it goes)")
    p.add_argument("--resume", action="store_true", help="continue a partial table at --out")
    p.add_argument("--warmup", type=bounded(int, ge=0, le=10_000), default=10,
                   help="untimed runs per layer (default 10)")
    p.add_argument("--repeats", type=bounded(int, ge=1, le=100_000), default=50,
                   help="timed runs per layer (default 50)")
    p.add_argument("--threads", type=bounded(int, ge=1, le=1024), default=1,
                   help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--provider", default="CPUExecutionProvider",
                   help="ONNX Runtime execution provider, e.g. CUDAExecutionProvider, TensorrtExecutionProvider")
    p.add_argument("--batch-size", type=bounded(int, ge=1, le=65_536), default=1, help="batch size (default 1)")
    p.add_argument("--clock", choices=("auto", "wall", "thread"), default="auto",
                   help="'thread': CPU time of the single-threaded CPU session (robust when other processes share "
                   "the cores); 'wall': elapsed time; 'auto' (default): thread for 1-thread CPU sessions, else wall")
    p.add_argument("--group", type=bounded(int, ge=1, le=10_000), default=16,
                   help="layer models timed interleaved, one run each in turn (default 16)")
    p.add_argument("--num-classes", type=bounded(int, ge=2, le=100_000),
                   help="classifier outputs (default: the space's skeleton default)")
    p.add_argument("--width-mult", type=bounded(float, ge=0.1, le=4), help="ofa_mbv3 channel multiplier (default 1.0)")
    p.add_argument("--calibrate-subnets", type=bounded(int, ge=0, le=1000), default=None, metavar="N",
                   help="then time N random whole subnets and fit the per-layer boundary correction (ofa_mbv3; "
                   "default 6 for ofa_mbv3, 0 to skip)")
    p.add_argument("--power-rails", metavar="ROOT",
                   help="read INA3221 power rails under ROOT ('/' on a Jetson) to record per-layer energy")
    p.add_argument("--devices-dir", help="extra directory of device JSON files (also $HWNAS_DEVICES_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from latency_models.devices import get_device
    from latency_models.profiler import TimingConfig, profile
    from search_spaces import get_space
    from search_spaces.errors import UserInputError

    hparams = {"resolutions": tuple(args.resolution)} if args.resolution else {}
    if args.resolution and args.space != "ofa_mbv3":
        raise UserInputError(f"--resolution applies to ofa_mbv3 only; space {args.space!r} has a fixed input")
    space = get_space(args.space, **hparams)
    device = get_device(args.device, args.devices_dir)
    layer_options = {k: v for k, v in (("num_classes", args.num_classes), ("width_mult", args.width_mult))
                     if v is not None}
    power_reader = None
    if args.power_rails:
        from latency_models.energy import PowerRails
        power_reader = PowerRails(args.power_rails).total
    timing = TimingConfig(args.warmup, args.repeats, args.threads, args.provider, args.batch_size, args.clock,
                          args.group)
    calibrate = args.calibrate_subnets if args.calibrate_subnets is not None else (
        6 if space.name == "ofa_mbv3" else 0)
    table = profile(space, device, args.out, resume=args.resume, timing=timing, layer_options=layer_options,
                    power_reader=power_reader, progress=not args.no_progress, calibrate_subnets=calibrate)
    print(f"{args.out}: {len(table.entries)} layers, overhead {table.overhead_ms:.4f} ms, device {device.name}, "
          f"onnxruntime {table.metadata['runtime_version']} ({args.provider}, {args.threads} thread(s), {timing.resolved_clock} clock)")
    if "calibration" in table.metadata:
        c = table.metadata["calibration"]
        print(f"per-layer boundary correction {c['layer_correction_ms']:.4f} ms, per-network offset "
              f"{c.get('network_offset_ms', 0.0):.4f} ms from {c['subnets']} whole subnets: "
              f"median |error| {100 * c['median_abs_error_before']:.1f}% -> {100 * c['median_abs_error_after']:.1f}%")
    return 0
