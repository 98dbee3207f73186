"""Solver shortcuts that must not change the model: the damped Gauss-Newton
step's trial networks evaluated in one call; the intercept solve on
separable classes."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

import sklearn_sparse_mlp._iht as iht
from sklearn_sparse_mlp import SparseMLPClassifier, SparseMLPRegressor


BATCH_WORK = iht.TRIAL_BATCH_WORK
TRIAL_LOSSES = iht._trial_losses


def _fit(monkeypatch, batch, est, X, y, sw):
    calls = []

    def counted(*args):
        out = TRIAL_LOSSES(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(iht, "TRIAL_BATCH_WORK", BATCH_WORK if batch else -1)
    monkeypatch.setattr(iht, "_trial_losses", counted)
    est.fit(X, y, sample_weight=sw)
    return est, sum(calls)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_trials_in_one_call_give_the_same_model(monkeypatch, task):
    if task == "regression":
        X, y = load_diabetes(return_X_y=True)
        make = lambda: SparseMLPRegressor(60, random_state=0)  # noqa: E731
    else:
        X, y = load_breast_cancer(return_X_y=True)
        make = lambda: SparseMLPClassifier(100, random_state=0)  # noqa: E731
    X = StandardScaler().fit_transform(X)[:300]
    y = y[:300]
    sw = np.random.default_rng(0).random(300)
    sw[::10] = 0.0
    ref, n_ref = _fit(monkeypatch, False, make(), X, y, sw)
    got, n_got = _fit(monkeypatch, True, make(), X, y, sw)
    assert n_ref == 0 and n_got > 0  # the batched path ran, and only there
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(got.fused_coef_.toarray(), ref.fused_coef_.toarray())
    out = "predict" if task == "regression" else "predict_proba"
    np.testing.assert_array_equal(getattr(got, out)(X), getattr(ref, out)(X))


def test_softmax_intercept_held_at_its_bound_costs_few_passes(monkeypatch):
    """Separable classes push some softmax intercepts to their bound; the
    others are then solved by Newton steps of their own (with the full
    Hessian the clipped steps converged linearly: this fit took 10044
    passes over the rows for its intercepts, now about 2600)."""
    from sklearn_sparse_mlp._blocks import RowBlocks

    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 5))
    y = np.digitize(X[:, 0] - X[:, 1], [-1, 1])
    calls = []
    stats = RowBlocks.intercept_stats

    def counted(self, *args):
        calls.append(1)
        return stats(self, *args)

    monkeypatch.setattr(RowBlocks, "intercept_stats", counted)
    clf = SparseMLPClassifier(8, hidden_layer_sizes=(4,), max_iter=3, tol=0.0, random_state=0).fit(X, y)
    assert clf.score(X, y) == 1.0
    assert len(calls) < 4000


def test_shared_features_compares_feature_sets():
    """An entering unit is flagged when another unit of the trial has the
    same set of features (its bias entry and its outputs aside), whatever
    the order of the keys."""
    q, k = 5, 2  # four features and the bias (feature 4)
    entries = [(3, 0, 0), (3, 2, 1), (3, 4, 0),  # unit 3: {0, 2} and a bias
               (7, 2, 0), (7, 0, 0), (7, 0, 1),  # unit 7: {0, 2}
               (8, 1, 0),  # unit 8: {1}
               (9, 4, 1),  # unit 9: its bias alone
               (11, 4, 0)]  # unit 11: its bias alone
    keys = np.array([(u * q + f) * k + o for u, f, o in entries])[[4, 0, 8, 2, 6, 1, 3, 7, 5]]
    unit, feat = keys // (q * k), (keys // k) % q
    new_units = np.array([3, 8, 9, 11])
    np.testing.assert_array_equal(iht._shared_features(unit, feat, q, new_units), [True, False, False, False])
