"""Decisions: the named choices a space makes, each stored in an architecture as an index into its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search_spaces.errors import UserInputError


@dataclass(frozen=True)
class Decision:
    """One named choice over an ordered tuple of values; an architecture stores the index of the chosen value."""

    name: str
    values: tuple

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise UserInputError(f"decision name must be a non-empty string, got {self.name!r}")
        if len(self.values) == 0:
            raise UserInputError(f"decision {self.name!r} has no values; give at least one")
        if len(set(self.values)) != len(self.values):
            raise UserInputError(f"decision {self.name!r} has repeated values {self.values!r}; values must be unique")

    @property
    def size(self) -> int:
        return len(self.values)

    def index_of(self, value: Any) -> int:
        """The index of `value`, accepting its string form too (as parsed from a file or command line)."""
        for i, v in enumerate(self.values):
            if v == value or str(v) == str(value):
                return i
        raise UserInputError(f"decision {self.name!r}: value {value!r} is not one of {list(self.values)}")

    def to_config(self) -> dict:
        return {"name": self.name, "values": list(self.values)}


def Categorical(name: str, values) -> Decision:
    """A choice among the given values (numbers or strings), kept in the given order."""
    return Decision(name, tuple(values))


def IntRange(name: str, low: int, high: int, step: int = 1) -> Decision:
    """A choice of an integer in [low, high] (inclusive) in steps of `step`."""
    if step <= 0 or high < low:
        raise UserInputError(f"decision {name!r}: integer range needs low <= high and step > 0, got "
                             f"low={low}, high={high}, step={step}")
    return Decision(name, tuple(range(low, high + 1, step)))
