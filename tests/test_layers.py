"""Parametrisations: factored gradients against finite differences, the
Gauss-Newton matrix against an explicit Jacobian, thresholding rules."""

import numpy as np
import pytest

from sklearn_sparse_mlp._blocks import RowBlocks
from sklearn_sparse_mlp._gates import Gates
from sklearn_sparse_mlp._iht import Problem
from sklearn_sparse_mlp._layers import FactoredLayer, top_s
from sklearn_sparse_mlp._losses import SoftmaxLoss, SquaredLoss


def _factored(rng, n=400, d=5, m=4, k=3, sequential=True, loss=None):
    X = rng.standard_normal((n, d))
    q = d + 1
    Y = np.eye(k)[rng.integers(0, k, n)] if isinstance(loss, SoftmaxLoss) else rng.standard_normal((n, k))
    U = rng.standard_normal((q, m))
    U[rng.random(U.shape) < 0.3] = 0.0
    V = rng.standard_normal((m, k))
    V[0, 1] = 0.0
    layer = FactoredLayer(50, q, k, np.array([1, 4, 7, 30]), U, V, Gates(3, q, True), sequential)
    prob = Problem(RowBlocks(X, True, Y), loss or SquaredLoss(), True, penalty=0.01)
    return X, layer, prob


@pytest.mark.parametrize("sequential", [True, False])
@pytest.mark.parametrize("loss", [SquaredLoss(), SoftmaxLoss()])
def test_factored_support_gradient_finite_differences(sequential, loss):
    rng = np.random.default_rng(0)
    _, layer, prob = _factored(rng, sequential=sequential, loss=loss)
    b = np.zeros(3)
    point = prob.evaluate(layer, b)
    point.b = b  # hold the intercept fixed for the finite differences
    g = layer.support_gradient(prob, prob.residual(point))
    keys = np.flatnonzero(layer._flat())
    flat = layer._flat()[keys]

    def value(v):
        trial = layer.replace(layer.units, *layer._split(keys, v))
        F = prob.blocks.forward(trial.spec())
        return prob.blocks.loss(prob.kind, F, b) + 0.5 * prob.penalty * trial.sq_norm()

    # Sequential patterns move with U: steps small enough not to cross a
    # pattern boundary give the gradient of the piecewise smooth loss.
    for t in range(0, keys.size, 3):
        e = np.zeros(keys.size)
        e[t] = 1e-7
        np.testing.assert_allclose(g[t], (value(flat + e) - value(flat - e)) / 2e-7, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("loss", [SquaredLoss(), SoftmaxLoss()])
def test_newton_system_matches_finite_differences(loss):
    # The factored Newton matrix (exact row Hessians, the bilinear cross term,
    # the intercept eliminated) against finite differences of the gradient of
    # the loss with its intercept re-solved at every point (fixed gates: the
    # loss is smooth).
    rng = np.random.default_rng(1)
    _, layer, prob = _factored(rng, sequential=False, loss=loss)
    point = prob.evaluate(layer, None)
    G, g = layer.newton_system(prob, point, prob.residual(point))
    keys = np.flatnonzero(layer._flat())
    flat = layer._flat()[keys]

    def gradient(v):
        trial = layer.replace(layer.units, *layer._split(keys, v))
        pt = prob.evaluate(trial, point.b)
        return trial.support_gradient(prob, prob.residual(pt))

    np.testing.assert_allclose(gradient(flat), g, rtol=1e-10, atol=1e-12)
    # The softmax intercept is re-solved to a gradient of 1e-10: steps of
    # 1e-4 keep that error below 1e-6 in the differences, and the truncation
    # error (eps^2 times third derivatives of order one) below 1e-7.
    eps = 1e-4
    H = np.column_stack([(gradient(flat + eps * e) - gradient(flat - eps * e)) / (2 * eps)
                         for e in np.eye(keys.size)])
    np.testing.assert_allclose(G, H, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("weights", [False, True])
def test_factored_gauss_newton_product_matches_an_explicit_jacobian(weights):
    # The conjugate-gradient product of a large support: J^T Sw P J d +
    # penalty d, J the outputs' Jacobian at the current patterns, P the
    # centring of the intercept; against J built column by column.
    rng = np.random.default_rng(2)
    X, layer, prob = _factored(rng, sequential=True)
    n, k = X.shape[0], layer.k
    if weights:
        sw = rng.uniform(0.5, 2.0, n)
        prob = Problem(RowBlocks(X, True, prob.blocks.Y, sw), SquaredLoss(), True, penalty=0.01)
    sw = np.broadcast_to(prob.blocks.sw, (n,))
    keys = np.flatnonzero(layer._flat())
    J = np.empty((n * k, keys.size))
    for c, e in enumerate(np.eye(keys.size)):
        F = sum(prob.blocks.forward(spec) for spec in layer.directions(keys, e) if np.any(spec.Vout))
        J[:, c] = (F - sw @ F).ravel()
    Q = J.T @ (np.repeat(sw, k)[:, None] * J) + prob.penalty * np.eye(keys.size)
    d = rng.standard_normal(keys.size)
    np.testing.assert_allclose(layer._gn_product(prob, keys, d), Q @ d, rtol=1e-10, atol=1e-12)
    # J^T R on the support in one pass: the dense first-layer gradient's entries.
    R = rng.standard_normal((n, k))
    gU, gV = prob.blocks.unit_gradient(layer.units, layer.pattern_gates(), layer.U, layer.V, R)
    fu, ju, jv, lv = layer._support()
    np.testing.assert_allclose(layer._support_transpose(prob, R), np.concatenate([gU[fu, ju], gV[jv, lv]]),
                               rtol=1e-12, atol=1e-12)


def test_factored_conjugate_gradient_refit_lowers_the_loss_to_the_newton_one():
    # On a support too large for the exact Newton matrix, Gauss-Newton steps
    # by conjugate gradients; on a small one both must reach the same
    # minimum of the squared loss at fixed gates (a least squares problem
    # in each factor, bilinear in both).
    rng = np.random.default_rng(3)
    _, layer, prob = _factored(rng, sequential=False)
    start = prob.evaluate(layer, None)
    cg = layer._refine_cg(prob, start, 200, 0.0)
    newton = layer.refine(prob, start, 200, tol=0.0)
    assert cg.L < start.L
    np.testing.assert_allclose(cg.L, newton.L, rtol=1e-6)


def test_from_entries_drops_empty_units_and_rebalances():
    rng = np.random.default_rng(2)
    _, layer, _ = _factored(rng)
    q, m, k = layer.q, layer.units.size, layer.k
    flat = layer._flat()
    flat[q * m + 0 * k: q * m + 1 * k] = 0.0  # unit 0 loses its output weights
    keys = np.flatnonzero(flat)
    new = layer.from_entries(keys, flat[keys])
    assert new.units.tolist() == layer.units[1:].tolist()
    np.testing.assert_allclose(np.linalg.norm(new.U, axis=0), np.linalg.norm(new.V, axis=1))
    # The network is unchanged by the rebalancing.
    np.testing.assert_allclose(new.U[:, 0][:, None] * new.V[0], layer.U[:, 1][:, None] * layer.V[1])


@pytest.mark.parametrize("sequential", [True, False])
@pytest.mark.parametrize("loss", [SquaredLoss(), SoftmaxLoss()])
def test_entering_units_use_the_free_budget_and_lower_the_loss(sequential, loss):
    # Units outside a factored layer have zero gradient (u = v = 0 is a
    # saddle): entering adds new units within the free budget, distinct
    # from the active ones, whose output weights at the normalised step
    # lower the loss; with sequential gates each new unit's hidden bias gives
    # it about the share of active rows of its random gate.
    rng = np.random.default_rng(4)
    X, layer, prob = _factored(rng, sequential=sequential, loss=loss)
    X = 3.0 * X + 5.0  # unscaled data: the bias decides the share
    prob = Problem(RowBlocks(X, True, prob.blocks.Y), loss, True, penalty=1e-3)
    point = prob.evaluate(layer, None)
    free = 20
    grown, step = layer.entering(prob, point, free)
    new = np.setdiff1d(grown.units, layer.units)
    assert new.size >= 1 and not np.any(np.isin(new, layer.units))
    trial = grown.replace(grown.units, grown.U, grown.V + step)
    assert layer.nnz < trial.nnz <= layer.nnz + free
    assert prob.evaluate(trial, point.b).L < point.L
    balanced = trial.balanced()
    np.testing.assert_allclose(prob.blocks.forward(balanced.spec()), prob.blocks.forward(trial.spec()), atol=1e-10)
    if sequential:
        pos = np.searchsorted(grown.units, new)
        H = layer.gates(new)
        share_gate = np.mean(X @ H[:-1] + H[-1] >= 0, axis=0)
        share_unit = np.mean(X @ grown.U[:-1, pos] + grown.U[-1, pos] >= 0, axis=0)
        np.testing.assert_allclose(share_unit, share_gate, atol=0.2)


def test_top_s_breaks_ties_by_key():
    values = np.array([1.0, -3.0, 3.0, 2.0, -1.0])
    keys = np.array([10, 4, 2, 7, 1])
    assert top_s(values, keys, 1).tolist() == [2]  # |3| twice: key 2 before key 4
    assert top_s(values, keys, 4).tolist() == [1, 2, 3, 4]  # |1| twice: key 1 before key 10


def _explicit_alo(layer, X, Y, point, kind, alphas, df=None, weights=None, prob=None):
    """The approximate leave-one-out loss of ``FusedLayer.alo`` from the
    explicitly built support columns (dense linear algebra, one system per
    output): a slow independent implementation.  ``df``: a list that
    receives each alpha's degrees of freedom per output (the traces of the
    hat matrices, the intercept's included).  ``weights``: the sample
    weights; a row is left out one unit of weight at a time, or whole when
    its weight is below one.  ``prob``: the Problem of ``point``; with a
    log-loss, each refit's step from ``point`` is halved while it raises the
    penalised loss (``_alo_step``; the loss evaluated by ``prob``; None: the
    full steps)."""
    from scipy.special import expit, logsumexp, softmax

    from sklearn_sparse_mlp._operator import decode

    n = X.shape[0]
    active, pos, feat, out = decode(layer.idx, layer.q, layer.k)
    Xt = np.hstack([X, np.ones((n, 1))])
    D = Xt @ layer.gates(active) >= 0
    A = np.stack([D[:, pos[e]] * Xt[:, feat[e]] for e in range(pos.size)], axis=1)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    total = weights.sum()
    sw = weights / total
    u = np.minimum(weights, 1.0) / total
    eta0 = point.F + point.b
    probs = {0: lambda e: e, 1: expit, 2: lambda e: softmax(e, axis=1)}[kind]
    P0 = probs(eta0)
    v = np.ones_like(eta0) if kind == 0 else np.maximum(P0 * (1 - P0), 1e-12)
    z = Y if kind == 0 else eta0 - (P0 - Y) / v
    losses = []
    for a in alphas:
        eta, q = np.zeros_like(eta0), np.zeros_like(eta0)
        eta_start = np.zeros_like(eta0)  # the quadratic model at point's weights
        refit = np.zeros_like(layer.val)
        for l in range(layer.k):
            cols = np.flatnonzero(out == l)
            w = sw * v[:, l]
            Ab = np.hstack([A[:, cols], np.ones((n, 1))])
            M = Ab.T @ (w[:, None] * Ab)
            M[:-1, :-1] += a / total * np.eye(cols.size)
            coef = np.linalg.solve(M, Ab.T @ (w * z[:, l]))
            refit[cols] = coef[:-1]
            eta[:, l] = Ab @ coef
            fit0 = A[:, cols] @ layer.val[cols]
            eta_start[:, l] = fit0 + w @ (z[:, l] - fit0) / w.sum()
            q[:, l] = np.einsum("ij,jk,ik->i", Ab, np.linalg.inv(M), Ab)
        if kind != 0 and prob is not None:
            at = prob.with_alpha(a)
            start = point.L + 0.5 * (at.penalty - prob.penalty) * layer.sq_norm()
            t = 1.0
            while at.evaluate(layer.replace(layer.idx, layer.val + t * (refit - layer.val)), point.b).L > start:
                t = 0.0 if t < 2.0 ** -8 else 0.5 * t  # ALO_STEP_HALVINGS halvings, then none
            eta = (1.0 - t) * eta_start + t * eta
        if df is not None:
            df.append((sw[:, None] * v * q).sum(axis=0))
        loo = eta + u[:, None] * (probs(eta) - Y) * q / np.maximum(1 - u[:, None] * v * q, 1e-3)
        if kind == 0:
            row = 0.5 * ((loo - Y) ** 2).sum(axis=1)
        elif kind == 1:
            row = (np.logaddexp(0, loo) - Y * loo).sum(axis=1)
        else:
            row = -(Y * (loo - logsumexp(loo, axis=1, keepdims=True))).sum(axis=1)
        losses.append(float(sw @ row))
    return np.array(losses)


def _alo_case(case, n, weights=None):
    """A fused layer of 25 random entries on n rows (with sample ``weights``)
    for the ALO tests: (layer, X, Y, point, kind, prob)."""
    from sklearn_sparse_mlp._layers import FusedLayer
    from sklearn_sparse_mlp._losses import LogisticLoss

    rng = np.random.default_rng(0)
    d, p = 5, 10
    X = rng.standard_normal((n, d))
    q = d + 1
    k = 2 if case in ("squared, 2 outputs",) else 3 if case == "softmax" else 1
    if case.startswith("squared"):
        Y, loss, kind = np.maximum(X[:, :1], 0) + 0.3 * rng.standard_normal((n, k)), SquaredLoss(), 0
    elif case == "logistic":
        Y, loss, kind = (X[:, :1] + 0.5 * rng.standard_normal((n, 1)) > 0).astype(float), LogisticLoss(), 1
    else:
        Y, loss, kind = np.eye(3)[rng.integers(0, 3, n)], SoftmaxLoss(), 2
    idx = np.unique(rng.choice(p * q * k, 25, replace=False))
    layer = FusedLayer(p, q, k, idx, rng.standard_normal(idx.size), Gates(5, q, True))
    blocks = RowBlocks(X, True, Y, weights)
    prob = Problem(blocks, loss, True, 1.0 / blocks.weight_total)
    point = prob.evaluate(layer, np.zeros(k))
    return layer, X, Y, point, kind, prob


@pytest.mark.parametrize("case", ["squared", "squared, 2 outputs", "logistic", "softmax"])
def test_alo_against_explicit_columns(case):
    """The leave-one-out scores that choose alpha="auto", from the row blocks'
    kernels, agree with dense linear algebra on the explicit support columns."""
    layer, X, Y, point, kind, prob = _alo_case(case, 300)
    alphas = np.logspace(-3, 3, 7)
    got = layer.alo(prob, point, alphas)
    np.testing.assert_allclose(got, _explicit_alo(layer, X, Y, point, kind, alphas, prob=prob), rtol=1e-10)
    # The softmax case's random network is far from a minimum: some of its
    # Newton steps raise the loss, and are scored halved.
    full_steps = _explicit_alo(layer, X, Y, point, kind, alphas)
    assert np.allclose(got, full_steps, rtol=1e-10) == (case != "softmax")


@pytest.mark.parametrize("case", ["squared", "squared, 2 outputs", "logistic", "softmax"])
def test_alo_leaves_out_a_unit_of_weight_or_a_lighter_row_whole(case):
    """With sample weights, a row of weight w >= 1 is left out one unit of
    weight at a time (as its repeats would be) and a row below one whole:
    the kernels agree with the explicit columns, and weights that are all
    below one give the same scores when scaled (with alpha scaled alike, the
    same penalty): weights normalised to sum to one leave out rows, not
    all the data."""
    rng = np.random.default_rng(1)
    alphas = np.logspace(-3, 3, 7)
    weights = rng.uniform(0.2, 3.0, 300)
    layer, X, Y, point, kind, prob = _alo_case(case, 300, weights)
    got = layer.alo(prob, point, alphas)
    np.testing.assert_allclose(got, _explicit_alo(layer, X, Y, point, kind, alphas, weights=weights, prob=prob),
                               rtol=1e-10)
    light = rng.uniform(0.1, 0.9, 300)
    scores = []
    for scale in (1.0, 1.0 / light.sum()):
        layer, X, Y, point, kind, prob = _alo_case(case, 300, scale * light)
        scores.append(layer.alo(prob, point, scale * alphas))
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-9)


@pytest.mark.parametrize("case", ["squared", "squared, 2 outputs", "softmax"])
def test_alo_skips_refits_with_more_degrees_of_freedom_than_half_the_rows(case):
    # 25 entries on 30 rows (14 with several outputs, which share them):
    # weak penalties nearly interpolate, where the leave-one-out estimate
    # (support and patterns held fixed) is not to be trusted.  They score
    # inf; the others as before.
    from sklearn_sparse_mlp._layers import ALO_MAX_DF_SHARE

    n = 30 if case == "squared" else 14
    layer, X, Y, point, kind, prob = _alo_case(case, n)
    alphas = np.logspace(-3, 3, 13)
    df = []
    explicit = _explicit_alo(layer, X, Y, point, kind, alphas, df, prob=prob)
    over = np.max(df, axis=1) > ALO_MAX_DF_SHARE * n
    assert over.any() and not over.all()
    got = layer.alo(prob, point, alphas)
    assert np.all(np.isinf(got[over]))
    np.testing.assert_allclose(got[~over], explicit[~over], rtol=1e-10)
    # With every alpha over the share, the largest is still scored.
    got = layer.alo(prob, point, alphas[over])
    assert np.all(np.isinf(got[:-1])) and np.isfinite(got[-1])


def _fused(rng, n, kind_loss, s=40, p=30, d=5, sw=None):
    from sklearn_sparse_mlp._layers import FusedLayer

    X = rng.standard_normal((n, d))
    q = d + 1
    Y = (rng.random((n, 1)) < 0.4).astype(float) if kind_loss.kind != SquaredLoss().kind else rng.standard_normal((n, 1))
    idx = np.sort(rng.choice(p * q, s, replace=False))
    layer = FusedLayer(p, q, 1, idx, rng.standard_normal(s), Gates(4, q, True))
    blocks = RowBlocks(X, True, Y, sw)
    prob = Problem(blocks, kind_loss, True, penalty=0.01)
    return layer, prob


def _changed_support(rng, layer):
    """The same gates, a support that keeps 30 of the entries and gains 10."""
    keep = np.sort(rng.choice(layer.idx.size, 30, replace=False))
    extra = np.setdiff1d(rng.choice(layer.p * layer.q, 60, replace=False), layer.idx)[:10]
    idx = np.concatenate([layer.idx[keep], extra])
    order = np.argsort(idx)
    return layer.replace(idx[order], np.concatenate([layer.val[keep], rng.standard_normal(10)])[order])


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_support_system_is_the_refit_and_updates_match(loss):
    """A SupportSystem formed at a point gives the Gauss-Newton step of the
    support at its patterns: for the squared loss the penalised least
    squares refit on the support (``refine``), for the logistic loss the
    Newton direction; for the squared loss, a system updated from an earlier
    support's (its common rows and columns kept, the new entries' formed)
    equals the one formed afresh when the patterns have not moved."""
    from sklearn_sparse_mlp._losses import LogisticLoss

    rng = np.random.default_rng(5)
    obj = SquaredLoss() if loss == "squared" else LogisticLoss()
    layer, prob = _fused(rng, 2000, obj)
    point = prob.evaluate(layer, None)
    system = layer.support_system(prob, point)
    g = layer.step_gradient(prob, prob.residual(point))
    np.testing.assert_allclose(g, layer.support_gradient(prob, prob.residual(point)), rtol=1e-10, atol=1e-14)
    dv = system.solve(g)
    if loss == "squared":
        target = layer._refine_direct(prob, point)
        np.testing.assert_allclose(layer.val + dv, target.layer.val, rtol=1e-8, atol=1e-10)
    else:
        ref = layer._newton_direction(prob, g, prob.hessian_weights(point))
        np.testing.assert_allclose(dv, ref, rtol=1e-8, atol=1e-12)
    assert system.model_decrease(g, dv) > 0
    if loss != "squared":
        return  # see test_logistic_systems_are_formed_afresh
    other = _changed_support(rng, layer)
    updated = other.support_system(prob, point, previous=system)
    assert updated.updated
    fresh = other.support_system(prob, point)
    g2 = other.step_gradient(prob, prob.residual(point))
    np.testing.assert_allclose(updated.solve(g2), fresh.solve(g2), rtol=1e-7, atol=1e-10)


def test_support_system_of_several_outputs_is_the_refit():
    """Squared loss, several outputs: one block per output, formed apart
    (they are decoupled), whose step is the least squares refit of the
    whole support, formed as one matrix with the blocks between outputs
    masked (``_refine_direct``)."""
    from sklearn_sparse_mlp._layers import FusedLayer

    rng = np.random.default_rng(7)
    n, d, p, k = 1500, 5, 20, 3
    q = d + 1
    X = rng.standard_normal((n, d))
    Y = np.maximum(X[:, :k], 0) + 0.1 * rng.standard_normal((n, k))
    idx = np.sort(rng.choice(p * q * k, 40, replace=False))
    layer = FusedLayer(p, q, k, idx, rng.standard_normal(idx.size), Gates(4, q, True))
    prob = Problem(RowBlocks(X, True, Y), SquaredLoss(), True, penalty=0.01)
    point = prob.evaluate(layer, None)
    system = layer.support_system(prob, point)
    assert len(system.blocks) == np.unique(layer._bases()[3]).size == k
    g = layer.step_gradient(prob, prob.residual(point))
    target = layer._refine_direct(prob, point)
    assert target is not point
    np.testing.assert_allclose(layer.val + system.solve(g), target.layer.val, rtol=1e-8, atol=1e-10)


def test_logistic_systems_are_formed_afresh():
    """With the logistic loss a system is not updated from an earlier
    support's (formed at other curvature weights, the mix is rarely positive
    definite): given ``previous``, it is the system formed afresh."""
    from sklearn_sparse_mlp._losses import LogisticLoss

    rng = np.random.default_rng(5)
    layer, prob = _fused(rng, 2000, LogisticLoss())
    point = prob.evaluate(layer, None)
    system = layer.support_system(prob, point)
    other = _changed_support(rng, layer)
    given = other.support_system(prob, point, previous=system)
    fresh = other.support_system(prob, point)
    assert not given.updated
    np.testing.assert_array_equal(given.blocks[0][1], fresh.blocks[0][1])


def test_truncated_step_drops_the_small_eigenvalues():
    """``solve(g, drop=f)`` is the step through the eigenvectors of ``M``
    whose eigenvalues exceed ``f`` times the largest (a collinear support:
    two columns nearly equal), computed explicitly; systems with no
    eigendecomposition to truncate (the logistic loss) give None."""
    from sklearn_sparse_mlp._layers import TRUNCATED_DROP_FLOOR, FusedLayer
    from sklearn_sparse_mlp._losses import LogisticLoss

    rng = np.random.default_rng(8)
    n = 600
    X = rng.standard_normal((n, 3))
    X[:, 1] = X[:, 0] + 1e-4 * rng.standard_normal(n)  # nearly collinear features
    y = X[:, 0] - X[:, 2] + 0.1 * rng.standard_normal(n)
    q = 4
    # One unit's weights on the three features: its support columns are
    # the features on the unit's active rows, two of them nearly collinear.
    idx = np.array([0, 1, 2])
    layer = FusedLayer(3, q, 1, idx, np.array([0.3, 0.1, -0.2]), Gates(4, q, True))
    prob = Problem(RowBlocks(X, True, y[:, None]), SquaredLoss(), True, penalty=0.0)
    point = prob.evaluate(layer, None)
    system = layer.support_system(prob, point)
    M = system.blocks[0][1]
    evals, evecs = np.linalg.eigh(M)
    assert 1e-10 * evals[-1] < evals[0] < TRUNCATED_DROP_FLOOR * evals[-1] < evals[1]
    g = layer.step_gradient(prob, prob.residual(point))
    keep = evals > TRUNCATED_DROP_FLOOR * evals[-1]
    V = evecs[:, keep]
    expected = -V @ ((V.T @ g) / evals[keep])
    np.testing.assert_allclose(system.solve(g, drop=TRUNCATED_DROP_FLOOR), expected, rtol=1e-8, atol=1e-12)
    full = system.solve(g)
    assert np.linalg.norm(full) > np.linalg.norm(expected)
    np.testing.assert_allclose(evecs[:, keep].T @ full, evecs[:, keep].T @ expected, rtol=1e-6, atol=1e-10)
    yl = (y > 0).astype(float)
    lprob = Problem(RowBlocks(X, True, yl[:, None]), LogisticLoss(), True, penalty=0.01)
    lpoint = lprob.evaluate(layer, None)
    lsys = layer.support_system(lprob, lpoint)
    assert lsys.solve(layer.step_gradient(lprob, lprob.residual(lpoint)), drop=TRUNCATED_DROP_FLOOR) is None


def test_sketched_system_takes_the_rows_diagonal_of_units_seldom_active():
    """On many rows the system is formed on a fixed sample of them.  The
    diagonal entries of units active on few of the sample's rows are set to
    all the rows' (such a unit keeps its scale); the others keep the
    sample's, an estimate of the rows'.  Its step is still a descent
    direction."""
    import sklearn_sparse_mlp._layers as layers

    rng = np.random.default_rng(6)
    layer, prob = _fused(rng, 6000, SquaredLoss())
    point = prob.evaluate(layer, None)
    full = layer.support_system(prob, point)
    old = layers.SKETCH_MIN_ROWS, layers.FULL_DIAGONAL_ROWS
    layers.SKETCH_MIN_ROWS, layers.FULL_DIAGONAL_ROWS = 1024, 512
    try:
        sketch = layer.system_rows(prob)
        assert sketch is not prob.blocks and sketch.n == 1024
        sketched = layer.support_system(prob, point)
        # Sizes are rounded up to a multiple of 1024, and need 1.5 times as
        # many rows.
        layers.SKETCH_MIN_ROWS = 1025
        assert layer.system_rows(prob).n == 2048
        layers.SKETCH_MIN_ROWS = 3000
        assert layer.system_rows(prob).n == 3072
        layers.SKETCH_MIN_ROWS = 4097  # 5120 rows: 6000 are fewer than 1.5 times as many
        assert layer.system_rows(prob) is prob.blocks
    finally:
        layers.SKETCH_MIN_ROWS, layers.FULL_DIAGONAL_ROWS = old
    from sklearn_sparse_mlp._operator import decode

    active, pos, _, _ = decode(layer.idx, layer.q, layer.k)
    _, counts = sketch.pattern_keys(active, layer.gates(active))
    few = counts[pos] < 512
    assert few.any() and not few.all()
    M_full, M_sk = full.blocks[0][1], sketched.blocks[0][1]
    np.testing.assert_allclose(np.diag(M_sk)[few], np.diag(M_full)[few], rtol=1e-10)
    G, C = sketched.raw
    own = np.diag(G) - C * C + prob.penalty
    np.testing.assert_array_equal(np.diag(M_sk)[~few], own[~few])
    np.testing.assert_allclose(own[~few], np.diag(M_full)[~few], rtol=0.25)
    g = layer.step_gradient(prob, prob.residual(point))
    assert float(g @ sketched.solve(g)) < 0
