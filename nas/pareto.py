"""Pareto tools: dominance masks, non-dominated sorting, crowding distance, exact 1/2/3-D hypervolume and its
improvement by new points. Minimisation convention throughout: the caller negates maximised objectives."""

from __future__ import annotations

import numpy as np

from search_spaces.errors import UserInputError

_BLOCK = 1024


def _as_points(points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise UserInputError(f"pareto: points must have shape (N, M), got {np.shape(points)}")
    return p


def _dominates_block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bool: a[i] dominates b[j] (no worse in every objective, better in one)."""
    le = (a[:, None, :] <= b[None, :, :]).all(-1)
    lt = (a[:, None, :] < b[None, :, :]).any(-1)
    return le & lt


def _pareto_mask_2d(p: np.ndarray) -> np.ndarray:
    order = np.lexsort((p[:, 1], p[:, 0]))
    x, y = p[order, 0], p[order, 1]
    group_start = np.searchsorted(x, x, side="left")
    prefix_min = np.minimum.accumulate(y)
    before = np.where(group_start > 0, prefix_min[np.maximum(group_start - 1, 0)], np.inf)
    dominated = (before <= y) | (y > y[group_start])
    mask = np.empty(len(p), dtype=bool)
    mask[order] = ~dominated
    return mask


def pareto_mask(points) -> np.ndarray:
    """(N,) bool: True where no other point dominates the point; duplicates of a non-dominated point all count."""
    p = _as_points(points)
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    if p.shape[1] == 1:
        return p[:, 0] == p[:, 0].min()
    if p.shape[1] == 2:
        return _pareto_mask_2d(p)
    dominated = np.zeros(len(p), dtype=bool)
    for start in range(0, len(p), _BLOCK):
        dominated |= _dominates_block(p[start:start + _BLOCK], p).any(0)
    return ~dominated


def non_dominated_sort(points) -> np.ndarray:
    """(N,) int front index of each point: 0 for the non-dominated, 1 for those only the first front dominates..."""
    p = _as_points(points)
    ranks = np.full(len(p), -1, dtype=np.int64)
    remaining = np.arange(len(p))
    front = 0
    while remaining.size:
        mask = pareto_mask(p[remaining])
        ranks[remaining[mask]] = front
        remaining = remaining[~mask]
        front += 1
    return ranks


def crowding_distance(points, ranks=None) -> np.ndarray:
    """(N,) NSGA-II crowding distance within each front (all points one front when `ranks` is None); the extreme
    points of every objective get infinity."""
    p = _as_points(points)
    ranks = np.zeros(len(p), dtype=np.int64) if ranks is None else np.asarray(ranks)
    distance = np.zeros(len(p))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        if members.size <= 2:
            distance[members] = np.inf
            continue
        for m in range(p.shape[1]):
            order = members[np.argsort(p[members, m], kind="stable")]
            values = p[order, m]
            span = values[-1] - values[0]
            distance[order[0]] = distance[order[-1]] = np.inf
            if span > 0:
                distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def _clipped_area_2d(x: np.ndarray, y: np.ndarray, lower: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Area of the region dominated by the points (x sorted ascending, y their values) inside the boxes
    [lower_c, ref] for every row c of `lower` (C, 2); returns (C,)."""
    if x.size == 0:
        return np.zeros(len(lower))
    running_min_y = np.minimum.accumulate(y)
    xs = np.minimum(np.maximum(x[None, :], lower[:, :1]), ref[0])
    right = np.concatenate([xs[:, 1:], np.full((len(lower), 1), ref[0])], axis=1)
    height = np.maximum(ref[1] - np.maximum(running_min_y[None, :], lower[:, 1:2]), 0.0)
    return ((right - xs) * height).sum(1)


def _check_ref(p: np.ndarray, ref) -> np.ndarray:
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if r.size != p.shape[1]:
        raise UserInputError(f"pareto: reference point has {r.size} values, the points have {p.shape[1]} objectives")
    if p.shape[1] > 3:
        raise UserInputError(f"pareto: exact hypervolume is implemented for 1 to 3 objectives, got {p.shape[1]}")
    return r


def _hypervolume_3d(p: np.ndarray, ref: np.ndarray) -> float:
    """Slabs between consecutive z values; each slab's area is the 2-D hypervolume of the points below it."""
    by_x = np.argsort(p[:, 0], kind="stable")
    z_rank = np.empty(len(p), dtype=np.int64)
    z_rank[np.argsort(p[:, 2], kind="stable")] = np.arange(len(p))
    z_sorted = np.sort(p[:, 2])
    thickness = np.diff(np.append(z_sorted, ref[2]))
    total = 0.0
    for start in range(0, len(p), _BLOCK):
        levels = np.arange(start, min(start + _BLOCK, len(p)))
        present = z_rank[by_x][None, :] <= levels[:, None]
        y = np.where(present, p[by_x, 1][None, :], np.inf)
        running = np.minimum.accumulate(y, axis=1)
        xs = np.minimum(p[by_x, 0], ref[0])
        width = np.diff(np.append(xs, ref[0]))
        area = (width[None, :] * np.maximum(ref[1] - running, 0.0)).sum(1)
        total += float((area * thickness[levels]).sum())
    return total


def hypervolume(points, ref) -> float:
    """Exact hypervolume (1 to 3 objectives) dominated by the points and bounded by `ref`; points that do not
    strictly dominate the reference contribute nothing."""
    p = _as_points(points)
    r = _check_ref(p, ref)
    p = p[(p < r).all(1)]
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(r[0] - p[:, 0].min())
    if p.shape[1] == 2:
        order = np.argsort(p[:, 0], kind="stable")
        return float(_clipped_area_2d(p[order, 0], p[order, 1], np.full((1, 2), -np.inf), r)[0])
    return _hypervolume_3d(p, r)


def _improvement_2d(c: np.ndarray, p: np.ndarray, r: np.ndarray) -> np.ndarray:
    order = np.argsort(p[:, 0], kind="stable")
    box = np.prod(np.maximum(r[None, :] - c, 0.0), axis=1)
    return box - _clipped_area_2d(p[order, 0], p[order, 1], c, r)


def _improvement_3d(c: np.ndarray, p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Integrates the 2-D improvement over z: slab k holds the k points of lowest z."""
    p = p[np.argsort(p[:, 2], kind="stable")]
    levels = np.concatenate([[-np.inf], p[:, 2], [r[2]]])
    gain = np.zeros(len(c))
    for k in range(len(p) + 1):
        low = np.maximum(levels[k], c[:, 2])
        thickness = np.maximum(np.minimum(levels[k + 1], r[2]) - low, 0.0)
        active = thickness > 0
        if active.any():
            gain[active] += thickness[active] * _improvement_2d(c[active, :2], p[:k, :2], r[:2])
    return gain


def hypervolume_improvement(candidates, points, ref) -> np.ndarray:
    """(C,) exact hypervolume each candidate alone would add to `points` (1 to 3 objectives), vectorized over
    candidates."""
    c = _as_points(candidates)
    p = _as_points(points) if len(points) else np.zeros((0, c.shape[1]))
    r = _check_ref(c, ref)
    p = p[(p < r).all(1)]
    if c.shape[1] == 1:
        best = p[:, 0].min() if len(p) else r[0]
        return np.maximum(np.minimum(best, r[0]) - c[:, 0], 0.0)
    if c.shape[1] == 2:
        return np.maximum(_improvement_2d(c, p, r), 0.0)
    return np.maximum(_improvement_3d(c, p, r), 0.0)
