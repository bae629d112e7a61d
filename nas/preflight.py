"""What a run needs, checked before it starts: devices, budgets, input files, data sizes, steps and memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nas.data import shapes
from nas.data.files import CIFAR10_CLASSES, ROOT_LAYOUTS, root_problem
from search_spaces.errors import UserInputError

# Images a file data set holds: (training pool that num_train + num_val come from, test files), None for no test files
DATA_POOLS = {"digits": (1797, None), "cifar10": (50_000, 10_000)}
CHANNELS = {"digits": 1}
CLASSES = {"digits": 10, "cifar10": len(CIFAR10_CLASSES), "shapes": shapes.NUM_CLASSES}
# Activation floats kept per forward element in training (forward values, their gradients, batch-norm statistics)
TRAINING_FLOATS_PER_ACTIVATION = 3
MEMORY_SHARE = 0.8


@dataclass
class RunEstimate:
    """What a valid config will cost: optimizer steps and peak memory (bytes, estimated) against this machine's."""

    steps: int
    data_bytes: int
    training_bytes: int
    machine_bytes: int

    def describe(self) -> str:
        gib = 2.0 ** 30
        return (f"{self.steps:,} training steps, about {(self.data_bytes + self.training_bytes) / gib:.1f} GiB of "
                f"memory (data {self.data_bytes / gib:.1f}, training {self.training_bytes / gib:.1f}; this machine "
                f"has {self.machine_bytes / gib:.1f})")


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_run(config, *, need_targets: bool = True) -> RunEstimate | None:
    """Raises one UserInputError naming the key for anything `nas run` would fail on or misread (`nas train` when
    not `need_targets`: a config without targets); returns the cost of training (None for table searches, which
    train nothing)."""
    source = getattr(config, "check_source", "<config>")
    if config.search.evaluator is not None:
        _check_table_search(config, source)
        return None
    if config.targets or need_targets:
        _check_targets(config, source)
    _check_data(config, source)
    estimate = _estimate(config, source)
    _check_budgets_reachable(config, source)
    return estimate


def _check_table_search(config, source: str) -> None:
    path = Path(config.search.evaluator[len("table:"):])
    if not path.is_file():
        raise UserInputError(f"{source}: search.evaluator = {config.search.evaluator!r}: {path} does not exist "
                             "(a relative path is relative to the config file)")
    if config.targets:
        raise UserInputError(f"{source}: targets apply to supernet runs; a table search (search.evaluator) takes "
                             "its budgets as search.constraints, e.g. latency_ms<=5")
    from nas.evaluators import TableEvaluator, cheap_metrics_for
    from nas.search import Target, check_constraints_reachable

    table = TableEvaluator(config.build_space(), path)
    try:
        target = Target("table", tuple(config.search.objectives), tuple(config.search.constraints))
        cheap = cheap_metrics_for(table.space, [n for n in target.metric_names if n not in table.metrics])
        check_constraints_reachable(table.space, target, cheap, config.seed, table)
    except UserInputError as e:
        raise UserInputError(f"{source}: search: {e}; table columns: {list(table.metrics)}") from None


def _check_targets(config, source: str) -> None:
    from latency_models.devices import get_device

    if not config.targets:
        raise UserInputError(f"{source}: targets is empty; name at least one device (see `nas devices`) with "
                             "budgets_ms or budgets_relative")
    kinds = {t.latency_model == "predictor" for t in config.targets}
    if len(kinds) > 1:
        raise UserInputError(f"{source}: targets mix latency_model 'predictor' with tables "
                             f"({[t.latency_model for t in config.targets]}); one run uses predictors for every "
                             "target or for none")
    for i, target in enumerate(config.targets):
        key = f"{source}: targets[{i}]"
        try:
            get_device(target.device)
        except UserInputError as e:
            raise UserInputError(f"{key}.device: {e}") from None
        if not target.budgets_ms and not target.budgets_relative:
            raise UserInputError(f"{key} ({target.device}) has no budget; give budgets_ms or budgets_relative")
        if target.predictor and target.latency_model != "predictor":
            raise UserInputError(f"{key}.predictor is set but latency_model is {target.latency_model!r}, so it "
                                 "would be ignored; set latency_model: predictor or drop predictor")
        if target.latency_model == "predictor":
            _check_predictor(config, target.predictor, f"{key}.predictor")


def _check_predictor(config, path: str, key: str) -> None:
    from latency_models.predictor import CalibratedPredictor

    if not Path(path).is_file():
        raise UserInputError(f"{key} = {path!r} does not exist (a relative path is relative to the config file); "
                             "fit one with `nas latency fit`")
    try:
        CalibratedPredictor.load(path).check_space(config.build_space())
    except UserInputError as e:
        raise UserInputError(f"{key}: {e}") from None


def _check_data(config, source: str) -> None:
    d = config.data
    problem = root_problem(d.name, d.root) if d.name in ROOT_LAYOUTS else None
    if problem:
        raise UserInputError(f"{source}: data.root = {d.root!r} {problem} (a relative path is relative to the config "
                             "file)")
    if d.name in DATA_POOLS:
        pool, test_files = DATA_POOLS[d.name]
        held_out = d.num_val + (0 if test_files else d.num_test)
        if held_out + d.num_train > pool or (test_files and d.num_test > test_files):
            raise UserInputError(f"{source}: data set {d.name!r} holds {pool:,} images"
                                 f"{f' and {test_files:,} test images' if test_files else ''}: data.num_train = "
                                 f"{d.num_train:,}, num_val = {d.num_val:,}, num_test = {d.num_test:,} ask for more")
    known = CLASSES.get(d.name)
    if known and config.supernet.num_classes is not None and config.supernet.num_classes < known:
        raise UserInputError(f"{source}: supernet.num_classes = {config.supernet.num_classes} is fewer than the "
                             f"{known} classes of data set {d.name!r}")
    if config.train.batch_size > d.num_train:
        raise UserInputError(f"{source}: train.batch_size = {config.train.batch_size} is more than data.num_train = "
                             f"{d.num_train}; a step needs a full batch")


def _layer_options(config) -> dict:
    """The network the run trains, as latency models price it (classes: the config's, else the data set's)."""
    from supernets.registry import family_for

    return family_for(config).layer_options(config, config.supernet.num_classes or CLASSES.get(config.data.name, 10))


def _estimate(config, source: str) -> RunEstimate:
    from latency_models.layers import layer_activations, space_layers

    d, t = config.data, config.train
    steps_per_epoch = d.num_train // t.batch_size
    steps = sum(max(1, round(phase.epochs * steps_per_epoch)) for phase in t.phases)  # as nas.phases lays them out
    images = d.num_train + d.num_val + d.num_test
    data_bytes = images * d.resolution ** 2 * CHANNELS.get(d.name, 3) * 4
    space = config.build_space()
    layers = space_layers(space, **_layer_options(config))
    table = layers.table(space.largest()[None])
    per_image = float(table.per_slot([layer_activations(l) for l in table.layers]).sum())
    subnets = 2 + t.num_random if t.sandwich else 1
    training_bytes = int(t.batch_size * per_image * 4 * TRAINING_FLOATS_PER_ACTIVATION * subnets)
    estimate = RunEstimate(steps, int(data_bytes), training_bytes, machine_memory())
    if estimate.data_bytes + estimate.training_bytes > MEMORY_SHARE * estimate.machine_bytes:
        raise UserInputError(f"{source}: the run needs {estimate.describe()}: lower data.num_train/num_val/num_test, "
                             "data.resolution, train.batch_size or the space's resolutions")
    return estimate


def _check_budgets_reachable(config, source: str) -> None:
    """Absolute budgets of devices priced without measuring (roofline estimates, fitted predictors) must be within
    reach of some subnet; host-cpu's are checked once its table is measured, in the run's latency stage."""
    from nas.evaluators import cheap_metrics_for
    from nas.search import Target, check_constraints_reachable
    from nas.strategies import Constraint

    space = config.build_space()
    options = _layer_options(config)
    for i, t in enumerate(config.targets):
        if t.device == "host-cpu" and t.latency_model == "lut":
            continue
        constraints = ((Constraint("latency_ms", min(t.budgets_ms)),) if t.budgets_ms else ()) + (
            (Constraint("energy_mj", min(t.energy_budgets_mj)),) if t.energy_budgets_mj else ())
        if not constraints:
            continue
        kind = "predictor" if t.latency_model == "predictor" else "roofline"
        cheap = cheap_metrics_for(space, [c.metric for c in constraints], device=t.device, latency_model=kind,
                                  latency_paths={t.device: t.predictor} if t.predictor else None,
                                  layer_options=options)
        target = Target(f"{t.device}@{constraints[0].upper_bound:g}", ("accuracy:max",), constraints,
                        device=t.device)
        try:
            check_constraints_reachable(space, target, cheap, config.seed)
        except UserInputError as e:
            raise UserInputError(f"{source}: targets[{i}] ({t.device}): {e}") from None
