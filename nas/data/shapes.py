"""The embedded `shapes` data set: 1-3 coloured shapes over a textured, noisy background, generated from a seed.

Each image has one primary shape (radius 0.26-0.38 of the image side, times a per-kind factor that equalises the
areas of the kinds, kept mostly inside the image) and 0-2 small distractor shapes (radius 0.09-0.16), each of a
random kind (circle, square, triangle, star, cross), colour family (warm: red..yellow, cool: green..violet),
position, depth order and a tilt of at most MAX_ROTATION radians, over a low-saturation background of two blended
sinusoidal textures plus Gaussian pixel noise (std 0.01-0.04).

Label: the kind of the shape with the most visible pixels combined with its colour family (warm or cool), 10
classes. The primary shape has at least 2.6x a distractor's area, so it is the labelled shape unless distractors
drawn on top hide most of it. Masks hold 1 + that class per shape pixel (0 = background); depth holds each
visible shape's z (nearer shapes are drawn on top) and BACKGROUND_DEPTH elsewhere."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import hsv_to_rgb

from search_spaces.errors import UserInputError

from nas.data.dataset import BACKGROUND_DEPTH, RawSplits, Split, register_dataset

KINDS = ("circle", "square", "triangle", "star", "cross")
FAMILIES = ("warm", "cool")
CLASS_NAMES = tuple(f"{family} {kind}" for kind in KINDS for family in FAMILIES)
NUM_CLASSES = len(CLASS_NAMES)
MAX_SHAPES = 3
MIN_RESOLUTION = 8
DEFAULT_COUNTS = {"train": 5000, "val": 1000, "test": 1000}
_HUES = {0: (-0.07, 0.14), 1: (0.36, 0.72)}  # warm: red..yellow, cool: green..violet
# generator parameters: radii in fractions of the image side (before the per-kind area factor), centres of
# primary shapes at least PRIMARY_MARGIN radii from the border, tilt in radians, noise std ranges per image
PRIMARY_RADIUS = (0.26, 0.38)
DISTRACTOR_RADIUS = (0.09, 0.16)
PRIMARY_MARGIN = 0.9
NOISE = (0.01, 0.04)
MAX_ROTATION = 0.25
BACKGROUND_SATURATION = 0.35
TEXTURE_CONTRAST = 0.25
_PIXELS_PER_CHUNK = 1 << 18
_STAR_INNER = 0.45
# radius factor per kind so that every kind covers about the same area (2.0 in squared radius units)
_AREA_SCALE = np.sqrt(2.0 / np.array([np.pi, 1.6**2, 3 * np.sqrt(3) / 4, 5 * _STAR_INNER * np.sin(np.pi / 5), 1.92]))


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points (u, v), in units of the shape's radius, for a shape of `kind` centred at the origin."""
    if kind == 0:
        return u * u + v * v <= 1.0
    if kind == 1:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == 2:
        angles = np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
        return np.all(u[..., None] * np.cos(angles) + v[..., None] * np.sin(angles) <= 0.5, axis=-1)
    if kind == 3:
        sector = 2 * np.pi / 5
        angle = np.abs(np.mod(np.arctan2(v, u), sector) - sector / 2)  # angle from the nearest inner vertex
        radius = np.hypot(u, v)
        inner = np.array([_STAR_INNER, 0.0])
        outer = np.array([np.cos(sector / 2), np.sin(sector / 2)])
        edge = outer - inner
        px, py = radius * np.cos(angle) - inner[0], radius * np.sin(angle) - inner[1]
        return edge[0] * py - edge[1] * px >= 0.0
    return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))


def _draw_parameters(rng: np.random.Generator, n: int, resolution: int) -> dict[str, np.ndarray]:
    """Per image and shape slot (n, MAX_SHAPES) parameters, slots sorted far to near."""
    count = rng.integers(1, MAX_SHAPES + 1, size=n)
    shape = (n, MAX_SHAPES)
    kind = rng.integers(0, len(KINDS), size=shape)
    family = rng.integers(0, len(FAMILIES), size=shape)
    low = np.where(family == 0, _HUES[0][0], _HUES[1][0])
    high = np.where(family == 0, _HUES[0][1], _HUES[1][1])
    hsv = np.stack([np.mod(rng.uniform(low, high), 1.0), rng.uniform(0.55, 1.0, shape), rng.uniform(0.55, 1.0, shape)],
                   axis=-1)
    primary = np.arange(MAX_SHAPES)[None, :] == 0
    low, high = (np.where(primary, PRIMARY_RADIUS[i], DISTRACTOR_RADIUS[i]) for i in (0, 1))
    radius = np.maximum(rng.uniform(low, high, shape) * _AREA_SCALE[kind] * resolution, 2.0)
    margin = np.where(primary, PRIMARY_MARGIN, 0.6)[..., None] * radius[..., None]
    centre = rng.uniform(0.0, 1.0, shape + (2,)) * (resolution - 2 * margin) + margin
    z = rng.uniform(0.1, 0.9, shape)
    order = np.argsort(-z, axis=1)
    params = {"kind": kind, "family": family, "colour": hsv_to_rgb(hsv), "radius": radius, "angle":
              rng.uniform(-MAX_ROTATION, MAX_ROTATION, shape), "cx": centre[..., 0], "cy": centre[..., 1], "z": z,
              "label": len(FAMILIES) * kind + family, "active": np.arange(MAX_SHAPES)[None, :] < count[:, None]}
    return {key: np.take_along_axis(value, order.reshape(order.shape + (1,) * (value.ndim - 2)), axis=1)
            for key, value in params.items()}


def _background(rng: np.random.Generator, n: int, resolution: int) -> np.ndarray:
    """(n, H, W, 3) float32 two-colour blends along two random sinusoidal waves, low saturation."""
    hue, saturation = rng.random((n, 2)), rng.uniform(0.0, BACKGROUND_SATURATION, (n, 2))
    hsv = np.stack([hue, saturation, rng.uniform(0.2, 0.9, (n, 2))], axis=-1)
    colours = hsv_to_rgb(hsv).astype(np.float32)
    grid = ((np.arange(resolution) + 0.5) / resolution).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    freq = rng.uniform(1.0, 6.0, (n, 2, 1)) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    along_x = (freq * np.cos(theta) * grid + phase).astype(np.float32)  # (n, 2, W)
    along_y = (freq * np.sin(theta) * grid).astype(np.float32)  # (n, 2, H)
    # sin(a + b) = sin a cos b + cos a sin b: trigonometry on rows and columns only, not on every pixel
    waves = np.einsum("nkx,nky->nyx", np.sin(along_x), np.cos(along_y)) + np.einsum(
        "nkx,nky->nyx", np.cos(along_x), np.sin(along_y))
    blend = (0.5 + TEXTURE_CONTRAST * waves)[..., None]
    return colours[:, None, None, 0] + (colours[:, None, None, 1] - colours[:, None, None, 0]) * blend


def _render(rng: np.random.Generator, params: dict[str, np.ndarray], resolution: int) -> tuple[np.ndarray, ...]:
    """Images, masks, depth and the visible pixel count per slot for one chunk of images."""
    n = len(params["kind"])
    images = _background(rng, n, resolution)
    masks = np.zeros((n, resolution, resolution), dtype=np.int32)
    depth = np.full((n, resolution, resolution), BACKGROUND_DEPTH, dtype=np.float32)
    slot_map = np.full((n, resolution, resolution), -1, dtype=np.int8)
    pixels = np.arange(resolution, dtype=np.float32) + 0.5
    for slot in range(MAX_SHAPES):
        p = {key: value[:, slot] for key, value in params.items()}
        dx = pixels[None, None, :] - p["cx"][:, None, None].astype(np.float32)
        dy = pixels[None, :, None] - p["cy"][:, None, None].astype(np.float32)
        cos, sin, radius = (a[:, None, None].astype(np.float32)
                            for a in (np.cos(p["angle"]), np.sin(p["angle"]), p["radius"]))
        u, v = (cos * dx + sin * dy) / radius, (cos * dy - sin * dx) / radius
        inside = np.zeros((n, resolution, resolution), dtype=bool)
        for kind in range(len(KINDS)):
            chosen = p["active"] & (p["kind"] == kind)
            inside[chosen] = _inside(kind, u[chosen], v[chosen])
        image_of, rows, cols = np.nonzero(inside)
        shade = np.clip(1.0 + 0.15 * v[image_of, rows, cols], 0.7, 1.2)[:, None]
        images[image_of, rows, cols] = p["colour"][image_of] * shade
        masks[image_of, rows, cols] = 1 + p["label"][image_of]
        depth[image_of, rows, cols] = p["z"][image_of]
        slot_map[image_of, rows, cols] = slot
    images += rng.uniform(*NOISE, (n, 1, 1, 1)).astype(np.float32) * rng.standard_normal(images.shape,
                                                                                                dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    visible = np.stack([np.count_nonzero(slot_map == slot, axis=(1, 2)) for slot in range(MAX_SHAPES)], axis=1)
    return images, masks, depth, visible


def generate_shapes(n: int, resolution: int = 32, seed: int = 0) -> Split:
    """`n` shapes images at `resolution` x `resolution`, a pure function of (n, resolution, seed)."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise UserInputError(f"shapes resolution {resolution!r} is invalid: expected an int >= {MIN_RESOLUTION}")
    rng = np.random.default_rng(seed)
    params = _draw_parameters(rng, n, resolution)
    chunk = max(1, _PIXELS_PER_CHUNK // (resolution * resolution))
    parts = [_render(rng, {key: value[start:start + chunk] for key, value in params.items()}, resolution)
             for start in range(0, max(n, 1), chunk)]
    images, masks, depth, visible = (np.concatenate([part[i] for part in parts]) for i in range(4))
    labels = np.take_along_axis(params["label"], np.argmax(visible, axis=1)[:, None], axis=1)[:, 0]
    return Split(images, labels.astype(np.int32), masks, depth)


@register_dataset("shapes")
def load_shapes(*, root, resolution, counts, seed) -> RawSplits:
    """Three independently seeded splits, so the test set does not change with `num_train`."""
    resolution = 32 if resolution is None else resolution
    if not np.isscalar(resolution):
        height, width = resolution
        if height != width:
            raise UserInputError(f"shapes resolution {tuple(resolution)} is invalid: shapes images are square")
        resolution = height
    splits = {name: generate_shapes(DEFAULT_COUNTS[name] if counts[name] is None else counts[name], resolution,
                                    seed=[seed, index]) for index, name in enumerate(("train", "val", "test"))}
    return RawSplits(num_classes=NUM_CLASSES, class_names=CLASS_NAMES, num_mask_classes=NUM_CLASSES + 1, **splits)
