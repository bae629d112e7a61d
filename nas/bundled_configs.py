"""The experiment configs shipped inside the package (nas/experiments/*.yaml) and resolving a bare name to one."""

from __future__ import annotations

from pathlib import Path

from search_spaces.errors import UserInputError

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
SUFFIXES = (".yaml", ".yml")


def bundled_names() -> list[str]:
    """The names `nas run NAME` accepts without a path, e.g. quickstart."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def resolve_config(arg: str | Path) -> Path:
    """The config file `arg` names: `arg` itself when it is a file or looks like a path (a directory part or a YAML
    suffix), else the bundled experiment of that name; a bare name that is neither raises `UserInputError`."""
    path = Path(arg)
    if path.is_file() or path.suffix in SUFFIXES or len(path.parts) != 1:
        return path
    bundled = EXPERIMENTS_DIR / f"{path.name}.yaml"
    if bundled.is_file():
        return bundled
    raise UserInputError(f"config {str(arg)!r} is neither a file nor a bundled experiment; allowed: a path to an "
                         f"experiment YAML or one of {bundled_names()}")
