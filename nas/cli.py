"""The `nas` command line: one subcommand per module in `nas.commands`, bad input reported in one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from nas.progress import configure_for_logs
from search_spaces.errors import UserInputError

COMMAND_MODULES = [
    "nas.commands.spaces",
    "nas.commands.sample",
    "nas.commands.arch",
    "nas.commands.validate",
    "nas.commands.train",
    "nas.commands.devices",
    "nas.commands.profile",
    "nas.commands.search",
    "nas.commands.latency",
    "nas.commands.run",
    "nas.commands.export",
    "nas.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="hwnas: hardware-aware neural architecture search on JAX. "
        "Train a supernet once, search per device and budget, export verified subnets.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_for_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserInputError as e:
        print(f"nas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        print(f"nas {args.command}: error: cannot write or read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
