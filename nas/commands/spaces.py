"""`nas spaces`: the registered search spaces with their decisions and exact cardinality."""

from __future__ import annotations

from search_spaces import get_space, list_spaces


def register(subparsers) -> None:
    p = subparsers.add_parser("spaces", help="list the search spaces, their decisions and cardinality")
    p.add_argument("--verbose", "-v", action="store_true", help="list every decision with its values")
    p.set_defaults(func=run)


def run(args) -> int:
    for name in list_spaces():
        space = get_space(name)
        print(f"{name}: {space.num_decisions} decisions, {space.cardinality():,} distinct architectures"
              f" (hyperparameters: {space.hparams or 'none'})")
        groups: dict[tuple, list[str]] = {}
        for d in space.decisions:
            groups.setdefault(d.values, []).append(d.name)
        for values, names in groups.items():
            shown = names if args.verbose or len(names) <= 3 else [names[0], "...", names[-1]]
            print(f"  {', '.join(shown)} ({len(names)}): {list(values)}")
    return 0
