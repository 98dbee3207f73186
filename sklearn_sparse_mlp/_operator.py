"""The lazy sensing operator ``A = [D_1 X, ..., D_p X]`` on row blocks.

Notation: ``q`` inputs (the features, plus the constant input when hidden
biases are fitted), ``p`` hidden units, ``k`` outputs.  Fused weights live
in ``R^(p * q * k)`` and are stored sparsely as sorted flat indices

    idx = (j * q + f) * k + l        (unit j, input f, output l)

with their values.  ``A`` itself is never built: ``A w`` is the forward pass
of the active units (``RowBlocks.forward`` on ``fused_spec``), and the full
gradient ``A^T R`` is computed a chunk of units at a time by the row blocks
and never stored either: only the support's entries and the ``s`` largest
off-support magnitudes are kept (a streaming top-s with a buffer of
``O(s + chunk * q * k)``).  Everything here is small driver-side work on
plain arrays; the rows stay in the blocks.
"""

import numba
import numpy as np
from numba import njit

from ._blocks import NetSpec

_MAX_CHUNK = 512
_CHUNK_ENTRIES = 1 << 16  # k * q * chunk entries of one chunk's gradient


def chunk_size(p, q, k):
    """Units per chunk of the gradient pass: wide (the data are streamed once
    per chunk) but with at most about 65536 gradient entries."""
    return int(max(1, min(p, _MAX_CHUNK, max(8, _CHUNK_ENTRIES // (q * k)))))


def sorted_lookup(keys, queries):
    """Positions of ``queries`` in the sorted array ``keys`` and whether found."""
    if keys.size == 0:
        return np.zeros(queries.size, dtype=np.int64), np.zeros(queries.size, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return pos, keys[pos] == queries


def sorted_unique(a):
    """``np.unique(a, return_inverse=True)`` for a 1-D integer array, without
    its sort when ``a`` is already in nondecreasing order (weight keys are
    kept sorted: the usual case on the solver's hot path)."""
    if a.size and np.all(a[1:] >= a[:-1]):
        first = np.empty(a.size, dtype=bool)
        first[0] = True
        np.not_equal(a[1:], a[:-1], out=first[1:])
        pos = np.cumsum(first, dtype=np.int64)
        pos -= 1
        return a[first], pos
    uniq, pos = np.unique(a, return_inverse=True)
    return uniq, pos.astype(np.int64).ravel()


def decode(idx, q, k):
    """(active units, position of each entry's unit, input, output)."""
    idx = np.asarray(idx, dtype=np.int64)
    unit = idx // (q * k)
    feat = (idx // k) % q
    out = idx % k
    active, pos = sorted_unique(unit)
    return active, pos, feat, out


def fused_spec(idx, val, gates, q, k):
    """The network of fused weights ``(idx, val)`` under ``gates`` (a Gates)."""
    active, pos, feat, out = decode(idx, q, k)
    pairs, col = sorted_unique(pos * k + out)
    Vout = np.zeros((pairs.size, k))
    Vout[np.arange(pairs.size), pairs % k] = 1.0
    return NetSpec(active, gates(active), pos, feat, col,
                   np.asarray(val, dtype=np.float64), (pairs // k).astype(np.int64), Vout)


@njit(cache=True)
def _compact(buf_idx, buf_val, count, s):
    """Keep, in place and in order, the ``s`` largest ``|buf_val|`` of the first
    ``count`` entries (ties: earlier entries win).  Returns the threshold."""
    a = np.abs(buf_val[:count])
    thr = np.partition(a, count - s)[count - s]
    n_gt = 0
    for t in range(count):
        if a[t] > thr:
            n_gt += 1
    n_eq = s - n_gt
    out = 0
    for t in range(count):
        keep = False
        if a[t] > thr:
            keep = True
        elif a[t] == thr and n_eq > 0:
            keep = True
            n_eq -= 1
        if keep:
            buf_idx[out] = buf_idx[t]
            buf_val[out] = buf_val[t]
            out += 1
    return thr


@njit(cache=True)
def _collect_chunk(G, j0, q, k, sup_idx, lo, hi, g_sup, buf_idx, buf_val, state, s, skip):
    """Harvest one chunk of the gradient.

    ``G`` is (k, q, c): ``G[l, f, jj]`` is the gradient entry of unit
    ``j0 + jj``, input ``f``, output ``l``.  Support entries ``sup_idx[lo:hi]``
    (which fall in this chunk) are copied to ``g_sup`` and excluded from the
    candidates; the other entries, except those of the inputs ``f`` with
    ``skip[f]``, stream into the top-s buffer.  ``state`` holds ``[count,
    threshold]``.
    """
    c = G.shape[2]
    count = int(state[0])
    thr = state[1]
    cap = buf_idx.shape[0]
    base = j0 * q * k
    for t in range(lo, hi):
        rel = sup_idx[t] - base
        jj = rel // (q * k)
        f = (rel // k) % q
        l = rel % k
        g_sup[t] = G[l, f, jj]
    t_sup = lo
    n_entries = c * q * k
    if count + n_entries > cap:
        if count > s:
            thr = _compact(buf_idx, buf_val, count, s)
            count = s
    for jj in range(c):
        for f in range(q):
            for l in range(k):
                flat = base + (jj * q + f) * k + l
                while t_sup < hi and sup_idx[t_sup] < flat:
                    t_sup += 1
                if (t_sup < hi and sup_idx[t_sup] == flat) or skip[f]:
                    continue
                g = G[l, f, jj]
                if abs(g) > thr:
                    buf_idx[count] = flat
                    buf_val[count] = g
                    count += 1
    state[0] = count
    state[1] = thr


def gradient_pass(blocks, gates, p, k, idx, R, s, skip=None):
    """Stream the full gradient ``A^T R`` over chunks of units.

    Returns ``(g_sup, cand_idx, cand_g)``: the gradient on the support
    ``idx`` (sorted), and the (at most) ``s`` off-support entries of largest
    magnitude (sorted by index) with their gradient values.  ``skip``: a
    boolean mask of the inputs (q,) whose entries are never candidates.
    """
    q = blocks.q
    skip = np.zeros(q, dtype=np.bool_) if skip is None else np.ascontiguousarray(skip, dtype=np.bool_)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    c = chunk_size(p, q, k)
    s = int(max(1, s))
    cap = 2 * s + c * q * k
    buf_idx = np.empty(cap, dtype=np.int64)
    buf_val = np.empty(cap, dtype=np.float64)
    state = np.zeros(2, dtype=np.float64)
    g_sup = np.zeros(idx.shape[0], dtype=np.float64)
    parallel = numba.get_num_threads() > 1
    bounds = np.searchsorted(idx, np.arange(0, p + c, c, dtype=np.int64) * q * k)
    H = np.empty((q, c), dtype=blocks.dtype)
    for b, j0 in enumerate(range(0, p, c)):
        cc = min(c, p - j0)
        if cc != H.shape[1]:
            H = np.empty((q, cc), dtype=blocks.dtype)
        gates.fill_chunk(j0, H, parallel and cc * q >= 65536)
        G = blocks.gradient_chunk(H, R)
        _collect_chunk(G, j0, q, k, idx, bounds[b], bounds[b + 1], g_sup, buf_idx, buf_val, state, s, skip)
    count = int(state[0])
    if count > s:
        _compact(buf_idx, buf_val, count, s)
        count = s
    return g_sup, buf_idx[:count].copy(), buf_val[:count].copy()
