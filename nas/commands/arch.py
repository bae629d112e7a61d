"""`nas arch SPACE ARCH`: decode one architecture (string form or choice indices): values, canonical form, hash."""

from __future__ import annotations

import json

from search_spaces.errors import UserInputError


def register(subparsers) -> None:
    p = subparsers.add_parser("arch", help="decode an architecture: its decisions, canonical form and hash")
    p.add_argument("space", help="space name (see `nas spaces`)")
    p.add_argument("arch", help="the space's string form, or comma-separated choice indices with --indices")
    p.add_argument("--indices", action="store_true", help="ARCH is comma-separated choice indices")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from search_spaces import get_space

    space = get_space(args.space)
    if args.indices:
        try:
            indices = [int(x) for x in args.arch.split(",")]
        except ValueError:
            raise UserInputError(f"--indices: {args.arch!r} is not comma-separated integers") from None
        arch = space.validate(np.array([indices]))[0]
    else:
        arch = space.from_string(args.arch)
    canonical = space.canonical(arch)[0]
    info = {"arch": space.to_string(arch), "canonical": space.to_string(canonical),
            "hash": f"{int(space.hash(arch)[0]):016x}", "indices": arch.tolist(),
            "inactive": [n for n, a in zip(space.names, space.active(arch)[0]) if not a],
            "decisions": {k: (v.item() if hasattr(v, "item") else v) for k, v in space.to_dict(arch).items()}}
    if args.json:
        print(json.dumps(info))
    else:
        for key in ("arch", "canonical", "hash", "indices", "inactive"):
            print(f"{key}: {info[key]}")
    return 0
