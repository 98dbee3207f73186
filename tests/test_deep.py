"""Several hidden layers, trained layer by layer; the deep planted model."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPClassifier, SparseMLPRegressor
from sklearn_sparse_mlp._export import path_importances
from sklearn_sparse_mlp.datasets import make_planted_mlp
from sklearn_sparse_mlp.metrics import psnr_score


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _forward(X, coefs, intercepts):
    A = X
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        A = np.maximum(A @ W + b, 0.0)
    return A @ coefs[-1] + intercepts[-1]


def test_make_planted_mlp_several_layers():
    X, y, W = make_planted_mlp(200, 8, (6, 4), 12, random_state=0, return_coef=True)
    assert [w.shape for w in W] == [(8, 6), (6, 4), (4, 1)]
    assert [int(np.count_nonzero(w)) for w in W[:2]] == [6, 6] and np.all(W[2] == 1)
    np.testing.assert_allclose(y, _forward(X, W, [0, 0, 0]).ravel())
    # Vector output: the budget is split over the output layer too (s / (L + 1)).
    X, Y, W = make_planted_mlp(50, 8, (6, 4), 13, n_outputs=3, random_state=0, return_coef=True)
    assert Y.shape == (50, 3) and [int(np.count_nonzero(w)) for w in W] == [5, 4, 4]
    # One width in a tuple is the one-layer model, draw for draw.
    a = make_planted_mlp(30, 5, (3,), 4, random_state=0)
    b = make_planted_mlp(30, 5, 3, 4, random_state=0)
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="nonzero weights in a"):
        make_planted_mlp(30, 2, (2, 2), 20)


def test_planted_two_layer_recovery():
    X, y = make_planted_mlp(4000, 10, (10, 10), 20, random_state=0)
    reg = SparseMLPRegressor(20, hidden_layer_sizes=(10, 10), alpha=1e-4, random_state=0).fit(X[:3000], y[:3000])
    assert reg.n_nonzero_ <= 20 and reg.stage_budgets_.tolist() == [10, 10]
    assert psnr_score(y[3000:], reg.predict(X[3000:])) > 40


def test_predict_is_the_relu_forward_pass_of_coefs():
    X, y = make_planted_mlp(500, 6, (8, 4), 12, random_state=1)
    reg = SparseMLPRegressor(16, hidden_layer_sizes=(12, 6, 4), random_state=0).fit(X, y)
    assert reg.n_layers_ == 5 and len(reg.coefs_) == 4
    assert [W.shape[0] for W in reg.coefs_[1:]] == [W.shape[1] for W in reg.coefs_[:-1]]
    np.testing.assert_allclose(reg.predict(X), _forward(X, reg.coefs_, reg.intercepts_).ravel(), atol=1e-10)
    np.testing.assert_allclose(reg.to_mlp().predict(X), reg.predict(X), atol=1e-10)
    np.testing.assert_allclose(reg.feature_importances_, path_importances(reg.coefs_))
    nnz = sum(np.count_nonzero(W) for W in reg.coefs_[:-1]) + sum(np.count_nonzero(b) for b in reg.intercepts_[:-1])
    assert reg.n_nonzero_ == nnz <= 16  # one output: the output weights are the signs (not counted)


def test_a_network_cut_by_a_later_stage_counts_what_it_keeps_and_warns():
    # The second stage (one unit on the first one's ReLU feature, 2 weights)
    # ends with no active unit: the first unit is then cut from coefs_ too,
    # and n_nonzero_ counted its 4 weights all the same.
    rng = np.random.RandomState(0)
    X = rng.randn(100, 4)
    y = X[:, 0] + np.maximum(X[:, 1], 0)
    with pytest.warns(UserWarning, match="predicts a constant"):
        reg = SparseMLPRegressor(1.0, hidden_layer_sizes=(1, 1), random_state=0).fit(X, y)
    nnz = sum(np.count_nonzero(W) for W in reg.coefs_[:-1]) + sum(np.count_nonzero(b) for b in reg.intercepts_[:-1])
    assert reg.n_nonzero_ == nnz == 0
    np.testing.assert_allclose(reg.predict(X), np.full(100, reg.intercept_[0]))


def test_budget_split():
    reg = SparseMLPRegressor(100, hidden_layer_sizes=(10, 30))
    assert reg._stage_budgets(9, 1) == [50, 50]
    # Proportional to the layers' sizes: 10 x 10 and 30 x 11.
    assert reg.set_params(budget_split="proportional")._stage_budgets(9, 1) == [23, 77]
    assert reg.set_params(budget_split=[1, 3])._stage_budgets(9, 1) == [25, 75]
    assert reg.set_params(budget_split="even", n_nonzero_coefs=0.5)._stage_budgets(9, 1) == [108, 107]
    with pytest.raises(ValueError, match="one positive share per hidden layer"):
        reg.set_params(budget_split=[1, 2, 3])._stage_budgets(9, 1)


def test_deep_classifier_and_multi_output():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = SparseMLPClassifier(60, hidden_layer_sizes=(20, 10), random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9 and clf.n_nonzero_ <= 60
    np.testing.assert_allclose(clf.to_mlp().predict_proba(X), clf.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    # Several outputs: the hidden layers come from the shared coupling.
    X, Y = make_planted_mlp(600, 6, (8, 4), 15, n_outputs=2, random_state=0)
    reg = SparseMLPRegressor(30, hidden_layer_sizes=(8, 4), alpha=1e-3, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (600, 2) and reg.score(X, Y) > 0.5
    np.testing.assert_allclose(reg.predict(X), _forward(X, reg.coefs_, reg.intercepts_), atol=1e-10)


def test_deep_limits_are_errors():
    X, y = make_planted_mlp(200, 5, 4, 6, random_state=0)
    with pytest.raises(ValueError, match="plain ReLU layer"):
        SparseMLPRegressor(10, hidden_layer_sizes=(6, 4), gate_update="fixed").fit(X, y)
    with pytest.raises(ValueError, match="one hidden layer only"):
        SparseMLPRegressor(10, hidden_layer_sizes=(6, 4)).partial_fit(X, y)
    # A one-layer fit after a deep one (and back) leaves no stale attributes.
    reg = SparseMLPRegressor(10, hidden_layer_sizes=(6, 4), random_state=0).fit(X, y)
    assert not hasattr(reg, "fused_coef_")
    reg.set_params(hidden_layer_sizes=(6,)).fit(X, y)
    assert hasattr(reg, "fused_coef_") and not hasattr(reg, "n_layers_")
    np.testing.assert_allclose(reg.predict(X), _forward(X, reg.coefs_, reg.intercepts_).ravel(), atol=1e-10)


def test_balanced_units_are_the_same_network():
    from sklearn_sparse_mlp._base import _balance_units

    rng = np.random.RandomState(0)
    coefs = [rng.randn(5, 4) * [0.01, 1.0, 30.0, 0.0], rng.randn(4, 3), rng.randn(3, 2)]
    intercepts = [rng.randn(4), rng.randn(3), rng.randn(2)]
    X = rng.randn(50, 5)
    before = _forward(X, coefs, intercepts)
    _balance_units(coefs, intercepts)
    np.testing.assert_allclose(_forward(X, coefs, intercepts), before, rtol=1e-12, atol=1e-12)
    # Every hidden layer's units (the sweeps repeated to a fixed point):
    # incoming and outgoing norms equal; a unit without incoming weights
    # is left as it is.
    for layer in (0, 1):
        n_in = np.sqrt(np.sum(coefs[layer] ** 2, axis=0) + intercepts[layer] ** 2)
        n_out = np.sqrt(np.sum(coefs[layer + 1] ** 2, axis=1))
        np.testing.assert_allclose(n_in, n_out, rtol=1e-10)


@pytest.mark.parametrize("joint_max_iter", [0, 20])
def test_a_change_of_the_targets_units_changes_only_the_units_of_the_fit(joint_max_iter):
    # The stages' penalty is on fused weights (scale-free); the joint phase's,
    # on every layer's weights, is not: it fits the targets over their spread.
    # Before, y in other units chose another penalty and another network.
    # A power of two: the arithmetic scales exactly, under every BLAS kernel
    # (the stages take rounding-level decisions, which an offset would move).
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    fits = [SparseMLPRegressor(60, hidden_layer_sizes=(20, 10), joint_max_iter=joint_max_iter,
                               random_state=0).fit(X, t) for t in (y, 1024.0 * y)]
    np.testing.assert_allclose(fits[1].predict(X) / 1024.0, fits[0].predict(X), atol=1e-9)
    assert fits[1].alpha_ == pytest.approx(fits[0].alpha_, rel=1e-12)
    assert fits[1].n_nonzero_ == fits[0].n_nonzero_


def test_second_stage_sees_features_of_unit_spread():
    # The first stage's balance between its layers is arbitrary: on this fold
    # it left features of spread 0.006 to 0.14, and the second stage, at the
    # alpha its choice starts from, ended empty (R^2 0 on the held-out rows).
    from sklearn.datasets import make_friedman3
    from sklearn.model_selection import KFold

    X, y = make_friedman3(n_samples=2000, random_state=0)
    train, test = next(iter(KFold(3, shuffle=True, random_state=0).split(X)))
    scaler = StandardScaler().fit(X[train])
    reg = SparseMLPRegressor(50, hidden_layer_sizes=(100, 100), random_state=0)
    reg.fit(scaler.transform(X[train]), y[train])
    # 49 of 50: a first-stage unit the second stage does not use is cut.
    assert 45 <= reg.n_nonzero_ <= 50
    assert reg.score(scaler.transform(X[test]), y[test]) > 0.95
    np.testing.assert_allclose(_forward(scaler.transform(X[test]), reg.coefs_, reg.intercepts_),
                               reg.predict(scaler.transform(X[test])).reshape(-1, 1), rtol=1e-10, atol=1e-10)
