"""Pareto tools for any number of objectives: dominance masks, non-dominated sorting, crowding distance, exact
hypervolume (moocore) and its improvement by new points. Minimisation convention throughout: the caller negates
maximised objectives."""

from __future__ import annotations

import moocore
import numpy as np

from search_spaces.errors import UserInputError


def _as_points(points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise UserInputError(f"pareto: points must have shape (N, M), got {np.shape(points)}")
    return p


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
    return np.asarray(moocore.is_nondominated(p, keep_weakly=True), dtype=bool)


def non_dominated_sort(points) -> np.ndarray:
    """(N,) int front index of each point: 0 for the non-dominated, 1 for those only the first front dominates..."""
    p = _as_points(points)
    if len(p) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(moocore.pareto_rank(p), dtype=np.int64)


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
    return r


def hypervolume(points, ref) -> float:
    """Exact hypervolume dominated by the points and bounded by `ref` (moocore, any number of objectives); points
    that do not strictly dominate the reference contribute nothing."""
    p = _as_points(points)
    r = _check_ref(p, ref)
    p = p[(p < r).all(1)]
    if len(p) == 0:
        return 0.0
    return float(moocore.hypervolume(p, ref=r))


def _improvement_2d(c: np.ndarray, p: np.ndarray, r: np.ndarray) -> np.ndarray:
    order = np.argsort(p[:, 0], kind="stable")
    box = np.prod(np.maximum(r[None, :] - c, 0.0), axis=1)
    return box - _clipped_area_2d(p[order, 0], p[order, 1], c, r)


def _improvement_any(c: np.ndarray, p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Each candidate's box minus the part of it the points already dominate (the points clipped to the box)."""
    gain = np.prod(np.maximum(r[None, :] - c, 0.0), axis=1)
    if len(p) == 0:
        return gain
    for i in np.flatnonzero(gain > 0):
        gain[i] -= hypervolume(np.maximum(p, c[i]), r)
    return gain


def hypervolume_improvement(candidates, points, ref) -> np.ndarray:
    """(C,) exact hypervolume each candidate alone would add to `points`, any number of objectives (vectorized
    over candidates for 1 and 2)."""
    c = _as_points(candidates)
    p = _as_points(points) if len(points) else np.zeros((0, c.shape[1]))
    r = _check_ref(c, ref)
    p = p[(p < r).all(1)]
    if c.shape[1] == 1:
        best = p[:, 0].min() if len(p) else r[0]
        return np.maximum(np.minimum(best, r[0]) - c[:, 0], 0.0)
    if c.shape[1] == 2:
        return np.maximum(_improvement_2d(c, p, r), 0.0)
    return np.maximum(_improvement_any(c, p, r), 0.0)
