"""The `table` evaluator: metrics looked up in a CSV or Parquet file, one row revealed per distinct query."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from search_spaces.errors import UserInputError


COST_COLUMNS = ("latency_ms", "energy_mj", "params", "macs", "flops")


class TableBudgetExceeded(RuntimeError):
    """More distinct architectures were asked of a table than its query budget allows."""


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a CSV or Parquet file: `arch` as str, every other column as float64."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"table {str(path)!r} does not exist; give a CSV or Parquet file with an 'arch' column")
    try:
        table = pq.read_table(path) if path.suffix.lower() in (".parquet", ".pq") else pa_csv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserInputError(f"table {str(path)!r} cannot be read as {path.suffix or 'CSV'}: {e}") from None
    if "arch" not in table.column_names:
        raise UserInputError(f"table {str(path)!r} has no 'arch' column; columns: {table.column_names}")
    columns = {"arch": np.asarray(table.column("arch").to_pylist(), dtype=object)}
    for name in table.column_names:
        if name == "arch":
            continue
        if not (pa.types.is_integer(table.schema.field(name).type) or
                pa.types.is_floating(table.schema.field(name).type)):
            raise UserInputError(f"table {str(path)!r}: column {name!r} is {table.schema.field(name).type}; metric "
                                 "columns must be numeric")
        columns[name] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    _check_values(columns, str(path))
    return columns


def _check_values(columns: dict[str, np.ndarray], path: str) -> None:
    """No infinite values, no negative cost (latency, energy, size), no architecture listed twice with other values."""
    for name, column in columns.items():
        if name == "arch":
            continue
        cost = name.split("@")[0] in COST_COLUMNS
        bad = np.isinf(column) | ((column < 0) if cost else False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserInputError(f"table {path!r}: column {name!r} is {column[row]:g} at line {row + 2} "
                                 f"({columns['arch'][row]!r}); allowed: finite{' and >= 0' if cost else ''}")
    seen: dict[str, int] = {}
    for row, arch in enumerate(columns["arch"]):
        first = seen.setdefault(arch, row)
        if first == row:
            continue
        differ = [n for n, c in columns.items() if n != "arch" and not np.array_equal(c[first], c[row], equal_nan=True)]
        if differ:
            raise UserInputError(f"table {path!r}: architecture {arch!r} is listed at lines {first + 2} and {row + 2} "
                                 f"with different {differ[0]} ({columns[differ[0]][first]:g} vs "
                                 f"{columns[differ[0]][row]:g}); keep one row per architecture")


class TableEvaluator:
    """Looks architectures up by canonical hash in a table of `arch` strings and metric columns; where several
    rows are one canonical class, the row of the canonical form answers (else the first).

    Counts the distinct canonical architectures asked; asking for more than `budget` raises
    `TableBudgetExceeded` before anything is revealed. `cheap_columns` are metrics the table gives away freely
    (e.g. measured latency in a hardware benchmark table): `columns_view()` serves them without counting."""

    def __init__(self, space, path: str | Path, *, metrics: Sequence[str] | None = None,
                 cheap_columns: Sequence[str] = (), budget: int | None = None):
        self.space = space
        self.path = str(path)
        columns = read_table(path)
        available = [c for c in columns if c != "arch"]
        for name in [*(metrics or ()), *cheap_columns]:
            if name not in available:
                raise UserInputError(f"table {self.path!r} has no metric column {name!r}; columns: {available}")
        self.cheap_columns = tuple(cheap_columns)
        self.metrics = tuple(metrics) if metrics else tuple(c for c in available if c not in self.cheap_columns)
        self.budget = budget
        self._queried: set[int] = set()
        self._index, self._values = self._build_index(columns)

    def _build_index(self, columns) -> tuple[dict[int, int], dict[str, np.ndarray]]:
        try:
            archs = self.space.parse(list(columns["arch"]))
        except UserInputError as e:
            raise UserInputError(f"table {self.path!r}: column 'arch': {e}") from None
        self._archs = archs
        hashes = self.space.hash(archs)
        not_canonical = (archs != self.space.canonical(archs)).any(1)
        order = np.lexsort((np.arange(len(archs)), not_canonical, hashes))
        keys, start = np.unique(hashes[order], return_index=True)
        first = order[start]
        index = dict(zip(keys.tolist(), first.tolist()))
        names = set(self.metrics) | set(self.cheap_columns)
        values = {name: columns[name] for name in names}
        for name, column in values.items():
            if np.isnan(column[first]).any():
                row = int(first[np.isnan(column[first])][0])
                raise UserInputError(f"table {self.path!r}: column {name!r} is empty at row {row + 2} "
                                     f"({columns['arch'][row]!r}); every metric needs a value")
        return index, values

    @property
    def num_queried(self) -> int:
        """Distinct canonical architectures revealed so far."""
        return len(self._queried)

    @property
    def num_architectures(self) -> int:
        """Distinct canonical architectures the table covers."""
        return len(self._index)

    def rows(self, archs) -> np.ndarray:
        """Row index of each architecture; raises UserInputError naming an architecture the table lacks."""
        hashes = self.space.hash(self.space.validate(archs)).tolist()
        missing = [i for i, h in enumerate(hashes) if h not in self._index]
        if missing:
            arch = self.space.to_string(np.asarray(archs)[missing[0]])
            raise UserInputError(f"table {self.path!r} has no row for architecture {arch!r} (it covers "
                                 f"{self.num_architectures} distinct architectures of space {self.space.name!r})")
        return np.array([self._index[h] for h in hashes], dtype=np.int64)

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        archs = self.space.validate(archs)
        rows = self.rows(archs)
        new = set(self.space.hash(archs).tolist()) - self._queried
        if self.budget is not None and len(self._queried) + len(new) > self.budget:
            raise TableBudgetExceeded(f"table {self.path!r}: {len(new)} new architectures would make "
                                      f"{len(self._queried) + len(new)} distinct queries, over the budget of "
                                      f"{self.budget}")
        self._queried |= new
        return {name: self._values[name][rows] for name in self.metrics}

    def columns_view(self) -> "TableColumns":
        return TableColumns(self)

    def best_achievable(self, metric: str) -> tuple[float, str]:
        """The smallest value of a metric column over the architectures the table covers, and its architecture (a
        feasibility check before a search; it reveals no row to the search and counts against no budget)."""
        rows = np.fromiter(self._index.values(), dtype=np.int64)
        best = rows[int(np.argmin(self._values[metric][rows]))]
        return float(self._values[metric][best]), self.space.to_string(self._archs[best])

    def close(self) -> None:
        pass


class TableColumns:
    """The free (`cheap_columns`) metrics of a TableEvaluator, served without counting queries."""

    expensive = False

    def __init__(self, table: TableEvaluator):
        self.table = table
        self.metrics = table.cheap_columns

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        rows = self.table.rows(archs)
        return {name: self.table._values[name][rows] for name in self.metrics}

    def candidates(self) -> np.ndarray:
        """Every distinct architecture the table covers (what a feasibility check may scan exhaustively)."""
        rows = np.fromiter(self.table._index.values(), dtype=np.int64)
        return self.table._archs[np.sort(rows)]

    def close(self) -> None:
        pass
