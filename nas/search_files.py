"""A search directory's files: history.csv (appended per generation), pareto.csv, and state.json for resume."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from search_spaces.errors import UserInputError

HISTORY = "history.csv"
PARETO = "pareto.csv"
STATE = "state.json"
LEAD_COLUMNS = ("index", "generation", "arch", "hash")
TAIL_COLUMNS = ("feasible", "cached")


def history_columns(metrics: Sequence[str]) -> list[str]:
    return [*LEAD_COLUMNS, *metrics, *TAIL_COLUMNS]


def _format(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _write_rows(path: Path, columns: Sequence[str], rows: dict[str, Sequence], mode: str) -> None:
    with open(path, mode, newline="") as f:
        writer = csv.writer(f)
        if mode == "w":
            writer.writerow(columns)
        for i in range(len(rows[columns[0]]) if rows else 0):
            writer.writerow([_format(rows[c][i]) for c in columns])
        f.flush()
        os.fsync(f.fileno())


class History:
    """history.csv: one row per evaluated architecture, in evaluation order, written a generation at a time."""

    def __init__(self, directory: Path, metrics: Sequence[str]):
        self.path = Path(directory) / HISTORY
        self.metrics = tuple(metrics)
        self.columns = history_columns(self.metrics)

    def create(self) -> None:
        _write_rows(self.path, self.columns, {}, "w")

    def append(self, rows: dict[str, Sequence]) -> None:
        _write_rows(self.path, self.columns, rows, "a")

    def read(self) -> dict[str, np.ndarray]:
        """The columns: `arch` as str, `hash` as uint64, `index`/`generation` int, `feasible`/`cached` bool,
        the metrics float64."""
        with open(self.path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != self.columns:
                raise UserInputError(f"{self.path}: columns {header} do not match this search's {self.columns}; "
                                     "resume with the same objectives, constraints and evaluator")
            body = list(reader)
        columns = {c: [row[j] for row in body] for j, c in enumerate(self.columns)}
        out = {"arch": np.asarray(columns["arch"], dtype=object),
               "hash": np.asarray([int(h) for h in columns["hash"]], dtype=np.uint64)}
        for c in ("index", "generation"):
            out[c] = np.asarray(columns[c], dtype=np.int64)
        for c in self.metrics:
            out[c] = np.asarray(columns[c], dtype=np.float64)
        for c in TAIL_COLUMNS:
            out[c] = np.asarray(columns[c], dtype=np.float64).astype(bool)
        return out

    def keep_first(self, count: int) -> None:
        """Drops the rows after the first `count` (rows written after the last saved state)."""
        rows = self.read()
        _write_rows(self.path, self.columns, {c: v[:count] for c, v in rows.items()}, "w")


def write_table(path: Path, columns: Sequence[str], rows: dict[str, Sequence]) -> None:
    """Writes a whole CSV through a temporary file, so a crash leaves the old or the new file, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    _write_rows(tmp, columns, rows, "w")
    os.replace(tmp, path)


def write_state(directory: Path, state: dict) -> None:
    path = Path(directory) / STATE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_state(directory: Path) -> dict:
    path = Path(directory) / STATE
    if not path.is_file():
        raise UserInputError(f"--resume: {path} does not exist; there is no search in {directory} to resume")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"--resume: {path} is not valid JSON ({e}); the search cannot be resumed") from None
