"""The experiment config: its typed schema (every section of a run) and loading a YAML file into it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from nas.schema import Section, field, parse_section
from nas.strategies import DEFAULT_STRATEGY
from search_spaces import get_space
from search_spaces.errors import UserInputError

DATASETS = ("shapes", "digits", "cifar10", "imagefolder", "npz")
# Keys of the search section that are options of its strategy, by the strategy's name for them
STRATEGY_OPTIONS = {"mutation_prob": "mutate_prob", "storage": "storage"}
SUPERNET_OBJECTIVES = ("accuracy", "latency_ms", "energy_mj", "params", "macs", "flops")


@dataclasses.dataclass
class SpaceConfig(Section):
    name: str = field("ofa_mbv3", doc="registered search space")
    resolutions: Optional[list[int]] = field(None, ge=8, le=1024, doc="ofa_mbv3: input resolutions to choose from")
    stage_strides: Optional[list[int]] = field(None, doc="ofa_mbv3: stride (1 or 2) of each elastic stage's first "
                                               "block, 5 values; OFA's 2 2 2 1 2 when left out")
    tasks: Optional[list[str]] = field(None, doc="encdec: dense tasks, one decoder each")

    def hparams(self) -> dict:
        given = (("resolutions", self.resolutions), ("stage_strides", self.stage_strides), ("tasks", self.tasks))
        return {k: tuple(v) for k, v in given if v is not None}

    def check(self, path: str) -> None:
        try:
            get_space(self.name, **self.hparams())
        except UserInputError as e:
            raise UserInputError(f"{self.check_source}: {path}: {e}") from None


@dataclasses.dataclass
class DataConfig(Section):
    name: Literal[DATASETS] = field("shapes", doc="data set")
    root: Optional[str] = field(None, doc="directory or file for cifar10, imagefolder, npz; a relative path is "
                                "relative to the config file")
    resolution: int = field(32, ge=8, le=1024, doc="resolution images are stored at")
    num_train: int = field(4000, ge=1, le=10_000_000, doc="training images (at most what the data set holds)")
    num_val: int = field(500, ge=1, le=10_000_000, doc="validation images, held out of the training files")
    num_test: int = field(500, ge=1, le=10_000_000, doc="test images, from the data set's test files where it has "
                          "them")

    def check(self, path: str) -> None:
        if self.name in ("cifar10", "imagefolder", "npz") and not self.root:
            raise UserInputError(f"{self.check_source}: {path}.root is required for data set {self.name!r}")


@dataclasses.dataclass
class SupernetConfig(Section):
    family: Optional[str] = field(None, doc="supernet family (ofa for ofa_mbv3, spos for nb201); default: the "
                                  "family that serves space.name")
    num_classes: Optional[int] = field(None, ge=2, le=100_000, doc="default: the data set's number of classes")
    width_mult: Optional[float] = field(None, ge=0.1, le=4, doc="ofa: channel width multiplier of every layer "
                                        "(default 1.0)")
    channels: Optional[int] = field(None, ge=1, le=4096, doc="spos: channels C of the first stage (2C, 4C after "
                                    "the reductions); default 16 as NAS-Bench-201")
    cells: Optional[int] = field(None, ge=1, le=64, doc="spos: cells per stage; default 5 as NAS-Bench-201")
    split_decision: Optional[str] = field(None, doc="spos few-shot: the edge (e.g. edge_1_0) whose operation "
                                          "splits the supernet into one sub-supernet per operation at the phase "
                                          "with split: true")


@dataclasses.dataclass
class PhaseConfig(Section):
    name: str = field(doc="phase name, e.g. full, kernel, depth, expand")
    epochs: float = field(1.0, gt=0, le=10_000, doc="passes over the training split")
    lr: float = field(0.05, gt=0, le=10, doc="peak learning rate (cosine decay within the phase)")
    kernel: Optional[list[int]] = field(None, doc="ofa: allowed kernel sizes (default: largest only)")
    depth: Optional[list[int]] = field(None, doc="ofa: allowed stage depths (default: largest only)")
    expand: Optional[list[int]] = field(None, doc="ofa: allowed expand ratios (default: largest only)")
    split: bool = field(False, doc="spos: split the supernet on supernet.split_decision before this phase "
                        "(few-shot NAS)")


@dataclasses.dataclass
class TrainConfig(Section):
    batch_size: int = field(64, ge=1, le=65_536, doc="images per training step")
    optimizer: Literal["sgd", "adamw"] = field("sgd", doc="SGD with Nesterov momentum, or AdamW")
    momentum: float = field(0.9, ge=0, le=1, doc="SGD momentum")
    weight_decay: float = field(3e-5, ge=0, le=1, doc="decoupled weight decay")
    label_smoothing: float = field(0.1, ge=0, le=1, doc="label smoothing of the cross-entropy")
    warmup_epochs: float = field(0.0, ge=0, le=10_000, doc="linear warm-up of the first phase, in epochs")
    sandwich: bool = field(True, doc="largest + smallest + num_random subnets per step")
    num_random: int = field(2, ge=0, le=64, doc="random subnets per step besides the largest and smallest")
    distill: bool = field(True, doc="in-place distillation from the largest subnet")
    bn_calibration_batches: int = field(4, ge=1, le=10_000, doc="training batches that recompute a subnet's batch-"
                                        "norm statistics before it is evaluated or exported")
    checkpoint_every: int = field(50, ge=1, doc="steps between checkpoints")
    eval_every: int = field(0, ge=0, doc="steps between validation accuracies of the phase's largest and smallest "
                            "subnets in metrics.csv (0: at phase ends only)")
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig(name="full")])

    def check(self, path: str) -> None:
        if not self.phases:
            raise UserInputError(f"{self.check_source}: {path}.phases must list at least one phase")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise UserInputError(f"{self.check_source}: {path}.phases has repeated names {names}")


@dataclasses.dataclass
class TargetConfig(Section):
    device: str = field(doc="device name (see `nas devices`)")
    latency_model: Literal["lut", "roofline", "predictor"] = field("lut", doc="lut: the table measured on the "
                                                                    "device (host-cpu: measured by this run), else "
                                                                    "the roofline model; roofline: always the "
                                                                    "roofline model; predictor: `predictor`")
    predictor: Optional[str] = field(None, doc="path of a model fitted by `nas latency fit` (relative to the config "
                                     "file)")
    budgets_ms: list[float] = field(default_factory=list, gt=0, le=1e6, doc="latency budgets in ms")
    budgets_relative: list[float] = field(default_factory=list, ge=0, le=1, doc="latency budgets as fractions "
                                          "between this device's fastest (0) and slowest (1) subnet, resolved to "
                                          "ms when the run starts (budgets.json)")
    energy_budgets_mj: list[float] = field(default_factory=list, gt=0, le=1e9, doc="energy budgets in mJ, each a "
                                           "constraint of every latency budget's search")
    profile_warmup: int = field(10, ge=0, le=10_000, doc="host-cpu profiling: untimed runs per layer")
    profile_repeats: int = field(50, ge=1, le=100_000, doc="host-cpu profiling: timed runs per layer")
    profile_calibration_subnets: int = field(4, ge=0, le=1000, doc="host-cpu profiling: whole subnets timed to correct "
                                             "the per-layer sum (0: none)")
    reuse_table: bool = field(True, doc="host-cpu: reuse the table an earlier run measured on this machine with "
                              "the same layers and timing settings (kept under ~/.cache/hwnas/luts), so runs of "
                              "one seed give one front; false measures anew")

    def check(self, path: str) -> None:
        if self.latency_model == "predictor" and not self.predictor:
            raise UserInputError(f"{self.check_source}: {path}.predictor is required when latency_model is "
                                 "'predictor'")


@dataclasses.dataclass
class SearchConfig(Section):
    strategy: Literal["evolution", "nsga2", "predictor", "random", "optuna-nsga2", "optuna-tpe"] = field(
        DEFAULT_STRATEGY, doc="search strategy (see `nas search --help`)")
    objectives: list[str] = field(default_factory=lambda: ["accuracy:max", "latency_ms:min"],
                                  doc="NAME:max|min; supernet runs: accuracy:max first, then any of latency_ms, "
                                  "energy_mj (the target's device), params, macs, flops")
    budget: int = field(200, ge=1, le=1_000_000, doc="expensive (accuracy) evaluations per target")
    population: int = field(32, ge=2, le=100_000, doc="population of evolution and NSGA-II")
    mutation_prob: Optional[float] = field(None, ge=0, le=1, doc="per-decision mutation probability of the "
                                           "strategies that mutate (evolution, nsga2, predictor, optuna-nsga2); "
                                           "default: each strategy's own (0.1, or 1/decisions for the NSGA-IIs)")
    num_actors: Optional[int] = field(None, ge=1, le=4096, doc="Ray actors for the supernet evaluator (default: "
                                      "CPUs)")
    asynchronous: bool = field(False, doc="evaluate on the Ray actors without a barrier per generation (strategies "
                               "other than optuna-*); a resumed search then repeats no evaluation but need not "
                               "reproduce the uninterrupted front")
    storage: Optional[str] = field(None, doc="Optuna storage URL of optuna-* strategies (default: SQLite under the "
                                   "run's search directory)")
    evaluator: Optional[str] = field(None, doc="table:PATH to search a measured table instead of the supernet "
                                     "(PATH relative to the config file)")
    constraints: list[str] = field(default_factory=list, doc="table searches: e.g. latency_ms<=5")

    def check(self, path: str) -> None:
        if self.evaluator is not None and not self.evaluator.startswith("table:"):
            raise UserInputError(f"{self.check_source}: {path}.evaluator = {self.evaluator!r} is not allowed; "
                                 "allowed: table:PATH (leave it out to evaluate with the run's supernet)")
        from nas.strategies import get_strategy

        defaults = get_strategy(self.strategy).defaults
        for key, option in STRATEGY_OPTIONS.items():
            if getattr(self, key) is not None and option not in defaults:
                raise UserInputError(f"{self.check_source}: {path}.{key} does not apply to strategy "
                                     f"{self.strategy!r}; strategies that take it: "
                                     f"{_strategies_with(option)}")
        if self.constraints and self.evaluator is None:
            raise UserInputError(f"{self.check_source}: {path}.constraints apply to table searches; budgets of "
                                 "supernet runs go in targets[].budgets_ms")

    def strategy_options(self) -> dict:
        """The options this section gives its strategy (`check` made sure the strategy takes each); left out, a
        strategy uses its own default."""
        given = {option: getattr(self, key) for key, option in STRATEGY_OPTIONS.items()}
        return {option: value for option, value in given.items() if value is not None}


def _strategies_with(option: str) -> list[str]:
    from nas.strategies import get_strategy, list_strategies

    return [name for name in list_strategies() if option in get_strategy(name).defaults]


@dataclasses.dataclass
class ExportConfig(Section):
    parity_atol: float = field(1e-4, gt=0, le=1, doc="largest ONNX-vs-JAX logit difference accepted, relative to "
                               "max(1, largest |logit|)")
    max_subnets_per_target: int = field(3, ge=1, le=100, doc="most accurate subnets exported per target")


@dataclasses.dataclass
class ExperimentConfig(Section):
    name: str = field(doc="run name; the run directory is <runs_dir>/<name>")
    seed: int = field(0, ge=0, le=2**31 - 1, doc="seed of training, sampling and search")
    runs_dir: str = field("runs", doc="directory of run directories, relative to the working directory")
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    targets: list[TargetConfig] = field(default_factory=list)
    search: SearchConfig = field(default_factory=SearchConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def check(self, path: str) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise UserInputError(f"{self.check_source}: name = {self.name!r} must be a plain directory name")
        devices = [t.device for t in self.targets]
        if len(set(devices)) != len(devices):
            raise UserInputError(f"{self.check_source}: targets list a device twice: {devices}")
        if self.search.evaluator is None:
            self._check_family()
            self._check_supernet_objectives()

    def _check_family(self) -> None:
        from supernets.registry import default_family, family_for, list_supernets, space_of

        name = self.supernet.family
        if name is not None and name not in list_supernets():
            raise UserInputError(f"{self.check_source}: supernet.family = {name!r} is not allowed; allowed: "
                                 f"{list_supernets()}")
        if name is None and default_family(self.space.name) is None:
            raise UserInputError(f"{self.check_source}: space.name = {self.space.name!r} has no supernet family; set "
                                 "search.evaluator: table:PATH, or use a space with one: "
                                 f"{sorted({space_of(n) for n in list_supernets()})}")
        if name is not None and space_of(name) != self.space.name:
            raise UserInputError(f"{self.check_source}: supernet.family = {name!r} trains space {space_of(name)!r}, "
                                 f"not space.name = {self.space.name!r}")
        family = family_for(self)
        family.check(self, self.check_source)
        space = self.build_space()
        for i, phase in enumerate(self.train.phases):
            try:
                family.allowed_choices(space, phase)
            except UserInputError as e:
                raise UserInputError(f"{self.check_source}: train.phases[{i}].{e}") from None

    def _check_supernet_objectives(self) -> None:
        from nas.search import parse_objective

        names = []
        for i, text in enumerate(self.search.objectives):
            try:
                objective = parse_objective(text)
            except UserInputError:
                objective = None
            wanted = "max" if objective is not None and objective.name == "accuracy" else "min"
            if objective is None or objective.name not in SUPERNET_OBJECTIVES or objective.direction != wanted:
                raise UserInputError(f"{self.check_source}: search.objectives[{i}] = {text!r} is not allowed; "
                                     f"allowed: accuracy:max, {', '.join(m + ':min' for m in SUPERNET_OBJECTIVES[1:])}")
            names.append(objective.name)
        if "accuracy" not in names or len(set(names)) != len(names):
            raise UserInputError(f"{self.check_source}: search.objectives = {self.search.objectives} is not allowed; "
                                 "allowed: accuracy:max and other objectives, each once")

    def build_space(self):
        return get_space(self.space.name, **self.space.hparams())


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _resolve_paths(config: "ExperimentConfig", base: Path) -> None:
    """Input files named in the config, relative to `base` (the config file's directory), made absolute."""
    def resolve(text):
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    if config.data.root:
        config.data.root = resolve(config.data.root)
    for target in config.targets:
        if target.predictor:
            target.predictor = resolve(target.predictor)
    if config.search.evaluator and config.search.evaluator.startswith("table:"):
        config.search.evaluator = "table:" + resolve(config.search.evaluator[len("table:"):])


def read_yaml(path: Path):
    """A YAML file's data; unreadable, non-UTF-8, broken YAML and repeated keys are one-line UserInputErrors."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); save the "
                             "config as UTF-8") from None
    except OSError as e:
        raise UserInputError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"{path}: broken YAML{where}: {getattr(e, 'problem', e)}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Reads and validates an experiment YAML; every error names the file and the key path. Input paths in it
    (data.root, targets[].predictor, search.evaluator's table:PATH) are relative to the file's directory."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file {str(path)!r} does not exist")
    config = config_from_dict(read_yaml(path), source=str(path))
    _resolve_paths(config, path.resolve().parent)
    return config


def config_from_dict(data: Any, source: str = "<config>") -> ExperimentConfig:
    return parse_section(ExperimentConfig, data, "", source)


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML, every default spelled out (what `runs/<name>/config.yaml` holds)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
