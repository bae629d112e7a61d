"""Once-for-all MobileNetV3 supernet for the `ofa_mbv3` space: one compilation per resolution serves every subnet."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from search_spaces.errors import UserInputError
from search_spaces.ofa_mbv3 import (DEFAULT_STAGE_STRIDES, DEPTH, DEPTH_CHOICES, EXPAND, EXPAND_CHOICES, FEATURE_DIM,
                                    FINAL_EXPAND, FIRST_CHANNELS, KERNEL, KERNEL_CHOICES, MAX_DEPTH, NUM_STAGES,
                                    RESOLUTION, STAGES, make_divisible)
from supernets.depthwise import depthwise_conv
from supernets.elastic import ElasticMBConv, he_fout
from supernets.elastic_bn import ElasticBatchNorm
from supernets.extract import extract
from supernets.pointwise import patch_conv, pointwise
from supernets.registry import SupernetFamily
from supernets.static import StaticMobileNetV3, hswish, relu

MODES = ("train", "eval", "calibrate")


def stage_layout(width_mult: float, stage_strides=DEFAULT_STAGE_STRIDES) -> list[dict]:
    """Per elastic block (stage-major): in/out channels, stride, activation, SE, stage and index in the stage."""
    blocks, in_channels = [], make_divisible(FIRST_CHANNELS * width_mult, 8)
    for s, (stage, stride) in enumerate(zip(STAGES, stage_strides)):
        out_channels = make_divisible(stage["out_channels"] * width_mult, 8)
        for b in range(MAX_DEPTH):
            blocks.append({"stage": s, "index": b, "in_channels": in_channels, "out_channels": out_channels,
                           "stride": stride if b == 0 else 1, "act": stage["act"], "se": stage["se"]})
            in_channels = out_channels
    return blocks


class OFAMobileNetV3(nnx.Module):
    """OFA MobileNetV3-Large supernet: first conv and first block fixed, 5 elastic stages of up to 4 blocks,
    final 1x1 expand, global pool, feature mix and classifier.

    `model(x, arch, train=...)` takes x (N, H, W, in_channels) at the arch's resolution and `arch` the (46,) int
    array of `ofa_mbv3` choice indices (traced; the resolution column is not read).

    Every residual block's last BN scale starts at zero (OFA's `zero_last_gamma`), so at initialisation each block
    is the identity and a deep subnet starts as its shallow part. Trained from scratch on `shapes`, the largest
    subnet (width 0.5, 32 px, AdamW) reaches 43% test accuracy after 250 steps; with scales at 1, 28% after 300.
    """

    family = "ofa"

    def __init__(self, space=None, *, width_mult: float = 1.0, num_classes: int = 10, in_channels: int = 3,
                 rngs: nnx.Rngs):
        if space is not None and getattr(space, "name", None) != "ofa_mbv3":
            raise UserInputError(f"OFAMobileNetV3: space must be 'ofa_mbv3', got {getattr(space, 'name', space)!r}")
        if not width_mult > 0 or num_classes < 1 or in_channels < 1:
            raise UserInputError(f"OFAMobileNetV3: width_mult > 0, num_classes >= 1, in_channels >= 1 required, "
                                 f"got {width_mult}, {num_classes}, {in_channels}")
        self.space_config = space.config() if space is not None else {"name": "ofa_mbv3"}
        self.width_mult, self.num_classes, self.in_channels = float(width_mult), int(num_classes), int(in_channels)
        first = make_divisible(FIRST_CHANNELS * width_mult, 8)
        self.first_channels = first
        self.first_conv_kernel = nnx.Param(he_fout(rngs, (3, 3, in_channels, first), 9 * first))
        self.first_conv_bn = ElasticBatchNorm(first)
        self.first_block_depthwise = nnx.Param(he_fout(rngs, (3, 3, first), 9 * first))
        self.first_block_depthwise_bn = ElasticBatchNorm(first)
        self.first_block_project = nnx.Param(he_fout(rngs, (first, first), first))
        self.first_block_project_bn = ElasticBatchNorm(first, zero_scale=True)
        self.layout = stage_layout(width_mult, getattr(space, "stage_strides", DEFAULT_STAGE_STRIDES))
        self.blocks = nnx.List([
            ElasticMBConv(b["in_channels"], b["out_channels"], b["stride"], b["act"], b["se"], rngs=rngs)
            for b in self.layout])
        last = self.layout[-1]["out_channels"]
        self.final_expand_channels = make_divisible(FINAL_EXPAND * width_mult, 8)
        self.feature_dim = make_divisible(FEATURE_DIM * width_mult, 8)
        self.final_expand_kernel = nnx.Param(he_fout(rngs, (last, self.final_expand_channels),
                                                     self.final_expand_channels))
        self.final_expand_bn = ElasticBatchNorm(self.final_expand_channels)
        self.feature_mix_kernel = nnx.Param(he_fout(rngs, (self.final_expand_channels, self.feature_dim),
                                                    self.feature_dim))
        bound = 1.0 / jnp.sqrt(self.feature_dim)
        self.classifier_kernel = nnx.Param(jax.random.uniform(rngs.params(), (self.feature_dim, num_classes),
                                                              jnp.float32, -bound, bound))
        self.classifier_bias = nnx.Param(jnp.zeros((num_classes,), jnp.float32))

    def config(self) -> dict:
        """JSON-able constructor arguments; `OFAMobileNetV3.from_config(cfg, rngs=...)` rebuilds the model."""
        return {"space": self.space_config, "width_mult": self.width_mult, "num_classes": self.num_classes,
                "in_channels": self.in_channels}

    @classmethod
    def from_config(cls, config: dict, *, rngs: nnx.Rngs) -> "OFAMobileNetV3":
        from search_spaces import get_space

        config = dict(config)
        space_config = dict(config.pop("space", {"name": "ofa_mbv3"}))
        space = get_space(space_config.pop("name"), **space_config)
        return cls(space, **config, rngs=rngs)

    def fixed_batch_norms(self) -> list[ElasticBatchNorm]:
        return [self.first_conv_bn, self.first_block_depthwise_bn, self.first_block_project_bn,
                self.final_expand_bn]

    def batch_norms(self) -> list[ElasticBatchNorm]:
        """Every BN in the order `forward` returns their statistics."""
        return self.fixed_batch_norms() + [bn for block in self.blocks for bn in block.batch_norms()]

    def _full(self, bn: ElasticBatchNorm, x, mode):
        return ElasticBatchNorm.normalize(bn.arrays(), x, bn.channels, mode)

    def forward(self, x, arch, mode: str):
        """(logits, statistics): BN batch statistics in `batch_norms()` order (None in eval mode)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        arch = jnp.asarray(arch, jnp.int32)
        stats = []
        h = patch_conv(x, self.first_conv_kernel[...], 2)
        h, s = self._full(self.first_conv_bn, h, mode)
        stats.append(s)
        h = hswish(h)
        y, s = self._full(self.first_block_depthwise_bn, depthwise_conv(h, self.first_block_depthwise[...], 1), mode)
        stats.append(s)
        y, s = self._full(self.first_block_project_bn, pointwise(relu(y), self.first_block_project[...]), mode)
        stats.append(s)
        h = h + y
        block_stats = []
        depth = jnp.asarray(DEPTH_CHOICES, jnp.int32)[arch[DEPTH]]
        for stage in range(NUM_STAGES):
            h, stage_stats = self._stage(stage, h, arch, depth[stage], mode)
            block_stats.extend(stage_stats)
        h, s = self._full(self.final_expand_bn, pointwise(h, self.final_expand_kernel[...]), mode)
        stats.append(s)
        pooled = jnp.mean(hswish(h), axis=(1, 2))
        features = hswish(jnp.dot(pooled, self.feature_mix_kernel[...]))
        logits = jnp.dot(features, self.classifier_kernel[...]) + self.classifier_bias[...]
        return logits, (None if mode == "eval" else stats + block_stats)

    def _stage(self, stage: int, h, arch, depth, mode: str):
        """The stage's blocks in turn, those beyond `depth` skipped (block 0 always runs). Its blocks after the first
        share one spec, hence one trace and one set of compiled kernels (`ElasticMBConv.apply`). Returns (h, BN
        statistics, 3 per block, or Nones in eval mode)."""
        first = stage * MAX_DEPTH
        stats = []
        for i, block in enumerate(self.blocks[first : first + MAX_DEPTH]):
            active = None if i == 0 else i < depth
            h, block_stats = block.apply(block.arrays(), h, arch[EXPAND.start + first + i],
                                         arch[KERNEL.start + first + i], active, mode)
            stats.extend([None] * 3 if block_stats is None else block_stats)
        return h, stats

    def __call__(self, x, arch, train: bool = False):
        logits, stats = self.forward(x, arch, "train" if train else "eval")
        if train:
            for bn, stat in zip(self.batch_norms(), stats):
                bn.update(stat)
        return logits

    def set_batch_statistics(self, arch, stats) -> None:
        """Running statistics of the BNs `arch` uses <- `stats` (`forward`'s, averaged: BN calibration)."""
        for bn, (mean, var, count) in zip(self.batch_norms(), stats):
            bn.set_statistics(mean, var, count)

    def sort_channels(self, expand_stage: int = 0):
        """Importance re-sorting of every block's expanded channels (start of an elastic-expand phase)."""
        for block in self.blocks:
            block.sort_channels(expand_stage)



ELASTIC = (("depth", DEPTH, DEPTH_CHOICES), ("kernel", KERNEL, KERNEL_CHOICES), ("expand", EXPAND, EXPAND_CHOICES))


def allowed_choices(space, phase_config) -> np.ndarray:
    """(D, C) bool mask of the choices a training phase allows: every resolution; the elastic dimensions it lists
    (kernel, depth, expand), the others at their largest value."""
    if phase_config.split:
        raise UserInputError("split applies to the spos family only")
    mask = np.zeros((space.num_decisions, int(space.sizes.max())), dtype=bool)
    mask[RESOLUTION, :len(space.resolutions)] = True
    for key, columns, choices in ELASTIC:
        given = getattr(phase_config, key)
        if given is not None and (not given or not set(given) <= set(choices)):
            raise UserInputError(f"{key} = {given} is not allowed; allowed: a non-empty subset of {list(choices)}")
        values = set(given) if given is not None else {max(choices)}
        mask[columns, :len(choices)] = np.isin(choices, sorted(values))
    return mask


def _elastic_expand(phase) -> bool:
    return bool(phase.allowed[EXPAND].sum(axis=1).max() > 1)


def sorts_channels(phase, phases) -> bool:
    """True for the first phase with an elastic expand ratio: OFA re-sorts channels by importance before it."""
    return _elastic_expand(phase) and not any(_elastic_expand(p) for p in phases[:phase.index])


def begin_phase(model: OFAMobileNetV3, phase, phases) -> None:
    if sorts_channels(phase, phases):
        model.sort_channels()


def width_mult(config) -> float:
    return 1.0 if config.supernet.width_mult is None else config.supernet.width_mult


def build(config, space, num_classes: int, in_channels: int) -> OFAMobileNetV3:
    return OFAMobileNetV3(space, width_mult=width_mult(config), num_classes=num_classes,
                          in_channels=in_channels, rngs=nnx.Rngs(config.seed))


def _check(config, source: str) -> None:
    for key in ("channels", "cells", "split_decision"):
        if getattr(config.supernet, key) is not None:
            raise UserInputError(f"{source}: supernet.{key} applies to the spos family, not ofa")


FAMILY = SupernetFamily(
    name="ofa", space="ofa_mbv3", model=OFAMobileNetV3, static_network=StaticMobileNetV3, build=build,
    allowed_choices=allowed_choices, begin_phase=begin_phase,
    probes=lambda space, phase: {"largest": phase.largest(), "smallest": phase.smallest()},
    input_resolution=lambda space, arch, data_resolution: space.resolutions[int(arch[RESOLUTION])],
    extract=extract,
    layer_options=lambda config, num_classes: {"width_mult": width_mult(config),
                                               "num_classes": num_classes},
    check=_check, resolution_column=RESOLUTION)
