"""Tests for nas.search: files written per generation, exact resume without re-evaluation (every strategy, after a
crash at any point), refused changes on resume, unreachable budgets, multi-target runs sharing expensive
evaluations, and the real NB201 hardware table."""

import csv
import json
from pathlib import Path

import pytest

from nas.evaluators import TableEvaluator
from nas.search import (Target, best_achievable, parse_constraint, parse_objective, run_multi_target_search,
                        run_search)
from nas.search_files import write_state
from search_spaces import IntRange, Space, get_space
from search_spaces.errors import UserInputError

SHARED_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv"


def tiny_space() -> Space:
    return Space("tiny", [IntRange("a", 0, 7), IntRange("b", 0, 7), IntRange("c", 0, 3)])


@pytest.fixture
def table(tmp_path) -> Path:
    """Every architecture of the tiny space: accuracy grows with a and b, latency with a, b and c."""
    space = tiny_space()
    archs = space.enumerate()
    v = space.values(archs).astype(float)
    accuracy = 50 + 3 * v[:, 0] + 2 * v[:, 1] - 0.5 * (v[:, 2] - 2) ** 2
    latency = 1 + v[:, 0] + 0.5 * v[:, 1] + 0.25 * v[:, 2]
    path = tmp_path / "tiny.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "accuracy", "latency_ms"])
        writer.writerows(zip(space.strings(archs), accuracy, latency))
    return path


class CountingTable(TableEvaluator):
    """A table evaluator that records every batch it is asked, and can fail on a chosen call."""

    def __init__(self, *args, fail_on_call=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.fail_on_call = [], fail_on_call

    def evaluate(self, archs):
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("simulated crash")
        self.calls.append(self.space.strings(archs))
        return super().evaluate(archs)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def search(space, evaluator, out, budget=48, population=12, **kwargs):
    kwargs.setdefault("constraints", ["latency_ms<=9"])
    return run_search(space, evaluator, ["accuracy:max", "latency_ms:min"], out=out, budget=budget,
                      population=population, free_columns=["latency_ms"] if isinstance(evaluator, str) else (),
                      progress=False, **kwargs)


def test_objective_and_constraint_syntax():
    assert parse_objective("latency_ms@pi5:min").direction == "min"
    assert parse_constraint("latency_ms@pi5<=2.5").upper_bound == 2.5
    with pytest.raises(UserInputError, match="NAME:max"):
        parse_objective("accuracy")
    with pytest.raises(UserInputError, match="NAME<=NUMBER"):
        parse_constraint("latency_ms>=3")


def test_search_writes_history_pareto_and_state(table, tmp_path):
    space = tiny_space()
    result = search(space, f"table:{table}", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "history.csv")
    assert len(rows) == 48 == len(result.history["arch"])
    assert [int(r["index"]) for r in rows] == list(range(48))
    assert len({r["arch"] for r in rows}) == 48
    truth = {r["arch"]: r for r in read_rows(table)}
    for r in rows:
        assert float(r["accuracy"]) == pytest.approx(float(truth[r["arch"]]["accuracy"]))
        assert r["feasible"] == str(int(float(r["latency_ms"]) <= 9))
    assert all(r["feasible"] == "1" for r in rows), "latency is free, so only feasible architectures are asked"
    front = read_rows(tmp_path / "out" / "pareto.csv")
    points = [(float(r["accuracy"]), float(r["latency_ms"])) for r in rows]
    for r in front:
        a, lat = float(r["accuracy"]), float(r["latency_ms"])
        assert not any(pa >= a and pl <= lat and (pa, pl) != (a, lat) for pa, pl in points)
    assert len(front) == len(result.pareto["arch"]) > 0
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["num_evaluated"] == 48 and state["generation"] == 4


def test_existing_directory_is_never_overwritten(table, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match="already exists"):
        search(tiny_space(), f"table:{table}", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(UserInputError, match="nothing to resume"):
        search(tiny_space(), f"table:{table}", tmp_path / "absent", resume=True)


def test_resume_extends_the_budget_and_matches_one_long_run(table, tmp_path):
    space = tiny_space()
    straight = search(space, CountingTable(space, table), tmp_path / "straight", budget=60)
    first = CountingTable(space, table)
    search(space, first, tmp_path / "split", budget=24)
    second = CountingTable(space, table)
    search(space, second, tmp_path / "split", budget=60, resume=True)
    assert list(read_rows(tmp_path / "split" / "history.csv")) == list(read_rows(tmp_path / "straight" /
                                                                                 "history.csv"))
    assert second.num_queried == 36, "the resumed search evaluates only new architectures"
    assert len(straight.history["arch"]) == 60


def test_crash_mid_search_resumes_without_reevaluating(table, tmp_path):
    space = tiny_space()
    search(space, CountingTable(space, table), tmp_path / "straight")
    crashing = CountingTable(space, table, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        search(space, crashing, tmp_path / "crashed")
    assert len(read_rows(tmp_path / "crashed" / "history.csv")) == 24
    resumed = CountingTable(space, table)
    search(space, resumed, tmp_path / "crashed", resume=True)
    assert read_rows(tmp_path / "crashed" / "history.csv") == read_rows(tmp_path / "straight" / "history.csv")
    before = {a for batch in crashing.calls for a in batch}
    after = {a for batch in resumed.calls for a in batch}
    assert not before & after and len(before) + len(after) == 48


def test_resume_refuses_changed_objectives(table, tmp_path):
    space = tiny_space()
    search(space, f"table:{table}", tmp_path / "out", budget=12)
    with pytest.raises(UserInputError, match="constraints"):
        search(space, f"table:{table}", tmp_path / "out", resume=True, constraints=["latency_ms<=8"])


def test_resume_refuses_changed_strategy_options_in_one_line(table, tmp_path):
    space = tiny_space()
    search(space, f"table:{table}", tmp_path / "out", budget=12, strategy_options={"mutate_prob": 0.1})
    with pytest.raises(UserInputError, match=r"strategy option mutate_prob was 0\.1, now 0\.3; resume with the same"):
        search(space, f"table:{table}", tmp_path / "out", budget=24, resume=True,
               strategy_options={"mutate_prob": 0.3})
    search(space, f"table:{table}", tmp_path / "out", budget=24, resume=True)
    assert len(read_rows(tmp_path / "out" / "history.csv")) == 24, "leaving out an option at its default is no change"


def test_optuna_storage_option_is_honoured_and_kept_on_resume(table, tmp_path):
    import optuna

    space = tiny_space()
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    options = {"storage": url, "study_name": "mine"}
    search(space, f"table:{table}", tmp_path / "out", budget=16, population=8, strategy="optuna-tpe",
           strategy_options=options)
    assert not (tmp_path / "out" / "optuna.db").exists()
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 16
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(UserInputError, match=f"strategy option storage was '{url}', now '{other}'"):
        search(space, f"table:{table}", tmp_path / "out", budget=24, population=8, strategy="optuna-tpe",
               resume=True, strategy_options={**options, "storage": other})
    search(space, f"table:{table}", tmp_path / "out", budget=24, population=8, strategy="optuna-tpe", resume=True,
           strategy_options=options)
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 24


def test_default_optuna_storage_moves_with_the_directory(table, tmp_path):
    space = tiny_space()
    search(space, f"table:{table}", tmp_path / "out", budget=16, population=8, strategy="optuna-nsga2")
    (tmp_path / "out").rename(tmp_path / "moved")
    search(space, f"table:{table}", tmp_path / "moved", budget=24, population=8, strategy="optuna-nsga2",
           resume=True)
    search(space, f"table:{table}", tmp_path / "straight", budget=24, population=8, strategy="optuna-nsga2")
    assert read_rows(tmp_path / "moved" / "history.csv") == read_rows(tmp_path / "straight" / "history.csv")
    assert len(recorded_archs(tmp_path / "moved")) == 24


def test_unreachable_budget_is_reported_before_searching(table, tmp_path):
    with pytest.raises(UserInputError, match=r"best achievable latency_ms is 1 \(a=0,b=0,c=0\)"):
        search(tiny_space(), f"table:{table}", tmp_path / "out", constraints=["latency_ms<=0.5"])
    assert not (tmp_path / "out").exists()


def test_quick_minimisation_finds_the_smallest_of_a_large_space():
    space = get_space("ofa_mbv3", resolutions=(32, 48, 64))

    class Cost:
        metrics = ("cost",)
        sources = ()

        def __call__(self, archs):
            return {"cost": space.values(archs).astype(float).sum(1)}

    best, arch = best_achievable(space, Cost(), "cost")
    assert best == pytest.approx(Cost()(space.smallest()[None])["cost"][0])


def test_multi_target_shares_expensive_evaluations(table, tmp_path):
    space = tiny_space()
    targets = [Target(f"lat{b}", ("accuracy:max", "latency_ms:min"), (f"latency_ms<={b}",)) for b in (6, 9)]
    shared = CountingTable(space, table, cheap_columns=("latency_ms",))
    result = run_multi_target_search(space, shared, targets, out=tmp_path / "multi", budget=36, population=12,
                                     progress=False)
    histories = {t.name: read_rows(tmp_path / "multi" / t.name / "history.csv") for t in targets}
    assert all(len(h) == 36 for h in histories.values())
    union = {r["arch"] for h in histories.values() for r in h}
    assert result.expensive_evaluations == shared.num_queried == len(union) < 72
    alone = CountingTable(space, table, cheap_columns=("latency_ms",))
    run_multi_target_search(space, alone, targets[1:], out=tmp_path / "alone", budget=36, population=12,
                            progress=False)
    assert [r["arch"] for r in read_rows(tmp_path / "alone" / "lat9" / "history.csv")] == \
        [r["arch"] for r in histories["lat9"]]
    assert any(r["cached"] == "1" for r in histories["lat9"])


@pytest.mark.skipif(not SHARED_TABLE.is_file(), reason=f"shared NB201 hardware table not found at {SHARED_TABLE}")
def test_real_nb201_table_search_respects_the_latency_budget(tmp_path):
    space = get_space("nb201")
    result = run_search(space, f"table:{SHARED_TABLE}", ["accuracy:max", "latency_ms:min"],
                        constraints=["latency_ms<=3"], free_columns=["latency_ms"], out=tmp_path / "nb201",
                        budget=80, population=16, seed=1, progress=False)
    assert (result.pareto["latency_ms"] <= 3).all()
    truth = {r["arch"]: float(r["accuracy"]) for r in read_rows(SHARED_TABLE)}
    for arch, acc in zip(result.history["arch"], result.history["accuracy"]):
        assert acc == pytest.approx(truth[space.to_string(space.canonical(space.from_string(arch))[0])])


@pytest.mark.parametrize("strategy", ["random", "evolution", "nsga2", "predictor", "optuna-nsga2", "optuna-tpe"])
def test_every_strategy_resumes_exactly_without_repeating_an_evaluation(table, tmp_path, strategy):
    space = tiny_space()
    first = CountingTable(space, table)
    search(space, first, tmp_path / "split", budget=16, population=8, strategy=strategy)
    second = CountingTable(space, table)
    search(space, second, tmp_path / "split", budget=32, population=8, strategy=strategy, resume=True)
    history = read_rows(tmp_path / "split" / "history.csv")
    assert len(history) == 32 and len({r["arch"] for r in history}) == 32
    assert first.num_queried == 16 and second.num_queried == 16
    search(space, CountingTable(space, table), tmp_path / "straight", budget=32, population=8, strategy=strategy)
    assert history == read_rows(tmp_path / "straight" / "history.csv")


def recorded_archs(directory: Path) -> list[str]:
    """The architectures of the Optuna record (optuna.db) of a search directory, in record order."""
    import optuna

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{directory / 'optuna.db'}")
    return [",".join(f"{k}={v}" for k, v in t.params.items()) for t in study.trials]


@pytest.mark.parametrize("strategy", ["optuna-nsga2", "optuna-tpe"])
def test_optuna_search_killed_mid_generation_resumes_exactly(table, tmp_path, strategy):
    space = tiny_space()
    search(space, CountingTable(space, table), tmp_path / "straight", budget=64, population=8, strategy=strategy)
    with pytest.raises(KeyboardInterrupt):
        search(space, CountingTable(space, table, fail_on_call=4), tmp_path / "killed", budget=64, population=8,
               strategy=strategy)
    assert len(read_rows(tmp_path / "killed" / "history.csv")) == 32
    resumed = CountingTable(space, table)
    search(space, resumed, tmp_path / "killed", budget=64, population=8, strategy=strategy, resume=True)
    assert read_rows(tmp_path / "killed" / "history.csv") == read_rows(tmp_path / "straight" / "history.csv")
    assert resumed.num_queried == 32
    assert recorded_archs(tmp_path / "killed") == recorded_archs(tmp_path / "straight")


@pytest.mark.parametrize("strategy", ["evolution", "nsga2", "optuna-nsga2", "optuna-tpe"])
def test_crash_between_history_and_state_neither_diverges_nor_records_twice(table, tmp_path, strategy,
                                                                            monkeypatch):
    """Killed after a generation's history rows (and Optuna record) were written but before its state."""
    import nas.search

    space = tiny_space()
    search(space, CountingTable(space, table), tmp_path / "straight", budget=40, population=8, strategy=strategy)
    saved = []

    def write_state_then_crash(directory, state):
        if len(saved) == 3:
            raise KeyboardInterrupt("killed after the history and the record, before the state")
        saved.append(state["num_evaluated"])
        write_state(directory, state)

    monkeypatch.setattr(nas.search, "write_state", write_state_then_crash)
    with pytest.raises(KeyboardInterrupt):
        search(space, CountingTable(space, table), tmp_path / "killed", budget=40, population=8, strategy=strategy)
    monkeypatch.undo()
    assert saved == [0, 8, 16] and len(read_rows(tmp_path / "killed" / "history.csv")) == 24
    resumed = CountingTable(space, table)
    search(space, resumed, tmp_path / "killed", budget=40, population=8, strategy=strategy, resume=True)
    assert read_rows(tmp_path / "killed" / "history.csv") == read_rows(tmp_path / "straight" / "history.csv")
    assert resumed.num_queried == 16, "the rows written before the crash are not evaluated again"
    if strategy.startswith("optuna"):
        assert recorded_archs(tmp_path / "killed") == recorded_archs(tmp_path / "straight")


class QueuedTable(CountingTable):
    """An asynchronous evaluator over the table: `completed` finishes the oldest queued evaluation, except the very
    first one submitted, which finishes only when nothing else is queued (a slow worker)."""

    asynchronous = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue, self.log, self.tickets = [], [], 0

    def submit(self, arch):
        self.tickets += 1
        self.queue.append((self.tickets, arch))
        self.log.append(("submit", self.tickets))
        return self.tickets

    def completed(self):
        slow = [item for item in self.queue if item[0] == 1]
        ready = [item for item in self.queue if item[0] != 1] or slow
        ticket, arch = ready[0]
        self.queue.remove(ready[0])
        self.log.append(("done", ticket))
        return [(ticket, {m: float(v[0]) for m, v in self.evaluate(arch[None]).items()})]


def test_asynchronous_evaluations_have_no_barrier_per_generation(table, tmp_path):
    space = tiny_space()
    targets = [Target(f"lat{b}", ("accuracy:max", "latency_ms:min"), (f"latency_ms<={b}",)) for b in (6, 9)]
    evaluator = QueuedTable(space, table, cheap_columns=("latency_ms",))
    result = run_multi_target_search(space, evaluator, targets, out=tmp_path / "async", budget=30, population=6,
                                     strategy="predictor", strategy_options={"initial": 8}, progress=False,
                                     asynchronous=True)
    slow_done = evaluator.log.index(("done", 1))
    submitted_meanwhile = sum(1 for event, _ in evaluator.log[:slow_done] if event == "submit")
    assert submitted_meanwhile > 2 * 6, "later asks should go out while the first evaluation is still running"
    evaluated = [arch for call in evaluator.calls for arch in call]
    assert len(evaluated) == len(set(evaluated)) == result.expensive_evaluations
    lookup = TableEvaluator(space, table)
    for target in targets:
        rows = read_rows(tmp_path / "async" / target.name / "history.csv")
        assert len(rows) == 30
        truth = lookup.evaluate(space.parse([r["arch"] for r in rows]))["accuracy"]
        assert [float(r["accuracy"]) for r in rows] == pytest.approx(truth)


def test_a_strategy_that_cannot_ask_ahead_runs_generation_by_generation(table, tmp_path):
    space = tiny_space()
    evaluator = QueuedTable(space, table, cheap_columns=("latency_ms",))
    search(space, evaluator, tmp_path / "tpe", budget=12, population=6, strategy="optuna-tpe", asynchronous=True)
    assert evaluator.log == [] and sum(len(call) for call in evaluator.calls) == 12
    search(space, evaluator, tmp_path / "default", budget=12, population=6)
    assert evaluator.log == [], "without asynchronous, generation by generation (exact resume)"
