"""The run directory `runs/<name>/`: its layout, creating or reopening it safely, and the metrics CSV log."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from search_spaces.errors import UserInputError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CHECKPOINTS_DIR = "checkpoints"


class RunDir:
    """Paths inside one run directory (see DESIGN.md, "One run, one directory")."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def of(cls, config) -> "RunDir":
        """The run directory of an `ExperimentConfig`: `<runs_dir>/<name>`."""
        return cls(Path(config.runs_dir) / config.name)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def luts(self) -> Path:
        return self.root / "luts"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def search(self, target: str) -> Path:
        return self.root / "search" / target

    def subnet(self, subnet_id: str) -> Path:
        return self.root / "subnets" / subnet_id

    def exists(self) -> bool:
        return self.root.is_dir() and any(self.root.iterdir())


def open_run(config, config_text: str, *, resume: bool) -> RunDir:
    """Creates the run directory of `config` and writes `config.yaml`, or reopens it for `resume`.

    A new run refuses a directory that already holds files (it never overwrites another run); a resumed run
    requires that the stored `config.yaml` equals `config_text`, so a run is never continued under another config.
    """
    run = RunDir.of(config)
    if run.exists():
        if not resume:
            raise UserInputError(f"run directory {run.root} already exists: pass --resume to continue that run, "
                                 f"or choose another `name` in the config")
        if not run.config.is_file():
            raise UserInputError(f"run directory {run.root} has no {CONFIG_FILE}: it is not a hwnas run, "
                                 f"so it cannot be resumed; choose another `name`")
        stored = run.config.read_text()
        if stored != config_text:
            raise UserInputError(f"cannot resume {run.root}: its {CONFIG_FILE} differs from the given config "
                                 f"({_first_difference(stored, config_text)}); resume with the stored config "
                                 f"or start a run under another `name`")
        return run
    run.root.mkdir(parents=True, exist_ok=True)
    _write_atomic(run.config, config_text)
    return run


def _first_difference(stored: str, given: str) -> str:
    for number, (a, b) in enumerate(zip(stored.splitlines(), given.splitlines()), start=1):
        if a != b:
            return f"line {number}: stored {a.strip()!r}, given {b.strip()!r}"
    return "one has more lines than the other"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class MetricsLog:
    """Appends rows to a CSV with a fixed header; `keep_until(step)` drops rows logged after a checkpoint."""

    def __init__(self, path: str | Path, fields: tuple[str, ...]):
        self.path, self.fields = Path(path), tuple(fields)
        if self.path.exists():
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), None)
            if header is not None and tuple(header) != self.fields:
                raise UserInputError(f"{self.path} has columns {header}, expected {list(self.fields)}: "
                                     f"it was not written by this version of `nas train`")

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def keep_until(self, step: int) -> None:
        """Rewrites the log with only the rows whose `step` is at most `step` (what a resumed run replays)."""
        kept = [row for row in self.rows() if int(row["step"]) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def append(self, **row) -> None:
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"metrics row has unknown columns {sorted(unknown)}")
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            if new:
                writer.writeheader()
            writer.writerow(row)
