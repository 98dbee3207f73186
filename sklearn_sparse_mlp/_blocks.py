"""Row blocks: the row-indexed state of a fit and the questions it answers.

Everything the solver needs from the data is a sum over rows.  A
``RowBlocks`` object owns the rows: ``X`` (a dense C-ordered array, or CSR
data/indices/indptr, never densified), targets ``Y`` (n x k), normalised
sample weights and a cache of activation patterns.  It answers only
questions whose answers do not grow with ``n``:

* the loss at given outputs and the output intercept's statistics;
* the gradient for a chunk of gates (k x q x c);
* the gradient on a support (s), the normal equations of a support (s x s);
* per-unit keys of activation patterns (to merge units with one pattern) and
  the scores that choose a sequential gate's sign.

Outputs ``F`` (n x k) are the one row-indexed thing that travels between
calls: the solver holds them as opaque handles and hands them back; it never
reads a row.

Determinism.  The rows are cut into blocks whose boundaries depend on ``n``
only (``block_starts``); each block's partial answer is computed the same
way whatever the number of threads (its tiles in order; threads split work
*between* blocks, between column panels or between independent rows), and
partial answers are added in block order.  A fit is therefore bit-identical
for any ``n_jobs``, and a reduction over the same blocks held elsewhere (a
minibatch, a dask partition) gives the same sums.

Notation: ``d`` features, ``q = d + 1`` inputs when hidden biases are fitted
(the constant input is implicit: never stored, its gate and weight entries
sit at input index ``d``), ``k`` outputs, ``m`` units of a request.
"""

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange, types
from numba.extending import overload

from ._gates import serial_kernel
from ._losses import (
    LOGISTIC,
    SOFTMAX,
    SQUARED,
    row_loss,
    row_probabilities,
    hessian_rows,
    hessian_rows_serial,
    intercept_sums,
    intercept_sums_serial,
    working_sums,
    working_sums_serial,
    loss_sums,
    loss_sums_serial,
    logistic_intercept,
    multi_intercept,
    newton_intercept,
    ordered_sum,
    outputs_row,
    residual_rows,
    residual_rows_serial,
    row_loss,
    weight,
)

TILE = 256  # rows per tile: a tile's products stay in a core's cache
TASK_TILES = 16  # at most this many tiles per task of the row-parallel kernels (buffers allocated once per task)
MIN_BLOCK_ROWS = 2048
COLUMN_TILE = 8192  # rows per float64 tile of the column sums
MAX_BLOCKS = 16
SUB = 256  # gates per task of the gradient pass
PANEL = 128  # least columns of the normal equations per task
CACHE_BYTES = 16 << 20  # bit-packed activation patterns kept per RowBlocks
MAX_SLOTS = 4096  # and at most this many units


def block_starts(n):
    """Row-block boundaries: a function of ``n`` alone (multiples of TILE)."""
    rows = max(MIN_BLOCK_ROWS, -(-int(n) // MAX_BLOCKS))
    rows = -(-rows // TILE) * TILE
    return np.append(np.arange(0, n, rows, dtype=np.int64), np.int64(n))


# --------------------------------------------------------------------------
# access to the rows of X: a dense C-ordered array, or (data, indices,
# indptr, d) for CSR.  Each kernel below is written once and compiled for
# both (the overloads pick the code by the argument's type).
# --------------------------------------------------------------------------
def _n_features(Xs):  # pragma: no cover - replaced by the overload in numba
    pass


def _rows_dot(Xs, i0, i1, A, out):  # pragma: no cover
    pass


def _rows_tdot(Xs, i0, i1, M, out):  # pragma: no cover
    pass


def _row_span(Xs, i):  # pragma: no cover
    pass


def _nz(Xs, i, t):  # pragma: no cover
    pass


@overload(_n_features, inline="always")
def _ov_n_features(Xs):
    if isinstance(Xs, types.Array):
        return lambda Xs: Xs.shape[1]
    return lambda Xs: Xs[3]


@overload(_rows_dot, inline="always")
def _ov_rows_dot(Xs, i0, i1, A, out):
    """``out[:nb] = X[i0:i1] @ A`` (A: d x w, X's dtype)."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, A, out):
            np.dot(Xs[i0:i1], A, out[: i1 - i0])
        return dense

    def csr(Xs, i0, i1, A, out):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        w = A.shape[1]
        for ii in range(i1 - i0):
            for j in range(w):
                out[ii, j] = 0.0
            for t in range(indptr[i0 + ii], indptr[i0 + ii + 1]):
                x = data[t]
                f = indices[t]
                for j in range(w):
                    out[ii, j] += x * A[f, j]
    return csr


@overload(_rows_tdot, inline="always")
def _ov_rows_tdot(Xs, i0, i1, M, out):
    """``out = X[i0:i1].T @ M[:nb]`` (d x w)."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, M, out):
            np.dot(Xs[i0:i1].T, M[: i1 - i0], out)
        return dense

    def csr(Xs, i0, i1, M, out):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        w = M.shape[1]
        out[:] = 0.0
        for ii in range(i1 - i0):
            for t in range(indptr[i0 + ii], indptr[i0 + ii + 1]):
                x = data[t]
                f = indices[t]
                for j in range(w):
                    out[f, j] += x * M[ii, j]
    return csr


def _rows_tdot_sq(Xs, i0, i1, M, out, buf):  # pragma: no cover
    pass


@overload(_rows_tdot_sq, inline="always")
def _ov_rows_tdot_sq(Xs, i0, i1, M, out, buf):
    """``out = (X[i0:i1] ** 2).T @ M[:nb]`` (d x w); ``buf``: TILE x d scratch."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, M, out, buf):
            nb = i1 - i0
            for i in range(nb):
                for f in range(Xs.shape[1]):
                    x = Xs[i0 + i, f]
                    buf[i, f] = x * x
            np.dot(buf[:nb].T, M[:nb], out)
        return dense

    def csr(Xs, i0, i1, M, out, buf):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        w = M.shape[1]
        out[:] = 0.0
        for ii in range(i1 - i0):
            for t in range(indptr[i0 + ii], indptr[i0 + ii + 1]):
                x = data[t]
                f = indices[t]
                for j in range(w):
                    out[f, j] += x * x * M[ii, j]
    return csr


@overload(_row_span, inline="always")
def _ov_row_span(Xs, i):
    if isinstance(Xs, types.Array):
        return lambda Xs, i: (0, Xs.shape[1])
    return lambda Xs, i: (Xs[2][i], Xs[2][i + 1])


@overload(_nz, inline="always")
def _ov_nz(Xs, i, t):
    """(feature, value) of the t-th stored entry of row i."""
    if isinstance(Xs, types.Array):
        return lambda Xs, i, t: (t, Xs[i, t])
    return lambda Xs, i, t: (Xs[1][t], Xs[0][t])


def _xt_buffer(Xs):  # pragma: no cover
    pass


def _hidden_entries(Xs, i0, i1, XT, feat_ptr, f_col, f_val, HidT):  # pragma: no cover
    pass


def _entry_gradient(Xs, i0, i1, XT, RhT, feat_ptr, f_col, f_ent, acc):  # pragma: no cover
    pass


def _feature_bases(Xs, i0, i1, XT, DT, b_unit, u0, fb_ptr, fb_idx, AT):  # pragma: no cover
    pass


@njit(cache=True, inline="always")
def _dot_rows(a, b, nb):
    """``sum_i a[i] b[i]`` for i < nb in eight interleaved partial sums: a
    fixed order (the same result for any thread count) that the compiler
    can keep in vector registers (a single running sum cannot be
    vectorised without reordering it)."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
    i = 0
    while i + 8 <= nb:
        t0 += a[i] * b[i]
        t1 += a[i + 1] * b[i + 1]
        t2 += a[i + 2] * b[i + 2]
        t3 += a[i + 3] * b[i + 3]
        t4 += a[i + 4] * b[i + 4]
        t5 += a[i + 5] * b[i + 5]
        t6 += a[i + 6] * b[i + 6]
        t7 += a[i + 7] * b[i + 7]
        i += 8
    while i < nb:
        t0 += a[i] * b[i]
        i += 1
    return ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))


# Dense tiles are transposed once (XT, d x TILE) so that the work per
# first-layer entry is a contiguous loop over the tile's rows; CSR tiles are
# scattered row by row, touching only stored entries.
@overload(_xt_buffer, inline="always")
def _ov_xt_buffer(Xs):
    if isinstance(Xs, types.Array):
        return lambda Xs: np.empty((Xs.shape[1], TILE), dtype=Xs.dtype)
    return lambda Xs: np.empty((1, 1), dtype=Xs[0].dtype)


def _tile_transpose_listed(Xs, i0, i1, XT, ptr, ptr2):  # pragma: no cover
    pass


@overload(_tile_transpose_listed, inline="always")
def _ov_tile_transpose_listed(Xs, i0, i1, XT, ptr, ptr2):
    """``XT[f, i] = x_{i0 + i, f}`` (a dense tile transposed) for the
    features f that have entries in the lists ``ptr`` or ``ptr2`` (entries
    by feature: feature f's are ``ptr[f]:ptr[f + 1]``); the other rows of
    ``XT`` are left as they are: the kernels of a sparse layer read only
    those.  Feature by feature, so that each row of ``XT`` is written in
    order (the paper's cell, a trial's forward pass on 8192 rows: 1.2 ->
    0.5 ms with the word-wise keys of ``_exact_tile``; row by row, the
    transpose alone took 0.7 ms)."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, XT, ptr, ptr2):
            for f in range(Xs.shape[1]):
                if ptr[f + 1] > ptr[f] or ptr2[f + 1] > ptr2[f]:
                    for i in range(i1 - i0):
                        XT[f, i] = Xs[i0 + i, f]
        return dense
    return lambda Xs, i0, i1, XT, ptr, ptr2: None


@overload(_hidden_entries, inline="always")
def _ov_hidden_entries(Xs, i0, i1, XT, feat_ptr, f_col, f_val, HidT):
    """``HidT[c, i] += x_i,f v`` for the entries (f, c, v) listed by feature."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, XT, feat_ptr, f_col, f_val, HidT):
            nb = i1 - i0
            for f in range(Xs.shape[1]):
                for e in range(feat_ptr[f], feat_ptr[f + 1]):
                    c = f_col[e]
                    v = f_val[e]
                    for i in range(nb):
                        HidT[c, i] += v * XT[f, i]
        return dense

    def csr(Xs, i0, i1, XT, feat_ptr, f_col, f_val, HidT):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        for i in range(i1 - i0):
            for t in range(indptr[i0 + i], indptr[i0 + i + 1]):
                f = indices[t]
                x = data[t]
                for e in range(feat_ptr[f], feat_ptr[f + 1]):
                    HidT[f_col[e], i] += x * f_val[e]
    return csr


@overload(_entry_gradient, inline="always")
def _ov_entry_gradient(Xs, i0, i1, XT, RhT, feat_ptr, f_col, f_ent, acc):
    """``acc[ent] += sum_i x_i,f RhT[c, i]`` for the entries (f, c, ent) listed by feature."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, XT, RhT, feat_ptr, f_col, f_ent, acc):
            nb = i1 - i0
            for f in range(Xs.shape[1]):
                for e in range(feat_ptr[f], feat_ptr[f + 1]):
                    acc[f_ent[e]] += _dot_rows(XT[f], RhT[f_col[e]], nb)
        return dense

    def csr(Xs, i0, i1, XT, RhT, feat_ptr, f_col, f_ent, acc):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        for i in range(i1 - i0):
            for t in range(indptr[i0 + i], indptr[i0 + i + 1]):
                f = indices[t]
                x = data[t]
                for e in range(feat_ptr[f], feat_ptr[f + 1]):
                    acc[f_ent[e]] += x * RhT[f_col[e], i]
    return csr


@overload(_feature_bases, inline="always")
def _ov_feature_bases(Xs, i0, i1, XT, DT, b_unit, u0, fb_ptr, fb_idx, AT):
    """``AT[u - u0, i] = x_i,f D[unit(u), i]`` for the bases u listed by
    feature f (rows of AT pre-zeroed)."""
    if isinstance(Xs, types.Array):
        def dense(Xs, i0, i1, XT, DT, b_unit, u0, fb_ptr, fb_idx, AT):
            nb = i1 - i0
            for f in range(Xs.shape[1]):
                for e in range(fb_ptr[f], fb_ptr[f + 1]):
                    u = fb_idx[e]
                    a = b_unit[u]
                    for i in range(nb):
                        AT[u - u0, i] = XT[f, i] if DT[a, i] else 0.0
        return dense

    def csr(Xs, i0, i1, XT, DT, b_unit, u0, fb_ptr, fb_idx, AT):
        data, indices, indptr = Xs[0], Xs[1], Xs[2]
        for i in range(i1 - i0):
            for t in range(indptr[i0 + i], indptr[i0 + i + 1]):
                f = indices[t]
                for e in range(fb_ptr[f], fb_ptr[f + 1]):
                    u = fb_idx[e]
                    if DT[b_unit[u], i]:
                        AT[u - u0, i] = data[t]
    return csr


# --------------------------------------------------------------------------
# tile helpers
# --------------------------------------------------------------------------
@njit(cache=True)
def _tile_scores(Xs, i0, i1, Hs, hb, Z):
    """``Z[:nb] = X[i0:i1] @ Hs + hb``: pre-activations of a tile (X's dtype)."""
    _rows_dot(Xs, i0, i1, Hs, Z)
    for i in range(i1 - i0):
        for j in range(Hs.shape[1]):
            Z[i, j] += hb[j]


@njit(cache=True)
def _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT):
    """``DT[a, :nb]``: activation pattern of unit a on rows i0:i1, read from the
    bit-packed cache (slot ``u_slot[a] >= 0``) or computed from its gate
    (column ``nc_col[a]`` of ``Hnc``)."""
    _tile_patterns_of(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, np.ones(u_slot.shape[0], np.uint8), DT)


@njit(cache=True)
def _tile_patterns_of(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, need, DT):
    """``_tile_patterns`` for the units with ``need[a]`` only."""
    nb = i1 - i0
    if Hnc.shape[1] > 0:
        _tile_scores(Xs, i0, i1, Hnc, hbnc, Znc)
    for a in range(u_slot.shape[0]):
        if not need[a]:
            continue
        sl = u_slot[a]
        if sl >= 0 and i0 & 7 == 0:
            # Byte by byte: row i0 + 8 j + t is bit t of byte i0 / 8 + j.
            r0 = i0 >> 3
            full = nb >> 3
            for j in range(full):
                v = bits[r0 + j, sl]
                for t in range(8):
                    DT[a, 8 * j + t] = (v >> t) & 1
            for i in range(8 * full, nb):
                DT[a, i] = (bits[r0 + (i >> 3), sl] >> (i & 7)) & 1
        elif sl >= 0:
            for i in range(nb):
                r = i0 + i
                DT[a, i] = (bits[r >> 3, sl] >> (r & 7)) & 1
        else:
            c = nc_col[a]
            for i in range(nb):
                DT[a, i] = 1 if Znc[i, c] >= 0 else 0


@njit(cache=True)
def _tile_hidden(Xs, i0, i1, has_bias, XT, DT, feat_ptr, f_col, f_val, col_unit, HidT):
    """Hidden columns of a tile, ``HidT[r, i] = D[unit(r), i] sum_e x_i,f(e) v_e``
    over the first-layer entries e of column r (listed by input feature);
    zero beyond the tile's rows."""
    d = _n_features(Xs)
    nb = i1 - i0
    HidT[:] = 0.0
    _hidden_entries(Xs, i0, i1, XT, feat_ptr, f_col, f_val, HidT)
    if has_bias:
        for e in range(feat_ptr[d], feat_ptr[d + 1]):
            c = f_col[e]
            v = f_val[e]
            for i in range(nb):
                HidT[c, i] += v
    for r in range(col_unit.shape[0]):
        a = col_unit[r]
        for i in range(nb):
            if DT[a, i] == 0:
                HidT[r, i] = 0.0


@njit(cache=True)
def _tile_bases(Xs, i0, i1, has_bias, XT, DT, b_unit, b_hcol, u0, u1, fb_ptr, fb_idx, hidden, feat_ptr, f_col,
                f_val, col_unit, HidT, AT):
    """``AT[u - u0, :nb]``: Jacobian base column u (``u0 <= u < u1``) on a
    tile, ``D[b_unit[u]] x_f`` for a first-layer entry (listed by feature f
    in ``fb_ptr``/``fb_idx``, the constant input at f = d), or the hidden
    column ``b_hcol[u] >= 0``; zero beyond the tile's rows."""
    d = _n_features(Xs)
    nb = i1 - i0
    AT[:] = 0.0
    _feature_bases(Xs, i0, i1, XT, DT, b_unit, u0, fb_ptr, fb_idx, AT)
    if has_bias:
        for e in range(fb_ptr[d], fb_ptr[d + 1]):
            u = fb_idx[e]
            a = b_unit[u]
            for i in range(nb):
                AT[u - u0, i] = DT[a, i]
    if hidden:
        _tile_hidden(Xs, i0, i1, has_bias, XT, DT, feat_ptr, f_col, f_val, col_unit, HidT)
        for u in range(u0, u1):
            h = b_hcol[u]
            if h >= 0:
                for i in range(nb):
                    AT[u - u0, i] = HidT[h, i]


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _gradient_chunk(Xs, starts, R, H, has_bias, P):
    """Partial gradients of one chunk of gates, per row block.

    ``P[b, l, f, j] = sum_{i in block b} x_if 1[x_i . h_j >= 0] R[i, l]`` for
    the gates ``H`` (q x c).  Tasks are (block, group of SUB gates): every
    entry is computed by one task, over its block's tiles in order, with
    single-threaded BLAS: two products per tile, the masked residual between.
    """
    d = _n_features(Xs)
    q, c = H.shape
    k = R.shape[1]
    n_sub = (c + SUB - 1) // SUB
    for task in prange((starts.shape[0] - 1) * n_sub):
        b = task // n_sub
        c0 = (task % n_sub) * SUB
        w = min(c, c0 + SUB) - c0
        Hs = np.empty((d, w), dtype=H.dtype)
        hb = np.zeros(w, dtype=H.dtype)
        for f in range(d):
            for j in range(w):
                Hs[f, j] = H[f, c0 + j]
        if has_bias:
            for j in range(w):
                hb[j] = H[d, c0 + j]
        acc = np.zeros((k, q, w))
        Z = np.empty((TILE, w), dtype=H.dtype)
        M = np.empty((TILE, w), dtype=H.dtype)
        Gt = np.empty((d, w), dtype=H.dtype)
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            nb = i1 - i0
            _tile_scores(Xs, i0, i1, Hs, hb, Z)
            for l in range(k):
                for i in range(nb):
                    r = R[i0 + i, l]
                    for j in range(w):
                        M[i, j] = r if Z[i, j] >= 0 else 0.0
                _rows_tdot(Xs, i0, i1, M, Gt)
                for f in range(d):
                    for j in range(w):
                        acc[l, f, j] += Gt[f, j]
                if has_bias:
                    for i in range(nb):
                        for j in range(w):
                            acc[l, d, j] += M[i, j]
        for l in range(k):
            for f in range(q):
                for j in range(w):
                    P[b, l, f, c0 + j] = acc[l, f, j]


@njit(cache=True, parallel=True)
def _fill_patterns(Xs, n, Hs, hb, bits, slots, per_task):
    """Bit-packed patterns ``1[X h_a >= 0]`` of gates ``Hs`` (d x m) into the
    cache columns ``slots`` (rows are independent)."""
    m = Hs.shape[1]
    n_tiles = (n + TILE - 1) // TILE
    for task in prange((n_tiles + per_task - 1) // per_task):
        Z = np.empty((TILE, m), dtype=Hs.dtype)
        for t in range(task * per_task, min(n_tiles, (task + 1) * per_task)):
            i0 = t * TILE
            i1 = min(n, i0 + TILE)
            nb = i1 - i0
            _tile_scores(Xs, i0, i1, Hs, hb, Z)
            for a in range(m):
                sl = slots[a]
                for byte in range((nb + 7) // 8):
                    v = 0
                    for bit in range(8):
                        i = byte * 8 + bit
                        if i < nb and Z[i, a] >= 0:
                            v |= 1 << bit
                    bits[(i0 >> 3) + byte, sl] = np.uint8(v)


@njit(cache=True, parallel=True)
def _forward_exact(Xs, starts, Hs, hb, signs, bits, slots, sw, F, KP, CP):
    """Outputs of the ReLU network ``F = sum_a signs[a] relu(X h_a)`` (one
    output; gates ``[Hs; hb]`` in X's dtype, d x m) and the units' activation
    patterns ``1[X h_a >= 0]``, written to the cache columns ``slots`` (a unit
    with ``slots[a] < 0`` is not cached), with their keys and counts per
    block (as ``_pattern_keys``).  One product per tile gives all three: the
    network's pre-activations are its patterns' scores."""
    for b in prange(starts.shape[0] - 1):
        _forward_exact_block(Xs, starts, b, Hs, hb, signs, bits, slots, sw, F, KP, CP)


@njit(cache=True, parallel=True)
def _forward_exact_trials(Xs, starts, HsT, hbT, signs, bits, slots, sw, FT, KPT, CPT):
    """``_forward_exact`` for T sets of gates at once (``HsT`` T x d x m,
    ``hbT`` T x m; outputs, keys and counts indexed by the set first): one
    call for the trial networks of a damped step.  Pass ``slots`` all -1
    (nothing is cached)."""
    n_blocks = starts.shape[0] - 1
    for task in prange(HsT.shape[0] * n_blocks):
        t = task // n_blocks
        _forward_exact_block(Xs, starts, task % n_blocks, HsT[t], hbT[t], signs, bits, slots, sw, FT[t], KPT[t],
                             CPT[t])


@njit(cache=True, inline="always")
def _forward_exact_block(Xs, starts, b, Hs, hb, signs, bits, slots, sw, F, KP, CP):
    """Row block ``b`` of ``_forward_exact``."""
    m = Hs.shape[1]
    Z = np.empty((TILE, m), dtype=Hs.dtype)
    ZT = np.empty((m, TILE))
    Ft = np.empty(TILE)
    h1, h2, word, cnt, nbits = _keys_start(m)
    for i0 in range(starts[b], starts[b + 1], TILE):
        i1 = min(starts[b + 1], i0 + TILE)
        nb = i1 - i0
        _tile_scores(Xs, i0, i1, Hs, hb, Z)
        for i in range(nb):
            for a in range(m):
                ZT[a, i] = Z[i, a]
        _exact_tile(ZT, nb, i0, signs, slots, bits, sw, h1, h2, word, cnt, nbits, Ft)
        for i in range(nb):
            F[i0 + i, 0] = Ft[i]
    _keys_finish(b, h1, h2, word, cnt, nbits, KP, CP)


@njit(cache=True, parallel=True)
def _forward_exact_sparse(Xs, starts, has_bias, feat_ptr, f_col, f_val, signs, bits, slots, sw, F, KP, CP):
    """``_forward_exact`` for sparse gates, listed by input feature (entries
    ``(f, unit position, value)``, the constant input at f = d): the
    pre-activations are formed entry by entry (``n`` multiply-adds per gate
    entry, in float64), not by a dense product over every feature."""
    m = signs.shape[0]
    for b in prange(starts.shape[0] - 1):
        XT = _xt_buffer(Xs)
        ZT = np.empty((m, TILE))
        Ft = np.empty(TILE)
        h1, h2, word, cnt, nbits = _keys_start(m)
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            nb = i1 - i0
            _tile_transpose_listed(Xs, i0, i1, XT, feat_ptr, feat_ptr)
            _tile_preactivations(Xs, i0, i1, has_bias, XT, feat_ptr, f_col, f_val, ZT)
            _exact_tile(ZT, nb, i0, signs, slots, bits, sw, h1, h2, word, cnt, nbits, Ft)
            for i in range(nb):
                F[i0 + i, 0] = Ft[i]
        _keys_finish(b, h1, h2, word, cnt, nbits, KP, CP)


@njit(cache=True, inline="always")
def _exact_tile(ZT, nb, i0, signs, slots, bits, sw, h1, h2, word, cnt, nbits, Ft):
    """From a tile's pre-activations ``ZT`` (m x TILE): the network's outputs
    ``Ft``, the patterns into the cache (byte ``r >> 3``, bit ``r & 7`` for
    row r; ``i0`` a multiple of 8) and into the block's keys (rows of
    positive weight, 64 to a word)."""
    m = ZT.shape[0]
    for i in range(nb):
        Ft[i] = 0.0
    for a in range(m):
        sg = signs[a]
        for i in range(nb):
            Ft[i] += sg * max(ZT[a, i], 0.0)
    if nbits[0] == 0 and nb % 64 == 0 and _all_weigh(sw, i0, nb):
        # Whole 64-bit words of rows that all count: the same words, keys
        # and cached bytes as the row-by-row loop below, without its
        # per-row branches (a third of a trial's pass on the paper's cell).
        for a in range(m):
            sl = slots[a]
            ct = cnt[a]
            for w0 in range(0, nb, 64):
                wd = np.uint64(0)
                for bit in range(64):
                    on = ZT[a, w0 + bit] >= 0
                    wd |= np.uint64(on) << np.uint64(bit)
                    ct += on
                _hash_word(h1, h2, a, wd)
                if sl >= 0:
                    r0 = (i0 + w0) >> 3
                    for byte in range(8):
                        bits[r0 + byte, sl] = np.uint8((wd >> np.uint64(8 * byte)) & np.uint64(255))
            cnt[a] = ct
        return
    for a in range(m):
        sl = slots[a]
        if sl < 0:
            continue
        for byte in range((nb + 7) // 8):
            v = 0
            for bit in range(min(8, nb - byte * 8)):
                v |= np.int64(ZT[a, byte * 8 + bit] >= 0) << bit
            bits[(i0 >> 3) + byte, sl] = np.uint8(v)
    c0 = nbits[0]
    c = c0
    for a in range(m):
        c = c0
        wd = word[a]
        ct = cnt[a]
        for i in range(nb):
            if weight(sw, i0 + i) > 0:
                on = np.int64(ZT[a, i] >= 0)
                wd |= np.uint64(on) << np.uint64(c)
                ct += on
                c += 1
                if c == 64:
                    _hash_word(h1, h2, a, wd)
                    wd = np.uint64(0)
                    c = 0
        word[a] = wd
        cnt[a] = ct
    nbits[0] = c


@njit(cache=True, inline="always")
def _all_weigh(sw, i0, nb):
    """Whether the rows ``i0 .. i0 + nb - 1`` all have positive weight."""
    if sw.shape[0] == 1:
        return sw[0] > 0
    for i in range(i0, i0 + nb):
        if not sw[i] > 0:
            return False
    return True


@njit(cache=True, inline="always")
def _keys_start(m):
    """State of a block's pattern keys (as ``_pattern_keys``): two running
    hashes, the current 64-bit word and the active counts per unit, and the
    bits in the word."""
    h1 = np.full(m, np.uint64(0x243F6A8885A308D3))
    h2 = np.full(m, np.uint64(0x13198A2E03707344))
    word = np.zeros(m, dtype=np.uint64)
    cnt = np.zeros(m, dtype=np.int64)
    nbits = np.zeros(1, dtype=np.int64)
    return h1, h2, word, cnt, nbits


@njit(cache=True, inline="always")
def _keys_finish(b, h1, h2, word, cnt, nbits, KP, CP):
    nb = nbits[0]
    for a in range(h1.shape[0]):
        if nb > 0:
            _hash_word(h1, h2, a, word[a])
        KP[b, a, 0] = _mix64(h1[a] + np.uint64(nb))
        KP[b, a, 1] = h2[a]
        CP[b, a] = cnt[a]


@njit(cache=True)
def _tile_preactivations(Xs, i0, i1, has_bias, XT, feat_ptr, f_col, f_val, ZT):
    """``ZT[c, i] = sum_e x_i,f(e) v_e`` over the entries e of column c (listed
    by input feature, the constant input at f = d)."""
    d = _n_features(Xs)
    nb = i1 - i0
    ZT[:] = 0.0
    _hidden_entries(Xs, i0, i1, XT, feat_ptr, f_col, f_val, ZT)
    if has_bias:
        for e in range(feat_ptr[d], feat_ptr[d + 1]):
            c = f_col[e]
            v = f_val[e]
            for i in range(nb):
                ZT[c, i] += v


@njit(cache=True, parallel=True)
def _pattern_gradient(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, R, square, P):
    """Partial gradients of the units of a request at their patterns, per
    row block: ``P[b, l, f, a] = sum_{i in block b} x_if D_ia R[i, l]`` (the
    gradient of every first-layer entry of the units, as ``_gradient_chunk``
    for random gates, the patterns read from the cache); with ``square`` = 1,
    ``x_if^2`` in place of ``x_if`` (the diagonal of a weighted Gram matrix);
    with ``square`` = 2 both, the squares' at ``P[b, k + l]``."""
    d = _n_features(Xs)
    m = u_slot.shape[0]
    q = P.shape[2]
    k = R.shape[1]
    for b in prange(starts.shape[0] - 1):
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        acc = np.zeros((P.shape[1], q, m))
        M = np.empty((TILE, m), dtype=Hnc.dtype)
        Gt = np.empty((d, m), dtype=Hnc.dtype)
        buf = np.empty((TILE, d), dtype=Hnc.dtype)
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            nb = i1 - i0
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            for l in range(k):
                for i in range(nb):
                    r = R[i0 + i, l]
                    for a in range(m):
                        M[i, a] = r if DT[a, i] else 0.0
                for sq in range(2):
                    if sq != square and square != 2:
                        continue
                    if sq:
                        _rows_tdot_sq(Xs, i0, i1, M, Gt, buf)
                    else:
                        _rows_tdot(Xs, i0, i1, M, Gt)
                    o = l + k if square == 2 and sq else l
                    for f in range(d):
                        for a in range(m):
                            acc[o, f, a] += Gt[f, a]
                if has_bias:
                    for i in range(nb):
                        for a in range(m):
                            acc[l, d, a] += M[i, a]
                    if square == 2:
                        for i in range(nb):
                            for a in range(m):
                                acc[l + k, d, a] += M[i, a]
        P[b] = acc


@njit(cache=True, parallel=True)
def _forward(Xs, n, has_bias, bits, u_slot, Hnc, hbnc, nc_col, feat_ptr, f_col, f_val, col_unit, Vout, F,
             per_task):
    """``F = (D o (X W)) Vout``: the outputs of a network (rows are independent).

    Column r of the hidden layer belongs to unit ``col_unit[r]`` and gathers
    the first-layer entries listed by feature in ``feat_ptr``/``f_col``/``f_val``;
    ``Vout`` (R x k) maps hidden columns to outputs.
    """
    m = u_slot.shape[0]
    n_tiles = (n + TILE - 1) // TILE
    # Tasks of ``per_task`` tiles (``_tiles_per_task``), whose buffers are
    # allocated once (a tile's hidden columns can exceed malloc's mmap
    # threshold: allocated per tile they cost page faults, e.g. in a dask
    # worker, where that threshold is fixed).
    for task in prange((n_tiles + per_task - 1) // per_task):
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        XT = _xt_buffer(Xs)
        HidT = np.empty((col_unit.shape[0], TILE))
        out = np.empty((TILE, Vout.shape[1]))
        for t in range(task * per_task, min(n_tiles, (task + 1) * per_task)):
            i0 = t * TILE
            i1 = min(n, i0 + TILE)
            _tile_transpose_listed(Xs, i0, i1, XT, feat_ptr, feat_ptr)
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            _tile_hidden(Xs, i0, i1, has_bias, XT, DT, feat_ptr, f_col, f_val, col_unit, HidT)
            np.dot(HidT.T, Vout, out)
            for i in range(i1 - i0):
                for l in range(F.shape[1]):
                    F[i0 + i, l] = out[i, l]


@njit(cache=True, parallel=True)
def _support_gradient(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, feat_ptr, f_col, f_val, f_ent,
                      col_unit, Vout, R, with_v, gP, vP):
    """Per block: the gradient of every first-layer entry ``e`` (in the order
    of ``f_ent``), ``sum_i x_i,f(e) D_i,unit(e) (R_i . Vout[col(e)])``, and if
    ``with_v`` the output-layer gradient ``Hid^T R`` (R x k)."""
    d = _n_features(Xs)
    m = u_slot.shape[0]
    n_col = col_unit.shape[0]
    k = R.shape[1]
    for b in prange(starts.shape[0] - 1):
        acc = np.zeros(gP.shape[1])
        accv = np.zeros((n_col, k))
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        XT = _xt_buffer(Xs)
        HidT = np.empty((n_col, TILE))
        Rt = np.zeros((TILE, k))
        RhT = np.empty((n_col, TILE))
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            nb = i1 - i0
            _tile_transpose_listed(Xs, i0, i1, XT, feat_ptr, feat_ptr)
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            Rt[:] = 0.0
            Rt[:nb] = R[i0:i1]
            # R x TILE: the residual seen by each hidden column, zero where
            # its unit is off.
            for r in range(n_col):
                a = col_unit[r]
                if k == 1:
                    # The same sums as below, without a branch per row.
                    vr = Vout[r, 0]
                    for i in range(nb):
                        v = 0.0 + vr * Rt[i, 0]
                        RhT[r, i] = v if DT[a, i] != 0 else 0.0
                    continue
                for i in range(nb):
                    if DT[a, i] == 0:
                        RhT[r, i] = 0.0
                    else:
                        v = 0.0
                        for l in range(k):
                            v += Vout[r, l] * Rt[i, l]
                        RhT[r, i] = v
            _entry_gradient(Xs, i0, i1, XT, RhT, feat_ptr, f_col, f_ent, acc)
            if has_bias:
                for e in range(feat_ptr[d], feat_ptr[d + 1]):
                    c = f_col[e]
                    tot = 0.0
                    for i in range(nb):
                        tot += RhT[c, i]
                    acc[f_ent[e]] += tot
            if with_v:
                _tile_hidden(Xs, i0, i1, has_bias, XT, DT, feat_ptr, f_col, f_val, col_unit, HidT)
                accv += np.dot(HidT, Rt)
        gP[b] = acc
        vP[b] = accv


@njit(cache=True, parallel=True)
def _unit_gradient(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, Ud, ub, V, R, uP, vP):
    """Per block, for units with dense first-layer weights ``[Ud; ub]`` (q x m)
    and output weights ``V`` (m x k): the first-layer gradient
    ``X^T (D o (R V^T))`` (q x m) and the output gradient ``(D o X U)^T R``."""
    d = _n_features(Xs)
    m = u_slot.shape[0]
    k = R.shape[1]
    VT = np.ascontiguousarray(V.T)
    for b in prange(starts.shape[0] - 1):
        accu = np.zeros((d + 1, m))
        accv = np.zeros((m, k))
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        Zh = np.empty((TILE, m), dtype=Ud.dtype)
        M = np.empty((TILE, m), dtype=Ud.dtype)
        Gt = np.empty((d, m), dtype=Ud.dtype)
        Rh = np.empty((TILE, m))
        Hm = np.empty((TILE, m))
        Tv = np.empty((m, k))
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            nb = i1 - i0
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            _tile_scores(Xs, i0, i1, Ud, ub, Zh)
            np.dot(R[i0:i1], VT, Rh[:nb])
            for i in range(nb):
                for j in range(m):
                    on = DT[j, i] != 0
                    M[i, j] = Rh[i, j] if on else 0.0
                    Hm[i, j] = np.float64(Zh[i, j]) if on else 0.0
            # The output gradient of the tile, (D o X U)^T R, one product.
            np.dot(Hm[:nb].T, R[i0:i1], Tv)
            accv += Tv
            _rows_tdot(Xs, i0, i1, M, Gt)
            for f in range(d):
                for j in range(m):
                    accu[f, j] += Gt[f, j]
            if has_bias:
                for i in range(nb):
                    for j in range(m):
                        accu[d, j] += M[i, j]
        uP[b] = accu[: uP.shape[1]]
        vP[b] = accv


@njit(cache=True)
def _panel_width(S):
    """Columns per task of the normal equations: a function of S alone (so
    that every entry is computed the same way for any number of threads);
    about eight panels of at least PANEL columns (each task forms the whole
    tile of Jacobian columns, so few wide panels)."""
    return max(PANEL, -(-S // 8))


@njit(cache=True, parallel=True)
def _normal_equations(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, need, b_unit, b_hcol, gstart,
                      fb_ptr, fb_idx, feat_ptr, f_col, f_val, col_unit, task_g, task_c0, task_c1, task_b0, task_b1,
                      task_off, task_voff, W, Y, b_out, Gp, Bp, Cp):
    """Weighted normal equations of groups of columns of the network's Jacobian.

    Columns ``gstart[g] <= u < gstart[g + 1]`` form group g, weighted by
    ``W[:, g]`` (or one weight for all rows and groups if W has one row), with
    their features listed in row g of ``fb_ptr`` (positions in ``fb_idx``);
    ``need[g]`` marks the units they use.  Column u is ``a_u`` of
    ``_tile_bases``.  Accumulates, within each group, ``G += A^T diag(w) A``,
    ``Bv[u] += sum_i w_i a_iu Y[i, b_out[u]]`` and ``Cv += A^T w`` (G is zero
    between groups).  A task is a panel of one group's columns (fixed by the
    group's size) over a range of row blocks ``task_b0[t] <= b < task_b1[t]``
    (fixed by S and the blocks): it runs over its blocks in order (a block's
    sum, then added), its tiles in order, into its own partial sums at
    ``task_off[t]`` (``Gp``: Sg x pw values) and ``task_voff[t]`` (``Bp``,
    ``Cp``: pw values), which ``_reduce_panels`` adds in block
    order: the same sums whether a task covers one block or all of them.
    Only the rows of G up to the panel's last column are formed (the upper
    triangle and the panel's diagonal block: G is symmetric).
    """
    m = u_slot.shape[0]
    hidden = False
    for u in range(b_unit.shape[0]):
        if b_hcol[u] >= 0:
            hidden = True
    for t in prange(task_g.shape[0]):
        g = task_g[t]
        u0 = gstart[g]
        Sg = gstart[g + 1] - u0
        c0 = task_c0[t]
        pw = task_c1[t] - c0
        # Tile buffers sized to the tile's rows (views of these): a short last
        # tile would otherwise multiply zero columns (small data sets: a
        # block of 294 rows is tiles of 256 and 38).
        ATf = np.empty(Sg * TILE)
        WATf = np.empty(pw * TILE)
        Gb = np.empty((Sg, pw))
        Bb = np.empty(pw)
        Cb = np.empty(pw)
        DT = np.zeros((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        XT = _xt_buffer(Xs)
        HidT = np.empty((col_unit.shape[0], TILE))
        wcol = 0 if W.shape[1] == 1 else g
        r = task_c1[t] - u0  # rows formed: the upper triangle
        off = task_off[t]
        Gt = Gp[off: off + Sg * pw].reshape((Sg, pw))
        Bt = Bp[task_voff[t]: task_voff[t] + pw]
        Ct = Cp[task_voff[t]: task_voff[t] + pw]
        for b in range(task_b0[t], task_b1[t]):
            Gb[:] = 0.0
            Bb[:] = 0.0
            Cb[:] = 0.0
            for i0 in range(starts[b], starts[b + 1], TILE):
                i1 = min(starts[b + 1], i0 + TILE)
                nb = i1 - i0
                AT = ATf[: Sg * nb].reshape((Sg, nb))
                WAT = WATf[: pw * nb].reshape((pw, nb))
                _tile_transpose_listed(Xs, i0, i1, XT, fb_ptr[g], feat_ptr)
                _tile_patterns_of(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, need[g], DT)
                _tile_bases(Xs, i0, i1, has_bias, XT, DT, b_unit, b_hcol, u0, u0 + Sg, fb_ptr[g], fb_idx, hidden,
                            feat_ptr, f_col, f_val, col_unit, HidT, AT)
                WAT[:] = 0.0
                for j in range(pw):
                    lo = b_out[c0 + j]
                    bs = 0.0
                    cs = 0.0
                    for i in range(nb):
                        wi = W[0, wcol] if W.shape[0] == 1 else W[i0 + i, wcol]
                        v = wi * AT[c0 - u0 + j, i]
                        WAT[j, i] = v
                        bs += v * Y[i0 + i, lo]
                        cs += v
                    Bb[j] += bs
                    Cb[j] += cs
                Gb[:r] += np.dot(AT[:r], WAT.T)
            for u in range(r):
                for j in range(pw):
                    Gt[u, j] += Gb[u, j]
            for j in range(pw):
                Bt[j] += Bb[j]
                Ct[j] += Cb[j]


@njit(cache=True, parallel=True)
def _alo_sums(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, b_unit, fb_ptr, fb_idx, feat_ptr, f_col,
              f_val, col_unit, gstart, group_out, out_group, Qt, q_off, abar, WQ, invd, zbar, s0inv, kind, F, b, Y,
              sw, unit, Lp):
    """Per block, for each penalty ``c`` (a row of ``WQ`` and ``invd``): the
    approximate leave-one-out loss ``sum_i sw_i l(eta_i + u g_i q_i /
    (1 - u v_i q_i), Y_i)`` of the penalised working least squares on the
    support (see ``FusedLayer.alo``); ``u_i = min(sw_i, unit)`` is the
    normalised weight left out of row i, ``unit`` that of one sample: a row
    of weight 2 counts as two rows left out one at a time (weighting a sample
    equals repeating it), a row of weight below one is left out whole (so
    that weights scaled to sum to one leave out rows, not all the data).

    Base column u (a first-layer entry, ``D[b_unit[u]] x_f``) belongs to the
    group of ``gstart`` that holds it, the group of output ``group_out[g]``;
    ``Qt[q_off[g]:]`` holds that group's eigenvectors (transposed, S_g x S_g,
    row-major), ``abar`` the columns' weighted means.  In eigen-coordinates
    ``t = Q^T (a_i - abar)`` the refit's output is ``zbar + t . WQ[c]`` and the
    leverage ``q = 1 / S0 + sum t^2 invd[c]``; ``g`` is the loss's gradient at
    the refit, ``v`` the curvature at the current outputs ``F + b``.
    ``Lp[blk, 0, c]``: the block's sum; ``Lp[blk, 1, c]``: for a log-loss,
    ``sum_i sw_i l(eta_i, Y_i)``, the loss of the refit itself (its intercept
    the weighted mean ``zbar``), which ``FusedLayer.alo`` compares with the
    loss it starts from."""
    d = _n_features(Xs)
    m = u_slot.shape[0]
    S = b_unit.shape[0]
    k = F.shape[1]
    n_c = WQ.shape[0]
    n_g = group_out.shape[0]
    for blk in prange(starts.shape[0] - 1):
        acc = np.zeros(n_c)
        acc_fit = np.zeros(n_c)
        AT = np.empty((S, TILE))
        Ac = np.empty((S, TILE))
        T = np.empty((S, TILE))
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        XT = _xt_buffer(Xs)
        HidT = np.empty((col_unit.shape[0], TILE))
        b_hcol = np.full(S, -1, dtype=np.int64)
        f = np.empty(k)
        P = np.empty(k)
        v = np.empty(k)
        eta = np.empty(k)
        q = np.empty(k)
        loo = np.empty(k)
        for i0 in range(starts[blk], starts[blk + 1], TILE):
            i1 = min(starts[blk + 1], i0 + TILE)
            nb = i1 - i0
            _tile_transpose_listed(Xs, i0, i1, XT, fb_ptr, feat_ptr)
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            _tile_bases(Xs, i0, i1, has_bias, XT, DT, b_unit, b_hcol, 0, S, fb_ptr, fb_idx, False,
                        feat_ptr, f_col, f_val, col_unit, HidT, AT)
            for u in range(S):
                for i in range(nb):
                    Ac[u, i] = AT[u, i] - abar[u]
            for g in range(n_g):
                u0 = gstart[g]
                Sg = gstart[g + 1] - u0
                Qg = Qt[q_off[g]: q_off[g] + Sg * Sg].reshape((Sg, Sg))
                T[u0:u0 + Sg, :nb] = np.dot(Qg, np.ascontiguousarray(Ac[u0:u0 + Sg, :nb]))
            for i in range(nb):
                r = i0 + i
                w = weight(sw, r)
                if w == 0.0:
                    continue
                ur = min(w, unit)
                outputs_row(F, b, r, f)
                if kind == SQUARED:
                    for l in range(k):
                        v[l] = 1.0
                else:
                    row_probabilities(kind, f, P)
                    for l in range(k):
                        v[l] = max(P[l] * (1.0 - P[l]), 1e-12)
                for c in range(n_c):
                    for l in range(k):
                        eta[l] = zbar[l]
                        q[l] = s0inv[l]
                        g = out_group[l]
                        if g >= 0:
                            e_acc = 0.0
                            q_acc = 0.0
                            for u in range(gstart[g], gstart[g + 1]):
                                t = T[u, i]
                                e_acc += t * WQ[c, u]
                                q_acc += t * t * invd[c, u]
                            eta[l] += e_acc
                            q[l] += q_acc
                    if kind == SQUARED:
                        for l in range(k):
                            P[l] = eta[l]
                    else:
                        row_probabilities(kind, eta, P)
                        acc_fit[c] += w * row_loss(kind, eta, Y[r])
                    for l in range(k):
                        den = max(1.0 - ur * v[l] * q[l], 1e-3)
                        loo[l] = eta[l] + ur * (P[l] - Y[r, l]) * q[l] / den
                    acc[c] += w * row_loss(kind, loo, Y[r])
        for c in range(n_c):
            Lp[blk, 0, c] = acc[c]
            Lp[blk, 1, c] = acc_fit[c]


@njit(cache=True)
def _reduce_panels(task_g, task_c0, task_c1, task_off, task_voff, gstart, Gp, Bp, Cp, G, Bv, Cv):
    """Add the tasks' partial sums of ``_normal_equations`` into G, Bv, Cv in
    task order (for one panel: its row blocks in order)."""
    for t in range(task_g.shape[0]):
        g = task_g[t]
        u0 = gstart[g]
        Sg = gstart[g + 1] - u0
        c0 = task_c0[t]
        pw = task_c1[t] - c0
        off = task_off[t]
        for u in range(Sg):
            for j in range(pw):
                G[u0 + u, c0 + j] += Gp[off + u * pw + j]
        for j in range(pw):
            Bv[c0 + j] += Bp[task_voff[t] + j]
            Cv[c0 + j] += Cp[task_voff[t] + j]


@njit(cache=True, parallel=True)
def _newton_matrix(Xs, starts, has_bias, bits, u_slot, Hnc, hbnc, nc_col, b_unit, b_hcol, fb_ptr, fb_idx,
                   feat_ptr, f_col, f_val, col_unit, coef, kind, F, b0, sw, G, Cm):
    """Curvature of the loss along Jacobian columns with output coefficients.

    Column e of the Jacobian is ``a_e c_e^T`` (rows x outputs): base column
    ``a_e`` (as in ``_normal_equations``) times the coefficients ``coef[e]``
    (k).  Accumulates ``G += sum_i J_i^T H_i J_i`` (S x S) and
    ``Cm += sum_i J_i^T H_i`` (S x k), with ``H_i`` the exact k x k Hessian of
    row i's weighted loss in its outputs (``sw_i diag(p) - sw_i p p^T`` for
    the softmax).  Panels of G in parallel, blocks in order inside.
    """
    m = u_slot.shape[0]
    S = b_unit.shape[0]
    k = F.shape[1]
    hidden = False
    for u in range(S):
        if b_hcol[u] >= 0:
            hidden = True
    width = _panel_width(S)
    for pn in prange((S + width - 1) // width):
        c0 = pn * width
        pw = min(S, c0 + width) - c0
        ATf = np.empty(S * TILE)  # tile buffers: views of the tile's rows
        ALTf = np.empty(S * TILE)
        WATf = np.empty(pw * TILE)
        Gb = np.empty((S, pw))
        Cb = np.empty((pw, k))
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        XT = _xt_buffer(Xs)
        HidT = np.empty((col_unit.shape[0], TILE))
        Wt = np.zeros((k, TILE))  # per-row diagonal weights
        P = np.zeros((k, TILE))
        f = np.empty(k)
        p = np.empty(k)
        for b in range(starts.shape[0] - 1):
            Gb[:] = 0.0
            Cb[:] = 0.0
            for i0 in range(starts[b], starts[b + 1], TILE):
                i1 = min(starts[b + 1], i0 + TILE)
                nb = i1 - i0
                AT = ATf[: S * nb].reshape((S, nb))
                ALT = ALTf[: S * nb].reshape((S, nb))
                WAT = WATf[: pw * nb].reshape((pw, nb))
                _tile_transpose_listed(Xs, i0, i1, XT, fb_ptr, feat_ptr)
                _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
                _tile_bases(Xs, i0, i1, has_bias, XT, DT, b_unit, b_hcol, 0, S, fb_ptr, fb_idx, hidden, feat_ptr,
                            f_col, f_val, col_unit, HidT, AT)
                for i in range(nb):
                    wi = weight(sw, i0 + i)
                    if kind == SQUARED:
                        for l in range(k):
                            Wt[l, i] = wi
                    else:
                        outputs_row(F, b0, i0 + i, f)
                        row_probabilities(kind, f, p)
                        for l in range(k):
                            P[l, i] = p[l]
                            Wt[l, i] = wi * p[l] * (1.0 - p[l]) if kind == LOGISTIC else wi * p[l]
                # Diagonal part: sum_l (A c_l)^T diag(W_l) (A c_l).
                for l in range(k):
                    WAT[:] = 0.0
                    for u in range(S):
                        cu = coef[u, l]
                        for i in range(nb):
                            ALT[u, i] = AT[u, i] * cu
                    for j in range(pw):
                        tot = 0.0
                        for i in range(nb):
                            v = Wt[l, i] * ALT[c0 + j, i]
                            WAT[j, i] = v
                            tot += v
                        Cb[j, l] += tot
                    Gb += np.dot(ALT, WAT.T)
                if kind == SOFTMAX:
                    # Rank-one part of each row: -sw_i (A (c p_i))^T (A (c p_i)).
                    WAT[:] = 0.0
                    for u in range(S):
                        for i in range(nb):
                            cp = 0.0
                            for l in range(k):
                                cp += coef[u, l] * P[l, i]
                            ALT[u, i] = AT[u, i] * cp
                    for j in range(pw):
                        for i in range(nb):
                            WAT[j, i] = weight(sw, i0 + i) * ALT[c0 + j, i]
                        for l in range(k):
                            tot = 0.0
                            for i in range(nb):
                                tot += WAT[j, i] * P[l, i]
                            Cb[j, l] -= tot
                    Gb -= np.dot(ALT, WAT.T)
            for u in range(S):
                for j in range(pw):
                    G[u, c0 + j] += Gb[u, j]
            for j in range(pw):
                for l in range(k):
                    Cm[c0 + j, l] += Cb[j, l]


@njit(cache=True)
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _hash_word(h1, h2, a, wd):
    """Fold the 64-bit word ``wd`` of unit a's pattern into its two running
    hashes (every kernel that keys patterns folds its words this way)."""
    h1[a] = _mix64(h1[a] ^ wd)
    h2[a] = _mix64(h2[a] + wd * np.uint64(0x9E3779B97F4A7C15))


@njit(cache=True, parallel=True)
def _pattern_keys(Xs, starts, bits, u_slot, Hnc, hbnc, nc_col, sw, KP, CP):
    """Per block and unit: two 64-bit hashes of the activation pattern on the
    rows of positive weight, and the number of those rows where it is on."""
    m = u_slot.shape[0]
    for b in prange(starts.shape[0] - 1):
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        h1 = np.full(m, np.uint64(0x243F6A8885A308D3))
        h2 = np.full(m, np.uint64(0x13198A2E03707344))
        word = np.zeros(m, dtype=np.uint64)
        cnt = np.zeros(m, dtype=np.int64)
        nbits = 0
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            for i in range(i1 - i0):
                if weight(sw, i0 + i) > 0:
                    for a in range(m):
                        if DT[a, i]:
                            word[a] |= np.uint64(1) << np.uint64(nbits)
                            cnt[a] += 1
                    nbits += 1
                    if nbits == 64:
                        for a in range(m):
                            _hash_word(h1, h2, a, word[a])
                            word[a] = 0
                        nbits = 0
        for a in range(m):
            if nbits > 0:
                _hash_word(h1, h2, a, word[a])
            KP[b, a, 0] = _mix64(h1[a] + np.uint64(nbits))
            KP[b, a, 1] = h2[a]
            CP[b, a] = cnt[a]


@njit(cache=True)
def combine_keys(KP, CP):
    """Keys of whole patterns from the blocks' keys, in block order."""
    B, m = CP.shape
    keys = np.zeros((m, 2), dtype=np.uint64)
    counts = np.zeros(m, dtype=np.int64)
    for b in range(B):
        for a in range(m):
            keys[a, 0] = _mix64(keys[a, 0] ^ KP[b, a, 0])
            keys[a, 1] = _mix64(keys[a, 1] + KP[b, a, 1] * np.uint64(0xD6E8FEB86659FD93))
            counts[a] += CP[b, a]
    return keys, counts


@njit(cache=True, parallel=True)
def _sign_scores(Xs, starts, bits, u_slot, Hnc, hbnc, nc_col, Wd, wb, Ud, ub, kind, F, b0, Y, sw, SP):
    """Per block: the loss when each unit of a request swaps its current
    pattern for ``1[+-X u_a >= 0]``, the others unchanged.

    Unit a contributes ``P_a = X W_a`` (columns ``a k .. a k + k - 1`` of
    ``[Wd; wb]``) under its current pattern; ``SP[b, a, 0]`` and ``SP[b, a, 1]``
    are the block's losses with the pattern of ``+u_a`` and of ``-u_a``."""
    m = u_slot.shape[0]
    k = F.shape[1]
    for b in prange(starts.shape[0] - 1):
        DT = np.empty((m, TILE), dtype=np.uint8)
        Znc = np.empty((TILE, Hnc.shape[1]), dtype=Hnc.dtype)
        P = np.empty((TILE, Wd.shape[1]), dtype=Wd.dtype)
        Zu = np.empty((TILE, m), dtype=Ud.dtype)
        f = np.empty(k)
        acc = np.zeros((m, 2))
        for i0 in range(starts[b], starts[b + 1], TILE):
            i1 = min(starts[b + 1], i0 + TILE)
            _tile_patterns(Xs, i0, i1, bits, u_slot, Hnc, hbnc, nc_col, Znc, DT)
            _tile_scores(Xs, i0, i1, Wd, wb, P)
            _tile_scores(Xs, i0, i1, Ud, ub, Zu)
            for i in range(i1 - i0):
                wi = weight(sw, i0 + i)
                if wi == 0.0:
                    continue
                # A unit whose pattern does not change on the row leaves its
                # loss as it is (the same value: f + 0 * P = f): computed
                # once a row, not for each unit and sign.
                for l in range(k):
                    f[l] = F[i0 + i, l] + b0[l]
                same = wi * row_loss(kind, f, Y[i0 + i])
                if kind == SQUARED and k == 1:
                    # row_loss's operations, inline.
                    y0 = Y[i0 + i, 0]
                    for a in range(m):
                        z = Zu[i, a]
                        d0 = DT[a, i]
                        for sgn in range(2):
                            on = 1.0 if (z >= 0 if sgn == 0 else -z >= 0) else 0.0
                            delta = on - d0
                            if delta == 0.0:
                                acc[a, sgn] += same
                            else:
                                r = F[i0 + i, 0] + b0[0] + delta * P[i, a] - y0
                                acc[a, sgn] += wi * (0.5 * (0.0 + r * r))
                    continue
                for a in range(m):
                    for sgn in range(2):
                        z = Zu[i, a] if sgn == 0 else -Zu[i, a]
                        on = 1.0 if z >= 0 else 0.0
                        delta = on - DT[a, i]
                        if delta == 0.0:
                            acc[a, sgn] += same
                            continue
                        for l in range(k):
                            f[l] = F[i0 + i, l] + b0[l] + delta * P[i, a * k + l]
                        acc[a, sgn] += wi * row_loss(kind, f, Y[i0 + i])
        SP[b] = acc


@njit(cache=True, parallel=True)
def _moments(F, shift, sw, starts, sq, lin):
    """Per block: ``sum sw_i ||F_i - shift||^2`` and ``sum sw_i F_i``."""
    k = F.shape[1]
    for b in prange(starts.shape[0] - 1):
        acc = 0.0
        for l in range(k):
            lin[b, l] = 0.0
        for i in range(starts[b], starts[b + 1]):
            w = weight(sw, i)
            for l in range(k):
                r = F[i, l] - shift[l]
                acc += w * r * r
                lin[b, l] += w * F[i, l]
        sq[b] = acc


@njit(cache=True, parallel=True)
def _block_centre(F, Y, residual, sw, starts, center, want_r, W, S, MB, M2, R):
    """Per block ``t``, of the rows ``v_i = F_i`` (or ``Y_i - F_i`` if
    ``residual``): the weight ``W[t] = sum sw_i``, the sums ``S[t] = sum sw_i
    v_i``, the mean ``MB[t] = S[t] / W[t]`` used as the block's centre
    (0 unless ``center``), ``M2[t] = sum sw_i ||v_i - MB[t]||^2``, and if
    ``want_r`` the rows ``R_i = sw_i (v_i - MB[t])``.  Two passes over the
    block (no cancellation); blocks are merged by ``merge_centred``."""
    k = F.shape[1]
    for t in prange(starts.shape[0] - 1):
        wt = 0.0
        s = np.zeros(k)
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            wt += w
            for l in range(k):
                v = Y[i, l] - F[i, l] if residual else F[i, l]
                s[l] += w * v
        m = np.zeros(k)
        if center and wt > 0.0:
            for l in range(k):
                m[l] = s[l] / wt
        acc = 0.0
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            for l in range(k):
                v = Y[i, l] - F[i, l] if residual else F[i, l]
                dv = v - m[l]
                acc += w * dv * dv
                if want_r:
                    R[i, l] = w * dv
        W[t] = wt
        M2[t] = acc
        for l in range(k):
            S[t, l] = s[l]
            MB[t, l] = m[l]


def merge_centred(W, S, MB, M2, center):
    """Blocks' ``_block_centre`` sums (in block order) merged: ``(sum_i sw_i
    ||v_i - mean||^2, mean, the blocks' offsets MB - mean)`` with ``mean``
    the weighted mean of all rows if ``center``, else 0 (Chan's pairwise
    rule: each block's spread about its own mean plus its mean's offset)."""
    total = float(ordered_sum(W))
    k = S.shape[1]
    mean = ordered_sum(S) / total if center and total > 0.0 else np.zeros(k)
    offset = MB - mean
    sq = float(ordered_sum(M2 + W * np.einsum("tl,tl->t", offset, offset)))
    return sq, mean, offset


def merge_product(parts, c_parts, spec, center):
    """``(sum_i sw_i ||(A d)_i - mean||^2, mean, A^T Sw ((A d) - mean))``
    from the blocks' ``RowBlocks.product_parts`` and (when ``center``) their
    ``support_weight_parts``: each block's gradient is taken about its own
    mean, and the offset of that mean is added back through ``A_t^T sw``."""
    W, S, MB, M2, G = parts
    sq, mean, offset = merge_centred(W, S, MB, M2, center)
    if center:
        # An entry's hidden column reaches the outputs through its row of Vout.
        G = G + c_parts * (offset @ np.asarray(spec.Vout, dtype=np.float64)[spec.e_col].T)
    return sq, mean, ordered_sum(G)


_gradient_chunk_serial = serial_kernel(_gradient_chunk)
_moments_serial = serial_kernel(_moments)
_block_centre_serial = serial_kernel(_block_centre)
_fill_patterns_serial = serial_kernel(_fill_patterns)
_forward_serial = serial_kernel(_forward)
_forward_exact_serial = serial_kernel(_forward_exact)
_forward_exact_sparse_serial = serial_kernel(_forward_exact_sparse)
_forward_exact_trials_serial = serial_kernel(_forward_exact_trials)
_pattern_gradient_serial = serial_kernel(_pattern_gradient)
_support_gradient_serial = serial_kernel(_support_gradient)
_unit_gradient_serial = serial_kernel(_unit_gradient)
_normal_equations_serial = serial_kernel(_normal_equations)
_newton_matrix_serial = serial_kernel(_newton_matrix)
_alo_sums_serial = serial_kernel(_alo_sums)
_pattern_keys_serial = serial_kernel(_pattern_keys)
_sign_scores_serial = serial_kernel(_sign_scores)


def _tiles_per_task(n):
    """Tiles per task of a row-parallel kernel on n rows: up to TASK_TILES,
    and at least 8 tasks per thread (the load stays balanced)."""
    n_tiles = -(-int(n) // TILE)
    return max(1, min(TASK_TILES, n_tiles // (8 * numba.get_num_threads())))


def _pick(parallel, serial, tasks):
    """The parallel kernel when there are several tasks and several threads."""
    return parallel if tasks > 1 and numba.get_num_threads() > 1 else serial


# --------------------------------------------------------------------------
# what the solver passes to the blocks
# --------------------------------------------------------------------------
@dataclass
class NetSpec:
    """A network (or a direction in its weights) as the row blocks see it.

    ``units`` (m,) with their gates (q x m, float64) give the activation
    patterns; first-layer entries ``(e_unit, e_feat, e_col, e_val)`` feed
    hidden column ``e_col`` of unit ``e_unit`` from input ``e_feat``; hidden
    column r belongs to unit ``col_unit[r]`` and reaches the outputs through
    row r of ``Vout`` (R x k).  Fused weights have one hidden column per
    (unit, output) pair and one-hot rows in ``Vout``; the factored network
    has one column per unit and ``Vout = V``.
    """

    units: np.ndarray
    gates: np.ndarray
    e_unit: np.ndarray
    e_feat: np.ndarray
    e_col: np.ndarray
    e_val: np.ndarray
    col_unit: np.ndarray
    Vout: np.ndarray

    def by_feature(self, q):
        """Entries grouped by input: (ptr (q+1), column, value, entry index),
        computed once per spec."""
        done = self.__dict__.get("_by_feature")
        if done is not None and done[0] == q:
            return done[1]
        order = np.argsort(self.e_feat, kind="stable")
        ptr = np.zeros(q + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.e_feat, minlength=q), out=ptr[1:])
        out = (ptr, np.ascontiguousarray(self.e_col[order], dtype=np.int64),
               np.ascontiguousarray(self.e_val[order], dtype=np.float64), order.astype(np.int64))
        self.__dict__["_by_feature"] = (q, out)
        return out

    def with_values(self, e_val, Vout=None):
        """The same structure with other entry values (a direction)."""
        return NetSpec(self.units, self.gates, self.e_unit, self.e_feat, self.e_col,
                       np.asarray(e_val, dtype=np.float64), self.col_unit,
                       self.Vout if Vout is None else Vout)


class _PatternCache:
    """Bit-packed activation patterns of recently used units.

    Slot ``c`` holds the pattern of unit ``slot_unit[c]`` under the gate
    ``slot_gate[:, c]``; a request whose gate differs recomputes it, so a
    gate update needs no explicit invalidation.  Least recently used slots
    are reused first; the cache grows on demand up to ``cache_bytes``, and
    units beyond that are computed on the fly in each kernel's tiles.
    """

    def __init__(self, n, q, cache_bytes):
        self.n_bytes = (n + 7) // 8
        self.q = q
        self.max_slots = int(min(MAX_SLOTS, cache_bytes // max(1, self.n_bytes)))
        self.bits = np.zeros((self.n_bytes, 0), dtype=np.uint8, order="F")
        self.slot_unit = np.zeros(0, dtype=np.int64)  # -1: free
        self.slot_gate = np.zeros((q, 0))
        self.slot_tick = np.zeros(0, dtype=np.int64)
        self.tick = 0

    def _grow(self, need):
        """Room for ``need`` more slots than are free now (within the budget)."""
        cap = self.bits.shape[1]
        new_cap = min(self.max_slots, max(cap + need, 2 * cap, 32))
        if need <= 0 or new_cap <= cap:
            return
        grown = np.zeros((self.n_bytes, new_cap), dtype=np.uint8, order="F")
        grown[:, :cap] = self.bits
        self.bits = grown
        self.slot_unit = np.concatenate([self.slot_unit, np.full(new_cap - cap, -1, dtype=np.int64)])
        self.slot_gate = np.concatenate([self.slot_gate, np.zeros((self.q, new_cap - cap))], axis=1)
        self.slot_tick = np.concatenate([self.slot_tick, np.zeros(new_cap - cap, dtype=np.int64)])

    def lookup(self, units, gates):
        """(slot of each unit or -1, positions given a slot to fill, those slots)."""
        self.tick += 1
        m = units.shape[0]
        slots = np.full(m, -1, dtype=np.int64)
        none = np.zeros(0, dtype=np.int64)
        if self.max_slots == 0 or m == 0:
            return slots, none, none
        units = np.ascontiguousarray(units, dtype=np.int64)
        gates = np.ascontiguousarray(gates, dtype=np.float64)
        n_missing = _cache_hits(self.slot_unit, self.slot_gate, self.slot_tick, self.tick, units, gates, slots)
        if n_missing == 0:
            return slots, none, none
        self._grow(n_missing - int(np.count_nonzero(self.slot_tick < self.tick)))
        given, order = _cache_assign(self.slot_unit, self.slot_gate, self.slot_tick, self.tick, units, gates,
                                     slots, n_missing)
        return slots, given, order


@njit(cache=True)
def _cache_hits(slot_unit, slot_gate, slot_tick, tick, units, gates, slots):
    """The slots of ``units`` whose cached gate is ``gates`` (into ``slots``,
    their ticks set to ``tick``); a slot of one of the units under another
    gate is freed.  Each unit has at most one slot.  Returns the number of
    units without a slot."""
    live = np.flatnonzero(slot_unit >= 0)
    m = units.shape[0]
    if live.size:
        keys = slot_unit[live]
        order = live[np.argsort(keys, kind="mergesort")]
        sorted_units = slot_unit[order]
        for a in range(m):
            pos = min(np.searchsorted(sorted_units, units[a]), order.size - 1)
            c = order[pos]
            if slot_unit[c] != units[a]:
                continue
            same = True
            for f in range(gates.shape[0]):
                if not slot_gate[f, c] == gates[f, a]:
                    same = False
                    break
            if same:
                slots[a] = c
                slot_tick[c] = tick
            else:  # the unit's old gate
                slot_unit[c] = -1
                slot_tick[c] = 0
    n_missing = 0
    for a in range(m):
        n_missing += slots[a] < 0
    return n_missing


@njit(cache=True)
def _cache_assign(slot_unit, slot_gate, slot_tick, tick, units, gates, slots, n_missing):
    """Slots for the units without one (in order, while there are slots):
    free slots first, then the least recently used (never one of this
    request's).  Returns (positions given a slot, those slots)."""
    order = np.argsort(slot_tick, kind="mergesort")
    n_free = 0
    for c in order:
        if slot_tick[c] < tick:
            n_free += 1
    n = min(n_free, n_missing)
    free = np.empty(n, dtype=np.int64)
    j = 0
    for c in order:
        if j == n:
            break
        if slot_tick[c] < tick:
            free[j] = c
            j += 1
    given = np.empty(n, dtype=np.int64)
    j = 0
    for a in range(units.shape[0]):
        if j == n:
            break
        if slots[a] < 0:
            given[j] = a
            j += 1
    for j in range(n):
        c, a = free[j], given[j]
        slot_unit[c] = units[a]
        for f in range(gates.shape[0]):
            slot_gate[f, c] = gates[f, a]
        slot_tick[c] = tick
        slots[a] = c
    return given, free


def sample_count(sw, n):
    """The number of samples that ``n`` rows of weights ``sw`` (None: equal)
    stand for: a row of weight w >= 1 counts as w samples (its repeats), a
    row of positive weight below one as one."""
    return float(n) if sw is None else float(np.maximum(sw[sw > 0], 1.0).sum())


class RowBlocks:
    """The rows of a fit (or of a prediction), cut into fixed row blocks.

    Parameters
    ----------
    X : ndarray (n, d) or scipy sparse matrix
        Float32 or float64.  Dense input is used in place when C-ordered;
        sparse input is kept as CSR (never densified).
    has_bias : bool
        Whether the constant input (index ``d``) is part of the network.
    Y : ndarray (n, k) or None
        Targets (float64); None for prediction.
    sample_weight : ndarray (n,) or None
        Nonnegative weights (None: all equal); they are normalised to sum to
        one here, so that every sum below is a weighted mean.
    cache_bytes : int
        Memory for cached activation patterns (0: recompute them each time).
    block_rows : int or None
        Rows per block (None: ``block_starts(n)``).  A part of a larger data
        set (a dask partition) is cut like the whole data would be.
    weight_total : float or None
        The total sample weight the weights are normalised by (None: this
        block set's own total).  A part of a larger data set passes the
        whole data's, so that its sums are terms of the whole data's sums.
    """

    def __init__(self, X, has_bias, Y=None, sample_weight=None, cache_bytes=CACHE_BYTES, block_rows=None,
                 weight_total=None):
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            if not X.has_canonical_format:
                X = X.copy()
                X.sum_duplicates()
            self.Xs = (X.data, X.indices, X.indptr, np.int64(X.shape[1]))
            self.dtype = X.data.dtype
        else:
            X = np.ascontiguousarray(X)
            self.Xs = X
            self.dtype = X.dtype
        self.is_sparse = sp.issparse(X)
        self.n, self.d = X.shape
        self.has_bias = bool(has_bias)
        self.q = self.d + int(self.has_bias)
        if block_rows is None:
            self.starts = block_starts(self.n)
        else:
            self.starts = np.append(np.arange(0, self.n, int(block_rows), dtype=np.int64), np.int64(self.n))
        self.n_blocks = self.starts.shape[0] - 1
        self.Y = None if Y is None else np.ascontiguousarray(Y, dtype=np.float64)
        self.k = None if Y is None else self.Y.shape[1]
        # The weight given to every row when they are all equal (1 without
        # weights), else None.  ``row_count``: the number of samples the rows
        # stand for, a row of weight w >= 1 counted as w samples (its
        # repeats) and a row of positive weight below one as one; the rows
        # left out by ``alo_sums`` are counted so.
        self.unit_weight = None
        if Y is not None:
            sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
            if sw is None or (sw.size and np.all(sw == sw[0]) and sw[0] > 0):
                # One value for all rows (see ``weight``): equal weights take
                # the same kernels, so the same bits, as no weights (unit
                # weights once differed at rounding level in a product,
                # and fits of several outputs ended apart).
                self.unit_weight = 1.0 if sw is None else float(sw[0])
                if weight_total is None:
                    weight_total = self.n * self.unit_weight
                self.weight_total = float(weight_total)
                self.sw = np.full(1, self.unit_weight / self.weight_total)
                self.row_count = self.n * max(self.unit_weight, 1.0)
            else:
                if weight_total is None:
                    # Summed block by block, in order: a dask fit whose
                    # partitions are these blocks sums its partitions' totals
                    # so, and normalises the weights by the same number.
                    weight_total = ordered_sum(np.array([sw[a:b].sum() for a, b in
                                                         zip(self.starts[:-1], self.starts[1:])]))
                self.weight_total = float(weight_total)
                self.sw = np.ascontiguousarray(sw / self.weight_total)
                self.row_count = sample_count(sw, self.n)
        self.cache = _PatternCache(self.n, self.q, cache_bytes)

    def row_bytes(self):
        """Bytes of X per row (dense or CSR, on average)."""
        arrays = list(self.Xs[:3]) if self.is_sparse else [self.Xs]
        return sum(a.nbytes for a in arrays) / max(self.n, 1)

    def __sizeof__(self):
        """Bytes held (rows, targets, weights, pattern cache): what dask's
        scheduler weighs when it places work next to a block set."""
        arrays = list(self.Xs[:3]) if self.is_sparse else [self.Xs]
        arrays += [a for a in (self.Y, getattr(self, "sw", None), self.cache.bits) if a is not None]
        return object.__sizeof__(self) + sum(a.nbytes for a in arrays)

    def sketch(self, n_rows):
        """``sample(n_rows)``, built once per size and kept (a small sample
        that the solver's matrices are formed on); None when there are
        fewer than 1.5 times as many rows."""
        n_rows = int(n_rows)
        if 3 * n_rows > 2 * self.n or self.Y is None:
            return None
        sketches = self.__dict__.setdefault("_sketches", {})
        if n_rows not in sketches:
            sketches[n_rows] = self.sample(n_rows)
        return sketches[n_rows]

    def sample(self, n_rows):
        """Row blocks of ``n_rows`` rows drawn without replacement (a fixed
        draw: a function of ``n`` and ``n_rows`` alone), their weights
        normalised in turn, so that their weighted means estimate this
        set's (a copy of those rows).  Their ``weight_total`` is the given
        weights' sum over those rows (``n_rows`` with equal weights), so that
        ``alpha / weight_total`` is the same penalty whether unit weights
        are given or not."""
        n_rows = int(n_rows)
        rows = np.sort(np.random.RandomState(n_rows % (2**31 - 1)).choice(self.n, n_rows, replace=False))
        if self.is_sparse:
            X = sp.csr_matrix((self.Xs[0], self.Xs[1], self.Xs[2]), shape=(self.n, self.d))[rows]
        else:
            X = self.Xs[rows]
        if self.unit_weight is not None:
            return RowBlocks(X, self.has_bias, self.Y[rows], None, weight_total=n_rows * self.unit_weight)
        # The normalised weights scaled back to the given ones (they were
        # divided by this set's total).
        return RowBlocks(X, self.has_bias, self.Y[rows], self.sw[rows] * self.weight_total)

    # ---- patterns ------------------------------------------------------
    def _split_gates(self, H):
        """(features part d x m in X's dtype, contiguous; bias row)."""
        Hd = np.ascontiguousarray(H[: self.d], dtype=self.dtype)
        hb = np.ascontiguousarray(H[self.d], dtype=self.dtype) if self.has_bias else np.zeros(H.shape[1], self.dtype)
        return Hd, hb

    def patterns(self, units, gates):
        """Kernel arguments for the activation patterns of ``units`` under
        ``gates`` (q x m): (bits, slot per unit, gates of uncached units
        (d x m_nc) and their bias row, column of each unit among those)."""
        units = np.asarray(units, dtype=np.int64)
        gates = np.asarray(gates, dtype=np.float64).reshape(self.q, units.shape[0])
        slots, given, given_slots = self.cache.lookup(units, gates)
        if given.size:
            Hd, hb = self._split_gates(gates[:, given])
            kernel = _pick(_fill_patterns, _fill_patterns_serial, -(-self.n // TILE))
            kernel(self.Xs, self.n, Hd, hb, self.cache.bits, given_slots, _tiles_per_task(self.n))
        nc = np.flatnonzero(slots < 0)
        nc_col = np.full(units.shape[0], -1, dtype=np.int64)
        nc_col[nc] = np.arange(nc.size)
        Hnc, hbnc = self._split_gates(gates[:, nc])
        return self.cache.bits, slots, Hnc, hbnc, nc_col

    # ---- outputs and the loss -----------------------------------------
    def zeros(self, k):
        """Outputs of the empty network."""
        return np.zeros((self.n, k))

    def forward(self, spec):
        """Outputs ``F`` (n x k, float64) of the network ``spec``, no intercept."""
        k = spec.Vout.shape[1]
        F = np.empty((self.n, k))
        if spec.e_val.size == 0:
            F[:] = 0.0
            return F
        pat = self.patterns(spec.units, spec.gates)
        ptr, col, val, _ = spec.by_feature(self.q)
        kernel = _pick(_forward, _forward_serial, -(-self.n // TILE))
        kernel(self.Xs, self.n, self.has_bias, *pat, ptr, col, val, spec.col_unit,
               np.ascontiguousarray(spec.Vout, dtype=np.float64), F, _tiles_per_task(self.n))
        return F

    def forward_exact(self, units, gates, signs):
        """``(F, keys, counts)``: outputs (n x 1) of the ReLU network
        ``sum_a signs[a] relu(X h_a)`` (``gates``: q x m, the units' own gates,
        ``h_a = a_a w_a`` for fused weights under sequential gates), and the
        keys and active counts of the units' patterns (as ``pattern_keys``),
        from one pass; the patterns are cached on the way."""
        return self._forward_exact(units, gates, signs, combine_keys)

    def forward_exact_trials(self, gates, signs):
        """``[(F, keys, counts)]`` of ``forward_exact`` for each of the gate
        sets ``gates`` (T x q x m, dense enough for its matrix-product path),
        from one call; the patterns are not cached."""
        T, _, m = gates.shape
        HsT = np.ascontiguousarray(gates[:, : self.d], dtype=self.dtype)
        hbT = np.ascontiguousarray(gates[:, self.d], dtype=self.dtype) if self.has_bias else \
            np.zeros((T, m), self.dtype)
        FT = np.empty((T, self.n, 1))
        KPT = np.empty((T, self.n_blocks, m, 2), dtype=np.uint64)
        CPT = np.empty((T, self.n_blocks, m), dtype=np.int64)
        kernel = _pick(_forward_exact_trials, _forward_exact_trials_serial, T * self.n_blocks)
        kernel(self.Xs, self.starts, HsT, hbT, np.ascontiguousarray(signs, dtype=np.float64), self.cache.bits,
               np.full(m, -1, dtype=np.int64), self.sw, FT, KPT, CPT)
        return [(FT[t],) + tuple(combine_keys(KPT[t], CPT[t])) for t in range(T)]

    def forward_exact_outputs(self, units, gates, signs):
        """The outputs of ``forward_exact`` alone (its patterns cached)."""
        return self.forward_exact(units, gates, signs)[0]

    def forward_exact_parts(self, units, gates, signs):
        """``forward_exact`` with the keys per block (combined by ``combine_keys``)."""
        return self._forward_exact(units, gates, signs, lambda KP, CP: (KP, CP))

    def _forward_exact(self, units, gates, signs, keys_of):
        units = np.asarray(units, dtype=np.int64)
        m = units.shape[0]
        gates = np.asarray(gates, dtype=np.float64).reshape(self.q, m)
        signs = np.ascontiguousarray(signs, dtype=np.float64)
        F = np.empty((self.n, 1))
        KP = np.empty((self.n_blocks, m, 2), dtype=np.uint64)
        CP = np.empty((self.n_blocks, m), dtype=np.int64)
        slots, _, _ = self.cache.lookup(units, gates)
        feat, col = np.nonzero(gates)
        if self.q * m <= 8 * max(feat.size, 1):
            # Dense enough for one matrix product per tile.
            Hd, hb = self._split_gates(gates)
            kernel = _pick(_forward_exact, _forward_exact_serial, self.n_blocks)
            kernel(self.Xs, self.starts, Hd, hb, signs, self.cache.bits, slots, self.sw, F, KP, CP)
        else:
            # np.nonzero lists the entries by feature (row-major), as the kernel reads them.
            ptr = np.zeros(self.q + 1, dtype=np.int64)
            np.cumsum(np.bincount(feat, minlength=self.q), out=ptr[1:])
            kernel = _pick(_forward_exact_sparse, _forward_exact_sparse_serial, self.n_blocks)
            kernel(self.Xs, self.starts, self.has_bias, ptr, col.astype(np.int64), gates[feat, col], signs,
                   self.cache.bits, slots, self.sw, F, KP, CP)
        return (F,) + tuple(keys_of(KP, CP))

    def loss(self, kind, F, b):
        """``sum_i sw_i l(F_i + b, Y_i)``."""
        out = np.empty(self.n_blocks)
        kernel = _pick(loss_sums, loss_sums_serial, self.n_blocks)
        kernel(kind, F, np.asarray(b, dtype=np.float64), self.Y, self.sw, self.starts, out)
        return float(ordered_sum(out))

    def intercept(self, kind, F, b0):
        """The output intercept minimising the loss for outputs ``F``."""
        if kind == LOGISTIC and F.shape[1] == 1:
            b = 0.0 if b0 is None else float(np.asarray(b0, dtype=np.float64).reshape(-1)[0])
            parallel = _pick(True, False, self.n_blocks)
            return np.array([logistic_intercept(F, b, self.Y, self.sw, self.starts, parallel)])
        if kind != SQUARED and F.shape[1] > 1:
            b = np.zeros(F.shape[1]) if b0 is None else np.asarray(b0, dtype=np.float64).reshape(-1)
            return multi_intercept(kind, np.ascontiguousarray(F, dtype=np.float64), np.ascontiguousarray(b),
                                   self.Y, self.sw, self.starts, _pick(True, False, self.n_blocks))
        return newton_intercept(kind, lambda b: self.intercept_stats(kind, F, b), F.shape[1], b0)

    def intercept_stats(self, kind, F, b):
        """(loss, gradient (k), Hessian (k x k)) in the output intercept at ``b``."""
        k = F.shape[1]
        L = np.empty(self.n_blocks)
        G = np.empty((self.n_blocks, k))
        H = np.empty((self.n_blocks, k, k))
        kernel = _pick(intercept_sums, intercept_sums_serial, self.n_blocks)
        kernel(kind, F, np.asarray(b, dtype=np.float64), self.Y, self.sw, self.starts, L, G, H)
        return float(ordered_sum(L)), ordered_sum(G), ordered_sum(H)

    def working_moments(self, kind, F, b, shift):
        """Sums of the loss's working response at ``F + b`` (see
        ``_losses.working_sums``): ``(sum v, sum v (z - shift),
        sum v (z - shift)^2)``, each (k,)."""
        k = F.shape[1]
        S = [np.empty((self.n_blocks, k)) for _ in range(3)]
        kernel = _pick(working_sums, working_sums_serial, self.n_blocks)
        kernel(kind, F, np.asarray(b, dtype=np.float64), self.Y, self.sw, self.starts,
               np.asarray(shift, dtype=np.float64), *S)
        return tuple(ordered_sum(a) for a in S)

    def residual(self, kind, F, b):
        """``R = dL/dF`` at ``F + b`` (n x k): an opaque handle for the gradients."""
        R = np.empty_like(F)
        kernel = _pick(residual_rows, residual_rows_serial, -(-self.n // 1024))
        kernel(kind, F, np.asarray(b, dtype=np.float64), self.Y, self.sw, R)
        return R

    def hessian_weights(self, kind, F, b):
        """Per-row, per-output curvature weights of a Newton step (n x k)."""
        W = np.empty_like(F)
        kernel = _pick(hessian_rows, hessian_rows_serial, -(-self.n // 1024))
        kernel(kind, F, np.asarray(b, dtype=np.float64), self.sw, W)
        return W

    def moments(self, F, shift, weights=None):
        """``(sum_i w_i ||F_i - shift||^2, sum_i w_i (F_i - shift))``, ``w`` the
        sample weights (None) or given per-row weights."""
        return self._moments(F, shift, self.sw if weights is None else weights)

    def _moments(self, F, shift, weights):
        sq = np.empty(self.n_blocks)
        lin = np.empty((self.n_blocks, F.shape[1]))
        kernel = _pick(_moments, _moments_serial, self.n_blocks)
        kernel(F, np.asarray(shift, dtype=np.float64), weights, self.starts, sq, lin)
        return float(ordered_sum(sq)), ordered_sum(lin)

    def combine(self, F1, F2, c):
        """Outputs ``F1 + c F2``."""
        return F1 + c * F2

    def centered_moments(self, F, center):
        """``(sum_i sw_i ||F_i - mean||^2, mean)`` with ``mean = sum_i sw_i F_i``
        if ``center``, else 0 (two passes: no cancellation)."""
        k = F.shape[1]
        mean = self._moments(F, np.zeros(k), self.sw)[1] if center else np.zeros(k)
        return self._moments(F, mean, self.sw)[0], mean

    def centred_stats(self, F, center, residual=False, R=None):
        """Per block (``_block_centre``): ``(W, S, MB, M2)`` of the rows of
        ``F`` (of ``Y - F`` if ``residual``); with ``R`` (n x k) the weighted
        rows about their block's mean are written there."""
        k = F.shape[1]
        nb = self.n_blocks
        W, M2 = np.empty(nb), np.empty(nb)
        S, MB = np.empty((nb, k)), np.empty((nb, k))
        kernel = _pick(_block_centre, _block_centre_serial, nb)
        kernel(F, self.Y if residual else F, bool(residual), self.sw, self.starts, bool(center), R is not None,
               W, S, MB, M2, np.empty((1, k)) if R is None else R)
        return W, S, MB, M2

    def squared_fit(self, F):
        """``(b, L)``: the output intercept minimising the squared loss of
        outputs ``F`` (the weighted mean of ``Y - F``) and that loss, from
        one pass."""
        sq, mean, _ = merge_centred(*self.centred_stats(F, True, residual=True), True)
        return mean, 0.5 * sq

    def product_parts(self, spec, d, center):
        """Per block, for the outputs ``A d`` of the direction ``d`` on the
        entries of ``spec``: ``centred_stats`` and the gradient ``A_t^T
        sw (A d - MB[t])`` of the block's rows about their own mean
        (merged by ``merge_product``); one round trip on a cluster."""
        F = self.forward(spec.with_values(d))
        R = np.empty_like(F)
        stats = self.centred_stats(F, center, R=R)
        return stats + (self.support_gradient_parts(spec, R)[0],)

    def support_weight_parts(self, spec):
        """Per block: ``A_t^T sw`` on the entries of ``spec`` (each entry's
        input times its unit's pattern, weighted; ``merge_product``)."""
        ones = spec.with_values(spec.e_val, np.ones((spec.col_unit.size, 1)))
        w = np.ascontiguousarray(np.broadcast_to(self.sw, (self.n,)), dtype=np.float64)[:, None]
        return self.support_gradient_parts(ones, w)[0]

    def centred_product(self, spec, d, center, c_parts):
        """``(sum_i sw_i ||(A d)_i - mean||^2, mean, A^T Sw (A d - mean))``:
        the product of a conjugate-gradient step on the support (``c_parts``:
        ``support_weight_parts`` of the same spec and patterns)."""
        return merge_product(self.product_parts(spec, d, center), c_parts, spec, center)

    def column(self, W, l):
        """Column ``l`` of a per-row handle, as per-row weights."""
        return np.ascontiguousarray(W[:, l])

    def columns(self, W, cols):
        """Columns ``cols`` of a per-row handle (n x len(cols))."""
        return np.ascontiguousarray(W[:, cols])

    def total(self, w):
        """``sum_i w_i`` for per-row weights ``w``."""
        return self._moments(w[:, None], np.zeros(1), np.ones(1))[1][0]

    def target_mean(self):
        """``sum_i sw_i Y_i`` (k,)."""
        if not hasattr(self, "_target_mean"):
            self._target_mean = self._moments(self.Y, np.zeros(self.k), self.sw)[1]
        return self._target_mean

    def column_moments(self):
        """Weighted mean and standard deviation of each input column (d,),
        summed block by block in a fixed order (cached)."""
        if not hasattr(self, "_column_moments"):
            s1, s2 = self.column_sums()
            var = np.maximum(s2 - s1 * s1, 0.0)
            self._column_moments = (s1, np.sqrt(var))
        return self._column_moments

    def column_sums(self):
        """``(sum_i sw_i X_i, sum_i sw_i X_i^2)`` (d each), block by block."""
        s1 = np.zeros(self.d)
        s2 = np.zeros(self.d)
        X = self.Xs
        if self.is_sparse:
            X = sp.csr_matrix((X[0], X[1], X[2]), shape=(self.n, self.d), copy=False)
        for b in range(self.n_blocks):
            i0, i1 = int(self.starts[b]), int(self.starts[b + 1])
            w = np.broadcast_to(self.sw, (self.n,))[i0:i1] if self.sw.size == 1 else self.sw[i0:i1]
            if self.is_sparse:
                Xb = X[i0:i1]
                s1 += Xb.T @ w
                s2 += Xb.multiply(Xb).T @ w
                continue
            # Dense rows in float64 tiles: a whole block cast at once would
            # hold a float64 copy of it (on a dask worker, a third of its
            # rows).  A block's own sums are added to the total, as the
            # partitions' sums of a dask fit are.
            b1 = np.zeros(self.d)
            b2 = np.zeros(self.d)
            for t0 in range(0, i1 - i0, COLUMN_TILE):
                Xt = X[i0 + t0:min(i1, i0 + t0 + COLUMN_TILE)].astype(np.float64)
                wt = w[t0:t0 + COLUMN_TILE]
                b1 += wt @ Xt
                b2 += wt @ (Xt * Xt)
            s1 += b1
            s2 += b2
        return s1, s2

    def column_range(self):
        """``(min, max)`` of each input column over the rows of positive
        weight (d each; ``inf`` and ``-inf`` without such rows)."""
        lo = np.full(self.d, np.inf)
        hi = np.full(self.d, -np.inf)
        X = self.Xs
        if self.is_sparse:
            X = sp.csr_matrix((X[0], X[1], X[2]), shape=(self.n, self.d), copy=False)
        w = np.broadcast_to(self.sw, (self.n,))
        for t0 in range(0, self.n, COLUMN_TILE):
            t1 = min(self.n, t0 + COLUMN_TILE)
            rows = np.flatnonzero(w[t0:t1] > 0) + t0
            if rows.size == 0:
                continue
            Xt = X[rows] if rows.size < t1 - t0 else X[t0:t1]
            lo = np.minimum(lo, np.asarray(Xt.min(axis=0).toarray() if self.is_sparse else Xt.min(axis=0),
                                           dtype=np.float64).ravel())
            hi = np.maximum(hi, np.asarray(Xt.max(axis=0).toarray() if self.is_sparse else Xt.max(axis=0),
                                           dtype=np.float64).ravel())
        return lo, hi

    def constant_columns(self):
        """Whether each input column holds one value on all the rows of
        positive weight (cached)."""
        if not hasattr(self, "_constant_columns"):
            lo, hi = self.column_range()
            self._constant_columns = lo == hi
        return self._constant_columns

    # ---- gradients -------------------------------------------------------
    def gradient_chunk(self, H, R):
        """``G[l] = X^T (1[X H >= 0] o R[:, l])`` (k x q x c) for gates H (q x c)."""
        c = H.shape[1]
        P = np.empty((self.n_blocks, R.shape[1], self.q, c))
        H = np.asarray(H, dtype=self.dtype)
        Rc = np.ascontiguousarray(R, dtype=np.float64)
        kernel = _pick(_gradient_chunk, _gradient_chunk_serial, self.n_blocks * -(-c // SUB))
        kernel(self.Xs, self.starts, Rc, H, self.has_bias, P)
        return ordered_sum(P)

    def pattern_gradient(self, units, gates, R, square=False):
        """``G[l] = X^T (D o R[:, l])`` (k x q x m) for the units' patterns
        under ``gates`` (q x m): the gradient of all their first-layer
        entries; with ``square``, ``(X o X)^T (D o R[:, l])``; with
        ``square="both"`` the pair (plain, squared) from one pass."""
        units = np.asarray(units, dtype=np.int64)
        m = units.shape[0]
        R = np.ascontiguousarray(R, dtype=np.float64)
        R = R.reshape(-1, 1) if R.ndim == 1 else R
        if R.shape[0] == 1 and self.n > 1:
            R = np.ascontiguousarray(np.broadcast_to(R, (self.n, R.shape[1])))
        pat = self.patterns(units, gates)
        P = np.empty((self.n_blocks, R.shape[1] * (2 if square == "both" else 1), self.q, m))
        kernel = _pick(_pattern_gradient, _pattern_gradient_serial, self.n_blocks)
        kernel(self.Xs, self.starts, self.has_bias, *pat, R, 2 if square == "both" else int(bool(square)), P)
        G = ordered_sum(P)
        return (G[: R.shape[1]], G[R.shape[1]:]) if square == "both" else G

    def support_gradient(self, spec, R, with_v=False):
        """``(A^T R)`` on the entries of ``spec`` (s,), and ``Hid^T R`` (R x k)
        if ``with_v``."""
        gP, vP = self.support_gradient_parts(spec, R, with_v)
        return ordered_sum(gP), ordered_sum(vP)

    def support_gradient_parts(self, spec, R, with_v=False):
        """``support_gradient`` per block (n_blocks x s, n_blocks x R x k)."""
        s = spec.e_val.size
        k = R.shape[1]
        n_col = spec.col_unit.size
        if s == 0:
            return np.zeros((self.n_blocks, 0)), np.zeros((self.n_blocks, n_col, k))
        pat = self.patterns(spec.units, spec.gates)
        ptr, col, val, ent = spec.by_feature(self.q)
        gP = np.empty((self.n_blocks, s))
        vP = np.empty((self.n_blocks, n_col, k))
        kernel = _pick(_support_gradient, _support_gradient_serial, self.n_blocks)
        kernel(self.Xs, self.starts, self.has_bias, *pat, ptr, col, val, ent, spec.col_unit,
               np.ascontiguousarray(spec.Vout, dtype=np.float64), np.ascontiguousarray(R, dtype=np.float64),
               bool(with_v), gP, vP)
        return gP, vP

    def unit_gradient(self, units, gates, U, V, R):
        """Gradients of a factored layer: first-layer ``U`` (q x m, dense) and
        output ``V`` (m x k), with the patterns of ``gates``."""
        m = units.shape[0]
        pat = self.patterns(units, gates)
        Ud, ub = self._split_gates(U)
        uP = np.empty((self.n_blocks, self.q, m))
        vP = np.empty((self.n_blocks, m, V.shape[1]))
        kernel = _pick(_unit_gradient, _unit_gradient_serial, self.n_blocks)
        kernel(self.Xs, self.starts, self.has_bias, *pat, Ud, ub, np.ascontiguousarray(V, dtype=np.float64),
               np.ascontiguousarray(R, dtype=np.float64), uP, vP)
        return ordered_sum(uP), ordered_sum(vP)

    def _bases(self, b_feat, b_hcol, groups=None):
        """Base columns grouped by input feature (hidden columns last), within
        each group: (ptr (n_groups x (q + 1)), base indices)."""
        S = b_feat.shape[0]
        groups = np.zeros(S, dtype=np.int64) if groups is None else groups
        n_groups = int(groups.max()) + 1 if S else 1
        feats = np.where(b_hcol < 0, b_feat, self.q)  # hidden bases sort past every input
        order = np.lexsort((np.arange(S), feats, groups))
        key = groups * (self.q + 1) + feats
        counts = np.bincount(key, minlength=n_groups * (self.q + 1)).reshape(n_groups, self.q + 1)
        ptr = np.zeros((n_groups, self.q + 1), dtype=np.int64)
        ptr[:, 1:] = np.cumsum(counts, axis=1)[:, :-1]
        ptr += np.concatenate([[0], np.cumsum(counts.sum(axis=1))[:-1]]).astype(np.int64)[:, None]
        return np.ascontiguousarray(ptr), order.astype(np.int64)

    def normal_equations(self, spec, b_unit, b_feat, b_hcol, w, b_out, groups=None, first_col=0):
        """``(G, B, C)``: ``A^T diag(w) A``, ``sum_i w_i a_iu Y[i, b_out[u]]`` and
        ``A^T w`` for the Jacobian columns ``a_u`` described in
        ``_normal_equations`` (first-layer entries ``(b_unit, b_feat)``, or the
        hidden columns ``b_hcol`` of ``spec``).

        ``groups`` (sorted, contiguous): several independent systems at once,
        group g weighted by column g of ``w`` (n x n_groups), or all by ``w``
        if it is one weight per row; G is zero between groups.  Without
        groups, ``w`` is one weight per row.

        ``first_col`` (one group): only the columns from ``first_col`` on are
        formed (``G[:, first_col:]``, ``B[first_col:]``, ``C[first_col:]``,
        ``n S (S - first_col)`` multiply-adds): the update of a support's
        system when the entries from ``first_col`` on are new."""
        S = b_unit.shape[0]
        first_col = int(first_col)
        G = np.zeros((S, S))
        Bv = np.zeros(S)
        Cv = np.zeros(S)
        if S == 0 or first_col >= S:
            return G[:, first_col:], Bv[first_col:], Cv[first_col:]
        w = np.asarray(w, dtype=np.float64)
        W = np.ascontiguousarray(w.reshape(-1, 1) if groups is None or w.ndim == 1 else w)
        groups = np.zeros(S, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        n_groups = int(groups[-1]) + 1
        if first_col and n_groups > 1:
            raise ValueError("first_col needs a single group")
        gstart = np.searchsorted(groups, np.arange(n_groups + 1)).astype(np.int64)
        pat = self.patterns(spec.units, spec.gates)
        need = np.zeros((n_groups, spec.units.shape[0]), dtype=np.uint8)
        need[groups, b_unit] = 1
        if np.any(b_hcol >= 0):
            need[:] = 1  # hidden columns use every unit of the network
        fb_ptr, fb_idx = self._bases(b_feat, b_hcol, groups)
        panels = []
        for g in range(n_groups):
            lo, hi = int(gstart[g]), int(gstart[g + 1])
            width = _panel_width(hi - lo)
            if first_col:
                # The new columns' panels (the same widths as a whole system's).
                width = _panel_width(hi - first_col)
                lo = first_col
            panels += [(g, c0, min(hi, c0 + width)) for c0 in range(lo, hi, width)]
        # Few panels (small systems): one task per panel and row block, each
        # with its own partial sums, so that the threads share the rows.  The
        # split depends on S and the blocks alone, and the partial sums are
        # added in block order: the same result either way.
        nb = self.n_blocks
        per_block = len(panels) < 4 and nb > 1 and nb * int(np.dot(np.diff(gstart), np.diff(gstart))) <= (4 << 20)
        ranges = [(b, b + 1) for b in range(nb)] if per_block else [(0, nb)]
        tasks = [(g, c0, c1, b0, b1) for g, c0, c1 in panels for b0, b1 in ranges]
        task_g, task_c0, task_c1, task_b0, task_b1 = (np.array(col, dtype=np.int64) for col in zip(*tasks))
        sizes = (gstart[task_g + 1] - gstart[task_g]) * (task_c1 - task_c0)
        task_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        widths = task_c1 - task_c0
        task_voff = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        Gp, Bp, Cp = np.zeros(int(sizes.sum())), np.zeros(int(widths.sum())), np.zeros(int(widths.sum()))
        ptr, col, val, _ = spec.by_feature(self.q)
        kernel = _pick(_normal_equations, _normal_equations_serial, len(tasks))
        kernel(self.Xs, self.starts, self.has_bias, *pat, need, np.ascontiguousarray(b_unit, dtype=np.int64),
               np.ascontiguousarray(b_hcol, dtype=np.int64), gstart, fb_ptr, fb_idx, ptr, col, val, spec.col_unit,
               task_g, task_c0, task_c1, task_b0, task_b1, task_off, task_voff, W, self.Y,
               np.ascontiguousarray(b_out, dtype=np.int64), Gp, Bp, Cp)
        _reduce_panels(task_g, task_c0, task_c1, task_off, task_voff, gstart, Gp, Bp, Cp, G, Bv, Cv)
        # Rows past each panel were not formed: the upper triangle (and the
        # panels' diagonal blocks) is mirrored.
        if first_col:
            tail = G[:, first_col:].copy()
            new = np.triu(tail[first_col:])
            tail[first_col:] = new + np.triu(new, 1).T
            return tail, Bv[first_col:], Cv[first_col:]
        # Group by group: G is zero between groups (a system of many small
        # groups, e.g. one per class, would otherwise mirror all of S x S).
        for g in range(n_groups):
            lo, hi = int(gstart[g]), int(gstart[g + 1])
            block = G[lo:hi, lo:hi]
            block[:] = np.triu(block) + np.triu(block, 1).T
        return G, Bv, Cv

    def alo_sums(self, spec, b_unit, b_feat, gstart, group_out, Qt, q_off, abar, WQ, invd, zbar, s0inv,
                 kind, F, b):
        """Approximate leave-one-out losses of penalised refits on a support
        (one per row of ``WQ``), and with a log-loss the refits' own losses
        (see ``_alo_sums``): (2, n_penalties)."""
        S = b_unit.shape[0]
        b_unit = np.ascontiguousarray(b_unit, dtype=np.int64)
        fb_ptr, fb_idx = self._bases(np.asarray(b_feat, dtype=np.int64), np.full(S, -1, dtype=np.int64))
        out_group = np.full(F.shape[1], -1, dtype=np.int64)
        out_group[np.asarray(group_out, dtype=np.int64)] = np.arange(len(group_out))
        pat = self.patterns(spec.units, spec.gates)
        ptr, col, val, _ = spec.by_feature(self.q)
        Lp = np.zeros((self.n_blocks, 2, WQ.shape[0]))
        kernel = _pick(_alo_sums, _alo_sums_serial, self.n_blocks)
        kernel(self.Xs, self.starts, self.has_bias, *pat, b_unit, np.ascontiguousarray(fb_ptr[0]), fb_idx,
               ptr, col, val, spec.col_unit, np.asarray(gstart, dtype=np.int64),
               np.asarray(group_out, dtype=np.int64), out_group, np.ascontiguousarray(Qt, dtype=np.float64),
               np.asarray(q_off, dtype=np.int64), np.ascontiguousarray(abar, dtype=np.float64),
               np.ascontiguousarray(WQ, dtype=np.float64), np.ascontiguousarray(invd, dtype=np.float64),
               np.asarray(zbar, dtype=np.float64), np.asarray(s0inv, dtype=np.float64), kind, F,
               np.asarray(b, dtype=np.float64), self.Y, self.sw, 1.0 / self.weight_total, Lp)
        return ordered_sum(Lp)

    def newton_matrix(self, spec, b_unit, b_feat, b_hcol, coef, kind, F, b):
        """``(sum_i J_i^T H_i J_i, sum_i J_i^T H_i)`` for the Jacobian columns
        ``a_e coef[e]^T`` and the exact per-row Hessians of the loss at
        ``F + b`` (see ``_newton_matrix``)."""
        S = b_unit.shape[0]
        G = np.zeros((S, S))
        Cm = np.zeros((S, F.shape[1]))
        if S == 0:
            return G, Cm
        pat = self.patterns(spec.units, spec.gates)
        fb_ptr, fb_idx = self._bases(b_feat, b_hcol)
        fb_ptr = fb_ptr[0]
        ptr, col, val, _ = spec.by_feature(self.q)
        kernel = _pick(_newton_matrix, _newton_matrix_serial, -(-S // _panel_width(S)))
        kernel(self.Xs, self.starts, self.has_bias, *pat, np.ascontiguousarray(b_unit, dtype=np.int64),
               np.ascontiguousarray(b_hcol, dtype=np.int64), fb_ptr, fb_idx, ptr, col, val, spec.col_unit,
               np.ascontiguousarray(coef, dtype=np.float64), kind, F, np.asarray(b, dtype=np.float64), self.sw,
               G, Cm)
        return G, Cm

    def intercept_hessian(self, kind, F, b):
        """Hessian (k x k) of the loss in the output intercept."""
        return self.intercept_stats(kind, F, b)[2]

    # ---- patterns: merging and signs -----------------------------------
    def pattern_keys(self, units, gates):
        """(keys (m, 2) uint64, active counts (m,)) of the units' patterns on
        the rows of positive weight."""
        return combine_keys(*self.pattern_key_parts(units, gates))

    def pattern_key_parts(self, units, gates):
        """Per block: (keys (n_blocks, m, 2), counts (n_blocks, m)), combined
        in block order by ``combine_keys``."""
        m = units.shape[0]
        pat = self.patterns(units, gates)
        KP = np.empty((self.n_blocks, m, 2), dtype=np.uint64)
        CP = np.empty((self.n_blocks, m), dtype=np.int64)
        kernel = _pick(_pattern_keys, _pattern_keys_serial, self.n_blocks)
        kernel(self.Xs, self.starts, *pat, self.sw, KP, CP)
        return KP, CP

    def forward_exact_summary(self, units, gates, signs):
        """``forward_exact_parts`` and the ``centred_stats`` of the residuals
        ``Y - F`` of its outputs: what a gate update asks of the blocks, in
        one pass (one round trip on a cluster)."""
        F, KP, CP = self.forward_exact_parts(units, gates, signs)
        return (F, KP, CP) + self.centred_stats(F, True, residual=True)

    def sign_scores(self, kind, units, gates, W, U, F, b):
        """Loss (m, 2) when unit a, contributing ``X W[:, a, :]`` under its
        gate in ``gates``, takes the pattern of ``+U[:, a]`` or ``-U[:, a]``."""
        m = units.shape[0]
        k = F.shape[1]
        pat = self.patterns(units, gates)
        Wd, wb = self._split_gates(W.reshape(self.q, m * k))
        Ud, ub = self._split_gates(U)
        SP = np.empty((self.n_blocks, m, 2))
        kernel = _pick(_sign_scores, _sign_scores_serial, self.n_blocks)
        kernel(self.Xs, self.starts, *pat, Wd, wb, Ud, ub, kind, F, np.asarray(b, dtype=np.float64), self.Y,
               self.sw, SP)
        return ordered_sum(SP)
