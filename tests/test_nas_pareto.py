"""Tests for nas.pareto against brute force on random points with ties and duplicates."""

import itertools

import numpy as np
import pytest

from nas.pareto import (crowding_distance, hypervolume, hypervolume_improvement, non_dominated_sort,
                        pareto_mask)
from search_spaces.errors import UserInputError


def _brute_mask(p):
    n = len(p)
    return np.array([not any((p[j] <= p[i]).all() and (p[j] < p[i]).any() for j in range(n)) for i in range(n)])


def _brute_hypervolume(p, ref):
    """Sums the grid cells (from all coordinates) that some point dominates."""
    p = p[(p < ref).all(1)]
    if len(p) == 0:
        return 0.0
    axes = [np.unique(np.append(p[:, m], ref[m])) for m in range(p.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = np.array([axes[m][i] for m, i in enumerate(cell)])
        if (p <= low).all(1).any():
            total += np.prod([axes[m][i + 1] - axes[m][i] for m, i in enumerate(cell)])
    return total


def _points(rng, n, m):
    """Small integer coordinates, so ties and exact duplicates are common."""
    p = rng.integers(0, 6, size=(n, m)).astype(float)
    p[: n // 4] = p[n // 4: 2 * (n // 4)]
    return p


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force_with_ties_and_duplicates(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        p = _points(rng, int(rng.integers(1, 30)), m)
        np.testing.assert_array_equal(pareto_mask(p), _brute_mask(p))


def test_non_dominated_sort_peels_fronts():
    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        p = _points(rng, 40, m)
        ranks = non_dominated_sort(p)
        remaining = np.arange(len(p))
        front = 0
        while remaining.size:
            mask = _brute_mask(p[remaining])
            assert (ranks[remaining[mask]] == front).all()
            remaining = remaining[~mask]
            front += 1
        assert ranks.max() == front - 1


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_hypervolume_matches_brute_force(m):
    rng = np.random.default_rng(10 + m)
    for _ in range(15):
        p = _points(rng, int(rng.integers(1, 20)), m)
        ref = np.full(m, 5.0) - rng.integers(0, 2, size=m)
        assert hypervolume(p, ref) == pytest.approx(_brute_hypervolume(p, ref))


def test_hypervolume_of_continuous_points_in_3d():
    rng = np.random.default_rng(3)
    p = rng.random((25, 3))
    assert hypervolume(p, [1.0, 1.0, 1.0]) == pytest.approx(_brute_hypervolume(p, np.ones(3)))


def test_hypervolume_ignores_points_not_dominating_the_reference():
    assert hypervolume([[1.0, 3.0], [2.0, 2.0]], [2.0, 3.0]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_hypervolume_improvement_matches_difference_of_volumes(m):
    rng = np.random.default_rng(20 + m)
    ref = np.full(m, 5.0)
    for _ in range(5):
        p = _points(rng, int(rng.integers(0, 12)), m)
        c = _points(rng, 15, m)
        gain = hypervolume_improvement(c, p, ref)
        base = hypervolume(p, ref) if len(p) else 0.0
        expected = [hypervolume(np.vstack([p, ci[None]]), ref) - base for ci in c]
        np.testing.assert_allclose(gain, expected, atol=1e-9)


def test_crowding_distance_extremes_are_infinite_and_interior_normalised():
    p = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(p)
    assert np.isinf(d[[0, 3]]).all()
    np.testing.assert_allclose(d[1:3], [3 / 4 + 3 / 4, 3 / 4 + 3 / 4])


def test_crowding_distance_is_per_front():
    p = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    d = crowding_distance(p, non_dominated_sort(p))
    assert np.isfinite(d[[1, 4]]).all() and np.isinf(d[[0, 2, 3, 5]]).all()


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserInputError, match="reference point"):
        hypervolume([[0.0, 0.0]], [1.0])
    with pytest.raises(UserInputError, match="shape"):
        pareto_mask(np.zeros((2, 2, 2)))
