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
