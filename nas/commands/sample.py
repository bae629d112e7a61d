"""`nas sample SPACE -n N`: random architectures of a space, as strings or JSON."""

from __future__ import annotations

from nas.commands import SEED, bounded
from search_spaces import get_space


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="sample random architectures of a space")
    p.add_argument("space", help="space name (see `nas spaces`)")
    p.add_argument("-n", type=bounded(int, ge=0, le=10_000_000), default=1, help="how many architectures (default 1)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of arch strings")
    p.add_argument("--canonical", action="store_true", help="print the canonical form of each sample")
    p.set_defaults(func=run)


def run(args) -> int:
    space = get_space(args.space)
    archs = space.sample(args.n, args.seed)
    if args.canonical:
        archs = space.canonical(archs)
    for arch in archs:
        print(space.to_json(arch) if args.json else space.to_string(arch))
    return 0
