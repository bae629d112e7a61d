"""Optuna's NSGA-II and TPE samplers as ask/tell strategies: one Optuna trial per asked architecture, every
evaluated trial recorded in SQLite (or any storage URL) so the study resumes and shows in optuna-dashboard."""

from __future__ import annotations

import warnings

import numpy as np

from nas.strategies.base import Strategy
from search_spaces.errors import UserInputError


class OptunaStrategy(Strategy):
    """Asks an `optuna.Study` for trials, one categorical parameter per decision (the choice index).

    The sampler works on an in-memory study (fast asks); each tell copies the evaluated trials, with their
    values and constraints, into the study named `study_name` in `storage` (the record optuna-dashboard shows).
    Proposals that duplicate a told architecture are told at once with the known values; proposals the cheap
    constraints rule out are told at once as infeasible (expensive objectives set to the worst seen), so the
    sampler learns from them without spending budget. Constraints reach the sampler as `value - bound` (feasible
    when <= 0) through `Trial.set_constraint`.

    Resume is exact: every operation on the in-memory study (an ask with the choices drawn, an architecture
    enqueued, a tell with its values and constraints) is logged in the state as plain data, and a resumed
    strategy replays the log on a fresh sampler of the same seed. That brings the sampler's random state, its
    generations and caches to where they were without pickling it; a replayed ask that draws other choices than
    the log (another Optuna version) is refused. Trials the record received after the last saved state (a crash
    between the two) are not recorded twice."""

    name = "optuna"
    uses_storage = True
    asynchronous = False  # an ask closes the trials of earlier asks not told yet
    defaults = {"storage": None, "study_name": "hwnas", "population_size": 32, "max_tries": 10}

    def __init__(self, space, objectives, **kwargs):
        import optuna

        super().__init__(space, objectives, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._open_trials: dict[int, object] = {}
        self._told_values: dict[int, tuple[list[float], list[float]]] = {}
        self._study_directions = ["maximize" if o.direction == "max" else "minimize" for o in self.objectives]
        self._log: list[list] = []
        self._unsaved_in_record: set[int] = set()
        self.study = self._new_study()
        self.record = self._open_record()
        self._record_count = len(self.record.get_trials(deepcopy=False)) if self.record is not None else 0

    # ------------------------------------------------------------- study
    def _sampler(self):
        raise NotImplementedError

    def _new_study(self):
        import optuna

        return optuna.create_study(sampler=self._sampler(), directions=self._study_directions)

    def _open_record(self):
        """The persistent study (None without a storage URL); any error opening the URL is reported as such."""
        import optuna

        url = self.options["storage"]
        if not url:
            return None
        try:
            record = optuna.create_study(storage=optuna.storages.RDBStorage(url), directions=self._study_directions,
                                         study_name=self.options["study_name"], load_if_exists=True)
        except Exception as e:  # noqa: BLE001 - database drivers raise their own types for a bad URL
            raise UserInputError(f"strategy {self.name!r}: storage {url!r} cannot be opened "
                                 f"({type(e).__name__}: {str(e).splitlines()[0]}); give an RDB URL such as "
                                 "sqlite:///path/optuna.db") from None
        if [d.name.lower() for d in record.directions] != self._study_directions:
            raise UserInputError(f"strategy {self.name!r}: study {self.options['study_name']!r} in {url!r} has "
                                 f"directions {[d.name.lower() for d in record.directions]}, not "
                                 f"{self._study_directions}; use another study name")
        return record

    def _ask(self, enqueued: np.ndarray | None = None) -> tuple[object, list[int]]:
        """A new trial with every decision suggested (the sampler's choices, or the `enqueued` architecture's),
        logged."""
        if enqueued is not None:
            self.study.enqueue_trial({d.name: int(i) for d, i in zip(self.space.decisions, enqueued)})
        trial = self.study.ask()
        row = [trial.suggest_categorical(d.name, list(range(d.size))) for d in self.space.decisions]
        self._log.append(["ask" if enqueued is None else "enqueue", row])
        return trial, row

    def _finish(self, trial, values: list[float] | None, violations: list[float]):
        """Tells a trial, logged: complete with `values` (failed when None or not all finite), with `violations`
        as its constraints."""
        if values is not None and not all(np.isfinite(values)):
            values = None
        self._log.append(["tell", trial.number, values, violations])
        for c, violation in zip(self.constraints, violations):
            trial.set_constraint(c.metric, violation)
        if values is None:
            return self.study.tell(trial, state=_failed())
        return self.study.tell(trial, values)

    def _arch(self, row: list[int]) -> np.ndarray:
        return self.space.canonical(np.asarray(row, dtype=self.space.dtype)[None])

    # ----------------------------------------------------------- ask/tell
    def _propose(self, n: int) -> np.ndarray:
        """Up to `n` new distinct feasible architectures, each with its open trial in `_trials`."""
        chosen: list[np.ndarray] = []
        for _ in range(n * int(self.options["max_tries"])):
            if len(chosen) == n:
                break
            trial, row = self._ask()
            arch = self._arch(row)
            key = int(self.space.hash(arch)[0])
            if key in self._told_values:
                self._finish(trial, *self._told_values[key])
            elif key in self._open_trials or self.seen(arch)[0]:
                self._finish(trial, None, [])
            elif not self.cheap_feasible(arch):
                self._finish(trial, *self._screened(arch))
            else:
                self._open_trials[key] = trial
                chosen.append(arch)
        return np.vstack([self._empty(), *chosen])

    def ask(self, n: int) -> np.ndarray:
        archs = super().ask(n)
        keys = [int(k) for k in self.space.hash(archs)] if len(archs) else []
        for key in set(self._open_trials) - set(keys):
            self._finish(self._open_trials.pop(key), None, [])
        for key, arch in zip(keys, archs):
            if key not in self._open_trials:
                self._open_trials[key] = self._ask(arch)[0]
        return archs

    def tell(self, archs, metrics: dict) -> None:
        super().tell(archs, metrics)
        archs = self.space.canonical(self.space.validate(archs))
        finished = []
        for i, key in enumerate(int(k) for k in self.space.hash(archs)):
            values = [float(metrics[o.name][i]) for o in self.objectives]
            violations = [_violation(metrics.get(c.metric, [np.nan] * len(archs))[i], c.upper_bound)
                          for c in self.constraints]
            self._told_values[key] = (values, violations)
            trial = self._open_trials.pop(key, None)
            if trial is not None:
                told = self._finish(trial, values, violations)
                if key in self._unsaved_in_record:
                    self._unsaved_in_record.remove(key)
                else:
                    finished.append(told)
        if self.record is not None and finished:
            self.record.add_trials(finished)
            self._record_count += len(finished)

    def _screened(self, arch: np.ndarray) -> tuple[list[float], list[float]]:
        """Values for a proposal the cheap constraints rule out: cheap objectives as computed, expensive ones the
        worst told so far (0 when nothing is told yet), constraints as violated."""
        cheap = self.cheap(arch)
        told = self.metrics
        values = []
        for o in self.objectives:
            if o.name in cheap:
                values.append(float(cheap[o.name][0]))
            else:
                seen = told.get(o.name, np.zeros(0))
                seen = seen[np.isfinite(seen)]
                values.append(float(o.sign * np.max(o.sign * seen)) if len(seen) else 0.0)
        violations = [_violation(cheap.get(c.metric, [np.nan])[0], c.upper_bound) for c in self.constraints]
        return values, violations

    # ------------------------------------------------------------- state
    def _extra_state(self) -> dict:
        import optuna

        return {"storage": self.options["storage"], "study_name": self.options["study_name"],
                "optuna": optuna.__version__, "recorded": self._record_count, "log": self._log}

    def _load_extra_state(self, extra: dict) -> None:
        """Replays the logged study operations on a fresh sampler, notes the record's trials written after that
        state and rebuilds the told values."""
        if "log" not in extra:
            raise UserInputError(f"strategy {self.name!r}: the saved state has no log of the sampler's trials (an "
                                 "older hwnas wrote it), so the search cannot resume exactly; start a new search")
        self._replay(extra)
        if self.record is not None:
            trials = self.record.get_trials(deepcopy=False)
            self._record_count = len(trials)
            rows = [[t.params.get(d.name) for d in self.space.decisions] for t in trials[extra["recorded"]:]]
            self._unsaved_in_record = {int(self.space.hash(self._arch(row))[0]) for row in rows if None not in row}
        metrics = self.metrics
        n = len(self.archs)
        for i, key in enumerate(int(k) for k in self.space.hash(self.archs)) if n else []:
            values = [float(metrics.get(o.name, np.full(n, np.nan))[i]) for o in self.objectives]
            violations = [_violation(metrics.get(c.metric, np.full(n, np.nan))[i], c.upper_bound)
                          for c in self.constraints]
            self._told_values[key] = (values, violations)

    def _replay(self, extra: dict) -> None:
        """A fresh study and sampler brought through the logged operations; trials asked and not told are open."""
        import optuna

        self.study, self._log = self._new_study(), []
        open_rows: dict[int, tuple[object, list[int]]] = {}
        for event in extra["log"]:
            if event[0] == "tell":
                self._finish(open_rows.pop(event[1])[0], event[2], event[3])
                continue
            trial, row = self._ask(np.asarray(event[1]) if event[0] == "enqueue" else None)
            if row != event[1]:
                raise UserInputError(
                    f"strategy {self.name!r}: the saved state cannot be replayed exactly: Optuna "
                    f"{optuna.__version__} draws {row} for trial {trial.number}, the search (Optuna "
                    f"{extra.get('optuna')}) drew {event[1]}; resume with that Optuna version or start a new search")
            open_rows[trial.number] = (trial, row)
        self._open_trials = {int(self.space.hash(self._arch(row))[0]): trial for trial, row in open_rows.values()}


def _violation(value, bound: float) -> float:
    value = float(value)
    return value - bound if np.isfinite(value) else 1e30


def _failed():
    import optuna

    return optuna.trial.TrialState.FAIL


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGAIISampler (constraint-dominance from the trials' constraints); a child's decisions are each
    resampled with probability `mutate_prob` (default, as Optuna's: 1/D)."""

    name = "optuna-nsga2"
    defaults = {**OptunaStrategy.defaults, "mutate_prob": None}

    def _sampler(self):
        import optuna

        return optuna.samplers.NSGAIISampler(population_size=int(self.options["population_size"]), seed=self.seed,
                                             mutation_prob=self.options["mutate_prob"])


class OptunaTPE(OptunaStrategy):
    """Optuna's TPESampler (multivariate; multi-objective when given several objectives; infeasible trials in the
    bad group); the first `population_size` trials are random."""

    name = "optuna-tpe"

    def _sampler(self):
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(n_startup_trials=int(self.options["population_size"]),
                                              seed=self.seed, multivariate=True)
