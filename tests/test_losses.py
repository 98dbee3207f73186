"""Losses: gradients against finite differences, through the row blocks too."""

import numpy as np
import pytest

from sklearn_sparse_mlp._blocks import RowBlocks
from sklearn_sparse_mlp._gates import Gates
from sklearn_sparse_mlp._losses import LogisticLoss, SoftmaxLoss, SquaredLoss
from sklearn_sparse_mlp._operator import fused_spec


def _fd_check(loss, F, Y, sw, entries):
    R = loss.gradient(F, Y, sw)
    eps = 1e-6
    for i, l in entries:
        E = np.zeros_like(F)
        E[i, l] = eps
        fd = (loss.value(F + E, Y, sw) - loss.value(F - E, Y, sw)) / (2 * eps)
        np.testing.assert_allclose(R[i, l], fd, rtol=1e-6, atol=1e-10)


def _targets(loss_cls, rng, n, k):
    if loss_cls is SoftmaxLoss:
        return np.eye(k)[rng.integers(0, k, n)]
    if loss_cls is LogisticLoss:
        return (rng.random((n, k)) < 0.4).astype(float)
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("loss_cls", [SquaredLoss, LogisticLoss, SoftmaxLoss])
def test_loss_gradients_finite_differences(loss_cls):
    rng = np.random.default_rng(0)
    n, k = 40, 3
    F = 3 * rng.standard_normal((n, k))
    Y = _targets(loss_cls, rng, n, k)
    sw = rng.random(n)
    sw /= sw.sum()
    loss = loss_cls()
    _fd_check(loss, F, Y, sw, [(0, 0), (7, 2), (39, 1)])
    # The intercept zeroes the gradient's column sums.
    b = loss.intercept(F, Y, sw, None)
    np.testing.assert_allclose(loss.gradient(F + b, Y, sw).sum(axis=0), 0, atol=1e-9)
    # Hessian weights: finite differences of the gradient on the diagonal.
    W = loss.hessian_weights(F, Y, sw)
    E = np.zeros_like(F)
    E[3, 1] = 1e-6
    fd = (loss.gradient(F + E, Y, sw)[3, 1] - loss.gradient(F - E, Y, sw)[3, 1]) / 2e-6
    np.testing.assert_allclose(W[3, 1], fd, rtol=1e-5)


@pytest.mark.parametrize("loss_cls", [LogisticLoss, SoftmaxLoss])
def test_classification_losses_do_not_overflow(loss_cls):
    F = np.array([[1e300, -1e300, 0.0], [-800.0, 800.0, 5.0]])
    Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    sw = np.array([0.5, 0.5])
    loss = loss_cls()
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        v = loss.value(F, Y, sw)
        g = loss.gradient(F, Y, sw)
    assert np.isfinite(v) and v > 100
    assert np.all(np.isfinite(g)) and np.all(np.abs(g) <= 0.5 + 1e-12)


@pytest.mark.parametrize("loss_cls", [SquaredLoss, LogisticLoss, SoftmaxLoss])
def test_weight_gradient_finite_differences(loss_cls):
    # d/dw L(A w) = A^T R: the blocks' support gradient against finite
    # differences of the blocks' loss through their forward pass.
    rng = np.random.default_rng(1)
    n, d, p, k = 120, 4, 6, 3
    X = rng.standard_normal((n, d))
    Y = _targets(loss_cls, rng, n, k)
    blocks = RowBlocks(X, True, Y)
    loss = loss_cls()
    gates = Gates(2, d + 1, True)
    idx = np.sort(rng.choice(p * (d + 1) * k, 10, replace=False))
    val = rng.standard_normal(10)
    b = np.zeros(k)

    def value(v):
        return blocks.loss(loss.kind, blocks.forward(fused_spec(idx, v, gates, d + 1, k)), b)

    spec = fused_spec(idx, val, gates, d + 1, k)
    R = blocks.residual(loss.kind, blocks.forward(spec), b)
    g, _ = blocks.support_gradient(spec, R)
    for t in range(10):
        e = np.zeros(10)
        e[t] = 1e-6
        np.testing.assert_allclose(g[t], (value(val + e) - value(val - e)) / 2e-6, rtol=1e-5, atol=1e-9)


def test_softmax_intercept_sums_are_those_of_the_row_formulas():
    """The softmax intercept's sums in factored form (the rows' exponentials
    times the intercept's) are the loss, gradient and Hessian of the
    per-row formulas at ``F + b``, to rounding; with kept exponentials
    (``softmax_sums``) they are the same bits as ``intercept_sums``."""
    from sklearn_sparse_mlp._losses import (SOFTMAX, intercept_sums_serial, row_exponentials_serial,
                                            softmax_sums_serial)

    rng = np.random.default_rng(3)
    n, k = 700, 6
    F = rng.standard_normal((n, k)) * 4
    Y = np.eye(k)[rng.integers(0, k, n)]
    sw = rng.random(n)
    starts = np.array([0, 300, n])
    for b in (np.zeros(k), rng.uniform(-48.0, 48.0, k)):
        L, G, H = np.empty(2), np.empty((2, k)), np.empty((2, k, k))
        intercept_sums_serial(SOFTMAX, F, b, Y, sw, starts, L, G, H)
        E, M = np.empty((n, k)), np.empty(n)
        row_exponentials_serial(F, starts, E, M)
        L2, G2, H2 = np.empty(2), np.empty((2, k)), np.empty((2, k, k))
        softmax_sums_serial(E, M, F, b, Y, sw, starts, L2, G2, H2)
        for a, c in ((L, L2), (G, G2), (H, H2)):
            np.testing.assert_array_equal(a, c)
        Z = F + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
        loss = sw @ -(Y * np.log(P)).sum(axis=1)
        np.testing.assert_allclose(L.sum(), loss, rtol=1e-12)
        np.testing.assert_allclose(G.sum(axis=0), sw @ (P - Y), rtol=1e-10, atol=1e-12)
        ref = np.diag(sw @ P) - np.einsum("i,il,im->lm", sw, P, P)
        np.testing.assert_allclose(H.sum(axis=0), ref, rtol=1e-10, atol=1e-12)


def test_softmax_newton_step_is_the_pseudo_inverse_or_declines():
    """``_softmax_solve`` gives the minimum-norm solution of a softmax
    intercept's singular Newton system (as the least squares it stands in
    for), and declines a system with a second nearly singular direction (a
    class of vanishing probability), which least squares then takes."""
    from sklearn_sparse_mlp._losses import _softmax_solve

    rng = np.random.default_rng(4)
    k = 10
    for scale in (0.5, 3.0, 8.0):
        F = rng.standard_normal((400, k)) * scale
        P = np.exp(F - F.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        H = np.diag(P.sum(axis=0)) - P.T @ P
        g = P.sum(axis=0) - np.eye(k)[rng.integers(0, k, 400)].sum(axis=0)
        x = np.empty(k)
        assert _softmax_solve(H, g, x)
        np.testing.assert_allclose(x, np.linalg.pinv(H, rcond=1e-12, hermitian=True) @ g, rtol=1e-8, atol=1e-10)
    P[:, 0] = 0.0  # a class of underflowing probabilities
    P /= P.sum(axis=1, keepdims=True)
    H = np.diag(P.sum(axis=0)) - P.T @ P
    assert not _softmax_solve(H, g, np.empty(k))
