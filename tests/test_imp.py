"""IMPRegressor / IMPClassifier: backprop, pruning, rewinding, the path, the contract."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_sparse_mlp import IMPClassifier, IMPRegressor
from sklearn_sparse_mlp._imp import (
    _forward,
    _imp_train,
    _init_layers,
    _prune,
    _prune_schedule,
    _rewind,
    _value_and_gradient,
)
from sklearn_sparse_mlp._losses import LogisticLoss, SoftmaxLoss, SquaredLoss


def _regression_data(n=400, d=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d))
    y = np.maximum(X[:, 0] - X[:, 1], 0) + 0.5 * X[:, 2] - np.maximum(X[:, 3], 0)
    return X, y


# ---------------------------------------------------------------------------
# Numeric core
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("loss, k", [(SquaredLoss(), 2), (LogisticLoss(), 2), (SoftmaxLoss(), 3)])
def test_backprop_matches_finite_differences(loss, k, central_differences):
    # Two hidden layers; every weight and bias against central differences.
    rng = np.random.RandomState(0)
    n, sizes = 30, [4, 5, 3, k]
    X = rng.standard_normal((n, sizes[0]))
    if isinstance(loss, SquaredLoss):
        Y = rng.standard_normal((n, k))
    elif isinstance(loss, SoftmaxLoss):
        Y = np.eye(k)[rng.randint(k, size=n)]
    else:
        Y = rng.randint(2, size=(n, k)).astype(float)
    sw = rng.uniform(0.5, 2.0, n)
    sw /= sw.sum()
    l2 = 0.3
    coefs, intercepts = map(list, zip(*_init_layers(sizes, 1)))
    value, gW, gb = _value_and_gradient(coefs, intercepts, X, Y, sw, loss, l2)

    def objective():
        return _value_and_gradient(coefs, intercepts, X, Y, sw, loss, l2)[0]

    for G, fd in zip(gW + gb, central_differences(objective, coefs + intercepts)):
        np.testing.assert_allclose(G, fd, rtol=1e-5, atol=1e-8)
    assert np.isclose(value, objective())
    # Masked gradients are the full ones times the masks.
    masks = [rng.rand(*W.shape) < 0.5 for W in coefs]
    _, gWm, gbm = _value_and_gradient(coefs, intercepts, X, Y, sw, loss, l2, masks)
    for G, Gm, M in zip(gW, gWm, masks):
        np.testing.assert_array_equal(Gm, np.where(M, G, 0.0))
    for g, gm in zip(gb, gbm):
        np.testing.assert_array_equal(g, gm)
    # Bias masks; None leaves a layer unmasked.
    bias_masks = [rng.rand(*b.shape) < 0.5 for b in intercepts[:-1]] + [None]
    masks[-1] = None
    _, gWm, gbm = _value_and_gradient(coefs, intercepts, X, Y, sw, loss, l2, masks,
                                      intercept_masks=bias_masks)
    for G, Gm, M in zip(gW, gWm, masks):
        np.testing.assert_array_equal(Gm, G if M is None else np.where(M, G, 0.0))
    for g, gm, M in zip(gb, gbm, bias_masks):
        np.testing.assert_array_equal(gm, g if M is None else np.where(M, g, 0.0))


def test_sparse_batch_gives_same_gradient():
    rng = np.random.RandomState(1)
    X = rng.standard_normal((20, 6)) * (rng.rand(20, 6) < 0.4)
    Y = rng.standard_normal((20, 1))
    sw = np.full(20, 1 / 20)
    coefs, intercepts = map(list, zip(*_init_layers([6, 7, 1], 0)))
    a = _value_and_gradient(coefs, intercepts, X, Y, sw, SquaredLoss(), 0.1)
    b = _value_and_gradient(coefs, intercepts, sp.csr_matrix(X), Y, sw, SquaredLoss(), 0.1)
    assert np.isclose(a[0], b[0])
    for u, v in zip(a[1] + a[2], b[1] + b[2]):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_prune_is_global_exact_and_never_revives():
    rng = np.random.RandomState(2)
    coefs = [rng.standard_normal((5, 4)), 3 * rng.standard_normal((4, 2))]
    masks = [rng.rand(5, 4) < 0.8, np.ones((4, 2), dtype=bool)]
    # A masked-out entry with a huge value must stay masked out.
    coefs[0][~masks[0]] = 100.0
    new = _prune(coefs, masks, 10)
    assert sum(int(M.sum()) for M in new) == 10
    for M, Mn in zip(masks, new):
        assert not np.any(Mn & ~M)
    kept = np.concatenate([np.abs(W[M]) for W, M in zip(coefs, new)])
    dropped = np.concatenate([np.abs(W[M & ~Mn]) for W, M, Mn in zip(coefs, masks, new)])
    assert kept.min() >= dropped.max()
    # Ties at the threshold: the count is still exact.
    tied = [np.ones((3, 3)), np.ones((3, 2))]
    masks = [np.ones((3, 3), dtype=bool), np.ones((3, 2), dtype=bool)]
    for n_keep in (1, 7, 14, 15):
        assert sum(int(M.sum()) for M in _prune(tied, masks, n_keep)) == n_keep


def test_prune_schedule():
    counts = _prune_schedule(7400, 740, 0.2)
    assert counts[0] == 7400 and counts[-1] == 740
    assert np.all(np.diff(counts) < 0)
    assert counts[:4] == [7400, 5920, 4736, 3788]
    # Tiny networks still lose at least one weight per round.
    assert _prune_schedule(3, 1, 0.1) == [3, 2, 1]
    assert _prune_schedule(10, 10, 0.2) == [10]


def test_rewind_restores_initial_values_bit_for_bit():
    sizes = [7, 9, 5, 3]
    init = list(_init_layers(sizes, 11))
    rng = np.random.RandomState(0)
    coefs = [W + rng.standard_normal(W.shape) for W, _ in init]
    intercepts = [b + 1.0 for _, b in init]
    masks = [rng.rand(*W.shape) < 0.3 for W in coefs]
    _rewind(coefs, intercepts, masks, _init_layers(sizes, 11))
    for W, b, M, (W0, b0) in zip(coefs, intercepts, masks, init):
        np.testing.assert_array_equal(W[M], W0[M])
        assert np.all(W[~M] == 0.0) and not np.any(np.signbit(W[~M]))
        np.testing.assert_array_equal(b, b0)
    # Masked biases; a None mask keeps its whole layer.
    coefs = [W + 1.0 for W in coefs]
    intercepts = [b + 1.0 for b in intercepts]
    masks[-1] = None
    bias_masks = [rng.rand(*b.shape) < 0.5 for b in intercepts[:-1]] + [None]
    _rewind(coefs, intercepts, masks, _init_layers(sizes, 11), bias_masks)
    for W, b, M, Mb, (W0, b0) in zip(coefs, intercepts, masks, bias_masks, init):
        np.testing.assert_array_equal(W, W0 if M is None else np.where(M, W0, 0.0))
        np.testing.assert_array_equal(b, b0 if Mb is None else np.where(Mb, b0, 0.0))


def _run_core(callback, **kw):
    X, y = _regression_data(n=300)
    Y = (y - y.mean()).reshape(-1, 1) / y.std()
    params = dict(epochs_per_round=3, batch_size=50, init_seed=5, shuffle_seed=6)
    params.update(kw)
    return _imp_train(X, Y, np.ones(300), SquaredLoss(), [6, 10, 8, 1], 40, callback=callback,
                      **params)


def _counted(arrays, bias_arrays):
    """The pruned arrays of the [6, 10, 8, 1] network: hidden weights and biases."""
    return [arrays[0], bias_arrays[0], arrays[1], bias_arrays[1]]


def test_rounds_rewind_and_masks_never_revive():
    init = list(_init_layers([6, 10, 8, 1], 5))
    seen = []

    def callback(rnd, stage, coefs, intercepts, masks, intercept_masks):
        # The output layer (one output) is neither pruned nor counted.
        assert masks[-1] is None and intercept_masks[-1] is None
        seen.append((rnd, stage, _counted([W.copy() for W in coefs], [b.copy() for b in intercepts]),
                     _counted(masks, intercept_masks), coefs[-1].copy()))

    result = _run_core(callback)
    starts = [s for s in seen if s[1] == "start"]
    ends = [s for s in seen if s[1] == "end"]
    counts = _prune_schedule(7 * 10 + 11 * 8, 40, 0.2)  # hidden weights and biases
    assert len(starts) == len(ends) == len(counts) == result["path"]["n_nonzero"].size
    np.testing.assert_array_equal(result["path"]["n_nonzero"], counts)
    assert result["n_nonzero"] == 40
    init_counted = _counted([W for W, _ in init], [b for _, b in init])
    for (rnd, _, arrays, masks, out), count in zip(starts, counts):
        assert sum(int(M.sum()) for M in masks) == count
        # Every round starts from the initial network, restricted to the mask.
        for A, M, A0 in zip(arrays, masks, init_counted):
            np.testing.assert_array_equal(A, np.where(M, A0, 0.0))
        np.testing.assert_array_equal(out, init[-1][0])
    for (_, _, _, prev, _), (_, _, _, nxt, _) in zip(starts[:-1], starts[1:]):
        for M, Mn in zip(prev, nxt):
            assert not np.any(Mn & ~M)  # no pruned parameter comes back
    for _, _, arrays, masks, out in ends:
        for A, M in zip(arrays, masks):
            assert np.all(A[~M] == 0.0)
        assert np.all(out != 0.0)  # the output weights are trained, never pruned
    # Pruning ranks the magnitudes of the previous round's trained parameters,
    # weights and biases together.
    for (_, _, arrays, masks, _), (_, _, _, nxt, _) in zip(ends[:-1], starts[1:]):
        kept = np.concatenate([np.abs(A[Mn]) for A, Mn in zip(arrays, nxt)])
        gone = np.concatenate([np.abs(A[M & ~Mn]) for A, M, Mn in zip(arrays, masks, nxt)])
        assert kept.min() >= gone.max()
    assert len(result["loss_curve"]) == 3 * len(counts) == result["n_iter"]


def test_several_outputs_prune_the_output_weights():
    X, y = _regression_data(n=300)
    Y = np.column_stack([y, -y]) / y.std()
    result = _imp_train(X, Y, np.ones(300), SquaredLoss(), [6, 10, 2], 30, epochs_per_round=2,
                        batch_size=50, init_seed=5, shuffle_seed=6)
    masks, intercept_masks = result["masks"], result["intercept_masks"]
    assert intercept_masks[-1] is None and masks[-1] is not None
    assert result["path"]["n_nonzero"][0] == 7 * 10 + 10 * 2
    assert int(masks[0].sum() + intercept_masks[0].sum() + masks[1].sum()) == 30 == result["n_nonzero"]


def test_rewind_iter_rewinds_to_the_early_weights():
    # rewind_iter = all 18 steps of the first round: round 2 starts from the
    # first round's final weights and biases, masked.
    seen = {}

    def callback(rnd, stage, coefs, intercepts, masks, intercept_masks):
        seen[rnd, stage] = (_counted([W.copy() for W in coefs], [b.copy() for b in intercepts]),
                            _counted(masks, intercept_masks))

    _run_core(callback, rewind_iter=18)
    end0, start1, start2 = seen[0, "end"], seen[1, "start"], seen[2, "start"]
    for start in (start1, start2):
        for A, A0, M in zip(start[0], end0[0], start[1]):
            np.testing.assert_array_equal(A, np.where(M, A0, 0.0))


# ---------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("budget, expected", [(40, 40), (0.1, 21), (1.0, 201), (201, 201)])
def test_budget_path_and_fitted_attributes(budget, expected):
    X, y = _regression_data(n=300)
    reg = IMPRegressor(budget, hidden_layer_sizes=(15, 6), epochs_per_round=2, random_state=0)
    reg.fit(X, y)
    # Counted: hidden weights and biases, 7*15 + 16*6; one output: its weights are not.
    assert [W.shape for W in reg.coefs_] == [(6, 15), (15, 6), (6, 1)]
    assert [b.shape for b in reg.intercepts_] == [(15,), (6,), (1,)]
    counted = [reg.masks_[0], reg.intercept_masks_[0], reg.masks_[1], reg.intercept_masks_[1]]
    assert sum(int(M.sum()) for M in counted) == expected
    assert reg.masks_[2].all() and reg.intercept_masks_[2].all()
    assert reg.n_nonzero_ == expected
    for W, M in zip(reg.coefs_ + reg.intercepts_, reg.masks_ + reg.intercept_masks_):
        assert W.shape == M.shape and M.dtype == bool
        assert np.all(W[~M] == 0.0) and np.all(W[M] != 0.0)
    path = reg.path_
    assert path["n_nonzero"][0] == 201 and path["n_nonzero"][-1] == expected
    assert np.all(np.diff(path["n_nonzero"]) < 0)
    assert reg.n_rounds_ == path["n_nonzero"].size == path["loss"].size
    assert reg.n_iter_ == 2 * reg.n_rounds_ == len(reg.loss_curve_)
    assert reg.loss_ == path["loss"][-1]
    assert "validation_score" not in path
    # The exported layers are the model.
    A = X
    for W, b in zip(reg.coefs_[:-1], reg.intercepts_[:-1]):
        A = np.maximum(A @ W + b, 0)
    np.testing.assert_allclose(reg.predict(X), (A @ reg.coefs_[-1] + reg.intercepts_[-1]).ravel(),
                               rtol=1e-10, atol=1e-10)


def test_regressor_learns_and_is_reproducible():
    X, y = _regression_data(n=1000)
    reg = IMPRegressor(60, hidden_layer_sizes=(30,), random_state=0).fit(X[:800], y[:800])
    assert reg.score(X[800:], y[800:]) > 0.9
    again = IMPRegressor(60, hidden_layer_sizes=(30,), random_state=0).fit(X[:800], y[:800])
    for a, b in zip(reg.coefs_ + reg.intercepts_, again.coefs_ + again.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reg.loss_curve_, again.loss_curve_)
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(X), reg.predict(X))
    other = IMPRegressor(60, hidden_layer_sizes=(30,), random_state=1).fit(X[:800], y[:800])
    assert not np.array_equal(other.coefs_[0], reg.coefs_[0])


def test_multi_output_float32_and_sparse_input():
    X, y = _regression_data(n=300)
    Y = np.column_stack([y, 10 * X[:, 4] + 100])
    reg = IMPRegressor(0.3, hidden_layer_sizes=(20,), batch_size=50, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (300, 2) and reg.score(X, Y) > 0.8
    reg32 = clone(reg).fit(X.astype(np.float32), Y)
    assert reg32.predict(X.astype(np.float32)).dtype == np.float32
    Xs = X * (np.abs(X) > 0.5)
    dense = clone(reg).fit(Xs, Y)
    for fmt in (sp.csr_matrix, sp.csc_array):
        sparse = clone(reg).fit(fmt(Xs), Y)
        np.testing.assert_allclose(sparse.predict(fmt(Xs)), dense.predict(Xs), rtol=1e-6, atol=1e-6)


def test_zero_sample_weight_equals_dropping_the_samples():
    X, y = _regression_data(n=500)
    w = np.random.RandomState(0).uniform(0.5, 2, 500)
    w[::4] = 0
    kw = dict(n_nonzero_coefs=50, hidden_layer_sizes=(12,), epochs_per_round=3, batch_size=64,
              random_state=0)
    a = IMPRegressor(**kw).fit(X, y, sample_weight=w)
    b = IMPRegressor(**kw).fit(X[w > 0], y[w > 0], sample_weight=w[w > 0])
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = IMPClassifier(**kw).fit(X, y > 0.5, sample_weight=w)
    d = IMPClassifier(**kw).fit(X[w > 0], y[w > 0] > 0.5, sample_weight=w[w > 0])
    np.testing.assert_array_equal(c.predict_proba(X), d.predict_proba(X))


def test_classifier_string_labels_and_probabilities():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = make_pipeline(StandardScaler(), IMPClassifier(0.3, hidden_layer_sizes=(16,), batch_size=16,
                                                        random_state=0))
    clf.fit(X, labels)
    imp = clf[-1]
    np.testing.assert_array_equal(imp.classes_, labels[[0, 50, 100]])
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype and set(pred) <= set(labels)
    assert np.mean(pred == labels) > 0.9
    P = clf.predict_proba(X)
    assert P.shape == (150, 3) and np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(imp.classes_[P.argmax(axis=1)], pred)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P), rtol=1e-9, atol=1e-12)
    assert imp.coefs_[-1].shape == (16, 3)


def test_classifier_binary_and_multilabel():
    X, y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=0)
    labels = np.where(y == 1, "yes", "no")
    clf = IMPClassifier(0.3, hidden_layer_sizes=(16, 8), batch_size=50, random_state=0).fit(X, labels)
    assert clf.coefs_[-1].shape == (8, 1)
    assert clf.score(X, labels) > 0.85
    P = clf.predict_proba(X)
    assert P.shape == (400, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[(P[:, 1] > 0.5).astype(int)], clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P), rtol=1e-9, atol=1e-12)
    Y = np.column_stack([y, X[:, 0] > 0, X[:, 1] + X[:, 2] > 0]).astype(int)
    ml = IMPClassifier(0.3, hidden_layer_sizes=(16,), batch_size=50, random_state=0).fit(X, Y)
    assert ml.predict(X).shape == (400, 3) and ml.predict_proba(X).shape == (400, 3)
    np.testing.assert_array_equal(ml.classes_, [0, 1, 2])
    assert ml.score(X, Y) > 0.6  # subset accuracy


def test_early_stopping_keeps_best_weights_per_round():
    X, y = make_classification(n_samples=600, n_features=10, n_informative=6, n_classes=3,
                               random_state=1)
    clf = IMPClassifier(0.2, hidden_layer_sizes=(20,), batch_size=32, early_stopping=True,
                        n_iter_no_change=3, random_state=0).fit(X, y)
    scores = clf.path_["validation_score"]
    assert scores.size == clf.n_rounds_ and np.all((scores > 0.5) & (scores <= 1))
    assert np.all(clf.path_["n_epochs"] <= 20) and clf.n_iter_ == clf.path_["n_epochs"].sum()
    # The kept weights are the best of the last round: rescoring them on the
    # same held-out split gives the recorded score.
    from sklearn.model_selection import train_test_split

    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=3)[2]
    _, Xv, _, yv = train_test_split(X, y, test_size=60, random_state=int(seed), stratify=y)
    assert clf.score(Xv, yv) == pytest.approx(scores[-1])
    reg = IMPRegressor(0.2, hidden_layer_sizes=(20,), early_stopping=True, random_state=0)
    reg.fit(*_regression_data(n=400))
    assert reg.path_["validation_score"][-1] > 0.5


def test_pipeline_grid_search_over_budget():
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=0)
    pipe = make_pipeline(StandardScaler(), IMPClassifier(hidden_layer_sizes=(10,), batch_size=50,
                                                         epochs_per_round=5, random_state=0))
    gs = GridSearchCV(pipe, {"impclassifier__n_nonzero_coefs": [1, 0.5]}, cv=3).fit(X, y)
    assert gs.best_params_["impclassifier__n_nonzero_coefs"] == 0.5
    assert gs.best_estimator_[-1].n_nonzero_ == 35


def test_rounds_too_short_to_fit_warn():
    # 150 rows: a round of 20 epochs is 20 Adam steps from the rewound
    # initial weights, and the pruned network ends above the constant model
    # (training accuracy 0.05 on iris).  With longer rounds it fits, silently.
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with pytest.warns(ConvergenceWarning, match="no better than a constant"):
        short = IMPClassifier(20, hidden_layer_sizes=(10,), random_state=0).fit(X, y)
    assert short.score(X, y) < 0.34
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        longer = IMPClassifier(20, hidden_layer_sizes=(10,), epochs_per_round=100, random_state=0).fit(X, y)
    assert longer.score(X, y) > 0.7


def test_verbose_prints_rounds(capsys):
    X, y = _regression_data(n=100)
    IMPRegressor(0.5, hidden_layer_sizes=(5,), epochs_per_round=1, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Round 1/4: 35 parameters" in out and "Round 4/4: 18 parameters" in out


@pytest.mark.parametrize(
    "X, y, params, fit_kw, match",
    [
        (np.array([[np.nan, 1.0], [1.0, 2.0], [0.0, 1.0]]), np.ones(3), {}, {}, "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0], [0.0, 1.0]]), np.ones(3), {}, {}, "infinity"),
        (np.ones((3, 2)), np.array([1.0, np.nan, 2.0]), {}, {}, "NaN"),
        (np.arange(5.0), np.ones(5), {}, {}, "Expected 2D array"),
        (np.ones((4, 2)), np.ones(3), {}, {}, "inconsistent numbers of samples"),
        (np.ones((4, 2)), np.ones(4), {"n_nonzero_coefs": 0}, {}, "n_nonzero_coefs"),
        (np.ones((4, 2)), np.ones(4), {"n_nonzero_coefs": 100},
         {}, "n_nonzero_coefs=100 is larger than the network, which has 15 counted parameters"),
        (np.ones((4, 2)), np.ones(4), {"hidden_layer_sizes": (5, 0)}, {}, "hidden_layer_sizes"),
        (np.ones((4, 2)), np.ones(4), {"prune_fraction": 1.0}, {}, "prune_fraction"),
        (np.ones((4, 2)), np.ones(4), {"rewind_iter": 50}, {}, "rewind_iter=50 is larger than the 20"),
        (np.ones((4, 2)), np.ones(4), {"batch_size": "big"}, {}, "batch_size"),
        (np.ones((4, 2)), np.ones(4), {}, {"sample_weight": np.array([1, -1, 1, 1.0])}, "Negative"),
        (np.ones((4, 2)), np.ones(4), {}, {"sample_weight": np.zeros(4)}, "non-zero|sums to zero"),
        (np.ones((2, 2)), np.ones(2), {"early_stopping": True, "validation_fraction": 0.9}, {},
         "early_stopping needs"),
    ],
)
def test_bad_input_names_the_problem(X, y, params, fit_kw, match):
    with pytest.raises(ValueError, match=match):
        IMPRegressor(**{"hidden_layer_sizes": (5,), **params}).fit(X, y, **fit_kw)


def test_classifier_bad_targets():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="only one class"):
        IMPClassifier(hidden_layer_sizes=(3,)).fit(X, np.zeros(4))
    with pytest.raises(ValueError, match="Unknown label type"):
        IMPClassifier(hidden_layer_sizes=(3,)).fit(X, [0.5, 1.5, 2.5, 3.1])


def test_predict_wrong_number_of_features_and_huge_values():
    X, y = _regression_data(n=100)
    reg = IMPRegressor(0.5, hidden_layer_sizes=(5,), epochs_per_round=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :3])
    with pytest.raises(ValueError, match="too large|non-finite|Scale"):
        IMPRegressor(0.5, hidden_layer_sizes=(5,), epochs_per_round=2, random_state=0).fit(X * 1e300, y)


def test_forward_chunks_agree(monkeypatch):
    import sklearn_sparse_mlp._imp as imp

    X, _ = _regression_data(n=50)
    coefs, intercepts = map(list, zip(*_init_layers([6, 9, 2], 0)))
    whole = _forward(X, coefs, intercepts)
    monkeypatch.setattr(imp, "_CHUNK_VALUES", 9 * 7)  # 7 rows per chunk
    chunked = imp._forward(X, coefs, intercepts)
    # Not bit for bit: BLAS may pick other kernels (another summation order)
    # for 7 rows than for 50.  A sum of m products is exact up to
    # m * eps * sum |a_i b_i|, and ReLU does not increase errors, so both
    # passes agree within (6 + 9 + 2) * eps times the pass on absolute values.
    bound = np.abs(X)
    for W, b in zip(coefs, intercepts):
        bound = bound @ np.abs(W) + np.abs(b)
    np.testing.assert_array_less(np.abs(chunked - whole), 17 * np.finfo(float).eps * bound + 1e-300)


# ---------------------------------------------------------------------------
# scikit-learn's estimator checks
# ---------------------------------------------------------------------------
# Small networks and small batches (the checks' data sets have 30 to 300
# samples: with batch_size="auto" a round would make a single Adam step per
# epoch) and a budget of half the weights so that the checks' score
# thresholds are met.  No check is expected to fail.
CHECKED = [
    IMPRegressor(0.5, hidden_layer_sizes=(8,), batch_size=32, random_state=0),
    IMPClassifier(0.5, hidden_layer_sizes=(8,), batch_size=32, random_state=0),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
