"""The experiment config: its typed schema (every section of a run) and loading a YAML file into it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from nas.schema import Section, field, parse_section
from search_spaces import get_space
from search_spaces.errors import UserInputError

DATASETS = ("shapes", "digits", "cifar10", "imagefolder", "npz")


@dataclasses.dataclass
class SpaceConfig(Section):
    name: str = field("ofa_mbv3", doc="registered search space")
    resolutions: Optional[list[int]] = field(None, ge=8, doc="ofa_mbv3: input resolutions to choose from")
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
    root: Optional[str] = field(None, doc="directory or file for cifar10, imagefolder, npz")
    resolution: int = field(32, ge=8, doc="resolution images are stored at")
    num_train: int = field(4000, ge=1)
    num_val: int = field(500, ge=1)
    num_test: int = field(500, ge=1)

    def check(self, path: str) -> None:
        if self.name in ("cifar10", "imagefolder", "npz") and not self.root:
            raise UserInputError(f"{self.check_source}: {path}.root is required for data set {self.name!r}")


@dataclasses.dataclass
class SupernetConfig(Section):
    width_mult: float = field(1.0, gt=0, le=4)
    num_classes: Optional[int] = field(None, ge=2, doc="default: the data set's number of classes")


@dataclasses.dataclass
class PhaseConfig(Section):
    name: str = field(doc="phase name, e.g. full, kernel, depth, expand")
    epochs: float = field(1.0, gt=0)
    lr: float = field(0.05, gt=0)
    kernel: Optional[list[int]] = field(None, doc="allowed kernel sizes (default: largest only)")
    depth: Optional[list[int]] = field(None, doc="allowed stage depths (default: largest only)")
    expand: Optional[list[int]] = field(None, doc="allowed expand ratios (default: largest only)")


@dataclasses.dataclass
class TrainConfig(Section):
    batch_size: int = field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = field(0.9, ge=0, le=1)
    weight_decay: float = field(3e-5, ge=0)
    label_smoothing: float = field(0.1, ge=0, le=1)
    warmup_epochs: float = field(0.0, ge=0)
    sandwich: bool = field(True, doc="largest + smallest + num_random subnets per step")
    num_random: int = field(2, ge=0)
    distill: bool = field(True, doc="in-place distillation from the largest subnet")
    bn_calibration_batches: int = field(4, ge=1)
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
    latency_model: Literal["lut", "roofline", "predictor"] = field("lut")
    predictor: Optional[str] = field(None, doc="path of a model fitted by `nas latency fit`")
    budgets_ms: list[float] = field(default_factory=list, gt=0, doc="latency budgets in ms")
    budgets_relative: list[float] = field(default_factory=list, ge=0, le=1, doc="latency budgets as fractions "
                                          "between this device's fastest (0) and slowest (1) subnet, resolved to "
                                          "ms when the run starts (budgets.json)")
    energy_budgets_mj: list[float] = field(default_factory=list, gt=0)
    profile_warmup: int = field(10, ge=0, doc="host-cpu profiling: untimed runs per layer")
    profile_repeats: int = field(50, ge=1, doc="host-cpu profiling: timed runs per layer")
    profile_calibration_subnets: int = field(4, ge=0, doc="host-cpu profiling: whole subnets timed to correct "
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
    strategy: Literal["evolution", "nsga2", "predictor", "random", "optuna-nsga2", "optuna-tpe"] = "evolution"
    objectives: list[str] = field(default_factory=lambda: ["accuracy:max", "latency_ms:min"])
    budget: int = field(200, ge=1, doc="expensive (accuracy) evaluations per target")
    population: int = field(32, ge=2)
    mutation_prob: float = field(0.1, ge=0, le=1)
    num_actors: Optional[int] = field(None, ge=1, doc="Ray actors for the supernet evaluator (default: CPUs)")
    storage: Optional[str] = field(None, doc="Optuna storage URL (default: SQLite under the run)")
    evaluator: Optional[str] = field(None, doc="table:PATH to search a measured table instead of the supernet")
    constraints: list[str] = field(default_factory=list, doc="table searches: e.g. latency_ms<=5")

    def check(self, path: str) -> None:
        if self.evaluator is not None and not self.evaluator.startswith("table:"):
            raise UserInputError(f"{self.check_source}: {path}.evaluator = {self.evaluator!r} is not allowed; "
                                 "allowed: table:PATH (leave it out to evaluate with the run's supernet)")
        if self.constraints and self.evaluator is None:
            raise UserInputError(f"{self.check_source}: {path}.constraints apply to table searches; budgets of "
                                 "supernet runs go in targets[].budgets_ms")


@dataclasses.dataclass
class ExportConfig(Section):
    onnx: bool = True
    parity_atol: float = field(1e-4, gt=0)
    max_subnets_per_target: int = field(3, ge=1)


@dataclasses.dataclass
class ExperimentConfig(Section):
    name: str = field(doc="run name; the run directory is <runs_dir>/<name>")
    seed: int = field(0, ge=0)
    runs_dir: str = field("runs")
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
        space = get_space(self.space.name, **self.space.hparams())
        if self.space.name == "ofa_mbv3":
            self._check_phase_choices(space)
        if self.search.evaluator is None and self.space.name != "ofa_mbv3":
            raise UserInputError(f"{self.check_source}: space.name = {self.space.name!r} has no supernet yet; "
                                 "set search.evaluator: table:PATH, or use space ofa_mbv3")

    def _check_phase_choices(self, space) -> None:
        from search_spaces import ofa_mbv3

        allowed = {"kernel": ofa_mbv3.KERNEL_CHOICES, "depth": ofa_mbv3.DEPTH_CHOICES,
                   "expand": ofa_mbv3.EXPAND_CHOICES}
        for i, phase in enumerate(self.train.phases):
            for key, choices in allowed.items():
                given = getattr(phase, key)
                if given is not None and (not given or not set(given) <= set(choices)):
                    raise UserInputError(f"{self.check_source}: train.phases[{i}].{key} = {given} is not allowed; "
                                         f"allowed: a non-empty subset of {list(choices)}")

    def build_space(self):
        return get_space(self.space.name, **self.space.hparams())


def load_config(path: str | Path) -> ExperimentConfig:
    """Reads and validates an experiment YAML; every error names the file and the key path."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"{path}: broken YAML{where}: {getattr(e, 'problem', e)}") from None
    return config_from_dict(data, source=str(path))


def config_from_dict(data: Any, source: str = "<config>") -> ExperimentConfig:
    return parse_section(ExperimentConfig, data, "", source)


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML, every default spelled out (what `runs/<name>/config.yaml` holds)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
