"""The `nas` subcommands, one module each with `register(subparsers)` and `run(args)`; `bounded` types their
numeric options so a value out of range is an argparse error (exit 2) before any work starts, and `new_output`
applies the rule every command follows: an output path that exists is refused, never overwritten."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from search_spaces.errors import UserInputError


def bounded(kind: type, *, ge: float | None = None, le: float | None = None):
    """An argparse `type` converting to `kind` (int or float) and accepting only finite values in [ge, le]."""
    allowed = " and ".join(f"{word} {_show(bound)}" for word, bound in ((">=", ge), ("<=", le)) if bound is not None)

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                from None
        if not math.isfinite(value) or (ge is not None and value < ge) or (le is not None and value > le):
            raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: {allowed or 'a finite number'}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _show(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


SEED = bounded(int, ge=0, le=2**31 - 1)


def new_output(path: str, option: str = "--out") -> Path:
    """`path` if nothing is there yet (checked before any work, so a refused command writes nothing)."""
    out = Path(path)
    if out.exists():
        raise UserInputError(f"{option} {path}: it exists and hwnas never overwrites files; choose another path or "
                             "remove it")
    return out
