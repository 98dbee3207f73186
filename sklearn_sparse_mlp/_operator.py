"""The lazy sensing operator ``A = [D_1 X, ..., D_p X]``.

Notation: ``X`` is the n x q design (q = n_inputs: the features, plus the
constant column when hidden biases are fitted), ``p`` the number of hidden
neurons, ``k`` the number of outputs.  The fused weights ``w`` live in
``R^(p * q * k)`` and are stored sparsely as sorted flat indices

    idx = (j * q + f) * k + l        (neuron j, input f, output l)

with their values.  ``A`` itself is never built: the forward product
``A w`` only touches active neurons, the full gradient ``A^T R`` is computed
a chunk of neurons at a time (two matrix products per chunk: gates
``Z = X H_c`` and ``X^T (1[Z >= 0] * R)``) and is never stored either: only
the support's entries and the ``s`` largest off-support magnitudes are kept
(a streaming top-s with a buffer of ``O(s + chunk * q * k)``).

Two layers:

* *designs* (``DenseDesign``, ``SparseDesign``) own the data matrix and
  provide the few products the operator needs; a row-block sum over a
  cluster or over minibatches can replace them;
* ``NetworkOperator`` owns the gates and implements ``A w``, ``A_S^T R``
  and the streaming full-gradient pass on top of a design.
"""

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from ._gates import fill_gate_block, fill_gate_block_serial, random_gates, serial_kernel as _serial

_ROW_BLOCK = 2048
_TILE_ROWS = 256
_CHUNK = 512


# --------------------------------------------------------------------------
# numba kernels (plain arrays only)
# --------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _gradient_tiles(X, H, R, n_threads, block, G_threads):
    """One chunk of the full gradient, tiled over rows.

    For every row block ``b`` (``block`` rows): ``Z = X_b H``, then for each
    output ``l``: ``G[l] += X_b^T (1[Z >= 0] * R_b[:, l])``.  Thread ``t``
    takes blocks ``t, t + n_threads, ...`` and accumulates into its own slice
    ``G_threads[t]`` (k, q, c); the caller adds the slices in a fixed order,
    so the result does not depend on scheduling.  Row blocks and their gate
    scores stay in cache, the two products per block run in single-threaded
    BLAS, and the memory is O(n_threads * block * c), whatever n.
    """
    n, q = X.shape
    c = H.shape[1]
    k = R.shape[1]
    n_blocks = (n + block - 1) // block
    for t in prange(n_threads):
        Xb = np.empty((block, q), dtype=X.dtype)
        Mb = np.empty((block, c), dtype=X.dtype)
        for l in range(k):
            for f in range(q):
                for jj in range(c):
                    G_threads[t, l, f, jj] = 0.0
        for b in range(t, n_blocks, n_threads):
            i0 = b * block
            nb = min(n, i0 + block) - i0
            # The last block is zero-padded: padded rows add nothing.
            for f in range(q):
                for i in range(nb):
                    Xb[i, f] = X[i0 + i, f]
                for i in range(nb, block):
                    Xb[i, f] = 0.0
            Zb = np.dot(Xb, H)
            for l in range(k):
                for i in range(nb):
                    ri = R[i0 + i, l]
                    for jj in range(c):
                        Mb[i, jj] = ri if Zb[i, jj] >= 0 else 0.0
                for i in range(nb, block):
                    for jj in range(c):
                        Mb[i, jj] = 0.0
                Gb = np.dot(Xb.T, Mb)
                for f in range(q):
                    for jj in range(c):
                        G_threads[t, l, f, jj] += Gb[f, jj]


_gradient_tiles_serial = _serial(_gradient_tiles)


@njit(cache=True)
def _sum_threads(G_threads, G):
    T = G_threads.shape[0]
    k, q, c = G.shape
    for l in range(k):
        for f in range(q):
            for jj in range(c):
                acc = G_threads[0, l, f, jj]
                for t in range(1, T):
                    acc += G_threads[t, l, f, jj]
                G[l, f, jj] = acc


@njit(cache=True, parallel=True)
def _sign_tiles(X, H, block, out):
    """``out = 1[X H >= 0]`` (uint8, n x m), tiled over rows like the gradient."""
    n, q = X.shape
    m = H.shape[1]
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        i0 = b * block
        nb = min(n, i0 + block) - i0
        Xb = np.zeros((block, q), dtype=X.dtype)
        for f in range(q):
            for i in range(nb):
                Xb[i, f] = X[i0 + i, f]
        Zb = np.dot(Xb, H)
        for a in range(m):
            for i in range(nb):
                out[i0 + i, a] = 1 if Zb[i, a] >= 0 else 0


_sign_tiles_serial = _serial(_sign_tiles)


@njit(cache=True, parallel=True)
def _gram_tiles(X, masks, nz_pos, nz_feat, nz_out, wts, Y, n_threads, block, Gt, Bt, Ct):
    """Weighted normal equations of the support columns, tiled over rows.

    With ``a_u = mask[:, pos_u] * X[:, f_u]`` (column u of ``A_S``), thread t
    accumulates ``Gt[t] = sum_i w_i a_iu a_iv``, ``Bt[t, u] = sum_i w_i a_iu
    Y[i, l_u]`` and ``Ct[t, u] = sum_i w_i a_iu`` over its row blocks.
    ``A_S`` is never stored: only an (m x block) tile per thread.
    """
    n = X.shape[0]
    m = nz_pos.shape[0]
    n_blocks = (n + block - 1) // block
    for t in prange(n_threads):
        AbT = np.zeros((m, block))
        WAbT = np.zeros((m, block))
        for u in range(m):
            Bt[t, u] = 0.0
            Ct[t, u] = 0.0
            for v in range(m):
                Gt[t, u, v] = 0.0
        for b in range(t, n_blocks, n_threads):
            i0 = b * block
            nb = min(n, i0 + block) - i0
            for u in range(m):
                a = nz_pos[u]
                f = nz_feat[u]
                l = nz_out[u]
                bu = 0.0
                cu = 0.0
                for i in range(nb):
                    x = masks[i0 + i, a] * np.float64(X[i0 + i, f])
                    wx = wts[i0 + i] * x
                    AbT[u, i] = x
                    WAbT[u, i] = wx
                    bu += wx * Y[i0 + i, l]
                    cu += wx
                for i in range(nb, block):
                    AbT[u, i] = 0.0
                    WAbT[u, i] = 0.0
                Bt[t, u] += bu
                Ct[t, u] += cu
            Gt[t] += np.dot(AbT, WAbT.T)


_gram_tiles_serial = _serial(_gram_tiles)


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
def _collect_chunk(G, j0, q, k, sup_idx, lo, hi, g_sup, buf_idx, buf_val, state, s):
    """Harvest one chunk of the gradient.

    ``G`` is (k, q, c): ``G[l, f, jj]`` is the gradient entry of neuron
    ``j0 + jj``, input ``f``, output ``l``.  Support entries ``sup_idx[lo:hi]``
    (which fall in this chunk) are copied to ``g_sup`` and excluded from the
    candidates; the other entries stream into the top-s buffer.  ``state``
    holds ``[count, threshold]``.
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
    # The support entries are marked so that they are not candidates.
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
                if t_sup < hi and sup_idx[t_sup] == flat:
                    continue
                g = G[l, f, jj]
                if abs(g) > thr:
                    buf_idx[count] = flat
                    buf_val[count] = g
                    count += 1
    state[0] = count
    state[1] = thr


@njit(cache=True, parallel=True)
def _forward_dense(X, masks, nz_pos, nz_feat, nz_out, nz_val, F):
    """``F[:, l] += sum_t mask[:, pos_t] * X[:, f_t] * v_t`` over nonzeros t.

    Entries come sorted by neuron: each neuron's pre-activation is summed in
    a row-block buffer and masked once."""
    n = X.shape[0]
    k = F.shape[1]
    nnz = nz_val.shape[0]
    n_blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in prange(n_blocks):
        i0 = b * _ROW_BLOCK
        i1 = min(n, i0 + _ROW_BLOCK)
        z = np.zeros((k, i1 - i0))
        t = 0
        while t < nnz:
            a = nz_pos[t]
            t_end = t
            while t_end < nnz and nz_pos[t_end] == a:
                t_end += 1
            for u in range(t, t_end):
                f = nz_feat[u]
                l = nz_out[u]
                v = nz_val[u]
                for i in range(i0, i1):
                    z[l, i - i0] += X[i, f] * v
            for l in range(k):
                for i in range(i0, i1):
                    F[i, l] += masks[i, a] * z[l, i - i0]
                    z[l, i - i0] = 0.0
            t = t_end


_forward_dense_serial = _serial(_forward_dense)


@njit(cache=True, parallel=True)
def _support_grad_dense(X, masks, nz_pos, nz_feat, nz_out, R, out):
    """``out[t] = sum_i mask[i, pos_t] * X[i, f_t] * R[i, l_t]``.

    Rows are taken in blocks, in parallel, with per-block partial sums added
    in a fixed order (reproducible for a given number of samples)."""
    n = X.shape[0]
    nnz = out.shape[0]
    n_blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    partial = np.zeros((n_blocks, nnz))
    for b in prange(n_blocks):
        i0 = b * _ROW_BLOCK
        i1 = min(n, i0 + _ROW_BLOCK)
        for t in range(nnz):
            a = nz_pos[t]
            f = nz_feat[t]
            l = nz_out[t]
            acc = 0.0
            for i in range(i0, i1):
                acc += masks[i, a] * (X[i, f] * R[i, l])
            partial[b, t] = acc
    for t in range(nnz):
        acc = 0.0
        for b in range(n_blocks):
            acc += partial[b, t]
        out[t] = acc


_support_grad_dense_serial = _serial(_support_grad_dense)


@njit(cache=True)
def _forward_sparse(data, indices, indptr, masks, nz_pos, nz_feat, nz_out, nz_val, F):
    """CSC version of ``_forward_dense``."""
    for t in range(nz_val.shape[0]):
        a = nz_pos[t]
        f = nz_feat[t]
        l = nz_out[t]
        v = nz_val[t]
        for e in range(indptr[f], indptr[f + 1]):
            i = indices[e]
            if masks[i, a]:
                F[i, l] += data[e] * v


@njit(cache=True, parallel=True)
def _support_grad_sparse(data, indices, indptr, masks, nz_pos, nz_feat, nz_out, R, out):
    """CSC version of ``_support_grad_dense``."""
    for t in prange(out.shape[0]):
        a = nz_pos[t]
        f = nz_feat[t]
        l = nz_out[t]
        acc = 0.0
        for e in range(indptr[f], indptr[f + 1]):
            i = indices[e]
            if masks[i, a]:
                acc += data[e] * R[i, l]
        out[t] = acc


# --------------------------------------------------------------------------
# designs: the data-access layer
# --------------------------------------------------------------------------
class DenseDesign:
    """Dense data matrix, stored Fortran-ordered, constant column appended.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    fit_intercept : bool
        Append a constant column (the hidden biases).
    """

    is_sparse = False

    def __init__(self, X, fit_intercept):
        n, d = X.shape
        self.dtype = X.dtype
        self.has_bias = bool(fit_intercept)
        q = d + 1 if fit_intercept else d
        Xa = np.empty((n, q), dtype=X.dtype, order="F")
        Xa[:, :d] = X
        if fit_intercept:
            Xa[:, d] = 1.0
        self.X = Xa
        self.n_samples, self.n_inputs = n, q

    def _parallel(self, block):
        """Whether a kernel tiled by ``block`` rows has work for several threads."""
        return self.n_samples > block and numba.get_num_threads() > 1

    def gate_scores(self, H):
        """``X @ H`` (n x m)."""
        return self.X @ H

    def transpose_product(self, M):
        """``X^T @ M`` (q x m) for a dense n x m array."""
        return self.X.T @ np.asarray(M, dtype=self.dtype)

    def gradient_chunk(self, H, R, G, n_threads):
        """``G[l] = X^T (1[X H >= 0] * R[:, l])`` for a chunk of gates H (q x c)."""
        T = max(1, min(n_threads, -(-self.n_samples // _TILE_ROWS)))
        G_threads = np.empty((T,) + G.shape, dtype=G.dtype)
        kernel = _gradient_tiles if T > 1 else _gradient_tiles_serial
        kernel(self.X, H, R, T, _TILE_ROWS, G_threads)
        _sum_threads(G_threads, G)

    def sign_scores(self, H):
        """Activation patterns ``1[X H >= 0]`` (n x m, uint8, Fortran order)."""
        out = np.empty((self.n_samples, H.shape[1]), dtype=np.uint8, order="F")
        kernel = _sign_tiles if self._parallel(_TILE_ROWS) else _sign_tiles_serial
        kernel(self.X, np.ascontiguousarray(H, dtype=self.dtype), _TILE_ROWS, out)
        return out

    def gram(self, masks, nz_pos, nz_feat, nz_out, wts, Y, n_threads):
        """(G, B, C) of the weighted normal equations on the support (see
        ``_gram_tiles``)."""
        m = nz_pos.shape[0]
        T = max(1, min(n_threads, -(-self.n_samples // _TILE_ROWS)))
        Gt = np.empty((T, m, m))
        Bt = np.empty((T, m))
        Ct = np.empty((T, m))
        kernel = _gram_tiles if T > 1 else _gram_tiles_serial
        kernel(self.X, masks, nz_pos, nz_feat, nz_out, wts, Y, T, _TILE_ROWS, Gt, Bt, Ct)
        return Gt.sum(axis=0), Bt.sum(axis=0), Ct.sum(axis=0)

    def forward(self, masks, nz_pos, nz_feat, nz_out, nz_val, F):
        kernel = _forward_dense if self._parallel(_ROW_BLOCK) else _forward_dense_serial
        kernel(self.X, masks, nz_pos, nz_feat, nz_out, nz_val, F)

    def support_grad(self, masks, nz_pos, nz_feat, nz_out, R, out):
        kernel = _support_grad_dense if self._parallel(_ROW_BLOCK) else _support_grad_dense_serial
        kernel(self.X, masks, nz_pos, nz_feat, nz_out, R, out)


class SparseDesign(DenseDesign):
    """CSR/CSC data matrix, kept in CSC form (column access in the kernels).

    The gate products ``X @ H`` and ``X.T @ M`` go through scipy's sparse
    matrix products, so the cost of the full-gradient pass scales with the
    number of stored entries instead of ``n * q``.
    """

    is_sparse = True

    def __init__(self, X, fit_intercept):
        n, d = X.shape
        self.dtype = X.dtype
        self.has_bias = bool(fit_intercept)
        Xc = sp.csc_matrix(X)
        if fit_intercept:
            ones = sp.csc_matrix(np.ones((n, 1), dtype=X.dtype))
            Xc = sp.hstack([Xc, ones], format="csc")
        Xc.sort_indices()
        Xc.sum_duplicates()
        self.X = Xc.astype(X.dtype, copy=False)
        self.XT = self.X.T.tocsc()  # CSC of X.T == CSR of X: fast X @ H
        self.n_samples, self.n_inputs = n, Xc.shape[1]
        self.data = self.X.data
        self.indices = self.X.indices.astype(np.int64)
        self.indptr = self.X.indptr.astype(np.int64)

    def gate_scores(self, H):
        return np.asarray(self.XT.T @ H)

    def gradient_chunk(self, H, R, G, n_threads):
        Z = np.asarray(self.XT.T @ H)
        for l in range(G.shape[0]):
            M = np.where(Z >= 0, R[:, l:l + 1], 0.0).astype(self.dtype, copy=False)
            G[l] = self.X.T @ M

    def sign_scores(self, H):
        Z = np.asarray(self.XT.T @ H.astype(self.dtype))
        return np.asfortranarray(Z >= 0, dtype=np.uint8)

    def gram(self, masks, nz_pos, nz_feat, nz_out, wts, Y, n_threads):
        cols = self.X[:, nz_feat].toarray().astype(np.float64) * masks[:, nz_pos]
        W = cols * wts[:, None]
        return cols.T @ W, np.einsum("iu,iu->u", W, Y[:, nz_out]), W.sum(axis=0)

    def forward(self, masks, nz_pos, nz_feat, nz_out, nz_val, F):
        _forward_sparse(self.data, self.indices, self.indptr, masks, nz_pos, nz_feat, nz_out, nz_val, F)

    def support_grad(self, masks, nz_pos, nz_feat, nz_out, R, out):
        _support_grad_sparse(self.data, self.indices, self.indptr, masks, nz_pos, nz_feat, nz_out, R, out)


def make_design(X, fit_intercept):
    """The design for ``X`` (dense ndarray or scipy sparse matrix)."""
    if sp.issparse(X):
        return SparseDesign(X, fit_intercept)
    return DenseDesign(X, fit_intercept)


# --------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------
def sorted_lookup(keys, queries):
    """Positions of ``queries`` in the sorted array ``keys`` and whether found."""
    if keys.size == 0:
        return np.zeros(queries.size, dtype=np.int64), np.zeros(queries.size, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return pos, keys[pos] == queries


class NetworkOperator:
    """``A`` for a design, a number of hidden neurons and outputs, and gates.

    Gates: neuron ``j`` uses its random gate ``h_j(seed)`` unless it appears
    in ``gate_neurons`` (sorted), in which case it uses the matching column of
    ``gate_vectors`` (a sequential gate).
    """

    def __init__(self, design, n_hidden, n_outputs, seed, n_gate_features=0, chunk_size=None):
        self.design = design
        self.p = int(n_hidden)
        self.k = int(n_outputs)
        self.q = design.n_inputs
        self.seed = np.int64(seed)
        self.n_gate_features = int(n_gate_features or 0)
        if chunk_size is None:
            # The data are streamed once per chunk, so chunks are wide; a
            # tile (rows x chunk) of gate scores stays in a core's cache.
            chunk_size = _CHUNK
        self.chunk_size = int(max(1, min(chunk_size, self.p)))
        self.gate_neurons = np.zeros(0, dtype=np.int64)
        self.gate_vectors = np.zeros((self.q, 0), dtype=np.float64, order="F")
        # Cached activation patterns: grown on demand up to about 64 MiB
        # (between 64 and 4096 neurons), more only if one request needs it.
        self._max_slots = int(max(64, min(4096, (64 << 20) // max(1, design.n_samples))))
        n_slots = 32
        self.slot_masks = np.zeros((design.n_samples, n_slots), dtype=np.uint8, order="F")
        self._slot_neuron = np.full(n_slots, -1, dtype=np.int64)
        self._slot_tick = np.zeros(n_slots, dtype=np.int64)
        self._slot_of = {}
        self._tick = 0

    # ---- gates ---------------------------------------------------------
    def set_gates(self, neurons, vectors):
        """Replace the sequential gates (neurons sorted, vectors q x m)."""
        neurons = np.ascontiguousarray(neurons, dtype=np.int64)
        vectors = np.asfortranarray(vectors, dtype=np.float64).reshape(self.q, neurons.shape[0])
        # Cached patterns stay valid for neurons whose gate is unchanged (e.g.
        # the survivors of a merge, or gates put back as they were).
        pos, kept = sorted_lookup(self.gate_neurons, neurons)
        kept[kept] = np.all(self.gate_vectors[:, pos[kept]] == vectors[:, kept], axis=0)
        changed = np.setdiff1d(np.union1d(neurons, self.gate_neurons), neurons[kept])
        self.gate_neurons = neurons
        self.gate_vectors = vectors
        for j in changed:
            sl = self._slot_of.pop(int(j), -1)
            if sl >= 0:
                self._slot_neuron[sl] = -1
                self._slot_tick[sl] = 0

    def gates(self, neurons):
        """Gate vectors (q x m, float64) of ``neurons`` as currently in force."""
        neurons = np.asarray(neurons, dtype=np.int64)
        H = random_gates(self.seed, neurons, self.q, self.design.has_bias, self.n_gate_features)
        pos, hit = sorted_lookup(self.gate_neurons, neurons)
        H[:, hit] = self.gate_vectors[:, pos[hit]]
        return H

    def mask_slots(self, neurons):
        """Slots of the activation patterns of ``neurons`` in ``self.slot_masks``.

        Patterns are cached per neuron in the columns ("slots") of one
        n x C uint8 array, least recently used slots reused first, so the
        kernels read them in place: the solver asks for overlapping sets of
        neurons many times per iteration.  C grows when one request needs more.
        """
        neurons = np.asarray(neurons, dtype=np.int64)
        m = neurons.size
        self._tick += 1
        slots = np.empty(m, dtype=np.int64)
        missing = []
        for a in range(m):
            sl = self._slot_of.get(int(neurons[a]), -1)
            slots[a] = sl
            if sl < 0:
                missing.append(a)
            else:
                self._slot_tick[sl] = self._tick
        if missing:
            cap = self.slot_masks.shape[1]
            if 2 * m > cap and (cap < self._max_slots or m > cap):
                # Grow: room for this request and as much of the last ones.
                new_cap = max(m, min(self._max_slots, max(2 * m, 2 * cap)))
                grown = np.zeros((self.design.n_samples, new_cap), dtype=np.uint8, order="F")
                grown[:, :cap] = self.slot_masks
                self.slot_masks = grown
                self._slot_neuron = np.concatenate([self._slot_neuron, np.full(new_cap - cap, -1)])
                self._slot_tick = np.concatenate([self._slot_tick, np.zeros(new_cap - cap, np.int64)])
            # Free slots first, then least recently used (never one of this request's).
            order = np.argsort(self._slot_tick, kind="stable")
            order = order[self._slot_tick[order] < self._tick]
            free = order[: len(missing)]
            miss = np.asarray(missing)
            for a, sl in zip(miss, free):
                old = int(self._slot_neuron[sl])
                if old >= 0:
                    del self._slot_of[old]
                self._slot_of[int(neurons[a])] = int(sl)
                self._slot_neuron[sl] = neurons[a]
                self._slot_tick[sl] = self._tick
                slots[a] = sl
            self.slot_masks[:, free] = self.design.sign_scores(self.gates(neurons[miss]))
        return slots

    def masks(self, neurons):
        """Activation patterns (n x m, uint8) of ``neurons`` (a copy)."""
        slots = self.mask_slots(neurons)  # may grow (replace) self.slot_masks
        return self.slot_masks[:, slots]

    # ---- index bookkeeping ---------------------------------------------
    def decode(self, idx):
        """(active neurons, position of each entry's neuron, input, output)."""
        idx = np.asarray(idx, dtype=np.int64)
        qk = self.q * self.k
        neuron = idx // qk
        feat = (idx // self.k) % self.q
        out = idx % self.k
        active, pos = np.unique(neuron, return_inverse=True)
        return active, pos.astype(np.int64).ravel(), feat, out

    # ---- products --------------------------------------------------------
    def forward(self, idx, val):
        """``A w`` (n x k, float64, Fortran order) for ``w`` given by (idx, val)."""
        F = np.zeros((self.design.n_samples, self.k), dtype=np.float64, order="F")
        if len(idx) == 0:
            return F
        active, pos, feat, out = self.decode(idx)
        slots = self.mask_slots(active)
        self.design.forward(self.slot_masks, slots[pos], feat, out, np.asarray(val, dtype=np.float64), F)
        return F

    def support_gradient(self, idx, R):
        """``(A^T R)[idx]`` for R (n x k)."""
        g = np.zeros(len(idx), dtype=np.float64)
        if len(idx) == 0:
            return g
        active, pos, feat, out = self.decode(idx)
        slots = self.mask_slots(active)
        R = np.asfortranarray(R, dtype=np.float64)
        self.design.support_grad(self.slot_masks, slots[pos], feat, out, R, g)
        return g

    def normal_equations(self, idx, wts, Y):
        """Weighted normal equations of the support columns of ``A``.

        Returns ``(G, B, C)`` with ``G[u, v] = sum_i w_i a_iu a_iv`` (zero
        between entries of different outputs), ``B[u] = sum_i w_i a_iu
        Y[i, l_u]`` and ``C[u] = sum_i w_i a_iu``, where ``a_u`` is the column
        of ``A`` of support entry ``u``.  Cost ``O(n m^2)`` for ``m`` entries.
        """
        active, pos, feat, out = self.decode(idx)
        slots = self.mask_slots(active)
        G, B, C = self.design.gram(
            self.slot_masks, slots[pos], feat, out, np.asarray(wts, dtype=np.float64),
            np.asfortranarray(Y, dtype=np.float64), numba.get_num_threads(),
        )
        if self.k > 1:
            G *= out[:, None] == out[None, :]
        return G, B, C

    def gradient_pass(self, idx, R, s):
        """Stream the full gradient ``A^T R`` over chunks of neurons.

        Returns ``(g_sup, cand_idx, cand_g)``: the gradient on the support
        ``idx`` (sorted), and the (at most) ``s`` off-support entries of
        largest magnitude (sorted by index) with their gradient values.
        """
        design = self.design
        dtype = design.dtype
        n, q, k, p = design.n_samples, self.q, self.k, self.p
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        R = np.asarray(R, dtype=dtype)
        c = self.chunk_size
        s = int(max(1, s))
        n_entries = c * q * k
        cap = 2 * s + n_entries
        buf_idx = np.empty(cap, dtype=np.int64)
        buf_val = np.empty(cap, dtype=np.float64)
        state = np.zeros(2, dtype=np.float64)
        g_sup = np.zeros(idx.shape[0], dtype=np.float64)
        n_threads = numba.get_num_threads()
        H = np.empty((q, c), dtype=dtype)
        G = np.empty((k, q, c), dtype=dtype)
        bounds = np.searchsorted(idx, np.arange(0, p + c, c, dtype=np.int64) * q * k)
        for b, j0 in enumerate(range(0, p, c)):
            cc = min(c, p - j0)
            if cc != c:
                H = np.empty((q, cc), dtype=dtype)
                G = np.empty((k, q, cc), dtype=dtype)
            fill = fill_gate_block if cc * q >= 65536 and n_threads > 1 else fill_gate_block_serial
            fill(
                self.seed, j0, q, design.has_bias, self.n_gate_features,
                self.gate_neurons, self.gate_vectors, H,
            )
            design.gradient_chunk(H, R, G, n_threads)
            _collect_chunk(
                G, j0, q, k, idx, bounds[b], bounds[b + 1], g_sup,
                buf_idx, buf_val, state, s,
            )
        count = int(state[0])
        if count > s:
            _compact(buf_idx, buf_val, count, s)
            count = s
        return g_sup, buf_idx[:count].copy(), buf_val[:count].copy()
