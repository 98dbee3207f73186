"""SparseMLPClassifier: losses, labels, probabilities, class weights, recovery."""

import numba
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPClassifier
from sklearn_sparse_mlp.datasets import make_planted_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("coupling", ["fused", "shared"])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error"])
def test_probabilities_and_decisions_agree(iris, coupling, loss):
    X, y = iris
    clf = SparseMLPClassifier(40, loss=loss, output_coupling=coupling, hidden_layer_sizes=(20,),
                              random_state=0).fit(X, y)
    assert clf.n_nonzero_ <= 40
    P = clf.predict_proba(X)
    assert P.shape == (150, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(P >= 0)
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(clf.decision_function(X), axis=1)])
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(P, axis=1)])
    if loss == "log_loss":
        np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), P, rtol=1e-10, atol=1e-300)
    assert clf.score(X, y) > 0.9
    assert len(clf.loss_curve_) >= 1 and clf.n_iter_ >= 1


def test_binary_string_labels_round_trip(iris):
    X, y = iris
    labels = np.array(["setosa", "other"])[(y > 0).astype(int)]
    clf = SparseMLPClassifier(20, hidden_layer_sizes=(10,), random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["other", "setosa"]
    pred = clf.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= {"other", "setosa"}
    assert np.mean(pred == labels) == 1.0
    P = clf.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    d = clf.decision_function(X)
    assert d.shape == (150,)
    np.testing.assert_array_equal(pred, clf.classes_[(d > 0).astype(int)])
    log_p = clf.predict_log_proba(X)
    np.testing.assert_allclose(np.exp(log_p), P, rtol=1e-10, atol=1e-300)


def test_multilabel_indicator_targets():
    X, Y = make_classification(n_samples=300, n_features=8, n_informative=6, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    Y = np.stack([Y == 0, Y == 1, (Y == 1) | (X[:, 0] > 0)], axis=1).astype(int)
    clf = SparseMLPClassifier(80, hidden_layer_sizes=(20,), random_state=0).fit(X, Y)
    pred = clf.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    P = clf.predict_proba(X)
    assert P.shape == Y.shape and np.all((P >= 0) & (P <= 1))
    np.testing.assert_array_equal(pred, (P > 0.5).astype(int))
    assert np.mean(pred == Y) > 0.9


def test_class_weight_balanced_favours_the_minority_class():
    X, y = make_classification(n_samples=1000, n_features=6, n_informative=3, weights=[0.92, 0.08],
                               flip_y=0.05, class_sep=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    common = dict(n_nonzero_coefs=30, hidden_layer_sizes=(10,), random_state=0)
    plain = SparseMLPClassifier(**common).fit(X, y)
    balanced = SparseMLPClassifier(class_weight="balanced", **common).fit(X, y)
    recall = lambda clf: np.mean(clf.predict(X)[y == 1] == 1)  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.15
    assert np.sum(balanced.predict(X) == 1) > np.sum(plain.predict(X) == 1)
    # A dict that weighs class 1 like "balanced" does moves the decision the same way.
    w1 = len(y) / (2 * np.sum(y == 1))
    as_dict = SparseMLPClassifier(class_weight={0: len(y) / (2 * np.sum(y == 0)), 1: w1}, **common).fit(X, y)
    np.testing.assert_array_equal(as_dict.predict(X), balanced.predict(X))


def test_planted_classification_is_learned():
    # Labels from the sign of a planted sparse ReLU network (centred at its median).
    X, y_reg = make_planted_mlp(n_samples=8000, n_features=20, n_hidden=5, n_nonzero=15, random_state=0)
    y = (y_reg > np.median(y_reg)).astype(int)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    clf = SparseMLPClassifier(30, hidden_layer_sizes=(20,), random_state=0).fit(X_tr, y_tr)
    assert clf.n_nonzero_ <= 30
    assert clf.score(X_te, y_te) >= 0.98


def test_shared_coupling_exports_a_relu_mlp(iris):
    X, y = iris
    clf = SparseMLPClassifier(40, output_coupling="shared", gate_update="sequential", hidden_layer_sizes=(20,),
                              random_state=0).fit(X, y)
    W1, W2 = clf.coefs_
    b1, b2 = clf.intercepts_
    assert np.count_nonzero(W1) + np.count_nonzero(b1) + np.count_nonzero(W2) == clf.n_nonzero_ <= 40
    F = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    np.testing.assert_allclose(F, clf.decision_function(X), rtol=1e-10, atol=1e-10)


def test_binary_sequential_exports_a_relu_mlp(iris):
    X, y = iris
    clf = SparseMLPClassifier(20, gate_update="sequential", hidden_layer_sizes=(10,), random_state=0).fit(X, y == 1)
    W1, W2 = clf.coefs_
    b1, b2 = clf.intercepts_
    F = (np.maximum(X @ W1 + b1, 0) @ W2 + b2).ravel()
    np.testing.assert_allclose(F, clf.decision_function(X), rtol=1e-10, atol=1e-10)


def test_fixed_gates_export_no_mlp(iris):
    X, y = iris
    clf = SparseMLPClassifier(40, output_coupling="shared", gate_update="fixed", hidden_layer_sizes=(20,),
                              random_state=0).fit(X, y)
    assert not hasattr(clf, "coefs_")  # a gated network is not an MLP


def test_same_seed_same_model(iris):
    X, y = iris
    a = SparseMLPClassifier(30, hidden_layer_sizes=(20,), random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_warm_start(iris):
    X, y = iris
    clf = SparseMLPClassifier(30, hidden_layer_sizes=(20,), warm_start=True, max_iter=3, random_state=0)
    clf.fit(X, y)
    first = clf.loss_
    clf.fit(X, y)
    assert clf.loss_ <= first + 1e-12
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, np.where(y == 2, 5, y))


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.ones((10, 2)), np.zeros(10), r"only one class \(0.0\)"),
        (np.ones((10, 2)), ["a"] * 10, r"only one class \(.a.\)"),
        (np.array([[np.nan, 1.0]] * 4), [0, 1, 0, 1], "NaN"),
        (np.array([[np.inf, 1.0]] * 4), [0, 1, 0, 1], "infinity"),
        (np.ones((4, 2)), [0.5, 1.5, 0.5, 2.5], "Unknown label type"),
        (np.ones((4, 2)), [0, 1, 0], "inconsistent numbers of samples"),
    ],
)
def test_bad_input_is_named(X, y, match):
    with pytest.raises(ValueError, match=match):
        SparseMLPClassifier(2, hidden_layer_sizes=(3,)).fit(X, y)


def test_bad_class_weight_is_named(iris):
    X, y = iris
    with pytest.raises(ValueError, match="not in the data"):
        SparseMLPClassifier(10, hidden_layer_sizes=(5,), class_weight={7: 2.0}).fit(X, y)


def test_max_iter_warns(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning):
        SparseMLPClassifier(30, hidden_layer_sizes=(20,), max_iter=1, tol=0, random_state=0).fit(X, y)


def test_partial_fit_needs_classes_and_learns(iris):
    X, y = iris
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(20,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X[:10], y[:10])
    # Labels outside ``classes`` are refused on the first call too (they were
    # once trained as the first class), and the next call is a first one.
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "classes_")
    order = np.random.RandomState(0).permutation(150)
    for _ in range(10):
        for chunk in np.array_split(order, 5):
            clf.partial_fit(X[chunk], y[chunk], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_iter_ == 50 and clf.n_nonzero_ <= 40
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:3], [0, 1, 7])


def test_column_vector_labels_warn_as_in_scikit_learn(iris):
    from sklearn.exceptions import DataConversionWarning

    X, y = iris
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        clf = SparseMLPClassifier(20, hidden_layer_sizes=(10,), max_iter=5, random_state=0).fit(X, y[:, None])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])


def test_partial_fit_chunk_without_some_classes(iris):
    X, y = iris
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(20,), random_state=0)
    clf.partial_fit(X[y < 2], y[y < 2], classes=np.array([0, 1, 2]))  # class 2 absent
    assert clf.predict_proba(X).shape == (150, 3)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("coupling", ["fused", "shared"])
def test_n_jobs_does_not_change_the_fit(coupling):
    X, y = make_classification(n_samples=5000, n_features=10, n_informative=6, n_classes=3, random_state=0)
    kw = dict(n_nonzero_coefs=60, hidden_layer_sizes=(20,), output_coupling=coupling, max_iter=6, random_state=0)
    one = SparseMLPClassifier(n_jobs=1, **kw).fit(X, y)
    two = SparseMLPClassifier(n_jobs=2, **kw).fit(X, y)
    np.testing.assert_array_equal(one.decision_function(X), two.decision_function(X))
    assert one.loss_curve_ == two.loss_curve_


def test_multiclass_default_is_a_relu_mlp(iris):
    # output_coupling="auto": several classes give the shared coupling with
    # sequential gates, an ordinary ReLU network exported in coefs_.
    X, y = iris
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(20,), random_state=0).fit(X, y)
    W1, W2 = clf.coefs_
    b1, b2 = clf.intercepts_
    np.testing.assert_allclose(np.maximum(X @ W1 + b1, 0) @ W2 + b2, clf.decision_function(X), rtol=1e-10,
                               atol=1e-10)
    assert clf.score(X, y) > 0.95


def test_early_stopping_keeps_the_best_validation_point(iris):
    X, y = iris
    clf = SparseMLPClassifier(30, hidden_layer_sizes=(20,), early_stopping=True, validation_fraction=0.2,
                              random_state=0).fit(X, y)
    curve = clf.validation_loss_curve_
    assert len(curve) >= 1
    assert clf.best_validation_loss_ <= min(curve) + 1e-12
    with pytest.raises(ValueError, match="validation"):
        SparseMLPClassifier(5, early_stopping=True, validation_fraction=0.9).fit(X[::15], y[::15])


def test_low_dimensional_nonlinear_data_use_the_budget():
    # make_circles: units entering on one feature bring their bias, so that
    # they do not collapse onto one activation pattern (and one unit).
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=600, noise=0.1, factor=0.5, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    clf = SparseMLPClassifier(30, hidden_layer_sizes=(100,), random_state=0).fit(Xtr, ytr)
    # Collapsed units leave most of the budget unused; a settled fit may
    # leave a weight or four (benchmarks/tabular.py's circles, 13 folds:
    # 29.4 of 30 on average, at least 28; this fit: 26).
    assert clf.n_nonzero_ >= 25
    assert clf.score(Xte, yte) > 0.95


def test_shared_coupling_refills_budget_left_by_a_collapsed_start():
    # Unscaled iris: the fused stage that starts the shared coupling merges
    # its units into one (every feature positive, one activation pattern);
    # thresholding cannot bring a unit back (a saddle at zero), new units
    # enter on the free budget (16 of 80 weights before).
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    clf = SparseMLPClassifier(80, random_state=0).fit(X, y)
    assert clf.n_nonzero_ == 80
    assert np.count_nonzero(np.any(clf.coefs_[1] != 0, axis=1)) >= 4
    assert clf.score(X, y) > 0.98


def test_alpha_auto_is_chosen_and_exported():
    """alpha="auto" sets alpha_ (a grid value), used by to_mlp; a float is kept."""
    from sklearn.datasets import make_moons

    from sklearn_sparse_mlp._iht import ALPHA_GRID

    X, y = make_moons(n_samples=400, noise=0.25, random_state=0)
    clf = SparseMLPClassifier(30, hidden_layer_sizes=(20,), random_state=0).fit(X, y)
    assert np.any(np.isclose(clf.alpha_, ALPHA_GRID))
    assert clf.to_mlp().alpha == clf.alpha_
    assert SparseMLPClassifier(30, hidden_layer_sizes=(20,), alpha=2.0, random_state=0).fit(X, y).alpha_ == 2.0
