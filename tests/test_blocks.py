"""Row blocks against explicit computations, and their determinism.

Every answer of ``RowBlocks`` is compared with the same quantity built
explicitly from ``X``, the gates and the activation patterns on small sizes,
for dense and CSR input, float64 and float32, with the pattern cache, without
it and with a cache too small for the request (patterns then computed in the
kernels' tiles).  Tolerances: float64 sums of a few thousand terms of size
~1 agree to ~1e-12 relative; float32 products (gate scores, gradient chunks
computed by BLAS in single precision) to ~1e-5 relative.
"""

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_sparse_mlp._base import thread_limits
from sklearn_sparse_mlp._blocks import RowBlocks, block_starts, merge_centred, merge_product
from sklearn_sparse_mlp._gates import Gates
from sklearn_sparse_mlp._losses import LOGISTIC, SOFTMAX, SQUARED, LogisticLoss, SoftmaxLoss, SquaredLoss
from sklearn_sparse_mlp._operator import fused_spec

N, D, K = 3000, 6, 3


# The kernels compute gate scores in X's dtype with their own summation order;
# activation patterns agree bit for bit with the explicit ones only for
# samples whose scores are not within rounding of zero.  The data sets below
# drop the other samples, and ``_explicit`` asserts it: a margin of 1e-4
# covers float32's 1e-7 relative rounding of scores of order one.
MARGIN = 1e-4


def _scores(Xd, H, has_bias=True):
    Xa = np.hstack([Xd, np.ones((Xd.shape[0], 1), Xd.dtype)]) if has_bias else Xd
    return Xa.astype(np.float64) @ H.astype(Xd.dtype).astype(np.float64)


def _data(dtype, sparse, gate_sets=(), seed=0):
    """N samples (dense or CSR) with no score of the given (q x m, has_bias)
    gate matrices within MARGIN of zero (exact zeros are exact in any order)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * N, D)).astype(dtype)
    if sparse:
        X[rng.random(X.shape) < 0.5] = 0
    keep = np.ones(2 * N, dtype=bool)
    for H, has_bias in gate_sets:
        Z = np.abs(_scores(X, H, has_bias))
        keep &= np.all((Z > MARGIN) | (Z == 0), axis=1)
    X = X[keep][:N]
    assert X.shape[0] == N
    return sp.csr_matrix(X) if sparse else X


def _explicit(X, gates_q, has_bias):
    """(X with a ones column in float64, patterns of the gates)."""
    Xd = X.toarray() if sp.issparse(X) else X
    Xa = np.hstack([Xd, np.ones((Xd.shape[0], 1), Xd.dtype)]) if has_bias else Xd
    Z = _scores(Xd, gates_q, has_bias)
    assert np.all((np.abs(Z) > MARGIN) | (Z == 0))
    return Xa.astype(np.float64), Z >= 0


def _random_fused(rng, p, q, k, s):
    idx = np.sort(rng.choice(p * q * k, s, replace=False))
    return idx, rng.standard_normal(s)


CASES = [(dtype, sparse, cache) for dtype in (np.float64, np.float32) for sparse in (False, True)
         for cache in ("full", "none", "tight")]


def _blocks(X, has_bias, Y, sw, cache):
    n_bytes = (X.shape[0] + 7) // 8
    cache_bytes = {"full": 32 << 20, "none": 0, "tight": 3 * n_bytes}[cache]
    return RowBlocks(X, has_bias, Y, sw, cache_bytes=cache_bytes)


@pytest.mark.parametrize("dtype, sparse, cache", CASES)
def test_blocks_match_explicit(dtype, sparse, cache):
    rng = np.random.default_rng(1)
    has_bias = True
    p, q = 40, D + 1
    gates = Gates(3, q, has_bias)
    X = _data(dtype, sparse, [(gates(np.arange(p)), has_bias)])
    Y = rng.standard_normal((N, K))
    sw = rng.random(N)
    blocks = _blocks(X, has_bias, Y, sw, cache)
    idx, val = _random_fused(rng, p, q, K, 25)
    spec = fused_spec(idx, val, gates, q, K)
    Xa, Dm = _explicit(X, gates(spec.units), has_bias)
    unit, feat, out = idx // (q * K), (idx // K) % q, idx % K
    pos = np.searchsorted(spec.units, unit)
    A = Dm[:, pos] * Xa[:, feat]  # the support's columns of the sensing matrix
    F_ref = np.zeros((N, K))
    np.add.at(F_ref.T, out, (A * val).T)
    rel = 1e-12 if dtype == np.float64 else 1e-5
    for _ in range(2):  # the second call reads the cache
        np.testing.assert_allclose(blocks.forward(spec), F_ref, rtol=rel, atol=rel)
    R = rng.standard_normal((N, K))
    g, gv = blocks.support_gradient(spec, R, with_v=True)
    np.testing.assert_allclose(g, np.einsum("iu,iu->u", A, R[:, out]), rtol=rel, atol=rel * N)
    # Output-layer gradient: the hidden columns (unit, output) against R.
    Hid = np.zeros((N, spec.col_unit.size))
    np.add.at(Hid.T, spec.e_col, (A * val).T)
    np.testing.assert_allclose(gv, Hid.T @ R, rtol=rel, atol=rel * N)
    # Normal equations, with one hidden column among the bases.
    w = rng.random(N)
    b_unit = np.append(pos, 0)
    b_feat = np.append(feat, -1)
    b_hcol = np.append(np.full(pos.size, -1), 0)
    b_out = np.append(out, 0)
    G, B, C = blocks.normal_equations(spec, b_unit, b_feat, b_hcol, w, b_out)
    Ab = np.column_stack([A, Hid[:, 0]])
    np.testing.assert_allclose(G, Ab.T @ (w[:, None] * Ab), rtol=rel, atol=rel * N)
    np.testing.assert_allclose(B, np.einsum("iu,i,iu->u", Ab, w, Y[:, b_out]), rtol=rel, atol=rel * N)
    np.testing.assert_allclose(C, Ab.T @ w, rtol=rel, atol=rel * N)
    # Grouped: one system per output, each with its own weights, in one pass.
    perm = np.argsort(out, kind="stable")
    groups = out[perm]
    Wg = rng.random((N, K))
    G, B, C = blocks.normal_equations(spec, pos[perm], feat[perm], np.full(perm.size, -1), Wg, out[perm], groups)
    Ap = A[:, perm]
    same = groups[:, None] == groups[None, :]
    G_ref = sum(np.where(same & (groups[:, None] == l), Ap.T @ (Wg[:, [l]] * Ap), 0.0) for l in range(K))
    np.testing.assert_allclose(G, G_ref, rtol=rel, atol=rel * N)
    np.testing.assert_allclose(C, np.einsum("iu,iu->u", Ap, Wg[:, groups]), rtol=rel, atol=rel * N)
    # One chunk of the full gradient.
    H = gates(np.arange(p))
    _, Dall = _explicit(X, H, has_bias)
    G_ref = np.einsum("ij,if,il->lfj", Dall, Xa, R)
    np.testing.assert_allclose(blocks.gradient_chunk(H.astype(dtype), R), G_ref, rtol=rel,
                               atol=rel * np.abs(G_ref).max())


@pytest.mark.parametrize("dtype, sparse, cache", CASES[::3])
def test_factored_gradient_matches_explicit(dtype, sparse, cache):
    rng = np.random.default_rng(2)
    q, m = D + 1, 5
    units = np.array([0, 3, 4, 9, 11])
    U = rng.standard_normal((q, m))
    U[rng.random(U.shape) < 0.4] = 0
    V = rng.standard_normal((m, K))
    X = _data(dtype, sparse, [(U, True)])
    Y = rng.standard_normal((N, K))
    blocks = _blocks(X, True, Y, None, cache)
    Xa, Dm = _explicit(X, U, True)  # sequential: the pattern follows u_j
    R = rng.standard_normal((N, K))
    gU, gV = blocks.unit_gradient(units, U, U, V, R)
    rel = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(gU, Xa.T @ (Dm * (R @ V.T)), rtol=rel, atol=rel * N)
    Hid = Dm * (Xa @ U)
    np.testing.assert_allclose(gV, Hid.T @ R, rtol=rel * 10, atol=rel * N)


@pytest.mark.parametrize("dtype, sparse, cache", CASES[::3])
@pytest.mark.parametrize("dense_gates", [True, False])
def test_exact_forward_and_pattern_gradient_match_explicit(dtype, sparse, cache, dense_gates):
    """The ReLU network ``sum_a s_a relu(X h_a)`` of sequential gates: its
    outputs, the keys of its patterns (as ``pattern_keys``), and the dense
    gradient of its units, plain and with squared inputs; both kernels of
    ``forward_exact`` (a dense product, entry by entry for sparse gates)."""
    rng = np.random.default_rng(7)
    q = D + 1
    m = 4 if dense_gates else 40
    units = np.sort(rng.choice(500, m, replace=False))
    H = rng.standard_normal((q, m))
    if not dense_gates:  # one feature and the bias per unit: below 1/8 dense
        keep = np.zeros_like(H, dtype=bool)
        keep[rng.integers(0, D, m), np.arange(m)] = True
        keep[D] = True
        H[~keep] = 0.0
    H[:, -1] = H[:, 0]  # two units with one pattern
    signs = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    X = _data(dtype, sparse, [(H, True)])
    Y = rng.standard_normal((N, 1))
    sw = rng.random(N)
    sw[::5] = 0.0
    blocks = _blocks(X, True, Y, sw, cache)
    Xa, Dm = _explicit(X, H, True)
    Z = Xa @ H.astype(dtype).astype(np.float64)
    F_ref = (np.maximum(Z, 0.0) * signs).sum(axis=1, keepdims=True)
    rel = 1e-12 if dtype == np.float64 else 1e-5
    F, keys, counts = blocks.forward_exact(units, H, signs)
    np.testing.assert_allclose(F, F_ref, rtol=rel, atol=rel)
    keys_ref, counts_ref = blocks.pattern_keys(units, H)
    np.testing.assert_array_equal(keys, keys_ref)
    np.testing.assert_array_equal(counts, counts_ref)
    np.testing.assert_array_equal(counts, (Dm & (sw > 0)[:, None]).sum(axis=0))
    assert np.array_equal(keys[0], keys[-1]) and not np.array_equal(keys[0], keys[1])
    R = rng.standard_normal((N, 2))
    G = blocks.pattern_gradient(units, H, R)
    np.testing.assert_allclose(G, np.einsum("ia,if,il->lfa", Dm, Xa, R), rtol=rel,
                               atol=rel * np.abs(R).sum())
    G2 = blocks.pattern_gradient(units, H, R[:, :1], square=True)
    np.testing.assert_allclose(G2[0], np.einsum("ia,if,i->fa", Dm, Xa ** 2, R[:, 0]), rtol=rel,
                               atol=rel * np.abs(R).sum())


@pytest.mark.parametrize("dtype, sparse, cache", CASES[::3])
def test_forward_exact_trials_are_the_single_calls_bit_for_bit(dtype, sparse, cache):
    """The trial networks of a damped step in one call: outputs, pattern keys
    and counts of each gate set are those of ``forward_exact``, bit for bit,
    and nothing is cached."""
    rng = np.random.default_rng(8)
    q, m, T = D + 1, 5, 4
    units = np.sort(rng.choice(500, m, replace=False))
    gates = rng.standard_normal((T, q, m))
    gates[2, :, 1] = gates[2, :, 0]  # a set with two units of one pattern
    signs = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    X = _data(dtype, sparse)
    sw = rng.random(N)
    sw[::7] = 0.0
    blocks = _blocks(X, True, rng.standard_normal((N, 1)), sw, cache)
    assert blocks.n_blocks > 1
    before = blocks.cache.bits.copy()
    trials = blocks.forward_exact_trials(gates, signs)
    np.testing.assert_array_equal(blocks.cache.bits, before)
    for t in range(T):
        for got, ref in zip(trials[t], blocks.forward_exact(units, gates[t], signs)):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("offset", [0.0, 6.0, 60.0])
def test_logistic_intercept_in_one_call_is_the_newton_intercept(offset):
    """The compiled intercept solve of one logistic output takes the steps of
    ``newton_intercept`` (damped far from the solution, clipped at the bound
    on separable data) and returns its bits."""
    from sklearn_sparse_mlp._losses import newton_intercept

    rng = np.random.default_rng(5)
    n = 5000  # three row blocks
    F = rng.standard_normal((n, 1)) * 3 + offset
    for Y in ((rng.random((n, 1)) < 0.3).astype(float), np.zeros((n, 1))):
        sw = rng.random(n)
        blocks = RowBlocks(np.zeros((n, 1)), False, Y, sw)
        for b0 in (None, np.array([2.5]), np.array([-100.0])):
            ref = newton_intercept(LOGISTIC, lambda b: blocks.intercept_stats(LOGISTIC, F, b), 1, b0)
            np.testing.assert_array_equal(blocks.intercept(LOGISTIC, F, b0), ref)


@pytest.mark.parametrize("kind, k", [(SOFTMAX, 10), (SOFTMAX, 3), (LOGISTIC, 4)])
def test_multi_output_intercept_in_one_call_is_the_newton_intercept(kind, k):
    """The compiled intercept solve of several outputs takes the steps of
    ``newton_intercept`` (damped far from the solution; outputs held at the
    bound where a class has no rows or a label is never on) and returns its
    bits."""
    from sklearn_sparse_mlp._losses import newton_intercept

    rng = np.random.default_rng(5)
    n = 5000  # three row blocks
    for offset in (0.0, 6.0, 60.0):
        F = rng.standard_normal((n, k)) * 3 + offset * rng.standard_normal(k)
        if kind == SOFTMAX:
            Y = np.eye(k)[rng.integers(0, k, n)]
            Y_held = Y.copy()
            Y_held[:, 1] += Y_held[:, 0]
            Y_held[:, 0] = 0.0
        else:
            Y = (rng.random((n, k)) < 0.3).astype(float)
            Y_held = Y.copy()
            Y_held[:, 0] = 0.0
        for Yc in (Y, Y_held):
            blocks = RowBlocks(np.zeros((n, 1)), False, Yc, rng.random(n))
            assert blocks.n_blocks > 1
            for b0 in (None, np.full(k, 2.5), np.linspace(-100.0, 100.0, k)):
                ref = newton_intercept(kind, lambda b: blocks.intercept_stats(kind, F, b), k, b0)
                got = blocks.intercept(kind, F, b0)
                np.testing.assert_array_equal(got, ref)
                if kind == SOFTMAX:
                    assert abs(got.sum()) < 1e-9 * k * max(1.0, np.abs(got).max())
    F_nan = F.copy()
    F_nan[3, 0] = np.nan  # no step lowers a NaN loss: the start is kept
    np.testing.assert_array_equal(RowBlocks(np.zeros((n, 1)), False, Y).intercept(kind, F_nan, np.ones(k)),
                                  newton_intercept(kind, lambda b: RowBlocks(np.zeros((n, 1)), False, Y)
                                                   .intercept_stats(kind, F_nan, b), k, np.ones(k)))


def test_normal_equations_columns_and_samples():
    """``first_col`` forms the trailing columns of the normal equations alone
    (the update of a support's system), equal to those of the whole; a
    sample of the rows is a fixed draw whose weights are renormalised."""
    rng = np.random.default_rng(8)
    q, p = D + 1, 60
    gates = Gates(5, q, True)
    X = _data(np.float64, False, [(gates(np.arange(p)), True)])
    Y = rng.standard_normal((N, 1))
    sw = rng.random(N)
    blocks = RowBlocks(X, True, Y, sw)
    idx, val = _random_fused(rng, p, q, 1, 300)
    spec = fused_spec(idx, val, gates, q, 1)
    pos = np.searchsorted(spec.units, idx // q)
    feat, hcol, out = idx % q, np.full(idx.size, -1), np.zeros(idx.size, dtype=np.int64)
    G, B, C = blocks.normal_equations(spec, pos, feat, hcol, blocks.sw, out)
    np.testing.assert_array_equal(G, G.T)
    Gc, Bc, Cc = blocks.normal_equations(spec, pos, feat, hcol, blocks.sw, out, first_col=170)
    np.testing.assert_allclose(Gc, G[:, 170:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Bc, B[170:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Cc, C[170:], rtol=1e-12, atol=1e-14)
    sub = blocks.sample(1000)
    assert sub.n == 1000 and np.isclose(sub.sw.sum(), 1.0)
    # The sample's total is its rows' given weights (the penalty alpha / total
    # of a progressive stage): with unit weights, as without weights.
    where = {y: i for i, y in enumerate(Y[:, 0])}
    rows = np.array([where[y] for y in sub.Y[:, 0]])
    np.testing.assert_allclose(sub.weight_total, sw[rows].sum(), rtol=1e-12)
    np.testing.assert_allclose(sub.sw, sw[rows] / sw[rows].sum(), rtol=1e-12)
    ones = RowBlocks(X, True, Y, np.ones(N)).sample(1000)
    plain = RowBlocks(X, True, Y).sample(1000)
    assert ones.weight_total == plain.weight_total == 1000
    np.testing.assert_allclose(ones.sw, plain.sw[0], rtol=1e-15)
    np.testing.assert_array_equal(sub.Xs, blocks.sample(1000).Xs)
    assert blocks.sketch(1000) is blocks.sketch(1000) and blocks.sketch(N) is None
    # A sketch needs at least 1.5 times its rows.
    assert blocks.sketch(2 * N // 3).n == 2 * N // 3 and blocks.sketch(2 * N // 3 + 1) is None


@pytest.mark.parametrize("sparse", [False, True])
def test_pattern_keys_and_sign_scores(sparse):
    rng = np.random.default_rng(3)
    q = D + 1
    gates = Gates(4, q, True)
    units = np.array([1, 2, 3, 1002])
    Uc = rng.standard_normal((q, 3))
    X = _data(np.float64, sparse, [(gates(units), True), (Uc, True)])
    sw = rng.random(N)
    sw[::7] = 0.0
    Y = np.eye(K)[rng.integers(0, K, N)]
    blocks = RowBlocks(X, True, Y, sw)
    H = gates(units)
    H[:, 3] = 2.0 * H[:, 1]  # the same pattern as unit 2
    H[:, 2] = np.zeros(q)
    H[-1, 2] = -1.0  # never active
    keys, counts = blocks.pattern_keys(units, H)
    _, Dm = _explicit(X, H, True)
    np.testing.assert_array_equal(counts, (Dm & (sw > 0)[:, None]).sum(axis=0))
    assert np.array_equal(keys[1], keys[3]) and not np.array_equal(keys[0], keys[1])
    assert counts[2] == 0
    # Sign scores: the softmax loss when each unit takes the pattern of +u or -u.
    Xa, Dm = _explicit(X, gates(units[:3]), True)
    W = rng.standard_normal((q, 3, K))
    F = rng.standard_normal((N, K))
    b = rng.standard_normal(K)
    scores = blocks.sign_scores(SOFTMAX, units[:3], gates(units[:3]), W, Uc, F, b)
    loss = SoftmaxLoss()
    for a in range(3):
        P = Xa @ W[:, a, :]
        for col, sign in enumerate((1.0, -1.0)):
            on = (sign * (Xa @ Uc[:, a]) >= 0)[:, None]
            ref = loss.value(F + b - Dm[:, a:a + 1] * P + on * P, Y, sw / sw.sum())
            np.testing.assert_allclose(scores[a, col], ref, rtol=1e-12)


@pytest.mark.parametrize("kind, loss", [(SQUARED, SquaredLoss()), (LOGISTIC, LogisticLoss()),
                                        (SOFTMAX, SoftmaxLoss())])
def test_block_loss_and_intercept_match_whole_arrays(kind, loss):
    rng = np.random.default_rng(4)
    n = 5000  # three row blocks
    Y = np.eye(K)[rng.integers(0, K, n)] if kind == SOFTMAX else (rng.random((n, K)) < 0.3).astype(float)
    F = rng.standard_normal((n, K))
    sw = rng.random(n)
    blocks = RowBlocks(np.zeros((n, 1)), False, Y, sw)
    assert blocks.n_blocks == 3
    b = rng.standard_normal(K)
    swn = sw / sw.sum()
    np.testing.assert_allclose(blocks.loss(kind, F, b), loss.value(F + b, Y, swn), rtol=1e-12)
    np.testing.assert_allclose(blocks.residual(kind, F, b), loss.gradient(F + b, Y, swn), rtol=1e-12,
                               atol=1e-18)
    b_opt = blocks.intercept(kind, F, None)
    # The optimal intercept zeroes the gradient's column sums.
    np.testing.assert_allclose(loss.gradient(F + b_opt, Y, swn).sum(axis=0), 0, atol=1e-9)



@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_centred_product_matches_explicit(center, offset):
    """One conjugate-gradient product on the support, computed block by block
    about each block's mean and merged, against the explicit columns of A;
    the same merge over the blocks of two row halves (a dask fit's
    partitions) agrees to rounding, and the squared loss's intercept and
    loss from one pass match the Newton intercept and the loss."""
    rng = np.random.default_rng(7)
    has_bias = True
    p, q, k = 30, D + 1, 2
    gates = Gates(5, q, has_bias)
    X = _data(np.float64, False, [(gates(np.arange(p)), has_bias)])
    Y = rng.standard_normal((N, k)) + offset
    sw = rng.random(N)
    blocks = RowBlocks(X, has_bias, Y, sw)
    assert blocks.n_blocks == 2
    idx, val = _random_fused(rng, p, q, k, 20)
    spec = fused_spec(idx, val, gates, q, k)
    Xa, Dm = _explicit(X, gates(spec.units), has_bias)
    unit, feat, out = idx // (q * k), (idx // k) % q, idx % k
    A = Dm[:, np.searchsorted(spec.units, unit)] * Xa[:, feat]
    d = rng.standard_normal(idx.size)
    Ad = np.zeros((N, k))
    np.add.at(Ad.T, out, (A * d).T)
    Ad += offset  # a direction whose outputs sit far from zero (cancellation)
    swn = sw / sw.sum()
    mean = swn @ Ad if center else np.zeros(k)
    sq_ref = float(np.sum(swn[:, None] * (Ad - mean) ** 2))
    g_ref = np.einsum("iu,iu->u", A, (swn[:, None] * (Ad - mean))[:, out])
    c = blocks.support_weight_parts(spec)
    np.testing.assert_allclose(c.sum(axis=0), A.T @ swn, rtol=1e-12, atol=1e-15)
    sq, m, _ = merge_centred(*blocks.centred_stats(Ad, center), center)
    np.testing.assert_allclose(sq, sq_ref, rtol=1e-10)
    np.testing.assert_allclose(m, mean, rtol=1e-12, atol=1e-12)
    if offset == 0.0:
        sq2, m2, Qd = blocks.centred_product(spec, d, center, c)
        np.testing.assert_allclose(sq2, sq_ref, rtol=1e-10)
        np.testing.assert_allclose(Qd, g_ref, rtol=1e-10, atol=1e-13)
        # The same merge over the blocks of two partitions of the rows.
        half = 1500
        parts = [RowBlocks(X[a:b], has_bias, Y[a:b], sw[a:b], weight_total=sw.sum(), block_rows=1024)
                 for a, b in ((0, half), (half, N))]
        stacked = [np.concatenate(z) for z in zip(*(r.product_parts(spec, d, center) for r in parts))]
        c_parts = np.concatenate([r.support_weight_parts(spec) for r in parts])
        sq3, _, Qd3 = merge_product(tuple(stacked), c_parts, spec, center)
        np.testing.assert_allclose(sq3, sq_ref, rtol=1e-10)
        np.testing.assert_allclose(Qd3, g_ref, rtol=1e-10, atol=1e-13)
    F = rng.standard_normal((N, k))
    b, L = blocks.squared_fit(F)
    np.testing.assert_allclose(b, blocks.intercept(SQUARED, F, None), rtol=1e-12)
    np.testing.assert_allclose(L, blocks.loss(SQUARED, F, b), rtol=1e-10)


def test_column_sums_by_partition_are_the_in_memory_sums():
    """Column sums of blocks longer than a float64 tile: the whole data's
    equal the in-order sum of each block's own (a dask fit's partitions),
    bit for bit, and the weighted moments to rounding."""
    from sklearn_sparse_mlp._blocks import COLUMN_TILE
    from sklearn_sparse_mlp._losses import ordered_sum

    rng = np.random.default_rng(0)
    n = 3 * 16 * COLUMN_TILE // 2 + 77
    X = (rng.standard_normal((n, 3)) + 5.0).astype(np.float32)
    sw = rng.uniform(0.5, 2.0, n)
    starts = block_starts(n)
    assert starts[1] > COLUMN_TILE
    whole = RowBlocks(X, True, np.zeros((n, 1)), sw)
    parts = [RowBlocks(X[a:b], True, np.zeros((b - a, 1)), sw[a:b], weight_total=sw.sum(), block_rows=starts[1])
             for a, b in zip(starts[:-1], starts[1:])]
    s1, s2 = whole.column_sums()
    sums = [p.column_sums() for p in parts]
    assert np.array_equal(s1, ordered_sum(np.stack([s[0] for s in sums])))
    assert np.array_equal(s2, ordered_sum(np.stack([s[1] for s in sums])))
    swn = sw / sw.sum()
    np.testing.assert_allclose(s1, swn @ X.astype(np.float64), rtol=1e-12)
    np.testing.assert_allclose(s2, swn @ X.astype(np.float64) ** 2, rtol=1e-12)


def test_block_boundaries_depend_on_n_only():
    assert block_starts(100).tolist() == [0, 100]
    starts = block_starts(10**6)
    assert starts.size - 1 == 16 and np.all(starts[:-1] % 256 == 0)
    assert block_starts(5000).tolist() == [0, 2048, 4096, 5000]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("sparse", [False, True])
def test_kernels_do_not_depend_on_the_thread_count(sparse):
    rng = np.random.default_rng(5)
    n = 9000
    X = rng.standard_normal((n, D))
    if sparse:
        X[rng.random(X.shape) < 0.5] = 0
        X = sp.csr_matrix(X)
    Y = rng.standard_normal((n, K))
    q, p = D + 1, 700
    gates = Gates(6, q, True)
    idx, val = _random_fused(rng, p, q, K, 40)
    R = rng.standard_normal((n, K))
    answers = []
    for n_jobs in (1, 2):
        with thread_limits(n_jobs):
            blocks = RowBlocks(X, True, Y, None)
            spec = fused_spec(idx, val, gates, q, K)
            pos = np.searchsorted(spec.units, idx // (q * K))
            G = blocks.normal_equations(spec, pos, (idx // K) % q, np.full(40, -1), blocks.sw, idx % K)[0]
            answers.append([blocks.forward(spec), blocks.support_gradient(spec, R, True)[0],
                            blocks.gradient_chunk(gates(np.arange(p)), R), G,
                            blocks.loss(SQUARED, R, np.zeros(K)), blocks.pattern_keys(spec.units, spec.gates)[0]])
    for a, b in zip(*answers):
        np.testing.assert_array_equal(a, b)


def test_blas_stays_at_one_thread_while_any_fit_in_another_thread_runs():
    # Fit A starts, fit B starts in another thread, A ends while B runs: B
    # must still see one BLAS thread (a limit restored by A at its end gave
    # B the process's original BLAS threads partway through its fit).
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    b_inside, a_done, seen = threading.Event(), threading.Event(), []

    def fit_b():
        with thread_limits(1):
            b_inside.set()
            a_done.wait(10)
            seen.append(blas_threads())

    with thread_limits(1):
        thread = threading.Thread(target=fit_b)
        thread.start()
        assert b_inside.wait(10)
    a_done.set()
    thread.join(10)
    assert seen and seen[0] <= {1}


def test_fits_in_threads_equal_fits_in_sequence():
    from concurrent.futures import ThreadPoolExecutor

    from sklearn_sparse_mlp import SparseMLPClassifier

    rng = np.random.default_rng(3)
    X = rng.standard_normal((600, 12))
    y = (X[:, 0] * X[:, 1] + np.abs(X[:, 2]) > 0.5).astype(int) + (X[:, 3] > 1)
    seeds = range(4)

    def fit(seed):
        return SparseMLPClassifier(60, hidden_layer_sizes=(30,), random_state=seed).fit(X, y).coefs_

    alone = [fit(seed) for seed in seeds]
    with ThreadPoolExecutor(2) as ex:
        together = list(ex.map(fit, seeds))
    for a, b in zip(alone, together):
        for wa, wb in zip(a, b):
            np.testing.assert_array_equal(wa, wb)
