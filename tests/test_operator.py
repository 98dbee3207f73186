"""The lazy operator against an explicitly built sensing matrix A."""

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_sparse_mlp._blocks import RowBlocks
from sklearn_sparse_mlp._gates import Gates, random_gates
from sklearn_sparse_mlp._operator import fused_spec, gradient_pass, sorted_unique


def _explicit(X, p, seed, fit_intercept=True):
    """A = [D_1 X, ..., D_p X] (n x p q), from the gates and X in float64."""
    Xd = X.toarray() if sp.issparse(X) else X
    Xa = np.hstack([Xd, np.ones((Xd.shape[0], 1), Xd.dtype)]) if fit_intercept else Xd
    H = random_gates(seed, np.arange(p), Xa.shape[1], fit_intercept)
    Z = Xa.astype(np.float64) @ H.astype(Xd.dtype).astype(np.float64)
    # The kernels round the scores differently: the patterns agree because no
    # score lies within float32 rounding of zero (the test data drop such rows).
    assert np.all((np.abs(Z) > 1e-4) | (Z == 0))
    return Xa.astype(np.float64), Z >= 0


def _clear_rows(X, p, seed, n):
    """The first n rows of X whose gate scores are not within 1e-4 of zero."""
    Xa = np.hstack([X, np.ones((X.shape[0], 1), X.dtype)])
    Z = np.abs(Xa.astype(np.float64) @ random_gates(seed, np.arange(p), Xa.shape[1], True).astype(X.dtype))
    X = X[np.all((Z > 1e-4) | (Z == 0), axis=1)][:n]
    assert X.shape[0] == n
    return X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_operator_matches_explicit_A(dtype, sparse, k):
    rng = np.random.default_rng(0)
    n, d, p = 300, 6, 700  # p > one chunk: exercises the streaming top-s
    X = rng.standard_normal((2 * n, d)).astype(dtype)
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0
    X = _clear_rows(X, p, 3, n)
    if sparse:
        X = sp.csr_matrix(X)
    q = d + 1
    blocks = RowBlocks(X, True, np.zeros((n, k)))
    gates = Gates(3, q, True)
    Xa, D = _explicit(X, p, 3)
    idx = np.sort(rng.choice(p * q * k, 25, replace=False))
    val = rng.standard_normal(25)
    W = np.zeros(p * q * k)
    W[idx] = val
    W = W.reshape(p, q, k)
    F_ref = np.einsum("ij,if,jfl->il", D, Xa, W)
    R = rng.standard_normal((n, k))
    G_ref = np.einsum("ij,if,il->jfl", D, Xa, R).ravel()
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(blocks.forward(fused_spec(idx, val, gates, q, k)), F_ref, atol=tol * 10)
    s = 17
    g_sup, c_idx, c_g = gradient_pass(blocks, gates, p, k, idx, R, s)
    np.testing.assert_allclose(g_sup, G_ref[idx], atol=tol * 100)
    off = np.setdiff1d(np.arange(p * q * k), idx)
    order = np.argsort(-np.abs(G_ref[off]), kind="stable")
    top = off[order[:s]]
    if dtype == np.float64:
        # The same s entries: the s-th and (s+1)-th magnitudes are far apart
        # compared with the 1e-13 rounding of the gradient entries.
        mags = np.abs(G_ref[off][order])
        assert mags[s - 1] - mags[s] > 1e-9
        np.testing.assert_array_equal(np.sort(top), c_idx)
    else:  # ties at the float32 level may swap the last entry
        assert len(np.intersect1d(top, c_idx)) >= s - 1
    np.testing.assert_allclose(c_g, G_ref[c_idx], atol=tol * 100)
    # Skipped inputs give no candidates; the support's gradient is whole.
    skip = np.zeros(q, dtype=bool)
    skip[[0, 2]] = True
    g_sup2, c_idx2, _ = gradient_pass(blocks, gates, p, k, idx, R, s, skip)
    np.testing.assert_array_equal(g_sup2, g_sup)
    assert c_idx2.size == s and not skip[(c_idx2 // k) % q].any()
    kept = off[~skip[(off // k) % q]]
    assert np.abs(G_ref[c_idx2]).min() >= np.sort(np.abs(G_ref[kept]))[-s] - tol * 100


def test_masks_right_after_the_cache_grows():
    # The first request for many units grows the pattern cache; the
    # patterns used must be those of the grown cache.
    rng = np.random.default_rng(0)
    n, d, k = 150, 4, 1
    X = _clear_rows(rng.standard_normal((2 * n, d)), 100, 5, n)
    q = d + 1
    blocks = RowBlocks(X, True, np.zeros((n, k)))
    gates = Gates(5, q, True)
    Xa, D = _explicit(X, 100, 5)
    for m in (3, 27, 80):  # the cache grows twice
        idx = np.arange(m) * q * k + 2  # one weight per unit, on feature 2
        F = blocks.forward(fused_spec(idx, np.ones(m), gates, q, k))
        np.testing.assert_allclose(F[:, 0], (D[:, :m] * Xa[:, [2]]).sum(axis=1), atol=1e-12)


def test_sorted_unique_is_numpy_unique():
    rng = np.random.RandomState(0)
    for a in (np.sort(rng.randint(0, 9, 40)), rng.randint(0, 9, 40), np.arange(5), np.zeros(3, np.int64),
              np.array([7]), np.zeros(0, np.int64)):
        a = a.astype(np.int64)
        uniq, pos = sorted_unique(a)
        ref_uniq, ref_pos = np.unique(a, return_inverse=True)
        np.testing.assert_array_equal(uniq, ref_uniq)
        np.testing.assert_array_equal(pos, ref_pos.ravel())
        assert pos.dtype == np.int64
