"""The experiment config reference (`nas validate --explain`, docs/config.md), generated from the schema."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

import yaml

from nas.config import ExperimentConfig
from nas.schema import Section

HEADER = """\
# Experiment config reference

Every key of an experiment YAML (`nas validate CONFIG` checks one, `nas run CONFIG` runs it), generated from the
schema in `nas/config.py` by `nas validate --explain`; regenerate this file with
`nas validate --explain > docs/config.md`. A key left out takes its default; `[]` in a path stands for every item of
a list. Unknown keys, wrong types and values outside the bounds are rejected with the file, key path, value and what
is allowed.
"""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One schema key: its dotted path, type, default, allowed values or bounds, and doc."""

    path: str
    type: str
    default: str
    allowed: str
    doc: str


def section_entries(cls: type = ExperimentConfig, path: str = "") -> list[tuple[str, type, list[Entry]]]:
    """Every section reachable from `cls`, depth first: (path, class, the entries of its own keys)."""
    hints = typing.get_type_hints(cls)
    own, nested = [], []
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        own.append(Entry(key, _type_name(tp), _default(f), _allowed(tp, f.metadata), f.metadata.get("doc", "")))
        child = _section_of(tp)
        if child is not None:
            nested.extend(section_entries(child, key + ("[]" if _is_list(tp) else "")))
    return [(path, cls, own)] + nested


def config_reference() -> str:
    """The reference as Markdown: one heading per section, one bullet per key."""
    parts = [HEADER]
    for path, cls, entries in section_entries():
        parts.append(f"\n## {'`' + path + '`' if path else 'Top level'}\n")
        doc = _section_doc(cls)
        if doc:
            parts.append(f"\n{_markdown(doc)}\n")
        parts.append("\n")
        for e in entries:
            facts = ", ".join(x for x in (e.type, e.default, e.allowed) if x)
            parts.append(f"- `{e.path}` ({facts})" + (f": {_markdown(e.doc)}" if e.doc else "") + "\n")
    return "".join(parts)


def _section_of(tp) -> type | None:
    for t in (tp, *get_args(tp)):
        if isinstance(t, type) and issubclass(t, Section):
            return t
        if get_origin(t) in (list, tuple) and get_args(t) and _section_of(get_args(t)[0]):
            return _section_of(get_args(t)[0])
    return None


def _is_list(tp) -> bool:
    return any(get_origin(t) in (list, tuple) for t in (tp, *get_args(tp)))


def _type_name(tp, plural: bool = False) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a, plural) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    if origin is Literal:
        return _type_name(type(args[0]), plural)
    if origin in (list, tuple):
        return "list of " + (_type_name(args[0], plural=True) if args else "values")
    if origin is dict or tp is dict:
        return "mappings" if plural else "mapping"
    if isinstance(tp, type) and issubclass(tp, Section):
        return "sections" if plural else "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "value"}
    name = names.get(tp, getattr(tp, "__name__", str(tp)))
    return name + "s" if plural else name


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if isinstance(value, Section):
            return ""
    else:
        return "required"
    return f"default `{_yaml(_plain(value))}`"


def _plain(value):
    """A default as YAML would hold it; a section in a list shows only the keys that differ from their defaults."""
    if isinstance(value, Section):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _is_default(getattr(value, f.name), f)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_default(value, f: dataclasses.Field) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    return f.default_factory is not dataclasses.MISSING and value == f.default_factory()


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _allowed(tp, meta) -> str:
    literal = next((t for t in (tp, *get_args(tp)) if get_origin(t) is Literal), None)
    if literal is not None:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(literal))
    bounds = [f"{word} {meta[b]}" for b, word in (("ge", ">="), ("gt", ">"), ("le", "<=")) if meta.get(b) is not None]
    if not bounds:
        return ""
    return ("each " if _is_list(tp) else "") + " and ".join(bounds)


def _markdown(text: str) -> str:
    """Plain text safe in Markdown: `<name>` would otherwise be taken for an HTML tag."""
    return text.replace("<", "\\<")


def _section_doc(cls: type) -> str:
    """The class docstring when its author wrote one (dataclasses make one up from the signature otherwise)."""
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(cls.__name__ + "(") else " ".join(doc.split())
