"""Losses of the network's raw outputs, row by row.

Every loss works on raw outputs ``F0`` (n x k, float64, *without* the output
intercept), the intercept ``b`` (k,), targets ``Y`` (n x k) and normalised
sample weights ``sw`` (n,).  The per-row formulas are numba functions; the
kernels below apply them to the rows of a row block and return the block's
partial sums, so that a reduction over blocks adds them in block order (see
``_blocks``).  The ``Loss`` classes wrap the same kernels for whole arrays
(one block), which is what the IMP baseline and the tests use.

What the solver needs of a loss:

``value``
    ``sum_i sw_i l(F_i + b, Y_i)``;
``gradient``
    ``R = dL/dF`` (n x k), so that the gradient in the fused weights is
    ``A^T R``;
``intercept``
    the output intercept for outputs ``F0`` without it (exact for the
    squared loss, safeguarded Newton steps otherwise);
``curvature``
    an upper bound of the second derivative of the loss in one output (times
    the sample weight), used for the first trial step;
``hessian_weights``
    the diagonal (per sample and output) of the Hessian in ``F``, times the
    sample weights: the weights of a Newton step;
``link``
    the model's mean (probabilities for the classification losses);
``is_quadratic``
    whether exact least squares and conjugate gradients apply.

The classification losses never exponentiate a large positive number
(``log1p(exp(-|f|))``, a max-shifted log-sum-exp), so raw outputs of any size
give finite values and gradients.
"""

import numpy as np
from numba import njit, prange
from scipy.special import expit, log_expit

from ._gates import serial_kernel

# Bound of the output intercept of the classification losses: a target
# column with a single class pushes it to infinity; this keeps it finite
# (a probability within 1e-21 of 0 or 1) without changing any decision.
_B_MAX = 48.0

SQUARED, LOGISTIC, SOFTMAX = 0, 1, 2


# --------------------------------------------------------------------------
# per-row formulas (numba)
# --------------------------------------------------------------------------
@njit(cache=True)
def _softplus(f):
    """``log(1 + exp(f))`` without overflow."""
    return max(f, 0.0) + np.log1p(np.exp(-abs(f)))


@njit(cache=True)
def _expit(f):
    if f >= 0.0:
        return 1.0 / (1.0 + np.exp(-f))
    e = np.exp(f)
    return e / (1.0 + e)


@njit(cache=True)
def _lse(f):
    """``max_l f_l`` and ``log sum_l exp(f_l - max)`` of the vector f."""
    mx = f[0]
    for l in range(1, f.shape[0]):
        mx = max(mx, f[l])
    acc = 0.0
    for l in range(f.shape[0]):
        acc += np.exp(f[l] - mx)
    return mx, np.log(acc)


@njit(cache=True, inline="always")
def weight(sw, i):
    """Sample weight of row i: ``sw`` holds one value per row, or a single
    value when all rows weigh the same (no vector of length n then)."""
    return sw[0] if sw.shape[0] == 1 else sw[i]


@njit(cache=True)
def row_loss(kind, f, y):
    """The unweighted loss of one row: raw outputs ``f`` (intercept included)
    against targets ``y``, both of length k."""
    k = f.shape[0]
    acc = 0.0
    if kind == SQUARED:
        for l in range(k):
            r = f[l] - y[l]
            acc += r * r
        return 0.5 * acc
    if kind == LOGISTIC:
        for l in range(k):
            acc += _softplus(f[l]) - y[l] * f[l]
        return acc
    mx, lse = _lse(f)
    for l in range(k):
        if y[l] != 0.0:
            acc += y[l] * (mx + lse - f[l])
    return acc


@njit(cache=True)
def _row_gradient(kind, f, y, out):
    """``dl/df`` of one row into ``out`` (k,), unweighted."""
    k = f.shape[0]
    if kind == SQUARED:
        for l in range(k):
            out[l] = f[l] - y[l]
    elif kind == LOGISTIC:
        for l in range(k):
            out[l] = _expit(f[l]) - y[l]
    else:
        mx, lse = _lse(f)
        for l in range(k):
            out[l] = np.exp(f[l] - mx - lse) - y[l]


@njit(cache=True)
def row_probabilities(kind, f, out):
    """Probabilities of one row (logistic, softmax) into ``out`` (k,)."""
    k = f.shape[0]
    if kind == LOGISTIC:
        for l in range(k):
            out[l] = _expit(f[l])
    else:
        mx, lse = _lse(f)
        for l in range(k):
            out[l] = np.exp(f[l] - mx - lse)


@njit(cache=True)
def outputs_row(F, b, i, f):
    """``f = F[i] + b``: the raw outputs of row i, intercept included."""
    for l in range(f.shape[0]):
        f[l] = F[i, l] + b[l]


# --------------------------------------------------------------------------
# block kernels: partial sums per row block, rows in order inside a block
# --------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def loss_sums(kind, F, b, Y, sw, starts, out):
    """``out[t] = sum_{i in block t} sw_i l(F_i + b, Y_i)``."""
    k = F.shape[1]
    for t in prange(starts.shape[0] - 1):
        f = np.empty(k)
        acc = 0.0
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            if w != 0.0:
                outputs_row(F, b, i, f)
                acc += w * row_loss(kind, f, Y[i])
        out[t] = acc


@njit(cache=True, parallel=True)
def residual_rows(kind, F, b, Y, sw, R):
    """``R_i = sw_i dl/dF_i`` for every row (rows are independent)."""
    n, k = F.shape
    for t in prange((n + 1023) // 1024):
        f = np.empty(k)
        g = np.empty(k)
        for i in range(t * 1024, min(n, t * 1024 + 1024)):
            outputs_row(F, b, i, f)
            _row_gradient(kind, f, Y[i], g)
            for l in range(k):
                R[i, l] = weight(sw, i) * g[l]


@njit(cache=True, parallel=True)
def hessian_rows(kind, F, b, sw, W):
    """``W_il = sw_i d^2 l / dF_il^2`` (the diagonal of the Hessian in F)."""
    n, k = F.shape
    for t in prange((n + 1023) // 1024):
        f = np.empty(k)
        P = np.empty(k)
        for i in range(t * 1024, min(n, t * 1024 + 1024)):
            if kind == SQUARED:
                for l in range(k):
                    W[i, l] = weight(sw, i)
            else:
                outputs_row(F, b, i, f)
                row_probabilities(kind, f, P)
                for l in range(k):
                    W[i, l] = weight(sw, i) * P[l] * (1.0 - P[l])


@njit(cache=True)
def _softmax_shift(b):
    """``(exp(b - max b), max b)``: the intercept's factor of the softmax
    exponentials ``exp(F_il + b_l - shift_i) = exp(F_il - max_l F_il)
    exp(b_l - max b)`` (b is kept in [-_B_MAX, _B_MAX], so no factor
    underflows)."""
    c = b[0]
    for l in range(1, b.shape[0]):
        c = max(c, b[l])
    return np.exp(b - c), c


@njit(cache=True, inline="always")
def _row_exponentials(F, i, E):
    """``E = exp(F_i - max F_i)``; returns ``max F_i``."""
    k = F.shape[1]
    mx = F[i, 0]
    for l in range(1, k):
        mx = max(mx, F[i, l])
    for l in range(k):
        E[l] = np.exp(F[i, l] - mx)
    return mx


@njit(cache=True, inline="always")
def _softmax_row_sums(F, i, mx, P, b, eb, c, y, w, g, h):
    """One softmax row of ``intercept_sums`` from its exponentials
    ``P = exp(F_i - mx)`` (overwritten by its probabilities at ``F_i + b``):
    adds its gradient to ``g`` and its Hessian's upper triangle to ``h``,
    returns its weighted loss.  The intercept enters through ``exp(b - c)``
    (``_softmax_shift``), so a pass costs one logarithm a row, no
    exponential, once the rows' exponentials are kept."""
    k = P.shape[0]
    se = 0.0
    for l in range(k):
        P[l] *= eb[l]
        se += P[l]
    top = mx + c + np.log(se)  # the row's log-sum-exp at F_i + b
    racc = 0.0
    for l in range(k):
        if y[l] != 0.0:
            racc += y[l] * (top - (F[i, l] + b[l]))
    inv = 1.0 / se
    for l in range(k):
        P[l] *= inv
    for l in range(k):
        g[l] += w * (P[l] - y[l])
        h[l, l] += w * P[l]
        wp = w * P[l]
        for m in range(l, k):
            h[l, m] -= wp * P[m]
    return w * racc


@njit(cache=True, inline="always")
def _store_block(t, acc, g, h, mirror, L, G, H):
    """Block t's sums of ``intercept_sums``: ``L[t] = acc``, ``G[t] = g``,
    ``H[t] = h`` (its upper triangle mirrored first if ``mirror``)."""
    k = g.shape[0]
    if mirror:
        for l in range(k):
            for m in range(l + 1, k):
                h[m, l] = h[l, m]
    L[t] = acc
    for l in range(k):
        G[t, l] = g[l]
        for m in range(k):
            H[t, l, m] = h[l, m]


@njit(cache=True, parallel=True)
def intercept_sums(kind, F, b, Y, sw, starts, L, G, H):
    """Per block: the loss ``L[t]``, its gradient ``G[t]`` (k) and Hessian
    ``H[t]`` (k x k) in the output intercept.

    The sums run in local buffers (this is the inner loop of every intercept
    solve).  The loss takes the same operations in the same order as the
    per-row formulas, so the same bits; the softmax's, in the factored form
    of ``_softmax_row_sums`` (the bits of ``softmax_sums``, which reuses the
    rows' exponentials from one pass to the next)."""
    k = F.shape[1]
    eb, c = _softmax_shift(b)
    for t in prange(starts.shape[0] - 1):
        f = np.empty(k)
        P = np.empty(k)
        g = np.zeros(k)
        h = np.zeros((k, k))
        acc = 0.0
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            if w == 0.0:
                continue
            if kind != SOFTMAX:
                outputs_row(F, b, i, f)
            y = Y[i]
            if kind == SQUARED:
                acc += w * row_loss(kind, f, y)
                for l in range(k):
                    g[l] += w * (f[l] - y[l])
                    h[l, l] += w
            elif kind == LOGISTIC:
                # row_loss and _expit with one exponential a row (both take
                # exp(-|f|)): the same operations, the same bits.
                racc = 0.0
                for l in range(k):
                    fl = f[l]
                    e = np.exp(-abs(fl))
                    racc += (max(fl, 0.0) + np.log1p(e)) - y[l] * fl
                    P[l] = 1.0 / (1.0 + e) if fl >= 0.0 else e / (1.0 + e)
                acc += w * racc
                # the gradient is P - Y for both classification losses
                for l in range(k):
                    g[l] += w * (P[l] - y[l])
                    h[l, l] += w * P[l]
                    h[l, l] -= w * P[l] * P[l]
            else:
                mx = _row_exponentials(F, i, P)
                acc += _softmax_row_sums(F, i, mx, P, b, eb, c, y, w, g, h)
        _store_block(t, acc, g, h, kind == SOFTMAX, L, G, H)


@njit(cache=True, parallel=True)
def row_exponentials(F, starts, E, M):
    """``E_i = exp(F_i - max F_i)`` and ``M_i = max F_i`` for every row."""
    for t in prange(starts.shape[0] - 1):
        for i in range(starts[t], starts[t + 1]):
            M[i] = _row_exponentials(F, i, E[i])


@njit(cache=True, parallel=True)
def softmax_sums(E, M, F, b, Y, sw, starts, L, G, H):
    """``intercept_sums`` of the softmax from the rows' kept exponentials
    (``row_exponentials``): the same bits, one logarithm a row instead of
    k exponentials (the intercept is re-solved, in about five passes, at
    every trial network of a multiclass fit)."""
    k = F.shape[1]
    eb, c = _softmax_shift(b)
    for t in prange(starts.shape[0] - 1):
        P = np.empty(k)
        g = np.zeros(k)
        h = np.zeros((k, k))
        acc = 0.0
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            if w == 0.0:
                continue
            for l in range(k):
                P[l] = E[i, l]
            acc += _softmax_row_sums(F, i, M[i], P, b, eb, c, Y[i], w, g, h)
        _store_block(t, acc, g, h, True, L, G, H)


@njit(cache=True, parallel=True)
def working_sums(kind, F, b, Y, sw, starts, shift, S0, S1, S2):
    """Per block and output: the sums of the working (IRLS) response
    ``z = F + b - g / h`` of the loss's quadratic model at ``F + b`` (``g``
    the gradient and ``h`` the diagonal curvature of a row, ``z = Y`` for
    the squared loss), with weights ``v = sw h``: ``S0 = sum v``,
    ``S1 = sum v (z - shift)``, ``S2 = sum v (z - shift)^2``."""
    k = F.shape[1]
    for t in prange(starts.shape[0] - 1):
        f = np.empty(k)
        P = np.empty(k)
        a0 = np.zeros(k)
        a1 = np.zeros(k)
        a2 = np.zeros(k)
        for i in range(starts[t], starts[t + 1]):
            w = weight(sw, i)
            if w == 0.0:
                continue
            outputs_row(F, b, i, f)
            if kind != SQUARED:
                row_probabilities(kind, f, P)
            for l in range(k):
                if kind == SQUARED:
                    h = 1.0
                    z = Y[i, l]
                else:
                    h = max(P[l] * (1.0 - P[l]), 1e-12)
                    z = f[l] - (P[l] - Y[i, l]) / h
                r = z - shift[l]
                a0[l] += w * h
                a1[l] += w * h * r
                a2[l] += w * h * r * r
        for l in range(k):
            S0[t, l] = a0[l]
            S1[t, l] = a1[l]
            S2[t, l] = a2[l]


loss_sums_serial = serial_kernel(loss_sums)
working_sums_serial = serial_kernel(working_sums)
residual_rows_serial = serial_kernel(residual_rows)
hessian_rows_serial = serial_kernel(hessian_rows)
intercept_sums_serial = serial_kernel(intercept_sums)
row_exponentials_serial = serial_kernel(row_exponentials)
softmax_sums_serial = serial_kernel(softmax_sums)


@njit(cache=True)
def _sum_arrays(parts):
    out = parts[0].copy()
    for t in range(1, parts.shape[0]):
        out += parts[t]
    return out


@njit(cache=True)
def _sum_scalars(parts):
    acc = parts[0]
    for t in range(1, parts.shape[0]):
        acc += parts[t]
    return acc


def ordered_sum(parts):
    """Sum of ``parts`` along the first axis, in order (the reduction's rule)."""
    return _sum_scalars(parts) if parts.ndim == 1 else _sum_arrays(parts)


# --------------------------------------------------------------------------
# the output intercept
# --------------------------------------------------------------------------
def newton_intercept(kind, stats, k, b0, n_steps=50):
    """Output intercept by safeguarded Newton steps, to machine precision.

    ``stats(b)`` returns the loss, its gradient (k) and its Hessian (k x k)
    in the intercept (sums over row blocks, one pass).  Each step solves with
    the Hessian (pseudo-inverse: the softmax Hessian is singular along the
    all-ones direction, along which the gradient vanishes) and keeps the
    intercept in ``[-_B_MAX, _B_MAX]``.  Far from the solution a step is
    shortened until the loss does not increase; once steps are small
    (< 1e-6) Newton converges quadratically and steps are taken as they are
    until they vanish, without comparing losses that are equal to rounding
    (an intercept solved only to a tolerance would differ between fits whose
    sums are rounded differently, and so would everything after it).  The
    squared loss takes one exact step.
    """
    if kind == SQUARED:
        _, g, _ = stats(np.zeros(k))
        return -g  # the weights sum to one: b = sum_i sw_i (Y_i - F0_i)
    b = np.zeros(k) if b0 is None else np.clip(np.asarray(b0, dtype=np.float64), -_B_MAX, _B_MAX)
    L, g, H = stats(b)
    for _ in range(n_steps):
        if not np.any(g):
            break
        if k > 1:
            step = np.empty(k)
            if not _newton_direction(kind, b, g, H, step):
                break  # a NaN or an infinity: no step lowers the loss
        else:
            step = np.clip(g / max(H[0, 0], 1e-300), -8.0, 8.0)
        size = np.abs(step).max()
        if size <= 1e-6:
            b_new = np.clip(b - step, -_B_MAX, _B_MAX)
            done = size <= 1e-15 * max(1.0, np.abs(b).max()) or np.array_equal(b_new, b)
            b = b_new
            if done:
                break
            L, g, H = stats(b)
            continue
        for _ in range(8):
            b_new = np.clip(b - step, -_B_MAX, _B_MAX)
            L_new, g_new, H_new = stats(b_new)
            if L_new <= L:
                break
            step *= 0.25
        else:
            break  # no decrease along the Newton direction
        if np.array_equal(b_new, b):
            break
        b, L, g, H = b_new, L_new, g_new, H_new
    if kind == SOFTMAX:
        b = _centred(b)  # outputs are defined up to a common shift
    return b


@njit(cache=True)
def _newton_direction(kind, b, g, H, step):
    """The Newton step of ``newton_intercept`` for several outputs, clipped
    to [-8, 8], into ``step``; False (and no step) if ``g`` or ``H`` is not
    finite.

    The pseudo-inverse of the Hessian (LAPACK's least squares, as compiled
    for numba: the same routine for the in-process and the dask fits; a
    well-conditioned softmax Hessian by ``_softmax_solve``).
    Components held at the bound by a gradient that pushes them out
    (separable classes) stay there: the step is the Newton step of the
    others (with the full Hessian the clipped step converges only linearly:
    30 passes a solve instead of 5)."""
    k = g.shape[0]
    for l in range(k):
        if not np.isfinite(g[l]):
            return False
        for m in range(k):
            if not np.isfinite(H[l, m]):
                return False
    held = np.zeros(k, dtype=np.bool_)
    n_held = 0
    for l in range(k):
        held[l] = (b[l] >= _B_MAX and g[l] < 0) or (b[l] <= -_B_MAX and g[l] > 0)
        n_held += held[l]
    if 0 < n_held < k:
        free = np.flatnonzero(~held)
        Hf = np.empty((free.size, free.size))
        gf = np.empty(free.size)
        for i in range(free.size):
            gf[i] = g[free[i]]
            for j in range(free.size):
                Hf[i, j] = H[free[i], free[j]]
        step[:] = 0.0
        sf = np.linalg.lstsq(Hf, gf, rcond=1e-12)[0]
        for i in range(free.size):
            step[free[i]] = sf[i]
    elif not (kind == SOFTMAX and _softmax_solve(H, g, step)):
        step[:] = np.linalg.lstsq(np.ascontiguousarray(H), np.ascontiguousarray(g), rcond=1e-12)[0]
    for l in range(k):
        step[l] = _clip(step[l], -8.0, 8.0)
    return True


# A softmax intercept's Newton system is solved by Cholesky when no pivot of
# its regularised matrix falls below this fraction of the largest diagonal
# entry; otherwise (a class with vanishing probabilities) by least squares.
_SOFTMAX_PIVOT = 1e-8


@njit(cache=True)
def _softmax_solve(H, g, x):
    """``x = H^+ g`` for a softmax intercept's Hessian ``H``, whose null
    space is the all-ones direction: Cholesky of ``H + (tr H / k) 11^T / k``,
    then the component along the ones removed (the minimum-norm solution
    when ``g`` sums to zero, as a softmax gradient does).  False, ``x``
    undefined, when a pivot is small (``_SOFTMAX_PIVOT``): a direction of
    ``H`` other than the ones is nearly singular.  A tenth of the cost of
    the least squares it replaces (LAPACK's SVD-based solver, called
    through numba, took 70 microseconds a 10 x 10 step on digits)."""
    k = g.shape[0]
    shift = 0.0
    for l in range(k):
        shift += H[l, l]
    shift /= k * k
    C = np.empty((k, k))
    top = 0.0
    for l in range(k):
        for m in range(k):
            C[l, m] = H[l, m] + shift
        top = max(top, C[l, l])
    if not top > 0.0:
        return False
    for j in range(k):  # lower Cholesky factor, in place
        d = C[j, j]
        for m in range(j):
            d -= C[j, m] * C[j, m]
        if not d > _SOFTMAX_PIVOT * top:
            return False
        d = np.sqrt(d)
        C[j, j] = d
        for l in range(j + 1, k):
            v = C[l, j]
            for m in range(j):
                v -= C[l, m] * C[j, m]
            C[l, j] = v / d
    for l in range(k):  # forward and back substitution
        v = g[l]
        for m in range(l):
            v -= C[l, m] * x[m]
        x[l] = v / C[l, l]
    for l in range(k - 1, -1, -1):
        v = x[l]
        for m in range(l + 1, k):
            v -= C[m, l] * x[m]
        x[l] = v / C[l, l]
    mean = 0.0
    for l in range(k):
        mean += x[l]
    mean /= k
    for l in range(k):
        x[l] -= mean
    return True


@njit(cache=True)
def _block_sum(a, lo, n):
    """``a[lo:lo + n].sum()`` for n <= 128 as NumPy sums it (eight
    accumulators, sequential below eight)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r = np.empty(8)
    for j in range(8):
        r[j] = a[lo + j]
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[lo + i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise_sum(a):
    """``a.sum()`` as NumPy sums a contiguous float64 array: blocks of up
    to 128 (``_block_sum``), halves (multiples of eight) summed pairwise;
    the halving without recursion (a recursive function is not cached)."""
    lo_s = np.empty(64, dtype=np.int64)
    n_s = np.empty(64, dtype=np.int64)
    left = np.empty(64)
    state = np.zeros(64, dtype=np.int64)  # 0: left half to sum, 1: right half
    lo_s[0], n_s[0], top = 0, a.shape[0], 1
    while True:
        lo, n = lo_s[top - 1], n_s[top - 1]
        if n > 128:
            n2 = n // 2
            n2 -= n2 % 8
            lo_s[top], n_s[top], state[top] = lo, n2, 0
            top += 1
            continue
        val = _block_sum(a, lo, n)  # a leaf; then the nodes it completes
        top -= 1
        while top > 0 and state[top - 1] == 1:
            val = left[top - 1] + val
            top -= 1
        if top == 0:
            return val
        # ``val`` is the left half of the node on top: its right half next.
        left[top - 1] = val
        state[top - 1] = 1
        plo, pn = lo_s[top - 1], n_s[top - 1]
        n2 = pn // 2
        n2 -= n2 % 8
        lo_s[top], n_s[top], state[top] = plo + n2, pn - n2, 0
        top += 1


@njit(cache=True)
def _centred(b):
    """``b - b.mean()``, with NumPy's bits."""
    return b - _pairwise_sum(b) / b.shape[0]


@njit(cache=True)
def _multi_stats(kind, F, E, M, b, Y, sw, starts, L, G, H, parallel):
    """``stats`` of ``newton_intercept`` for several outputs: the block sums
    of ``intercept_sums`` (for the softmax, ``softmax_sums`` of the rows'
    exponentials ``E`` and maxima ``M``), summed in block order
    (``ordered_sum``)."""
    if kind == SOFTMAX:
        if parallel:
            softmax_sums(E, M, F, b, Y, sw, starts, L, G, H)
        else:
            softmax_sums_serial(E, M, F, b, Y, sw, starts, L, G, H)
    elif parallel:
        intercept_sums(kind, F, b, Y, sw, starts, L, G, H)
    else:
        intercept_sums_serial(kind, F, b, Y, sw, starts, L, G, H)
    Ls = L[0]
    g = G[0].copy()
    h = H[0].copy()
    for t in range(1, L.shape[0]):
        Ls += L[t]
        g += G[t]
        h += H[t]
    return Ls, g, h


@njit(cache=True)
def _max_abs(v):
    out = 0.0
    for x in v:
        out = max(out, abs(x))
    return out


@njit(cache=True)
def _clipped(v):
    out = np.empty_like(v)
    for l in range(v.shape[0]):
        out[l] = _clip(v[l], -_B_MAX, _B_MAX)
    return out


@njit(cache=True)
def multi_intercept(kind, F, b0, Y, sw, starts, parallel=False, n_steps=50):
    """``newton_intercept`` for several outputs (softmax, or logistic
    outputs) on row blocks ``starts``, in one call: the same operations in
    the same order, so the same bits, without a Python round per Newton step
    (the intercept is re-solved at every trial network of a multiclass
    classifier: a quarter of a digits fit went to those rounds).  The
    softmax's rows' exponentials are taken once and kept for every pass
    (``softmax_sums``: a fifth of a digits fit went to the passes' k
    exponentials a row).  ``b0``: the start (k,); ``parallel``: each pass
    over the blocks in parallel."""
    nb = starts.shape[0] - 1
    n, k = F.shape
    L = np.empty(nb)
    G = np.empty((nb, k))
    H = np.empty((nb, k, k))
    if kind == SOFTMAX:
        E = np.empty((n, k))
        M = np.empty(n)
        if parallel:
            row_exponentials(F, starts, E, M)
        else:
            row_exponentials_serial(F, starts, E, M)
    else:
        E = np.empty((0, k))
        M = np.empty(0)
    b = _clipped(b0)
    Lc, g, h = _multi_stats(kind, F, E, M, b, Y, sw, starts, L, G, H, parallel)
    for _ in range(n_steps):
        if not np.any(g):
            break
        step = np.empty(k)
        if not _newton_direction(kind, b, g, h, step):
            break
        size = _max_abs(step)
        if size <= 1e-6:
            b_new = _clipped(b - step)
            done = size <= 1e-15 * max(1.0, _max_abs(b)) or np.array_equal(b_new, b)
            b = b_new
            if done:
                break
            Lc, g, h = _multi_stats(kind, F, E, M, b, Y, sw, starts, L, G, H, parallel)
            continue
        accepted = False
        b_new, L_new, g_new, h_new = b, Lc, g, h
        for _ in range(8):
            b_new = _clipped(b - step)
            L_new, g_new, h_new = _multi_stats(kind, F, E, M, b_new, Y, sw, starts, L, G, H, parallel)
            if L_new <= Lc:
                accepted = True
                break
            step *= 0.25
        if not accepted or np.array_equal(b_new, b):
            break
        b, Lc, g, h = b_new, L_new, g_new, h_new
    if kind == SOFTMAX:
        b = _centred(b)
    return b


@njit(cache=True)
def _logistic_stats(F, b, Y, sw, starts, L, G, H, parallel):
    """``stats`` of ``newton_intercept`` for one logistic output: the block
    sums of ``intercept_sums`` (over the blocks in parallel if ``parallel``),
    summed in block order (``ordered_sum``)."""
    if parallel:
        intercept_sums(LOGISTIC, F, b, Y, sw, starts, L, G, H)
    else:
        intercept_sums_serial(LOGISTIC, F, b, Y, sw, starts, L, G, H)
    Ls, gs, hs = L[0], G[0, 0], H[0, 0, 0]
    for t in range(1, L.shape[0]):
        Ls += L[t]
        gs += G[t, 0]
        hs += H[t, 0, 0]
    return Ls, gs, hs


@njit(cache=True)
def _clip(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True)
def logistic_intercept(F, b0, Y, sw, starts, parallel=False, n_steps=50):
    """``newton_intercept`` for one logistic output on row blocks ``starts``,
    in one call: the same operations in the same order, so the same bits,
    without a Python round per Newton step (the intercept is re-solved at
    every trial network of a binary classifier).  ``parallel``: each pass
    runs over the blocks in parallel (the same sums)."""
    nb = starts.shape[0] - 1
    L = np.empty(nb)
    G = np.empty((nb, 1))
    H = np.empty((nb, 1, 1))
    bv = np.empty(1)
    b = _clip(b0, -_B_MAX, _B_MAX)
    bv[0] = b
    Lc, g, h = _logistic_stats(F, bv, Y, sw, starts, L, G, H, parallel)
    for _ in range(n_steps):
        if g == 0.0:
            break
        if g != g:
            break  # NaN: as newton_intercept, no step lowers the loss
        step = _clip(g / max(h, 1e-300), -8.0, 8.0)
        size = abs(step)
        if size <= 1e-6:
            b_new = _clip(b - step, -_B_MAX, _B_MAX)
            done = size <= 1e-15 * max(1.0, abs(b)) or b_new == b
            b = b_new
            if done:
                break
            bv[0] = b
            Lc, g, h = _logistic_stats(F, bv, Y, sw, starts, L, G, H, parallel)
            continue
        accepted = False
        b_new, L_new, g_new, h_new = b, Lc, g, h
        for _ in range(8):
            b_new = _clip(b - step, -_B_MAX, _B_MAX)
            bv[0] = b_new
            L_new, g_new, h_new = _logistic_stats(F, bv, Y, sw, starts, L, G, H, parallel)
            if L_new <= Lc:
                accepted = True
                break
            step *= 0.25
        if not accepted or b_new == b:
            break
        b, Lc, g, h = b_new, L_new, g_new, h_new
    return b


# --------------------------------------------------------------------------
# whole-array interface
# --------------------------------------------------------------------------
def _one_block(n):
    return np.array([0, n], dtype=np.int64)


def _f64(A):
    return np.ascontiguousarray(A, dtype=np.float64)


class Loss:
    """A smooth convex loss of the raw network outputs (whole arrays)."""

    kind = SQUARED
    is_quadratic = False
    curvature = 1.0

    def value(self, F, Y, sw):
        F, Y, sw = _f64(F), _f64(Y), _f64(sw)
        out = np.empty(1)
        loss_sums_serial(self.kind, F, np.zeros(F.shape[1]), Y, sw, _one_block(F.shape[0]), out)
        return float(out[0])

    def gradient(self, F, Y, sw):
        F, Y, sw = _f64(F), _f64(Y), _f64(sw)
        R = np.empty_like(F)
        residual_rows_serial(self.kind, F, np.zeros(F.shape[1]), Y, sw, R)
        return R

    def value_and_gradient(self, F, Y, sw):
        return self.value(F, Y, sw), self.gradient(F, Y, sw)

    def hessian_weights(self, F, Y, sw):
        F, sw = _f64(F), _f64(sw)
        W = np.empty_like(F)
        hessian_rows_serial(self.kind, F, np.zeros(F.shape[1]), sw, W)
        return W

    def intercept_hessian(self, F, sw):
        """Hessian (k x k) of the loss with respect to the output intercept."""
        F, sw = _f64(F), _f64(sw)
        k = F.shape[1]
        L, G, H = np.empty(1), np.empty((1, k)), np.empty((1, k, k))
        intercept_sums_serial(self.kind, F, np.zeros(k), np.zeros_like(F), sw, _one_block(F.shape[0]), L, G, H)
        return H[0]

    def intercept(self, F0, Y, sw, b0):
        """The output intercept that minimises the loss for outputs ``F0``."""
        F0, Y, sw = _f64(F0), _f64(Y), _f64(sw)
        k = F0.shape[1]
        starts = _one_block(F0.shape[0])

        def stats(b):
            L, G, H = np.empty(1), np.empty((1, k)), np.empty((1, k, k))
            intercept_sums_serial(self.kind, F0, b, Y, sw, starts, L, G, H)
            return float(L[0]), G[0], H[0]

        return newton_intercept(self.kind, stats, k, b0)

    def initial_intercept(self, Y, sw):
        Y, sw = _f64(Y), _f64(sw)
        return self.intercept(np.zeros_like(Y), Y, sw, self.start(sw @ Y))

    def start(self, mean):
        """A first guess of the intercept from the weighted mean of the targets."""
        return None

    def link(self, F):
        return F


class SquaredLoss(Loss):
    """``L = sum_i sw_i ||F_i - Y_i||^2 / 2`` (half the weighted mean squared error)."""

    kind = SQUARED
    is_quadratic = True
    curvature = 1.0


class LogisticLoss(Loss):
    """Binary cross-entropy of logits, one independent output per column.

    ``L = sum_i sw_i sum_l [log(1 + exp(F_il)) - Y_il F_il]`` with targets
    in {0, 1} (two classes: one column; multilabel: one column per label).
    """

    kind = LOGISTIC
    curvature = 0.25

    def link(self, F):
        return expit(_f64(F))

    def start(self, mean):
        pbar = np.clip(mean, 1e-12, 1.0 - 1e-12)
        return np.clip(np.log(pbar) - np.log1p(-pbar), -_B_MAX, _B_MAX)


def _log_softmax(F):
    Fm = F - F.max(axis=1, keepdims=True)
    return Fm - np.log(np.exp(Fm).sum(axis=1, keepdims=True))


class SoftmaxLoss(Loss):
    """Multinomial cross-entropy: ``L = -sum_i sw_i sum_l Y_il log softmax(F_i)_l``.

    Targets are one-hot rows.  The outputs are defined up to a common shift;
    the intercept is kept centred.
    """

    kind = SOFTMAX
    curvature = 0.5  # largest eigenvalue of diag(p) - p p^T

    def link(self, F):
        return np.exp(_log_softmax(_f64(F)))

    def start(self, mean):
        logp = np.log(np.clip(mean, 1e-12, None))
        return np.clip(logp - logp.mean(), -_B_MAX, _B_MAX)


def sigmoid_log(F):
    """``log expit(F)`` without overflow (log-probabilities of logits)."""
    return log_expit(np.asarray(F, dtype=np.float64))


def log_softmax(F):
    """Row-wise log-softmax without overflow."""
    return _log_softmax(np.asarray(F, dtype=np.float64))


LOSSES = {"squared_error": SquaredLoss, "logistic": LogisticLoss, "softmax": SoftmaxLoss}
