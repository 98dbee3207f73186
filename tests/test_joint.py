"""The joint phase of a deep fit: IHT over all layers under one budget."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sklearn_sparse_mlp import SparseMLPClassifier, SparseMLPRegressor, _joint
from sklearn_sparse_mlp._joint import DeepObjective, _Network, joint_iht
from sklearn_sparse_mlp._losses import LogisticLoss, SoftmaxLoss, SquaredLoss
from sklearn_sparse_mlp.datasets import make_planted_mlp
from sklearn_sparse_mlp.metrics import psnr_score


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _sparse_net(rng, sizes, density=0.5):
    coefs = [rng.randn(a, b) * (rng.rand(a, b) < density) for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.randn(b) * 0.3 for b in sizes[1:]]
    return coefs, intercepts


def _targets(rng, kind, n, k):
    if kind == "squared":
        return rng.randn(n, k), SquaredLoss()
    if kind == "logistic":
        return (rng.rand(n, k) < 0.4).astype(float), LogisticLoss()
    return np.eye(k)[rng.randint(0, k, n)], SoftmaxLoss()


@pytest.mark.parametrize("kind, k", [("squared", 1), ("squared", 2), ("logistic", 1), ("softmax", 3)])
@pytest.mark.parametrize("sparse_X", [False, True])
def test_objective_gradient_matches_finite_differences(kind, k, sparse_X, monkeypatch, central_differences):
    # Row chunks of 7 rows (the gradient is summed over chunks), sample
    # weights and the L2 penalty: every entry of every layer against central
    # differences of the objective.
    monkeypatch.setattr(_joint, "_CHUNK_VALUES", 7 * 6)
    rng = np.random.RandomState(0)
    n, sizes = 40, [5, 6, 4, k]
    X = rng.randn(n, sizes[0])
    if sparse_X:
        X = sp.csr_matrix(X * (rng.rand(*X.shape) < 0.6))
    Y, loss = _targets(rng, kind, n, k)
    obj = DeepObjective(X, Y, rng.rand(n) + 0.5, loss, l2=0.03)
    coefs, intercepts = _sparse_net(rng, sizes, density=1.0)
    assert len(obj._chunks(coefs)) == 6
    value, gW, gb = obj.value_and_gradient(coefs, intercepts)
    assert value == pytest.approx(obj.value(coefs, intercepts), rel=1e-12)
    fds = central_differences(lambda: obj.value(coefs, intercepts), coefs + intercepts)
    for g, fd in zip(gW + gb, fds):
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_threshold_keeps_the_budget_over_counted_entries_and_drops_dangling_units():
    coefs = [np.array([[5.0, 0.1, 4.0], [3.0, 0.2, 0.0]]),
             np.array([[0.0, 0.0], [0.3, 0.0], [2.0, 0.0]]),
             np.array([[7.0], [8.0]])]
    intercepts = [np.array([0.05, 0.0, 1.0]), np.array([0.5, 0.0]), np.array([9.0])]
    net = _Network(coefs, intercepts, fit_intercept=True)
    # One output: the output weights and intercept are not counted.
    assert net.counted == [True, True, False, True, True, False]
    out = net.threshold(5)
    # The five largest counted entries are 5, 4, 3, 2 and 1.0 (unit 2's
    # bias), but unit 0 has no outgoing weight: its 5 and 3 are left out.
    # Unit 1 then gets 0.3 out but no input (its bias is 0): left out; its
    # 0.2, 0.1 in have no way out; unit 0's bias 0.05 neither.  What is left:
    # unit 2 (4 in, bias 1.0, 2 out) and the second layer's bias 0.5.
    kept = sorted(float(v) for a, c in zip(out.params, out.counted) if c for v in a[a != 0])
    assert kept == [0.5, 1.0, 2.0, 4.0]
    assert out.threshold(5).params[0].tolist() == out.params[0].tolist()  # stable
    np.testing.assert_array_equal(out.coefs[2], coefs[2])  # not counted: untouched
    assert out.intercepts[2][0] == 9.0
    # Without fit_intercept the biases are neither counted nor trained.
    assert _Network(coefs, intercepts, fit_intercept=False).trainable == [True] * 3 + [False] * 3


@pytest.mark.parametrize("monitored", [False, True])
def test_joint_iht_lowers_the_objective_within_the_budget(monitored):
    rng = np.random.RandomState(1)
    X, y = make_planted_mlp(600, 8, (6, 5), 16, random_state=2)
    obj = DeepObjective(X[:500], y[:500, None], None, SquaredLoss(), 1e-4)
    coefs, intercepts = _sparse_net(rng, [8, 6, 5, 1], density=0.3)
    for b in intercepts[:-1]:
        b[:] = 0.0
    n_keep = 14
    start = _Network(coefs, intercepts, True).threshold(n_keep)
    L0 = obj.value(start.coefs, start.intercepts)
    monitor = DeepObjective(X[500:], y[500:, None], None, SquaredLoss(), 0.0).value if monitored else None
    res = joint_iht(obj, start.coefs, start.intercepts, n_keep, max_iter=10, monitor=monitor)
    assert res["loss"] < 0.5 * L0
    assert res["loss"] == pytest.approx(obj.value(res["coefs"], res["intercepts"]), rel=1e-10)
    counted = sum(np.count_nonzero(W) for W in res["coefs"][:-1]) + sum(np.count_nonzero(b) for b in res["intercepts"][:-1])
    assert counted == res["n_nonzero"] <= n_keep
    if monitored:
        assert res["best_validation_loss"] == pytest.approx(min(res["validation_curve"] + [monitor(start.coefs, start.intercepts)]))
    else:
        assert np.all(np.diff(res["loss_curve"]) <= 1e-12 * abs(L0))


def test_joint_phase_improves_a_planted_two_layer_fit_and_moves_budget():
    X, y = make_planted_mlp(3000, 20, (20, 20), 30, random_state=0)
    Xt, yt, X, y = X[2000:], y[2000:], X[:2000], y[:2000]
    # alpha fixed at 1.0: a penalised fit that the stages leave short of the
    # planted network (37 dB), so that the joint phase has room to show.
    fits = {j: SparseMLPRegressor(30, hidden_layer_sizes=(20, 20), joint_max_iter=j, alpha=1.0,
                                  random_state=0).fit(X, y)
            for j in (0, 20)}
    layered, joint = fits[0], fits[20]
    assert layered.n_joint_iter_ == 0 and 0 < joint.n_joint_iter_ <= 20
    # (loss_ is each fit's own objective: the last stage's, or the joint
    # phase's penalty over all layers; the training error compares them.)
    assert np.mean((joint.predict(X) - y) ** 2) < np.mean((layered.predict(X) - y) ** 2)
    assert psnr_score(yt, joint.predict(Xt)) > psnr_score(yt, layered.predict(Xt)) + 3

    def per_layer(reg):
        return [int(np.count_nonzero(W) + np.count_nonzero(b)) for W, b in zip(reg.coefs_[:-1], reg.intercepts_[:-1])]

    assert sum(per_layer(joint)) == joint.n_nonzero_ <= 30
    assert per_layer(joint) != per_layer(layered)  # the budget moved between the layers
    assert len(joint.loss_curve_) == len(layered.loss_curve_) + joint.n_joint_iter_


def test_joint_phase_classifier_with_early_stopping_weights_and_sparse_input():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 6)
    y = np.where(X[:, 0] * X[:, 1] > 0, "a", np.where(X[:, 2] > 0.5, "b", "c"))
    sw = rng.rand(400) + 0.5
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(12, 8), early_stopping=True, random_state=0)
    clf.fit(sp.csr_matrix(X), y, sample_weight=sw)
    assert clf.n_nonzero_ <= 40 and clf.score(X, y) > 0.7
    assert clf.best_validation_loss_ == pytest.approx(min(clf.validation_loss_curve_))
    assert clf.predict_proba(X).shape == (400, 3)
    np.testing.assert_allclose(clf.to_mlp().predict_proba(X), clf.predict_proba(X), atol=1e-12)


def test_joint_phase_brings_a_start_above_the_budget_back_to_it():
    # A budget of 1 over two layers gives each stage at least one weight.
    X, y = make_planted_mlp(300, 4, (3, 3), 4, random_state=0)
    # One weight cannot join the inputs to the output through two layers.
    with pytest.warns(UserWarning, match="predicts a constant"):
        reg = SparseMLPRegressor(1, hidden_layer_sizes=(3, 3), random_state=0).fit(X, y)
    assert reg.stage_budgets_.tolist() == [1, 1] and reg.n_nonzero_ == 0
    # A start with 12 counted nonzeros and a budget of 5: the largest, refitted.
    rng = np.random.RandomState(0)
    coefs, intercepts = _sparse_net(rng, [4, 3, 3, 1], density=1.0)
    obj = DeepObjective(X, y[:, None], None, SquaredLoss(), 0.0)
    start = _Network(coefs, intercepts, True)
    assert start.n_nonzero() > 5
    res = joint_iht(obj, coefs, intercepts, 5, max_iter=3)
    assert res["n_nonzero"] <= 5
    assert res["loss"] <= obj.value(*start.threshold(5).compact()[:2]) + 1e-12


@pytest.mark.parametrize("sparse_X", [False, True])
def test_jacobians_match_finite_differences_of_the_outputs(sparse_X, monkeypatch, central_differences):
    rng = np.random.RandomState(1)
    n, sizes = 9, [4, 5, 3, 2]
    X = rng.randn(n, sizes[0])
    if sparse_X:
        X = sp.csr_matrix(X * (rng.rand(*X.shape) < 0.7))
    coefs, intercepts = _sparse_net(rng, sizes)
    net = _Network(coefs, intercepts, True)
    masks = net.support()
    F, Jac = _joint._jacobians(X, net.coefs, net.intercepts, masks)
    np.testing.assert_allclose(F, _joint._forward(X, net.coefs, net.intercepts), rtol=1e-12)
    for i in range(n):
        for o in range(sizes[-1]):
            fds = central_differences(lambda: _joint._forward(X[i:i + 1], net.coefs, net.intercepts)[0, o],
                                      net.params)
            np.testing.assert_allclose(Jac[i, o], _joint._flatten(fds, masks), rtol=1e-6, atol=1e-8)


def _exact_loo_of_the_quadratic_model(obj, net, l2):
    """Leave each row out (one unit of its weight, or all of it when below
    one) of the penalised quadratic model of the loss at ``net`` and score
    its outputs with the true loss."""
    masks = net.support()
    n_layers = len(net.coefs)
    F, Jac = _joint._jacobians(obj.X, net.coefs, net.intercepts, masks)
    H = _joint._loss_curvature(obj.loss, F)
    g = obj.loss.gradient(F, obj.Y, np.ones(F.shape[0]))
    theta = _joint._flatten(net.params, masks)
    D = np.diag(np.concatenate([np.full(int(m.sum()), float(i < n_layers)) for i, m in enumerate(masks)]))
    total = 0.0
    for i in range(F.shape[0]):
        w = obj.sw.copy()
        w[i] -= min(w[i], 1.0 / obj.n_units)
        M = np.einsum("i,iop,ioq,iqr->pr", w, Jac, H, Jac) + l2 * D
        r = np.einsum("i,iop,io->p", w, Jac, g) + l2 * D @ theta
        delta = np.linalg.lstsq(M, -r, rcond=None)[0]
        total += obj.sw[i] * obj.loss.value(F[i:i + 1] + Jac[i] @ delta, obj.Y[i:i + 1], np.ones(1))
    return total


@pytest.mark.parametrize("weights", ["integer", "fractional"])
@pytest.mark.parametrize("kind, k", [("squared", 1), ("squared", 2), ("logistic", 1), ("softmax", 3)])
def test_alo_is_the_leave_one_out_of_the_linearised_penalised_refit(kind, k, weights, monkeypatch):
    # Row chunks of a few rows; integer sample weights (a weighted row is
    # left out one unit of weight at a time, as its repeats would be) or
    # those weights scaled down, some below one (such a row is left out
    # whole).  The same network either way: leaving out the only row that
    # sees a parameter has no defined refit (leverage 1).
    monkeypatch.setattr(_joint, "_CHUNK_VALUES", 200)
    rng = np.random.RandomState(0)
    n, sizes = 80, [4, 5, 3, k]
    X = rng.randn(n, sizes[0])
    Y, loss = _targets(rng, kind, n, k)
    sw = rng.randint(1, 4, n).astype(float)
    if weights == "fractional":
        sw *= np.random.RandomState(1).uniform(0.3, 1.0, n)
    obj = DeepObjective(X, Y, sw, loss, 0.0)
    net = _Network(*_sparse_net(rng, sizes), True)
    l2s = [1e-3, 0.1, 3.0]
    alo = _joint.alo_losses(obj, net, l2s)
    exact = [_exact_loo_of_the_quadratic_model(obj, net, l2) for l2 in l2s]
    np.testing.assert_allclose(alo, exact, rtol=1e-7)


def test_alo_of_a_linear_model_is_press():
    rng = np.random.RandomState(0)
    n, d = 50, 4
    X = rng.randn(n, d)
    y = X @ rng.randn(d) + 0.3 * rng.randn(n) + 2.0
    obj = DeepObjective(X, y[:, None], None, SquaredLoss(), 0.0)
    net = _Network([np.full((d, 1), 0.1)], [np.zeros(1)], True)
    for l2 in (1e-3, 0.1, 1.0):
        press = 0.0
        for i in range(n):
            keep = np.arange(n) != i
            A = np.c_[X[keep], np.ones(n - 1)]
            theta = np.linalg.solve(A.T @ A / n + l2 * np.diag([1.0] * d + [0.0]), A.T @ y[keep] / n)
            press += 0.5 * (np.r_[X[i], 1.0] @ theta - y[i]) ** 2 / n
        assert _joint.alo_losses(obj, net, [l2])[0] == pytest.approx(press, rel=1e-10)


def test_joint_phase_of_a_noisy_regression_does_not_overfit():
    # diabetes (442 rows, R^2 about 0.5 at best): the joint phase overfitted
    # (held-out R^2 0.37 against 0.49 for the layer-by-layer network,
    # 3-fold); its two-fold check on the training rows now finds that it
    # does not pay off.
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    scores = {0: [], 20: []}
    for train, test in KFold(3, shuffle=True, random_state=0).split(X):
        for j in scores:
            reg = make_pipeline(StandardScaler(), SparseMLPRegressor(110, hidden_layer_sizes=(100, 100),
                                                                     joint_max_iter=j, random_state=0))
            scores[j].append(reg.fit(X[train], y[train]).score(X[test], y[test]))
            if j:
                assert reg[-1].n_joint_iter_ == 0
    assert np.mean(scores[20]) > 0.46
    assert np.mean(scores[20]) > np.mean(scores[0]) - 0.02


def test_joint_check_lets_the_phase_run_where_it_pays_off():
    # A planted two-layer network (no noise): the joint phase improves on the
    # layer-by-layer network on held-out rows, so the check lets it run.
    X, y = make_planted_mlp(3000, 20, (20, 20), 30, random_state=0)
    Xt, yt, X, y = X[2000:], y[2000:], X[:2000], y[:2000]
    fits = {j: SparseMLPRegressor(30, hidden_layer_sizes=(20, 20), joint_max_iter=j, random_state=0).fit(X, y)
            for j in (0, 20)}
    assert fits[20].n_joint_iter_ > 0
    assert psnr_score(yt, fits[20].predict(Xt)) > psnr_score(yt, fits[0].predict(Xt)) + 3
    rng = np.random.RandomState(0)
    obj = DeepObjective(X, y[:, None] + rng.randn(2000, 1), None, SquaredLoss(), 1e-4)
    pays, start, joint = _joint.joint_pays_off(obj, fits[0].coefs_, fits[0].intercepts_, 30, 0, max_iter=5)
    assert start > 0 and joint > 0 and pays == (joint < start)
