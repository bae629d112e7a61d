"""The stages of `nas run`: their order, the config keys and stages each depends on, the files each writes, and
which stages a resumed run with a changed config (or `--from STAGE`) redoes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from search_spaces.errors import UserInputError

STAGES = ("data", "latency", "train", "search", "export", "report")
TABLE_STAGES = ("search", "report")
STAGES_FILE = "stages.json"
BUDGETS_FILE = "budgets.json"
# Config keys (a section, or one key of it) whose change makes a stage's result stale
STAGE_INPUTS = {
    "data": ("data", "supernet.num_classes"),
    "latency": ("seed", "space", "supernet", "targets"),
    "train": ("seed", "space", "data", "supernet", "train"),
    "search": ("seed", "space", "search", "targets"),
    "export": ("export", "train.batch_size", "train.bn_calibration_batches"),
    "report": (),
}
# Stages whose results a stage reads
STAGE_NEEDS = {"data": (), "latency": ("data",), "train": ("data",), "search": ("latency", "train"),
               "export": ("search",), "report": ("search", "export")}
# What a stage writes in the run directory (removed when the stage is redone)
STAGE_OUTPUTS = {"data": (), "latency": ("luts", BUDGETS_FILE), "train": ("checkpoints", "metrics.csv"),
                 "search": ("search",), "export": ("subnets",), "report": ("report.html", "report.md", "report")}


def read_stages(root: Path) -> dict:
    path = root / STAGES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_stages(root: Path, stages: dict) -> None:
    tmp = root / f".{STAGES_FILE}.tmp"
    tmp.write_text(json.dumps(stages, indent=2))
    tmp.replace(root / STAGES_FILE)


def mark_done(root: Path, stage: str, summary: dict) -> None:
    stages = read_stages(root)
    stages[stage] = {"done": True, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary}
    write_stages(root, stages)


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        items = {}
        for key, item in value.items():
            items.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        items = {f"{prefix}.length": len(value)}
        for i, item in enumerate(value):
            items.update(_flatten(item, f"{prefix}[{i}]"))
        return items
    return {prefix: value}


def changed_keys(stored_text: str, given_text: str) -> dict[str, tuple]:
    """Config keys whose values differ between two dumped configs: {key: (stored, given)}."""
    stored, given = _flatten(yaml.safe_load(stored_text) or {}), _flatten(yaml.safe_load(given_text) or {})
    return {key: (stored.get(key), given.get(key)) for key in sorted(set(stored) | set(given))
            if stored.get(key) != given.get(key)}


def _is_input(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "[")


def _with_dependents(stages: set[str], order: tuple[str, ...]) -> list[str]:
    """`stages` and every stage of `order` that needs one of them, directly or not, in run order."""
    closed = set(stages)
    for stage in order:
        if any(need in closed for need in STAGE_NEEDS[stage]):
            closed.add(stage)
    return [stage for stage in order if stage in closed]


def plan_rerun(changes: dict[str, tuple], done: set[str], order: tuple[str, ...], from_stage: str | None,
               config_path) -> list[str]:
    """The stages a resumed run redoes: those whose inputs changed, `from_stage`, and every stage after them that
    reads their results. A change to a finished stage's inputs needs `--from` at or before that stage (its results
    are then discarded); otherwise it is refused, naming the key and the `--from` to pass."""
    if from_stage is not None and from_stage not in order:
        raise UserInputError(f"--from {from_stage!r} is not a stage of this run; allowed: {list(order)}")
    affected = {stage: [key for key in changes if any(_is_input(key, p) for p in STAGE_INPUTS[stage])]
                for stage in order}
    chosen = _with_dependents({s for s, keys in affected.items() if keys} | ({from_stage} if from_stage else set()),
                              order)
    allowed = _with_dependents({from_stage}, order) if from_stage else []
    for stage in order:
        if stage in done and affected[stage] and stage not in allowed:
            key = affected[stage][0]
            stored, given = changes[key]
            raise UserInputError(f"{config_path}: {key} changed ({stored!r} -> {given!r}) and the finished stage "
                                 f"{stage!r} used it; pass --from {stage} to redo {stage} and the stages that read "
                                 f"it ({', '.join(_with_dependents({stage}, order))}), or start a run under another "
                                 "`name`")
    return chosen


def discard(root: Path, stages: list[str]) -> list[Path]:
    """Forgets that `stages` finished and removes what they wrote; returns the removed paths."""
    record = read_stages(root)
    for stage in stages:
        record.pop(stage, None)
    write_stages(root, record)
    removed = []
    for stage in stages:
        for name in STAGE_OUTPUTS[stage]:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path)
    return removed
