"""The budget path and the CV estimators."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import (
    SparseMLPClassifier,
    SparseMLPClassifierCV,
    SparseMLPRegressor,
    SparseMLPRegressorCV,
    sparse_mlp_path,
)
from sklearn_sparse_mlp._path import budget_grid
from sklearn_sparse_mlp.datasets import make_planted_mlp


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _planted(n=400, noise=0.1):
    X, y = make_planted_mlp(n_samples=n, n_features=6, n_hidden=3, n_nonzero=6, random_state=0)
    return X, y + noise * np.random.RandomState(1).standard_normal(n) * y.std()


def _same_network(a, b):
    np.testing.assert_array_equal(a.fused_coef_.toarray(), b.fused_coef_.toarray())
    np.testing.assert_array_equal(a.intercept_, b.intercept_)


def test_budget_grid():
    # Default: geometric from 0.5% to 20% of the network, distinct integers.
    np.testing.assert_array_equal(budget_grid(None, 4, 1000), [5, 17, 58, 200])
    assert budget_grid(None, 8, 10).tolist() == [1, 2]
    # Counts and fractions, sorted, duplicates dropped.
    np.testing.assert_array_equal(budget_grid([30, 0.01, 10, 10], 8, 1000), [10, 30])
    for bad in ([0], [1.5], ["a"], [True], []):
        with pytest.raises(ValueError):
            budget_grid(bad, 8, 1000)
    with pytest.raises(ValueError, match="larger than the network"):
        budget_grid([2000], 8, 1000)


def test_path_first_budget_is_the_standalone_fit_and_budgets_hold():
    X, y = _planted()
    est = SparseMLPRegressor(hidden_layer_sizes=(10,), alpha=1e-3, random_state=0)
    params = est.get_params()
    path = sparse_mlp_path(X, y, n_nonzero_coefs=[12, 3, 6], estimator=est)
    assert est.get_params() == params and not hasattr(est, "n_features_in_")  # untouched
    np.testing.assert_array_equal(path.n_nonzero_coefs, [3, 6, 12])
    assert len(path.estimators) == 3
    for s, fitted, nnz in zip(path.n_nonzero_coefs, path.estimators, path.n_nonzero):
        assert fitted.n_nonzero_coefs == s and fitted.n_nonzero_ == nnz <= s
    alone = clone(est).set_params(n_nonzero_coefs=3).fit(X, y)
    _same_network(path.estimators[0], alone)
    # Each fitted estimator of the path predicts on its own (deep copies).
    preds = [e.predict(X) for e in path.estimators]
    assert not np.array_equal(preds[0], preds[-1])
    # Warm-started budgets reach a comparable fit: the planted network has 6 weights.
    r2 = [e.score(X, y) for e in path.estimators]
    assert r2[1] > 0.95 and r2[2] > 0.95 and r2[0] < r2[1]


def test_path_classifier_and_default_grid():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    est = SparseMLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    path = sparse_mlp_path(X, y, n_budgets=3, estimator=est)
    # Shared coupling (three classes): 10 units x 5 inputs + 10 x 3 output
    # weights = 80 counted parameters: 0.4 -> 1, 4, 16.
    np.testing.assert_array_equal(path.n_nonzero_coefs, budget_grid(None, 3, 80))
    np.testing.assert_array_equal(path.n_nonzero_coefs, [1, 4, 16])
    assert path.estimators[-1].score(X, y) > 0.9
    assert np.all(path.n_iter >= 1) and np.all(np.isfinite(path.loss))
    with pytest.raises(TypeError, match="SparseMLPRegressor or SparseMLPClassifier"):
        sparse_mlp_path(X, y, estimator=StandardScaler())


def test_regressor_cv_refits_the_standalone_model_at_the_best_budget():
    X, y = _planted()
    cv = SparseMLPRegressorCV(n_nonzero_coefs=[1, 6, 0.5], hidden_layer_sizes=(10,), cv=3, alpha=1e-3,
                              random_state=0).fit(X, y)
    np.testing.assert_array_equal(cv.budgets_, [1, 6, 35])
    assert cv.scores_path_.shape == (3, 3) and cv.n_nonzero_path_.shape == (3, 3)
    np.testing.assert_allclose(cv.mean_scores_, cv.scores_path_.mean(axis=1))
    assert cv.n_nonzero_coefs_ == cv.budgets_[np.argmax(cv.mean_scores_)]
    assert cv.n_nonzero_coefs_ != 1  # one weight cannot fit three planted units
    alone = SparseMLPRegressor(cv.n_nonzero_coefs_, hidden_layer_sizes=(10,), alpha=1e-3,
                               random_state=0).fit(X, y)
    _same_network(cv, alone)
    np.testing.assert_array_equal(cv.predict(X), alone.predict(X))
    # The fold scores along the path are those of the fold fits.
    train, test = next(KFold(3).split(X))
    fold = sparse_mlp_path(X[train], y[train], n_nonzero_coefs=[1, 6, 35],
                           estimator=SparseMLPRegressor(hidden_layer_sizes=(10,), alpha=1e-3, random_state=0))
    np.testing.assert_allclose(cv.scores_path_[:, 0], [e.score(X[test], y[test]) for e in fold.estimators])


def test_cv_chooses_as_grid_search():
    X, y = _planted(n=300)
    grid = [1, 2, 6]
    est = SparseMLPRegressor(hidden_layer_sizes=(10,), alpha=1e-3, random_state=0)
    search = GridSearchCV(est, {"n_nonzero_coefs": grid}, cv=3).fit(X, y)
    cv = SparseMLPRegressorCV(n_nonzero_coefs=grid, hidden_layer_sizes=(10,), alpha=1e-3, cv=3,
                              random_state=0).fit(X, y)
    assert cv.n_nonzero_coefs_ == search.best_params_["n_nonzero_coefs"] == 6
    # The first budget of every fold is fitted from scratch, as in the search.
    np.testing.assert_allclose(cv.scores_path_[0], [search.cv_results_[f"split{i}_test_score"][0]
                                                    for i in range(3)])


def test_information_criterion():
    X, y = _planted(n=400)
    bic = SparseMLPRegressorCV(n_nonzero_coefs=[1, 6, 35], hidden_layer_sizes=(10,), alpha=1e-3,
                               criterion="bic", random_state=0).fit(X, y)
    assert bic.criterion_path_.shape == (3,) and not hasattr(bic, "scores_path_")
    assert bic.n_nonzero_coefs_ == 6  # the planted size: fewer underfit, more pay log(n) each
    X, y = load_iris(return_X_y=True)
    clf = SparseMLPClassifierCV(n_nonzero_coefs=[2, 20], hidden_layer_sizes=(10,), criterion="aic",
                                random_state=0).fit(StandardScaler().fit_transform(X), y)
    assert clf.n_nonzero_coefs_ == 20 and clf.criterion_path_[1] < clf.criterion_path_[0]


def test_classifier_cv_with_string_labels_and_scoring():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SparseMLPClassifierCV(n_nonzero_coefs=[2, 30], hidden_layer_sizes=(10,), cv=3,
                                scoring="neg_log_loss", random_state=0).fit(X, labels)
    assert clf.n_nonzero_coefs_ == 30
    assert np.all(clf.scores_path_ < 0)
    assert set(clf.predict(X)) <= set(labels) and clf.predict_proba(X).shape == (150, 3)
    alone = SparseMLPClassifier(30, hidden_layer_sizes=(10,), random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.predict_proba(X), alone.predict_proba(X))


def test_classifier_path_does_not_choose_alpha_on_a_separating_network():
    """A path continues from a network that may separate its training rows;
    the logistic leave-one-out approximation is misled there (the curvature
    weights vanish): on this fold the path at 26 weights chose alpha=1e4 and
    scored 0.63 (0.96 standalone) before such networks were left out."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import StratifiedKFold

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))[4]
    path = sparse_mlp_path(X[train], y[train], n_nonzero_coefs=[16, 26],
                           estimator=SparseMLPClassifier(random_state=0))
    later = path.estimators[1]
    assert later.alpha_ < 10
    assert later.score(X[test], y[test]) > 0.93
