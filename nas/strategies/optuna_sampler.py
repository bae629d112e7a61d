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
    values and constraints, into the study named `study_name` in `storage` (the record optuna-dashboard shows),
    and a resumed search loads that record back into the sampler. Proposals that duplicate a told architecture
    are told at once with the known values; proposals the cheap constraints rule out are told at once as
    infeasible (expensive objectives set to the worst seen), so the sampler learns from them without spending
    budget. Constraints reach the sampler as `value - bound` (feasible when <= 0) through
    `Trial.set_constraint`."""

    name = "optuna"
    uses_storage = True
    defaults = {"storage": None, "study_name": "hwnas", "population_size": 32, "max_tries": 10}

    def __init__(self, space, objectives, **kwargs):
        import optuna

        super().__init__(space, objectives, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._open_trials: dict[int, object] = {}
        self._told_values: dict[int, tuple[list[float], list[float]]] = {}
        self._study_directions = ["maximize" if o.direction == "max" else "minimize" for o in self.objectives]
        self.study = optuna.create_study(sampler=self._sampler(), directions=self._study_directions)
        self.record = self._open_record()

    # ------------------------------------------------------------- study
    def _sampler(self):
        raise NotImplementedError

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

    def _suggest(self, trial) -> np.ndarray:
        row = [trial.suggest_categorical(d.name, list(range(d.size))) for d in self.space.decisions]
        return self.space.canonical(np.asarray(row, dtype=self.space.dtype)[None])

    # ----------------------------------------------------------- ask/tell
    def _propose(self, n: int) -> np.ndarray:
        """Up to `n` new distinct feasible architectures, each with its open trial in `_trials`."""
        chosen: list[np.ndarray] = []
        for _ in range(n * int(self.options["max_tries"])):
            if len(chosen) == n:
                break
            trial = self.study.ask()
            arch = self._suggest(trial)
            key = int(self.space.hash(arch)[0])
            if key in self._told_values:
                self._tell_trial(trial, *self._told_values[key])
            elif key in self._open_trials or self.seen(arch)[0]:
                self.study.tell(trial, state=_failed())
            elif not self.cheap_feasible(arch):
                self._tell_trial(trial, *self._screened(arch))
            else:
                self._open_trials[key] = trial
                chosen.append(arch)
        return np.vstack([self._empty(), *chosen])

    def ask(self, n: int) -> np.ndarray:
        archs = super().ask(n)
        keys = [int(k) for k in self.space.hash(archs)] if len(archs) else []
        for key in set(self._open_trials) - set(keys):
            self.study.tell(self._open_trials.pop(key), state=_failed())
        for key, arch in zip(keys, archs):
            if key not in self._open_trials:
                self.study.enqueue_trial({d.name: int(i) for d, i in zip(self.space.decisions, arch)})
                self._open_trials[key] = self.study.ask()
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
                finished.append(self._tell_trial(trial, values, violations))
        if self.record is not None and finished:
            self.record.add_trials(finished)

    def _tell_trial(self, trial, values: list[float], violations: list[float]):
        for c, violation in zip(self.constraints, violations):
            trial.set_constraint(c.metric, violation)
        if not all(np.isfinite(values)):
            return self.study.tell(trial, state=_failed())
        return self.study.tell(trial, values)

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
        return {"storage": self.options["storage"], "study_name": self.options["study_name"]}

    def _load_extra_state(self, extra: dict) -> None:
        """Loads the recorded trials into the sampler's study and rebuilds the told values."""
        if self.record is not None:
            self.study.add_trials(self.record.get_trials(deepcopy=False, states=_finished_states()))
        self._open_trials = {}
        metrics = self.metrics
        n = len(self.archs)
        for i, key in enumerate(int(k) for k in self.space.hash(self.archs)) if n else []:
            values = [float(metrics.get(o.name, np.full(n, np.nan))[i]) for o in self.objectives]
            violations = [_violation(metrics.get(c.metric, np.full(n, np.nan))[i], c.upper_bound)
                          for c in self.constraints]
            self._told_values[key] = (values, violations)


def _violation(value, bound: float) -> float:
    value = float(value)
    return value - bound if np.isfinite(value) else 1e30


def _finished_states():
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


def _failed():
    import optuna

    return optuna.trial.TrialState.FAIL


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGAIISampler (constraint-dominance from the trials' constraints)."""

    name = "optuna-nsga2"

    def _sampler(self):
        import optuna

        return optuna.samplers.NSGAIISampler(population_size=int(self.options["population_size"]), seed=self.seed)


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
