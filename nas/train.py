"""The one supernet trainer (every family): optimizer, train step over several subnets (sandwich rule, in-place
distillation, masked updates), phases, resumable runs, evaluation with BN calibration, loading."""

from __future__ import annotations

import functools
import resource
import time
from collections import Counter
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from nas.checkpoint import Checkpoints
from nas.config import dump_config, load_config
from nas.phases import Phase, build_phases, subnets_of_step, subnets_per_step
from nas.run_dir import MetricsLog, RunDir, open_run
from search_spaces.errors import UserInputError
from supernets.registry import family_for, get_supernet, soft_cross_entropy, top1_correct

CHECKPOINT_KIND = "hwnas-supernet-train-v1"
CHECKPOINT_TREES = ("model", "optimizer")
TRACES = Counter()  # traces of train_step and eval_step: tests check that steps do not recompile
METRIC_FIELDS = ("step", "phase", "loss", "lr", "resolution", "subnets", "step_time_s", "val_acc_largest",
                 "val_acc_smallest")


def create_model(config, space, num_classes: int, in_channels: int = 3):
    """The supernet of `config` (its family's), initialised from `config.seed`."""
    return family_for(config).build(config, space, num_classes, in_channels)


def decay_mask(params):
    """Weight decay on kernels only: not on BN scales and offsets nor biases (the 1-D parameters)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(model, train_config) -> nnx.Optimizer:
    """SGD with Nesterov momentum or AdamW; the learning rate is a hyperparameter `train_step` sets every step."""
    tx = _transformation(train_config.optimizer, float(train_config.weight_decay), float(train_config.momentum))
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


@functools.lru_cache(maxsize=None)
def _transformation(name: str, weight_decay: float, momentum: float) -> optax.GradientTransformation:
    """One optax transformation per setting: optimizers of equal settings share it, so a new model and optimizer
    reuse the compiled `train_step` (a fresh transformation's functions would make it trace and compile again)."""

    def transform(learning_rate):
        if name == "sgd":
            return optax.chain(optax.add_decayed_weights(weight_decay, decay_mask),
                               optax.sgd(learning_rate, momentum=momentum, nesterov=True))
        return optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)

    return masked_updates(optax.inject_hyperparams(transform)(learning_rate=0.0))


def masked_updates(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """`inner`, and where `update(..., update_mask=M)` gives a mask (booleans broadcastable to each parameter),
    masked-out entries get no update at all: their parameters and every per-parameter optimizer state (momentum,
    Adam moments) stay bit-identical, so weight decay and momentum do not move weights a step did not use (SPOS).
    The state is `inner`'s own (hyperparameters stay at `opt_state.hyperparams`)."""

    def update(updates, state, params=None, *, update_mask=None, **extra):
        new_updates, new_state = inner.update(updates, state, params, **extra)
        if update_mask is None:
            return new_updates, new_state
        flags = optax.tree_utils.tree_map_params(inner, lambda _, mask: mask, new_state, update_mask,
                                                 transform_non_params=lambda _: None)
        new_state = jax.tree.map(lambda mask, new, old: new if mask is None else jnp.where(mask, new, old),
                                 flags, new_state, state, is_leaf=lambda x: x is None)
        # -0.0 leaves every parameter bit-identical under p + u, negative zero included
        new_updates = jax.tree.map(lambda u, mask: jnp.where(mask, u, -0.0), new_updates, update_mask)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(inner.init, update)


def reset_optimizer(optimizer: nnx.Optimizer, model) -> None:
    """Fresh optimizer state (momentum, step count) in place, as at the start of each phase."""
    nnx.update(optimizer, nnx.state(nnx.Optimizer(model, optimizer.tx, wrt=nnx.Param)))
    commit_to_device(optimizer)


def commit_to_device(*nodes) -> None:
    """Places every array of `nodes` on the default device explicitly, with strong dtypes. Fresh, restored and
    step-output arrays then look the same to `jit`, which would otherwise compile `train_step` again for each."""
    device = jax.devices()[0]
    for node in nodes:
        state = nnx.as_pure(nnx.state(node))
        nnx.update(node, jax.tree.map(lambda a: jax.device_put(a.astype(a.dtype), device), state))


def smoothed_targets(labels: np.ndarray, num_classes: int, label_smoothing: float) -> jnp.ndarray:
    """One-hot labels with label smoothing a: 1 - a + a/C on the true class, a/C elsewhere."""
    targets = np.full((len(labels), num_classes), label_smoothing / num_classes, dtype=np.float32)
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    return jnp.asarray(targets)


def _family_function(model, name: str, default):
    """The `loss` or `correct` of the model's supernet family; models without one (e.g. test models) classify."""
    family = getattr(type(model), "family", None)
    return default if family is None else getattr(get_supernet(family), name)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


@nnx.jit
def train_step(model, optimizer, images, hard, archs, lr, distill, count=None):
    """One update from the first `count` (default: all) of the (K, D) subnets `archs` on one batch, gradients
    summed over the subnets.

    Subnet 0 learns from `hard`, the (N, classes) label-smoothed one-hot labels; with `distill` the others learn
    from subnet 0's predictions (soft cross-entropy, no gradient into the teacher). The subnets run under one
    `lax.fori_loop` whose trip count and distillation flag are traced values, so one compilation per (image shape,
    K) serves every subnet, subnet count up to K and phase: training pads `archs` to its largest K. A model with
    `update_mask(archs, valid)` gets no update, momentum or decay outside it. Returns the mean loss over the
    subnets.
    """
    TRACES["train_step"] += 1
    loss_of = _family_function(model, "loss", soft_cross_entropy)
    graphdef, params, rest = nnx.as_pure(nnx.split(model, nnx.Param, ...))
    count = archs.shape[0] if count is None else count

    def one_subnet(index, carry):
        rest, teacher, grads, loss_sum = carry
        first = index == 0
        targets = jnp.where(distill & ~first, teacher, hard)

        def loss_fn(params, rest):
            subnet = nnx.merge(graphdef, params, rest)
            logits = subnet(images, archs[index], train=True)
            new_rest = nnx.as_pure(nnx.state(subnet, nnx.Not(nnx.Param)))
            return loss_of(logits, targets), (logits, new_rest)

        (loss, (logits, rest)), subnet_grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
        teacher = jnp.where(first, jax.nn.softmax(jax.lax.stop_gradient(logits)), teacher)
        grads = jax.tree.map(jnp.add, grads, subnet_grads)
        return rest, teacher, grads, loss_sum + loss

    init = (rest, jnp.zeros_like(hard), jax.tree.map(jnp.zeros_like, params), jnp.float32(0.0))
    if archs.shape[0] == 1:  # one subnet per step: no loop, which costs XLA's CPU backend as much as the gradient
        rest, _, grads, loss_sum = one_subnet(0, init)
    else:
        rest, _, grads, loss_sum = jax.lax.fori_loop(0, count, one_subnet, init)
    nnx.update(model, rest)
    optimizer.opt_state.hyperparams["learning_rate"][...] = lr
    variables = nnx.state(model, nnx.Param)
    masks = {}
    if hasattr(model, "update_mask"):
        masks["update_mask"] = model.update_mask(archs, jnp.arange(archs.shape[0]) < count)
    optimizer.update(model, jax.tree.map(lambda v, g: v.replace(g), variables, grads, is_leaf=_is_variable), **masks)
    return loss_sum / count


def padded_subnets(archs: np.ndarray, rows: int) -> jnp.ndarray:
    """(rows, D) int32: `archs` followed by zero rows, so every step of a run has its one compiled shape (pass
    len(archs) as `train_step`'s count)."""
    padded = np.zeros((rows, archs.shape[1]), dtype=np.int32)
    padded[: len(archs)] = archs
    return jnp.asarray(padded)


@nnx.jit
def eval_step(model, images, labels, valid, arch):
    """Number of correct predictions of subnet `arch` among the `valid` rows of a batch (BN in inference mode)."""
    TRACES["eval_step"] += 1
    correct = _family_function(model, "correct", top1_correct)
    return jnp.sum(correct(model(images, arch, train=False), labels) & valid)


def resized_images(images: np.ndarray, resolution: int) -> jnp.ndarray:
    from nas.data import resize

    return jnp.asarray(resize(images, resolution))


def accuracy(model, data, arch, resolution: int, batch_size: int, split: str = "val") -> float:
    """Top-1 accuracy of subnet `arch` on a split; the last batch is padded so every batch has one shape."""
    correct, total = 0, 0
    for batch in data.batches(split, batch_size, seed=0, shuffle=False, drop_last=False).epoch(0):
        n = len(batch.labels)
        pad = batch_size - n
        images = np.pad(batch.images, ((0, pad), (0, 0), (0, 0), (0, 0)))
        labels = np.pad(batch.labels, (0, pad))
        correct += int(eval_step(model, resized_images(images, resolution), jnp.asarray(labels),
                                 jnp.arange(batch_size) < n, jnp.asarray(arch)))
        total += n
    return correct / total


def bn_calibration_batches(data, resolution: int, *, batch_size: int, count: int, seed: int) -> list:
    """The first `count` un-augmented training batches (order from `seed + 1`) at `resolution`, for BN calibration."""
    stream = data.batches("train", batch_size, seed=seed + 1, augment=False)
    return [resized_images(stream.batch(0, i).images, resolution) for i in range(min(count, stream.num_batches))]


def evaluate_subnet(model, data, space, arch, *, batch_size: int, calibration_batches: int, seed: int,
                    split: str = "val") -> float:
    """Accuracy of `arch` with inherited weights after BN calibration; the model's state is left unchanged."""
    from supernets.bn_calibration import calibrate_bn

    resolution = get_supernet(type(model).family).input_resolution(space, arch, data.resolution[0])
    batches = bn_calibration_batches(data, resolution, batch_size=batch_size, count=calibration_batches, seed=seed)
    saved = nnx.clone(nnx.state(model))
    calibrate_bn(model, jnp.asarray(arch), batches)
    result = accuracy(model, data, arch, resolution, batch_size, split)
    nnx.update(model, saved)
    return result


def load_data(config):
    from nas.data import load_dataset

    d = config.data
    return load_dataset(d.name, root=d.root, resolution=d.resolution, num_train=d.num_train, num_val=d.num_val,
                        num_test=d.num_test, seed=config.seed)


def num_classes_of(config, data) -> int:
    wanted = config.supernet.num_classes
    if wanted is not None and wanted < data.num_classes:
        raise UserInputError(f"supernet.num_classes = {wanted} is fewer than the {data.num_classes} classes of data "
                             f"set {config.data.name!r}; leave it out or set at least {data.num_classes}")
    return wanted or data.num_classes


def _trees(model, optimizer) -> dict:
    return {"model": nnx.to_pure_dict(nnx.state(model)), "optimizer": nnx.to_pure_dict(nnx.state(optimizer))}


def _load_trees(trees: dict, **targets) -> None:
    for name, target in targets.items():
        state = nnx.state(target)
        nnx.replace_by_pure_dict(state, trees[name])
        nnx.update(target, state)


def begin_phase(model, optimizer, phase: Phase, phases: list[Phase]) -> None:
    """Start of a phase: the family's (OFA re-sorts channels before the first elastic-expand phase, SPOS splits
    few-shot), then a fresh optimizer state."""
    get_supernet(type(model).family).begin_phase(model, phase, phases)
    reset_optimizer(optimizer, model)


def train_and_evaluate(config, *, resume: bool = False, max_steps: int | None = None,
                       progress: bool = True) -> dict:
    """Trains the supernet of `config` in `runs/<name>/` (or continues it with `resume`); returns a summary.

    Every `train.checkpoint_every` steps, at phase ends and at the last step, the model (parameters and BN
    statistics), optimizer state, step, phase and data position are checkpointed; subnets and resolutions are a
    pure function of (seed, step), so a resumed run ends with the same parameters as an uninterrupted one.
    """
    if max_steps is not None and max_steps < 1:
        raise UserInputError(f"--max-steps must be at least 1, got {max_steps}")
    space, train, family = config.build_space(), config.train, family_for(config)
    data = load_data(config)
    num_classes = num_classes_of(config, data)
    run = open_run(config, dump_config(config), resume=resume)
    stream = data.batches("train", train.batch_size, seed=config.seed, augment=True)
    phases = build_phases(train, space, stream.num_batches, family)
    max_subnets = max(subnets_per_step(phase, train) for phase in phases)
    total = phases[-1].end
    stop = total if max_steps is None else min(total, max_steps)
    model = create_model(config, space, num_classes, data.channels)
    optimizer = create_optimizer(model, train)
    commit_to_device(model, optimizer)
    checkpoints = Checkpoints(run.checkpoints, kind=CHECKPOINT_KIND, trees=CHECKPOINT_TREES)
    log = MetricsLog(run.metrics, METRIC_FIELDS)
    step = 0
    if checkpoints.latest_step() is not None:
        trees, meta = checkpoints.restore(_trees(model, optimizer))
        _load_trees(trees, model=model, optimizer=optimizer)
        commit_to_device(model, optimizer)
        step, stream.position = meta["step"], meta["data_position"]
    log.keep_until(step)
    summary = {"run_dir": str(run.root), "total_steps": total, "max_subnets_per_step": max_subnets}

    def save(phase: Phase) -> None:
        checkpoints.save(step, _trees(model, optimizer), {
            "phase": phase.index, "phase_name": phase.name, "data_position": list(stream.position),
            "total_steps": total, "num_classes": num_classes, "in_channels": data.channels})

    for phase in phases:
        if step >= stop:
            break
        if step >= phase.end:
            continue
        if step == phase.start:
            begin_phase(model, optimizer, phase, phases)
        bar = tqdm(total=phase.steps, initial=step - phase.start, disable=not progress, unit="step",
                   desc=f"phase {phase.index + 1}/{len(phases)} {phase.name}")
        step_fn = nnx.cached_partial(train_step, model, optimizer)  # no graph traversal of model, optimizer per step
        while step < min(phase.end, stop):
            archs, distill = subnets_of_step(phase, train, config.seed, step)
            resolution = family.input_resolution(space, archs[0], data.resolution[0])
            lr = phase.learning_rate(step)
            batch = next(stream)
            started = time.perf_counter()
            loss = float(step_fn(resized_images(batch.images, resolution),
                                 smoothed_targets(batch.labels, num_classes, train.label_smoothing),
                                 padded_subnets(archs, max_subnets), jnp.float32(lr), jnp.bool_(distill),
                                 jnp.int32(len(archs))))
            step += 1
            log.append(step=step, phase=phase.name, loss=f"{loss:.6g}", lr=f"{lr:.6g}", resolution=resolution,
                       subnets=len(archs), step_time_s=f"{time.perf_counter() - started:.4f}")
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", res=resolution, refresh=False)
            bar.update(1)
            if step == phase.end or (train.eval_every and step % train.eval_every == 0):
                summary.update(_validation_accuracies(model, data, space, phase, config))
                log.append(step=step, phase=phase.name, **{k: f"{v:.4f}" for k, v in summary.items()
                                                             if k.startswith("val_acc")})
            if step % train.checkpoint_every == 0 or step in (phase.end, stop):
                save(phase)
        bar.close()
    checkpoints.close()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {**summary, "step": step, "peak_rss_gib": round(peak_gib, 3)}


def _validation_accuracies(model, data, space, phase: Phase, config) -> dict:
    kwargs = dict(batch_size=config.train.batch_size, calibration_batches=config.train.bn_calibration_batches,
                  seed=config.seed)
    return {f"val_acc_{name}": evaluate_subnet(model, data, space, arch, **kwargs)
            for name, arch in phase.probes.items()}


def load_trained_supernet(run_dir: str | Path):
    """(model, space, config) of a run trained by `nas train`, with the weights of its latest checkpoint."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise UserInputError(f"{run.root} is not a run directory: {run.config} does not exist")
    config = load_config(run.config)
    space = config.build_space()
    checkpoints = Checkpoints(run.checkpoints, kind=CHECKPOINT_KIND, trees=CHECKPOINT_TREES, create=False)
    meta = checkpoints.restore_meta()
    model = nnx.eval_shape(lambda: create_model(config, space, meta["num_classes"], meta["in_channels"]))
    trees, meta = checkpoints.restore({"model": nnx.to_pure_dict(nnx.state(model))}, names=("model",))
    _load_trees(trees, model=model)
    checkpoints.close()
    if meta["step"] < meta["total_steps"]:
        warnings.warn(f"{run.root}: supernet training stopped at step {meta['step']} of {meta['total_steps']}",
                      stacklevel=2)
    return model, space, config
