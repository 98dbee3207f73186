"""The lazy operator against an explicitly built sensing matrix A."""

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_sparse_mlp._gates import random_gates
from sklearn_sparse_mlp._operator import NetworkOperator, make_design


def _explicit(X, p, k, seed, fit_intercept=True, gate_features=0):
    Xd = X.toarray() if sp.issparse(X) else X
    Xa = np.hstack([Xd, np.ones((Xd.shape[0], 1))]) if fit_intercept else Xd
    Xa = Xa.astype(np.float64)
    H = random_gates(seed, np.arange(p), Xa.shape[1], fit_intercept, gate_features)
    D = (Xa @ H.astype(X.dtype).astype(np.float64) >= 0).astype(float)
    return Xa, D


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_operator_matches_explicit_A(dtype, sparse, k):
    rng = np.random.default_rng(0)
    n, d, p = 300, 6, 700  # p > one chunk: exercises the streaming top-s
    X = rng.standard_normal((n, d)).astype(dtype)
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0
        X = sp.csr_matrix(X)
    op = NetworkOperator(make_design(X, True), p, k, seed=3)
    Xa, D = _explicit(X, p, k, 3)
    q = d + 1
    idx = np.sort(rng.choice(p * q * k, 25, replace=False))
    val = rng.standard_normal(25)
    W = np.zeros(p * q * k)
    W[idx] = val
    W = W.reshape(p, q, k)
    F_ref = np.einsum("ij,if,jfl->il", D, Xa, W)
    R = rng.standard_normal((n, k))
    G_ref = np.einsum("ij,if,il->jfl", D, Xa, R).ravel()
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(op.forward(idx, val), F_ref, atol=tol * 10)
    np.testing.assert_allclose(op.support_gradient(idx, R), G_ref[idx], atol=tol * 10)
    s = 17
    g_sup, c_idx, c_g = op.gradient_pass(idx, R, s)
    np.testing.assert_allclose(g_sup, G_ref[idx], atol=tol * 100)
    off = np.setdiff1d(np.arange(p * q * k), idx)
    top = off[np.argsort(-np.abs(G_ref[off]), kind="stable")[:s]]
    if dtype == np.float64:
        np.testing.assert_array_equal(np.sort(top), c_idx)
    else:  # ties at the float32 level may swap the last entry
        assert len(np.intersect1d(top, c_idx)) >= s - 1
    np.testing.assert_allclose(c_g, G_ref[c_idx], atol=tol * 100)


def test_normal_equations_match_explicit():
    rng = np.random.default_rng(1)
    n, d, p, k = 200, 5, 9, 2
    X = rng.standard_normal((n, d))
    op = NetworkOperator(make_design(X, True), p, k, seed=5)
    Xa, D = _explicit(X, p, k, 5)
    idx = np.sort(rng.choice(p * (d + 1) * k, 12, replace=False))
    w = rng.random(n)
    Y = rng.standard_normal((n, k))
    G, B, C = op.normal_equations(idx, w, Y)
    j, f, l = idx // ((d + 1) * k), (idx // k) % (d + 1), idx % k
    A = D[:, j] * Xa[:, f]
    G_ref = (A * w[:, None]).T @ A * (l[:, None] == l[None, :])
    np.testing.assert_allclose(G, G_ref, atol=1e-10)
    np.testing.assert_allclose(B, np.einsum("iu,i,iu->u", A, w, Y[:, l]), atol=1e-10)
    np.testing.assert_allclose(C, A.T @ w, atol=1e-10)


def test_gates_are_counter_based():
    # Any neuron's gate is the same whatever the order or batch it is drawn in.
    all_g = random_gates(7, np.arange(50), 11, True)
    some = random_gates(7, np.array([42, 3, 17]), 11, True)
    np.testing.assert_array_equal(all_g[:, [42, 3, 17]], some)
    assert not np.array_equal(random_gates(8, np.arange(3), 11, True), all_g[:, :3])
    # Roughly standard normal entries.
    big = random_gates(0, np.arange(20000), 10, False)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01


def test_sparse_gates_have_few_features():
    H = random_gates(0, np.arange(100), 21, True, 3)
    nnz_features = (H[:-1] != 0).sum(axis=0)
    assert np.all(nnz_features == 3)
    assert np.all(H[-1] != 0)  # the bias coordinate is always drawn


def test_masks_right_after_the_cache_grows():
    # The first request for many neurons grows the pattern cache; the
    # returned patterns must be those of the grown cache.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 4))
    op = NetworkOperator(make_design(X, True), 100, 3, seed=5)
    neurons = np.arange(27)
    expected = (op.design.X @ op.gates(neurons) >= 0).astype(np.uint8)
    np.testing.assert_array_equal(op.masks(neurons), expected)
