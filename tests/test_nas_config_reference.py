"""The config reference: every schema key appears with its facts, and docs/config.md is exactly the generated text."""

import dataclasses
import typing
from pathlib import Path

from nas.config import ExperimentConfig
from nas.config_reference import config_reference, section_entries
from nas.schema import Section

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def schema_fields(cls=ExperimentConfig, path=""):
    """(key path, field) of every schema key, walked independently of the generator."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        yield key, f
        tp = hints[f.name]
        if typing.get_origin(tp) is typing.Union:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is list and issubclass(typing.get_args(tp)[0], Section):
            yield from schema_fields(typing.get_args(tp)[0], key + "[]")
        elif isinstance(tp, type) and issubclass(tp, Section):
            yield from schema_fields(tp, key)


def line_of(text, key):
    lines = [line for line in text.splitlines() if line.startswith(f"- `{key}` (")]
    assert len(lines) == 1, key
    return lines[0]


def test_every_schema_key_is_in_the_reference_with_its_bounds_and_doc():
    text = config_reference()
    keys = dict(schema_fields())
    assert {"name", "space.name", "train.phases[].lr", "targets[].device", "search.strategy"} <= set(keys)
    for key, f in keys.items():
        line = line_of(text, key)
        for bound, word in (("ge", ">="), ("gt", ">"), ("le", "<=")):
            if f.metadata.get(bound) is not None:
                assert f"{word} {f.metadata[bound]}" in line, line
        if f.metadata.get("doc"):
            assert line.endswith(": " + f.metadata["doc"].replace("<", "\\<")), line
    assert sorted(e.path for _, _, entries in section_entries() for e in entries) == sorted(keys)


def test_entries_state_type_default_required_and_choices():
    text = config_reference()
    assert line_of(text, "name").startswith("- `name` (string, required)")
    assert line_of(text, "train.phases[].name").startswith("- `train.phases[].name` (string, required)")
    assert line_of(text, "train.phases[].lr").startswith("- `train.phases[].lr` (number, default `0.05`, > 0")
    assert line_of(text, "train.optimizer").startswith(
        "- `train.optimizer` (string, default `sgd`, one of `sgd`, `adamw`)")
    assert line_of(text, "targets[].budgets_relative").startswith(
        "- `targets[].budgets_relative` (list of numbers, default `[]`, each >= 0 and <= 1)")
    assert line_of(text, "supernet.num_classes").startswith(
        "- `supernet.num_classes` (integer or null, default `null`, >= 2")
    assert line_of(text, "train.phases").startswith("- `train.phases` (list of sections, default `[{name: full}]`)")
    assert "\n## `train.phases[]`\n" in text and "\n## `targets[]`\n" in text and "\n## `space`\n" in text


def test_docs_config_md_is_the_generated_reference():
    assert DOC.read_text() == config_reference(), (
        "docs/config.md is stale: regenerate it with `nas validate --explain > docs/config.md`")
