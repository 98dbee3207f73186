"""Loss gradients against finite differences, and the solver's gradient."""

import numpy as np

from sklearn_sparse_mlp._losses import SquaredLoss
from sklearn_sparse_mlp._operator import NetworkOperator, make_design


def test_squared_loss_gradient_finite_differences():
    rng = np.random.default_rng(0)
    n, k = 40, 3
    F, Y = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    sw = rng.random(n)
    sw /= sw.sum()
    loss = SquaredLoss()
    R = loss.gradient(F, Y, sw)
    eps = 1e-6
    for i, l in [(0, 0), (5, 2), (39, 1)]:
        E = np.zeros_like(F)
        E[i, l] = eps
        fd = (loss.value(F + E, Y, sw) - loss.value(F - E, Y, sw)) / (2 * eps)
        np.testing.assert_allclose(R[i, l], fd, rtol=1e-6, atol=1e-10)
    # The optimal intercept zeroes the gradient's column sums.
    b = loss.intercept(F, Y, sw, None)
    np.testing.assert_allclose(loss.gradient(F + b, Y, sw).sum(axis=0), 0, atol=1e-12)


def test_weight_gradient_finite_differences():
    # d/dw L(A w) = A^T R: the operator's support gradient against finite
    # differences of the loss through the operator's forward product.
    rng = np.random.default_rng(1)
    n, d, p, k = 120, 4, 6, 2
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, k))
    sw = np.full(n, 1.0 / n)
    op = NetworkOperator(make_design(X, True), p, k, seed=2)
    idx = np.sort(rng.choice(p * (d + 1) * k, 10, replace=False))
    val = rng.standard_normal(10)
    loss = SquaredLoss()
    g = op.support_gradient(idx, loss.gradient(op.forward(idx, val), Y, sw))
    eps = 1e-6
    for t in range(10):
        e = np.zeros(10)
        e[t] = eps
        fd = (loss.value(op.forward(idx, val + e), Y, sw) - loss.value(op.forward(idx, val - e), Y, sw)) / (2 * eps)
        np.testing.assert_allclose(g[t], fd, rtol=1e-5, atol=1e-9)
