"""Once-for-all's elastic MobileNetV3 space: per-stage depth, per-block kernel and expand ratio, input resolution."""

from __future__ import annotations

import re

import numpy as np

from search_spaces.decisions import Categorical
from search_spaces.errors import UserInputError
from search_spaces.space import Space

NUM_STAGES = 4 + 1
MAX_DEPTH = 4
DEPTH_CHOICES = (2, 3, 4)
KERNEL_CHOICES = (3, 5, 7)
EXPAND_CHOICES = (3, 4, 6)
RESOLUTION = 0
DEPTH = slice(1, 1 + NUM_STAGES)
KERNEL = slice(DEPTH.stop, DEPTH.stop + NUM_STAGES * MAX_DEPTH)
EXPAND = slice(KERNEL.stop, KERNEL.stop + NUM_STAGES * MAX_DEPTH)
DEFAULT_RESOLUTIONS = (128, 160, 192, 224)

FIRST_CHANNELS = 16
FINAL_EXPAND = 960
FEATURE_DIM = 1280
STAGES = (
    {"out_channels": 24, "stride": 2, "act": "relu", "se": False},
    {"out_channels": 40, "stride": 2, "act": "relu", "se": True},
    {"out_channels": 80, "stride": 2, "act": "hswish", "se": False},
    {"out_channels": 112, "stride": 1, "act": "hswish", "se": True},
    {"out_channels": 160, "stride": 2, "act": "hswish", "se": True},
)
DEFAULT_STAGE_STRIDES = tuple(stage["stride"] for stage in STAGES)

# block b runs iff the stage's depth index is at least this (the first depth choice deeper than b)
_MIN_DEPTH_INDEX = np.array([min(i for i, d in enumerate(DEPTH_CHOICES) if d > b) for b in range(MAX_DEPTH)])
_STRING = re.compile(r"^R(\d+)-D([234]{5})-K([357]{20})-E([346]{20})$")


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of `divisor`, never below 90% of `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class OFAMobileNetV3Space(Space):
    """46 decisions: resolution, 5 stage depths, 20 block kernels, 20 block expand ratios (see module constants).

    `stage_strides` are the strides of the 5 elastic stages' first blocks (OFA: 2, 2, 2, 1, 2, for 128-224 px).
    Small inputs keep more resolution with some set to 1: at 32 px OFA's network sees 8 x 8 after its first elastic
    stage; with (1, 2, 2, 1, 2) it sees 16 x 16. Supernets, extracted networks and latency tables follow them.
    """

    def __init__(self, resolutions=DEFAULT_RESOLUTIONS, stage_strides=DEFAULT_STAGE_STRIDES):
        resolutions = tuple(int(r) for r in resolutions)
        if not resolutions or any(r < 8 for r in resolutions) or len(set(resolutions)) != len(resolutions):
            raise UserInputError(f"ofa_mbv3: resolutions must be distinct integers >= 8, got {list(resolutions)}")
        stage_strides = tuple(stage_strides)
        if len(stage_strides) != NUM_STAGES or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s in (1, 2) for s in stage_strides):
            raise UserInputError(f"ofa_mbv3: stage_strides must be {NUM_STAGES} strides, each 1 or 2, got "
                                 f"{list(stage_strides)}")
        stage_strides = tuple(int(s) for s in stage_strides)
        resolutions = tuple(sorted(resolutions))
        decisions = [Categorical("resolution", resolutions)]
        decisions += [Categorical(f"depth_{s}", DEPTH_CHOICES) for s in range(NUM_STAGES)]
        decisions += [Categorical(f"kernel_{s}_{b}", KERNEL_CHOICES)
                      for s in range(NUM_STAGES) for b in range(MAX_DEPTH)]
        decisions += [Categorical(f"expand_{s}_{b}", EXPAND_CHOICES)
                      for s in range(NUM_STAGES) for b in range(MAX_DEPTH)]
        hparams = {"resolutions": resolutions}
        if stage_strides != DEFAULT_STAGE_STRIDES:  # configs, tables and checkpoints of OFA's strides stay as they were
            hparams["stage_strides"] = stage_strides
        super().__init__("ofa_mbv3", decisions, hparams)
        self.resolutions = resolutions
        self.stage_strides = stage_strides

    def block_active(self, archs) -> np.ndarray:
        """(N, 5, 4) bool: block b of stage s runs iff b < depth_s."""
        archs = self._as_batch(archs)
        return archs[:, DEPTH, None] >= _MIN_DEPTH_INDEX

    def active(self, archs) -> np.ndarray:
        archs = self._as_batch(archs)
        blocks = self.block_active(archs).reshape(archs.shape[0], NUM_STAGES * MAX_DEPTH)
        head = np.ones((archs.shape[0], KERNEL.start), dtype=bool)
        return np.concatenate([head, blocks, blocks], axis=1)

    def canonical(self, archs) -> np.ndarray:
        """Kernel and expand choices of blocks beyond their stage's depth set to index 0."""
        archs = self._as_batch(archs)
        out = archs.astype(self.dtype, copy=True)
        blocks = self.block_active(archs).reshape(archs.shape[0], NUM_STAGES * MAX_DEPTH).astype(self.dtype)
        out[:, KERNEL] *= blocks
        out[:, EXPAND] *= blocks
        return out

    def cardinality(self) -> int:
        per_block = len(KERNEL_CHOICES) * len(EXPAND_CHOICES)
        per_stage = sum(per_block ** d for d in DEPTH_CHOICES)
        return per_stage ** NUM_STAGES * len(self.resolutions)

    def to_string(self, arch) -> str:
        v = self.values(self.validate(arch))[0]
        digits = lambda s: "".join(str(x) for x in v[s])
        return f"R{v[RESOLUTION]}-D{digits(DEPTH)}-K{digits(KERNEL)}-E{digits(EXPAND)}"

    def from_string(self, text: str) -> np.ndarray:
        m = _STRING.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise UserInputError(f"ofa_mbv3: architecture string {text!r} is malformed; expected "
                                 "R<resolution>-D<5 digits of 2,3,4>-K<20 digits of 3,5,7>-E<20 digits of 3,4,6>, "
                                 "e.g. " + self.to_string(self.smallest()))
        res, depth, kernel, expand = m.groups()
        values = [int(res)] + [int(c) for c in depth + kernel + expand]
        try:
            return self.from_dict(dict(zip(self.names, values)))
        except UserInputError as e:
            raise UserInputError(f"architecture string {text!r}: {e}") from None
