"""A small typed-schema engine: dataclasses whose fields are checked (types, ranges, choices, unknown keys) on load."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, get_args, get_origin

from search_spaces.errors import UserInputError


def field(default=dataclasses.MISSING, *, ge=None, gt=None, le=None, doc: str = "", default_factory=None):
    """A schema field with optional bounds; `doc` is shown in error messages and `nas validate --explain`."""
    meta = {"ge": ge, "gt": gt, "le": le, "doc": doc}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Section:
    """Base of config sections; subclasses are dataclasses and may override `check(path)` for cross-field rules."""

    def check(self, path: str) -> None:
        """Cross-field rules; raise `UserInputError` naming `path`."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_section(cls, data: Any, path: str, source: str):
    """Builds `cls` from a mapping, rejecting unknown keys and checking every value; errors name source and path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: {path or 'top level'} must be a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserInputError(f"{source}: unknown key {_join(path, unknown[0])}; allowed keys at "
                             f"{path or 'top level'}: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserInputError(f"{source}: missing required key {key}")
            continue
        value = _coerce(hints[name], data[name], key, source)
        _check_bounds(f.metadata, value, key, source)
        values[name] = value
    section = cls(**values)
    section.check_source = source
    section.check(path)
    return section


def _coerce(tp, value, key: str, source: str):
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key, source)
            except UserInputError as e:
                errors.append(str(e))
        raise UserInputError(errors[0])
    if origin is Literal:
        if value not in args:
            raise UserInputError(f"{source}: {key} = {_show(value)} is not allowed; allowed: {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserInputError(f"{source}: {key} must be a list, got {_show(value)}")
        item = args[0] if args else Any
        return [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserInputError(f"{source}: {key} must be a mapping, got {_show(value)}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Section):
        return parse_section(tp, value, key, source)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserInputError(f"{source}: {key} must be true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserInputError(f"{source}: {key} must be an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserInputError(f"{source}: {key} must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise UserInputError(f"{source}: {key} = {value} is not allowed; allowed: a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserInputError(f"{source}: {key} must be a string, got {_show(value)}")
        return value
    raise TypeError(f"schema type {tp} of {key} is not supported")


def _check_bounds(meta, value, key: str, source: str) -> None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for bound, ok, word in (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                                ("le", lambda a, b: a <= b, "<=")):
            limit = meta.get(bound)
            if limit is not None and not ok(v, limit):
                raise UserInputError(f"{source}: {key} = {v} is out of range; allowed: {word} {limit}")


def _join(path: str, name) -> str:
    return f"{path}.{name}" if path else str(name)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
