"""Evaluators by name: `table:PATH` (lookup, in-process) and `supernet:RUN_DIR` (Ray actors), plus cheap metrics."""

from __future__ import annotations

from pathlib import Path

from nas.evaluators.base import CheapMetrics, Evaluator, ExpensiveCache
from nas.evaluators.cheap import CostModelMetrics, SizeMetrics, cheap_metrics_for, split_metric
from nas.evaluators.table import TableBudgetExceeded, TableColumns, TableEvaluator
from search_spaces.errors import UserInputError

KINDS = ("table", "supernet")


def build_evaluator(spec: str, space, *, budget: int | None = None, free_columns=(), ray_address: str | None = None,
                    num_actors: int | None = None, **options) -> Evaluator:
    """The evaluator a spec names: `table:PATH` or `supernet:RUN_DIR`."""
    kind, sep, location = str(spec).partition(":")
    if not sep or kind not in KINDS or not location:
        raise UserInputError(f"--evaluator {spec!r} is malformed; write table:PATH (CSV or Parquet) or "
                             "supernet:RUN_DIR")
    if kind == "table":
        return TableEvaluator(space, Path(location), cheap_columns=tuple(free_columns), budget=budget)
    if free_columns:
        raise UserInputError(f"free columns {list(free_columns)} only apply to the table evaluator")
    from nas.evaluators.supernet import SupernetEvaluator

    return SupernetEvaluator(space, location, ray_address=ray_address, num_actors=num_actors, **options)


__all__ = ["CheapMetrics", "CostModelMetrics", "Evaluator", "ExpensiveCache", "SizeMetrics", "TableBudgetExceeded",
           "TableColumns", "TableEvaluator", "build_evaluator", "cheap_metrics_for", "split_metric"]
