"""Tests for the ensemble predictor: fits, uncertainty, padding without retracing, pre-training, errors."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from nas.accuracy_predictor import TRACES, EnsemblePredictor, NormalScores, padded_size
from search_spaces.errors import UserInputError

SMALL = dict(members=3, hidden=(16,), steps=200, learning_rate=1e-2)


def _data(n, width=12, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, width)) < 0.5).astype(np.float32)
    w = rng.normal(size=width)
    return x, np.stack([x @ w, np.exp(0.3 * x @ np.abs(w))], axis=1)


def test_growing_data_retraces_only_at_power_of_two_boundaries():
    x, y = _data(70)
    before = TRACES["train"]
    for n in (5, 17, 32):
        EnsemblePredictor(12, 2, **SMALL).fit(x[:n], y[:n])
    assert TRACES["train"] - before == 1
    EnsemblePredictor(12, 2, **SMALL).fit(x[:33], y[:33])
    EnsemblePredictor(12, 2, **SMALL).fit(x[:64], y[:64])
    assert TRACES["train"] - before == 2
    assert padded_size(33) == padded_size(64) == 64


def test_fits_held_out_data_and_reports_member_spread():
    x, y = _data(164)
    model = EnsemblePredictor(12, 2, **SMALL).fit(x[:64], y[:64])
    mean, std = model.predict(x[64:])
    assert mean.shape == std.shape == (100, 2)
    for k in range(2):
        assert kendalltau(mean[:, k], y[64:, k])[0] > 0.7
    assert (std > 0).all()
    np.testing.assert_allclose(model.predict_members(x[64:]).mean(0), mean, rtol=1e-5, atol=1e-5)


def test_missing_targets_are_masked_not_learned():
    x, y = _data(64)
    y[::2, 1] = np.nan
    mean, _ = EnsemblePredictor(12, 2, **SMALL).fit(x, y).predict(x)
    assert np.isfinite(mean).all()
    assert kendalltau(mean[1::2, 1], y[1::2, 1])[0] > 0.5


def test_pretraining_on_a_correlated_proxy_helps_with_few_labels():
    x, y = _data(300, seed=3)
    proxy = y[:, 1] * np.exp(0.1 * np.random.default_rng(0).normal(size=300))
    taus = []
    for pretrain in (False, True):
        model = EnsemblePredictor(12, 2, **SMALL)
        if pretrain:
            model.pretrain(x[236:], np.log(proxy[236:]))
        model.fit(x[:6], y[:6])
        taus.append(kendalltau(model.predict(x[6:])[0][:, 1], y[6:, 1])[0])
    assert taus[1] > taus[0] + 0.1


def test_same_seed_same_model():
    x, y = _data(40)
    a = EnsemblePredictor(12, 2, **SMALL, seed=4).fit(x, y).predict(x)[0]
    b = EnsemblePredictor(12, 2, **SMALL, seed=4).fit(x, y).predict(x)[0]
    np.testing.assert_array_equal(a, b)


def test_bad_shapes_and_order_are_user_errors():
    x, y = _data(10)
    model = EnsemblePredictor(12, 2, **SMALL)
    with pytest.raises(UserInputError, match="fit"):
        model.predict(x)
    with pytest.raises(UserInputError, match=r"\(N, 12\)"):
        model.fit(x[:, :5], y)
    with pytest.raises(UserInputError, match="finite"):
        model.fit(x, np.full((10, 2), np.nan))


def test_normal_scores_round_trip_and_extrapolate_beyond_the_observed_range():
    values = np.array([3.0, 1.0, 2.0, 2.0, 10.0, 4.0])
    copula = NormalScores(values)
    np.testing.assert_allclose(copula.inverse(copula.scores_of_values), values)
    scores = np.linspace(-5, 5, 101)
    back = copula.inverse(scores)
    assert (np.diff(back) >= 0).all()
    assert back[-1] > 10.0 and back[0] < 1.0


def test_copula_targets_rank_the_rest_well_despite_diverged_outliers():
    x, y = _data(400, seed=5)
    accuracy = y[:, :1].copy()
    diverged = np.random.default_rng(1).random(400) < 0.15
    accuracy[diverged] = accuracy.min() - 50.0
    train, test = slice(0, 80), slice(80, None)
    taus = {}
    for targets in ("standardize", "copula"):
        model = EnsemblePredictor(12, 1, **SMALL, targets=targets).fit(x[train], accuracy[train])
        mean = model.predict(x[test])[0][:, 0]
        fine = ~diverged[test]
        taus[targets] = kendalltau(mean[fine], accuracy[test][fine, 0])[0]
    assert taus["copula"] > taus["standardize"] + 0.2
    with pytest.raises(UserInputError, match="copula"):
        EnsemblePredictor(12, 1, targets="ranks")
