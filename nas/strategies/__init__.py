"""The registry of search strategies by name; each is imported only when asked for, so light ones stay light."""

from __future__ import annotations

import importlib

from nas.strategies.base import Constraint, Objective, Strategy
from search_spaces.errors import UserInputError

_STRATEGIES: dict[str, str] = {
    "evolution": "nas.strategies.evolution:Evolution",
    "nsga2": "nas.strategies.nsga2:NSGA2",
    "predictor": "nas.strategies.predictor_guided:PredictorGuided",
    "random": "nas.strategies.random_search:RandomSearch",
    "optuna-nsga2": "nas.strategies.optuna_sampler:OptunaNSGA2",
    "optuna-tpe": "nas.strategies.optuna_sampler:OptunaTPE",
}


DEFAULT_STRATEGY = "predictor"  # of `nas search` and `nas run`; chosen on benchmarks/search_suite.py's tune half


def register_strategy(name: str, target, *, overwrite: bool = False) -> None:
    """Makes `get_strategy(name)` return `target`: a Strategy subclass or a "module:Class" path."""
    if name in _STRATEGIES and not overwrite:
        raise UserInputError(f"search strategy {name!r} is already registered; pass overwrite=True to replace it")
    _STRATEGIES[name] = target


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as `name`; call it as `cls(space, objectives, constraints=..., ...)`."""
    if name not in _STRATEGIES:
        raise UserInputError(f"unknown search strategy {name!r}; known strategies: {list_strategies()}")
    target = _STRATEGIES[name]
    if isinstance(target, str):
        module, attr = target.split(":")
        target = getattr(importlib.import_module(module), attr)
    return target


__all__ = ["DEFAULT_STRATEGY", "Constraint", "Objective", "Strategy", "get_strategy", "list_strategies",
           "register_strategy"]
