"""The search driver: per-target ask/evaluate/tell loops sharing one cache of expensive results, their files,
resume, the unreachable-budget check, and the Python API `run_search` / `run_multi_target_search`."""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nas.evaluators import CheapMetrics, ExpensiveCache, build_evaluator, cheap_metrics_for
from nas.pareto import hypervolume, pareto_mask
from nas.search_files import PARETO, History, read_state, write_state, write_table
from nas.strategies import DEFAULT_STRATEGY, Constraint, Objective, get_strategy
from search_spaces.errors import UserInputError

_OBJECTIVE = re.compile(r"^\s*([A-Za-z_][\w.@-]*)\s*:\s*(max|min)\s*$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.@-]*)\s*<=\s*([-+0-9.eE]+)\s*$")
_QUICK_SAMPLES, _QUICK_ROUNDS, _QUICK_ELITE = 2048, 25, 16
_STATE_VERSION = 1


def parse_objective(text: str) -> Objective:
    """`accuracy:max` or `latency_ms@pi5:min`."""
    m = _OBJECTIVE.match(text) if isinstance(text, str) else None
    if m is None:
        raise UserInputError(f"--objective {text!r} is malformed; write NAME:max or NAME:min, e.g. accuracy:max")
    return Objective(m.group(1), m.group(2))


def parse_constraint(text: str) -> Constraint:
    """`latency_ms@pi5<=5` (upper bounds only)."""
    m = _CONSTRAINT.match(text) if isinstance(text, str) else None
    try:
        return Constraint(m.group(1), float(m.group(2)))
    except (AttributeError, ValueError):
        raise UserInputError(f"--constraint {text!r} is malformed; write NAME<=NUMBER, e.g. latency_ms@pi5<=5") \
            from None


@dataclass(frozen=True)
class Target:
    """One search of a run: its objectives, constraints, (optionally) the device plain `latency_ms` means and that
    device's latency model kind and file (default: the run's)."""

    name: str
    objectives: tuple
    constraints: tuple = ()
    device: str | None = None
    latency_model: str | None = None
    latency_path: str | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[\w.@=-]+", self.name):
            raise UserInputError(f"target name {self.name!r} must be a plain directory name (letters, digits, "
                                 "'_', '-', '.', '@', '=')")
        object.__setattr__(self, "objectives", tuple(
            parse_objective(o) if isinstance(o, str) else o for o in self.objectives))
        object.__setattr__(self, "constraints", tuple(
            parse_constraint(c) if isinstance(c, str) else c for c in self.constraints))

    @property
    def metric_names(self) -> list[str]:
        names = [o.name for o in self.objectives] + [c.metric for c in self.constraints]
        return list(dict.fromkeys(names))


@dataclass
class SearchResult:
    """A finished (or exhausted) search: its directory, every evaluation in order and the feasible front."""

    out: Path
    history: dict[str, np.ndarray]
    pareto: dict[str, np.ndarray]
    expensive_evaluations: int = 0
    targets: dict[str, "SearchResult"] = field(default_factory=dict)


def best_achievable(space, cheap: CheapMetrics, metric: str, seed: int = 0) -> tuple[float, np.ndarray]:
    """The smallest value of a cheap metric: exhaustive over a table's rows or a small space's canonical
    classes, else a quick evolutionary minimisation from random samples and the smallest architecture."""
    pools = [s.candidates() for s in cheap.sources if metric in s.metrics and hasattr(s, "candidates")]
    if pools:
        pool = pools[0]
    elif np.prod(space.sizes.astype(float)) <= 200_000:
        every = space.canonical(space.enumerate())
        pool = every[np.unique(space.hash(every), return_index=True)[1]]
    else:
        return _quick_minimise(space, cheap, metric, np.random.default_rng(seed))
    values = cheap(pool)[metric]
    best = int(np.argmin(values))
    return float(values[best]), pool[best]


def _quick_minimise(space, cheap: CheapMetrics, metric: str, rng) -> tuple[float, np.ndarray]:
    pool = np.vstack([space.smallest()[None], space.sample(_QUICK_SAMPLES, rng)])
    values = cheap(pool)[metric]
    for _ in range(_QUICK_ROUNDS):
        elite = pool[np.argsort(values)[:_QUICK_ELITE]]
        lowered = np.maximum(np.repeat(elite, 4, axis=0).astype(np.int64) -
                             (rng.random((4 * len(elite), space.num_decisions)) < 0.2), 0).astype(space.dtype)
        children = np.vstack([space.mutate(np.repeat(elite, 8, axis=0), 0.1, rng), lowered])
        pool = np.vstack([elite, children])
        values = cheap(pool)[metric]
    best = int(np.argmin(values))
    return float(values[best]), pool[best]


def check_constraints_reachable(space, target: Target, cheap: CheapMetrics, seed: int = 0, evaluator=None) -> None:
    """Raises UserInputError, with the best value achievable, when a constraint no architecture can meet: a cheap
    metric's, or a column of a table `evaluator` (checked over its rows without revealing any to the search)."""
    for c in target.constraints:
        if c.metric in cheap.metrics:
            best, arch = best_achievable(space, cheap, c.metric, seed)
            arch = space.to_string(arch)
        elif evaluator is not None and c.metric in evaluator.metrics and hasattr(evaluator, "best_achievable"):
            best, arch = evaluator.best_achievable(c.metric)
        else:
            continue
        if best > c.upper_bound:
            raise UserInputError(f"target {target.name!r}: constraint {c.metric}<={c.upper_bound:g} cannot be met "
                                 f"by any architecture of space {space.name!r}; the best achievable {c.metric} "
                                 f"is {best:.4g} ({arch}); raise the budget to at least that")


class TargetSearch:
    """One target's loop state: its strategy, history.csv, pareto.csv and state.json in `out`."""

    def __init__(self, out: Path, space, target: Target, *, strategy: str, strategy_options: dict, budget: int,
                 seed: int, population: int, cheap: CheapMetrics, expensive_metrics: Sequence[str], resume: bool):
        self.out, self.space, self.target = Path(out), space, target
        self.budget, self.population, self.cheap = int(budget), int(population), cheap
        self.expensive_metrics = tuple(expensive_metrics)
        self.metrics = self.expensive_metrics + tuple(m for m in cheap.metrics if m not in self.expensive_metrics)
        if not resume:
            self.out.mkdir(parents=True)
        self.strategy = self._build_strategy(strategy, dict(strategy_options), seed)
        self.config = {"space": space.config(), "target": target.name, "device": target.device,
                       "objectives": [[o.name, o.direction] for o in target.objectives],
                       "constraints": [[c.metric, c.upper_bound] for c in target.constraints],
                       "strategy": strategy, "strategy_options": self._recorded(self._options), "seed": int(seed),
                       "population": self.population, "metrics": list(self.metrics)}
        self.history_file = History(self.out, self.metrics)
        self.rows: dict[str, list] = {c: [] for c in self.history_file.columns}
        self.generation, self.hv_ref, self.exhausted, self.orphans = 0, None, False, {}
        self.front_size, self.last_hypervolume = 0, None
        self._resume() if resume else self._create()

    @property
    def _default_storage(self) -> str:
        return f"sqlite:///{(self.out / 'optuna.db').absolute()}"

    def _recorded(self, options: dict) -> dict:
        """Strategy options as state.json compares them on resume: the default storage (this directory's
        optuna.db) left out, so it follows the directory."""
        return {k: v for k, v in options.items() if not (k == "storage" and v == self._default_storage)}

    def _build_strategy(self, name: str, options: dict, seed: int):
        cls = get_strategy(name)
        if "population_size" in getattr(cls, "defaults", {}):
            options.setdefault("population_size", self.population)
        if getattr(cls, "uses_storage", False):
            options.setdefault("storage", self._default_storage)
            options.setdefault("study_name", self.target.name)
        self._options = options
        return cls(self.space, self.target.objectives, constraints=self.target.constraints,
                   cheap_metrics=self.cheap if self.cheap else None, seed=seed, **options)

    def _create(self) -> None:
        self.history_file.create()
        (self.out / "target.json").write_text(json.dumps({
            "target": self.target.name, "device": self.target.device,
            "budgets_ms": [c.upper_bound for c in self.target.constraints if c.metric.startswith("latency_ms")]}))
        self._save_state()

    def _resume(self) -> None:
        state = read_state(self.out)
        for key, value in state["config"].items():
            if key != "strategy_options" and self.config.get(key) != value:
                raise UserInputError(f"--resume: {self.out}: {key} was {value!r}, now {self.config.get(key)!r}; "
                                     "resume with the same settings (only --budget may change)")
        defaults = self.strategy.defaults
        was = json.loads(json.dumps({**defaults, **self._recorded(state["config"].get("strategy_options", {}))}))
        now = json.loads(json.dumps({**defaults, **self.config["strategy_options"]}))
        for key in sorted(set(was) | set(now)):
            if key not in was or key not in now or was[key] != now[key]:
                raise UserInputError(f"--resume: {self.out}: strategy option {key} was {_option_text(was, key)}, "
                                     f"now {_option_text(now, key)}; resume with the same settings (only --budget "
                                     "may change)")
        self.strategy.load_state_dict(state["strategy"])
        self.generation, self.hv_ref = state["generation"], state["hv_ref"]
        rows = self.history_file.read()
        told = state["num_evaluated"]
        self.orphans = {c: v[told:] for c, v in rows.items()}
        if len(rows["arch"]) > told:
            self.history_file.keep_first(told)
        self.rows = {c: list(v[:told]) for c, v in rows.items()}

    def _save_state(self) -> None:
        write_state(self.out, {"version": _STATE_VERSION, "config": self.config, "generation": self.generation,
                               "num_evaluated": self.num_told, "hv_ref": self.hv_ref,
                               "strategy": self.strategy.state_dict()})

    @property
    def num_told(self) -> int:
        return len(self.rows["arch"])

    @property
    def done(self) -> bool:
        return self.exhausted or self.num_told >= self.budget

    def known(self) -> dict[str, np.ndarray]:
        """Expensive results this directory already holds (history and rows written after the last state)."""
        rows = self.history()
        return {c: np.concatenate([rows[c], self.orphans[c]]) if self.orphans else rows[c]
                for c in ("hash", *self.expensive_metrics)}

    def ask(self, n: int | None = None) -> np.ndarray:
        """Up to `n` (default: a population, within the budget) new architectures; none once done."""
        n = min(self.population, self.budget - self.num_told) if n is None else n
        archs = self.strategy.ask(n) if not self.done else np.zeros((0, self.space.num_decisions), self.space.dtype)
        if len(archs) == 0:
            self.exhausted = True
        return archs

    def tell(self, archs: np.ndarray, hashes: np.ndarray, expensive: dict, cached: np.ndarray) -> None:
        metrics = {**expensive, **self.cheap(archs)}
        cached = self._cached_as_first_written(hashes, cached)
        self.strategy.tell(archs, {m: metrics[m] for m in self.metrics})
        start = self.num_told
        new = {"index": np.arange(start, start + len(archs)), "generation": np.full(len(archs), self.generation),
               "arch": self.space.strings(archs), "hash": hashes, **{m: metrics[m] for m in self.metrics},
               "feasible": self.feasible(metrics), "cached": cached}
        self.history_file.append(new)
        for c, v in new.items():
            self.rows[c].extend(np.asarray(v).tolist() if c != "arch" else v)
        self.generation += 1
        self.front_size, self.last_hypervolume = self._write_pareto(), self.hypervolume()
        self._save_state()

    def _cached_as_first_written(self, hashes: np.ndarray, cached: np.ndarray) -> np.ndarray:
        """`cached`, except where a row written after the last saved state is told again (same index, same
        architecture): there the flag that row was written with, as the uninterrupted search wrote it."""
        if len(self.orphans.get("hash", ())) == 0:
            return cached
        cached = np.array(cached, dtype=bool)
        at = np.arange(self.num_told, self.num_told + len(hashes)) - int(self.orphans["index"][0])
        again = np.flatnonzero((at >= 0) & (at < len(self.orphans["hash"])))
        again = again[self.orphans["hash"][at[again]] == np.asarray(hashes)[again]]
        cached[again] = self.orphans["cached"][at[again]]
        return cached

    def feasible(self, metrics: dict) -> np.ndarray:
        n = len(next(iter(metrics.values())))
        ok = np.ones(n, dtype=bool)
        for o in self.target.objectives:
            ok &= np.isfinite(np.asarray(metrics[o.name], np.float64))
        for c in self.target.constraints:
            ok &= np.nan_to_num(np.asarray(metrics[c.metric], np.float64), nan=np.inf) <= c.upper_bound
        return ok

    def minimised(self, rows: dict) -> np.ndarray:
        return np.column_stack([o.sign * np.asarray(rows[o.name], np.float64) for o in self.target.objectives])

    def history(self) -> dict[str, np.ndarray]:
        return {c: _as_column(c, v) for c, v in self.rows.items()}

    def front(self) -> dict[str, np.ndarray]:
        """Feasible non-dominated history rows, best first objective first."""
        rows = self.history()
        feasible = np.flatnonzero(rows["feasible"].astype(bool))
        points = self.minimised({k: v[feasible] for k, v in rows.items()})
        keep = feasible[pareto_mask(points)] if len(feasible) else feasible
        keep = keep[np.lexsort(self.minimised({k: v[keep] for k, v in rows.items()}).T[::-1])]
        return {c: v[keep] for c, v in rows.items()}

    def _write_pareto(self) -> int:
        front = self.front()
        write_table(self.out / PARETO, self.history_file.columns, front)
        return len(front["arch"])

    def hypervolume(self) -> float | None:
        """Hypervolume of the feasible front; reference: a latency-like objective's bound, else 10% beyond the
        worst feasible value of the first generation that had any (fixed from then on, kept across resume)."""
        front = self.front()
        if len(front["arch"]) == 0:
            return None
        points = self.minimised(front)
        if self.hv_ref is None:
            bounds = {c.metric: c.upper_bound for c in self.target.constraints}
            worst = points.max(0)
            span = np.maximum(worst - points.min(0), np.abs(worst) * 0.1 + 1e-9)
            self.hv_ref = [bounds[o.name] if o.name in bounds and o.direction == "min" else float(w + 0.1 * s)
                           for o, w, s in zip(self.target.objectives, worst, span)]
        return hypervolume(points, self.hv_ref)


def _option_text(options: dict, key: str) -> str:
    return repr(options[key]) if key in options else "unset"


def _as_column(name: str, values) -> np.ndarray:
    if name == "arch":
        return np.asarray(values, dtype=object)
    if name == "hash":
        return np.asarray([int(v) for v in values], dtype=np.uint64)
    if name in ("index", "generation"):
        return np.asarray(values, dtype=np.int64)
    return np.asarray(values, dtype=np.float64)


def _progress(searches: list[TargetSearch], enabled: bool):
    from tqdm.auto import tqdm

    terminal = sys.stderr.isatty()
    return [tqdm(total=s.budget, initial=s.num_told, desc=s.target.name, position=i if terminal else None,
                 leave=True, unit="arch", disable=not enabled, dynamic_ncols=terminal) for i, s in enumerate(searches)]


def _update_bar(bar, search: TargetSearch, cache: ExpensiveCache, told: int) -> None:
    hv = search.last_hypervolume
    bar.set_postfix({"gen": search.generation, "evals": cache.num_evaluated, "front": search.front_size,
                     "hv": "-" if hv is None else f"{hv:.4g}"}, refresh=False)
    bar.update(told)


def drive(searches: list[TargetSearch], evaluator, cache: ExpensiveCache, progress: bool = True,
          asynchronous: bool = False) -> None:
    """Generation by generation: every unfinished target asks, the union of what is not cached yet is evaluated
    in one batch (each distinct architecture once), each target is told its part. With `asynchronous`, an
    evaluator that can (Ray actors) and strategies that allow it run `drive_async` instead."""
    if asynchronous and getattr(evaluator, "asynchronous", False) and all(s.strategy.asynchronous for s in searches):
        return drive_async(searches, evaluator, cache, progress)
    bars = _progress(searches, progress)
    try:
        while True:
            asked = [(s, bar, s.ask()) for s, bar in zip(searches, bars) if not s.done]
            asked = [(s, bar, a) for s, bar, a in asked if len(a)]
            if not asked:
                return
            archs = np.vstack([a for _, _, a in asked])
            hashes = searches[0].space.hash(archs)
            metrics, cached = cache.evaluate(evaluator, archs, hashes)
            start = 0
            for s, bar, a in asked:
                part = slice(start, start + len(a))
                s.tell(a, hashes[part], {m: v[part] for m, v in metrics.items()}, cached[part])
                _update_bar(bar, s, cache, len(a))
                start += len(a)
    finally:
        for bar in bars:
            bar.close()


def drive_async(searches: list[TargetSearch], evaluator, cache: ExpensiveCache, progress: bool = True) -> None:
    """Without a barrier per generation: each target keeps up to a population of its asks pending; an evaluation
    is told, the moment it finishes, to every target that asked for it, and those targets ask again at once. A
    slow evaluation holds one worker and one slot, while the other workers go on. Each distinct architecture is
    evaluated once; what the cache holds is told at once."""
    bars = _progress(searches, progress)
    space = searches[0].space
    tickets: dict[int, int] = {}
    waiting: dict[int, tuple[np.ndarray, list[int]]] = {}
    pending = [0] * len(searches)
    try:
        while True:
            for i, search in enumerate(searches):
                room = min(search.population, search.budget - search.num_told) - pending[i]
                archs = search.ask(room) if room > 0 and not search.done else np.zeros((0, space.num_decisions), space.dtype)
                hashes = space.hash(archs) if len(archs) else np.zeros(0, np.uint64)
                known = np.array([int(k) in cache for k in hashes.tolist()], dtype=bool)
                if known.any():
                    search.tell(archs[known], hashes[known], cache.lookup(hashes[known]), np.ones(known.sum(), bool))
                    _update_bar(bars[i], search, cache, int(known.sum()))
                for arch, key in zip(archs[~known], hashes[~known].tolist()):
                    if key in waiting:
                        waiting[key][1].append(i)
                    else:
                        waiting[key] = (arch, [i])
                        tickets[evaluator.submit(arch)] = key
                    pending[i] += 1
            if not tickets:
                return
            for ticket, metrics in evaluator.completed():
                key = tickets.pop(ticket)
                arch, asked_by = waiting.pop(key)
                values = {m: np.array([metrics[m]], np.float64) for m in cache.metrics}
                cache.add_evaluated(np.array([key], np.uint64), values)
                for i in asked_by:
                    searches[i].tell(arch[None], np.array([key], np.uint64), values, np.zeros(1, bool))
                    pending[i] -= 1
                    _update_bar(bars[i], searches[i], cache, 1)
    finally:
        for bar in bars:
            bar.close()


def run_multi_target_search(space, evaluator, targets: Sequence[Target], *, out, budget: int,
                            strategy: str = DEFAULT_STRATEGY, seed: int = 0, population: int = 32,
                            resume: bool = False, strategy_options: dict | None = None, free_columns=(),
                            latency_model: str = "lut", latency_paths: dict | None = None,
                            layer_options: dict | None = None, ray_address: str | None = None,
                            num_actors: int | None = None, progress: bool = True, flat: bool = False,
                            asynchronous: bool = False) -> SearchResult:
    """Searches every target, writing `out/<target>/`; expensive results are shared between the targets through
    one cache keyed by canonical hash, so an architecture two targets ask for is evaluated once.

    `evaluator` is an evaluator object or a spec `table:PATH` / `supernet:RUN_DIR`. Each target gets `budget`
    evaluations. With `resume`, `out` must hold an earlier search; otherwise `out` must not exist. `flat` writes
    a single target's files into `out` itself. `asynchronous` evaluates without a barrier per generation where
    the evaluator and strategy allow it (`drive_async`): faster on busy or uneven workers, but which evaluation
    finishes first depends on timing, so a resumed search repeats no evaluation yet need not reproduce the
    uninterrupted search's front (the generation-by-generation default does)."""
    out = Path(out)
    _check_out(out, resume)
    targets = list(targets)
    if len({t.name for t in targets}) != len(targets):
        raise UserInputError(f"target names must be distinct, got {[t.name for t in targets]}")
    if int(budget) < 1:
        raise UserInputError(f"--budget must be >= 1, got {budget}")
    owned = isinstance(evaluator, str)
    if owned:
        evaluator = build_evaluator(evaluator, space, budget=int(budget) * len(targets),
                                    free_columns=free_columns, ray_address=ray_address, num_actors=num_actors)
    try:
        return _run(space, evaluator, targets, out, budget, strategy, seed, population, resume,
                    strategy_options or {}, latency_model, latency_paths, layer_options, progress, flat, asynchronous)
    finally:
        if owned:
            evaluator.close()


def _check_out(out: Path, resume: bool) -> None:
    if resume and not out.is_dir():
        raise UserInputError(f"--resume: search directory {str(out)!r} does not exist; nothing to resume")
    if not resume and out.exists():
        raise UserInputError(f"search directory {str(out)!r} already exists; choose a new --out or pass --resume "
                             "to continue it (a search never overwrites files)")


def _run(space, evaluator, targets, out, budget, strategy, seed, population, resume, strategy_options,
         latency_model, latency_paths, layer_options, progress, flat, asynchronous) -> SearchResult:
    free = [evaluator.columns_view()] if getattr(evaluator, "cheap_columns", ()) else []
    searches = []
    for target in targets:
        names = [m for m in target.metric_names if m not in evaluator.metrics]
        paths = {**(latency_paths or {}), **({target.device: target.latency_path} if target.latency_path else {})}
        cheap = cheap_metrics_for(space, names, free_sources=free, device=target.device,
                                  latency_model=target.latency_model or latency_model, latency_paths=paths,
                                  layer_options=layer_options)
        if not resume:
            check_constraints_reachable(space, target, cheap, seed, evaluator)
        searches.append((target, cheap))
    get_strategy(strategy)
    if not resume and not flat:
        out.mkdir(parents=True)
    try:
        runs = [TargetSearch(out if flat else out / t.name, space, t, strategy=strategy,
                             strategy_options=strategy_options, budget=budget, seed=seed, population=population,
                             cheap=cheap, expensive_metrics=evaluator.metrics, resume=resume)
                for t, cheap in searches]
    except BaseException:
        if not resume:
            shutil.rmtree(out, ignore_errors=True)
        raise
    cache = ExpensiveCache(evaluator.metrics)
    for run in runs:
        known = run.known()
        cache.store(known["hash"], known)
    drive(runs, evaluator, cache, progress, asynchronous)
    results = {r.target.name: SearchResult(r.out, r.history(), r.front()) for r in runs}
    if flat:
        only = results[targets[0].name]
        return SearchResult(only.out, only.history, only.pareto, cache.num_evaluated, results)
    return SearchResult(out, {}, {}, cache.num_evaluated, results)


def run_search(space, evaluator, objectives: Sequence, *, out, budget: int, constraints: Sequence = (),
               device: str | None = None, **options) -> SearchResult:
    """One search writing `out/history.csv`, `out/pareto.csv` and `out/state.json` (see
    `run_multi_target_search` for the options)."""
    target = Target("search", tuple(objectives), tuple(constraints), device=device)
    return run_multi_target_search(space, evaluator, [target], out=out, budget=budget, flat=True, **options)
