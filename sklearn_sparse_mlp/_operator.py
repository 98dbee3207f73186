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

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from ._gates import fill_gate_block, random_gates

_ROW_BLOCK = 4096


# --------------------------------------------------------------------------
# numba kernels (plain arrays only)
# --------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _mask_inplace(Z, r):
    """``Z[i, c] <- r[i] if Z[i, c] >= 0 else 0`` (Z is n x c, C-ordered)."""
    n, c = Z.shape
    n_blocks = (n + 255) // 256
    for b in prange(n_blocks):
        i0 = b * 256
        i1 = min(n, i0 + 256)
        for i in range(i0, i1):
            ri = r[i]
            for jj in range(c):
                Z[i, jj] = ri if Z[i, jj] >= 0 else 0.0


@njit(cache=True, parallel=True)
def _mask_into(Z, r, M):
    """``M[i, c] <- r[i] if Z[i, c] >= 0 else 0``."""
    n, c = Z.shape
    n_blocks = (n + 255) // 256
    for b in prange(n_blocks):
        i0 = b * 256
        i1 = min(n, i0 + 256)
        for i in range(i0, i1):
            ri = r[i]
            for jj in range(c):
                M[i, jj] = ri if Z[i, jj] >= 0 else 0.0


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
    """``F[:, l] += sum_t mask[:, pos_t] * X[:, f_t] * v_t`` over nonzeros t."""
    n = X.shape[0]
    nnz = nz_val.shape[0]
    n_blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in prange(n_blocks):
        i0 = b * _ROW_BLOCK
        i1 = min(n, i0 + _ROW_BLOCK)
        for t in range(nnz):
            a = nz_pos[t]
            f = nz_feat[t]
            l = nz_out[t]
            v = nz_val[t]
            for i in range(i0, i1):
                if masks[i, a]:
                    F[i, l] += X[i, f] * v


@njit(cache=True, parallel=True)
def _support_grad_dense(X, masks, nz_pos, nz_feat, nz_out, R, out):
    """``out[t] = sum_i mask[i, pos_t] * X[i, f_t] * R[i, l_t]``."""
    n = X.shape[0]
    for t in prange(out.shape[0]):
        a = nz_pos[t]
        f = nz_feat[t]
        l = nz_out[t]
        acc = 0.0
        for i in range(n):
            if masks[i, a]:
                acc += X[i, f] * R[i, l]
        out[t] = acc


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


@njit(cache=True, parallel=True)
def _sign_mask(Z, out):
    n, m = Z.shape
    for a in prange(m):
        for i in range(n):
            out[i, a] = 1 if Z[i, a] >= 0 else 0


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

    def gate_scores(self, H, out=None):
        """``X @ H`` (n x m)."""
        if out is None:
            return self.X @ H
        return np.matmul(self.X, H, out=out)

    def transpose_dot(self, M, out=None):
        """``X.T @ M`` (q x m)."""
        if out is None:
            return self.X.T @ M
        return np.matmul(self.X.T, M, out=out)

    def forward(self, masks, nz_pos, nz_feat, nz_out, nz_val, F):
        _forward_dense(self.X, masks, nz_pos, nz_feat, nz_out, nz_val, F)

    def support_grad(self, masks, nz_pos, nz_feat, nz_out, R, out):
        _support_grad_dense(self.X, masks, nz_pos, nz_feat, nz_out, R, out)

    @property
    def nbytes(self):
        return self.X.nbytes


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

    def gate_scores(self, H, out=None):
        Z = np.asarray(self.XT.T @ H)
        if out is not None:
            out[...] = Z
            return out
        return Z

    def transpose_dot(self, M, out=None):
        G = np.asarray(self.X.T @ M)
        if out is not None:
            out[...] = G
            return out
        return G

    def forward(self, masks, nz_pos, nz_feat, nz_out, nz_val, F):
        _forward_sparse(self.data, self.indices, self.indptr, masks, nz_pos, nz_feat, nz_out, nz_val, F)

    def support_grad(self, masks, nz_pos, nz_feat, nz_out, R, out):
        _support_grad_sparse(self.data, self.indices, self.indptr, masks, nz_pos, nz_feat, nz_out, R, out)

    @property
    def nbytes(self):
        return self.X.data.nbytes + self.X.indices.nbytes + self.X.indptr.nbytes


def make_design(X, fit_intercept):
    """The design for ``X`` (dense ndarray or scipy sparse matrix)."""
    if sp.issparse(X):
        return SparseDesign(X, fit_intercept)
    return DenseDesign(X, fit_intercept)


# --------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------
def auto_chunk_size(n_samples, n_inputs, n_outputs, n_hidden):
    """Neurons per chunk: the gate block ``Z`` (n x c) holds about 2**20 values
    (8 MiB in float64), enough columns for the matrix products to run at full
    speed and small enough to stay out of the memory budget."""
    c = (1 << 20) // max(1, n_samples)
    c = max(32, min(c, 2048))
    return int(min(c, n_hidden))


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
            chunk_size = auto_chunk_size(design.n_samples, self.q, self.k, self.p)
        self.chunk_size = int(max(1, min(chunk_size, self.p)))
        self.gate_neurons = np.zeros(0, dtype=np.int64)
        self.gate_vectors = np.zeros((self.q, 0), dtype=np.float64, order="F")
        self._cache_neurons = np.zeros(0, dtype=np.int64)
        self._cache_masks = np.zeros((design.n_samples, 0), dtype=np.uint8, order="F")

    @property
    def size(self):
        """Number of entries of ``w`` (p * q * k)."""
        return self.p * self.q * self.k

    # ---- gates ---------------------------------------------------------
    def set_gates(self, neurons, vectors):
        """Replace the sequential gates (neurons sorted, vectors q x m)."""
        neurons = np.ascontiguousarray(neurons, dtype=np.int64)
        vectors = np.asfortranarray(vectors, dtype=np.float64).reshape(self.q, neurons.shape[0])
        changed = np.union1d(neurons, self.gate_neurons)
        self.gate_neurons = neurons
        self.gate_vectors = vectors
        # Drop cached masks of neurons whose gates may have changed.
        keep = ~np.isin(self._cache_neurons, changed)
        self._cache_neurons = self._cache_neurons[keep]
        self._cache_masks = np.asfortranarray(self._cache_masks[:, keep])

    def gates(self, neurons):
        """Gate vectors (q x m, float64) of ``neurons`` as currently in force."""
        neurons = np.asarray(neurons, dtype=np.int64)
        H = random_gates(self.seed, neurons, self.q, self.design.has_bias, self.n_gate_features)
        if self.gate_neurons.size and neurons.size:
            pos = np.searchsorted(self.gate_neurons, neurons)
            pos = np.minimum(pos, self.gate_neurons.size - 1)
            hit = self.gate_neurons[pos] == neurons
            H[:, hit] = self.gate_vectors[:, pos[hit]]
        return H

    def masks(self, neurons):
        """Activation patterns (n x m, uint8, Fortran order) of sorted ``neurons``.

        Patterns of neurons seen in the previous call are reused.
        """
        neurons = np.asarray(neurons, dtype=np.int64)
        old = self._cache_neurons
        pos = np.searchsorted(old, neurons)
        pos_c = np.minimum(pos, max(old.size - 1, 0))
        hit = (old.size > 0) & (old[pos_c] == neurons) if old.size else np.zeros(neurons.size, bool)
        n = self.design.n_samples
        masks = np.empty((n, neurons.size), dtype=np.uint8, order="F")
        if hit.any():
            masks[:, hit] = self._cache_masks[:, pos_c[hit]]
        miss = ~hit
        if miss.any():
            H = self.gates(neurons[miss]).astype(self.design.dtype)
            Z = np.asarray(self.design.gate_scores(H))
            new = np.empty(Z.shape, dtype=np.uint8, order="F")
            _sign_mask(Z, new)
            masks[:, miss] = new
        self._cache_neurons = neurons
        self._cache_masks = masks
        return masks

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
        masks = self.masks(active)
        self.design.forward(masks, pos, feat, out, np.asarray(val, dtype=np.float64), F)
        return F

    def support_gradient(self, idx, R):
        """``(A^T R)[idx]`` for R (n x k)."""
        g = np.zeros(len(idx), dtype=np.float64)
        if len(idx) == 0:
            return g
        active, pos, feat, out = self.decode(idx)
        masks = self.masks(active)
        R = np.asfortranarray(R, dtype=np.float64)
        self.design.support_grad(masks, pos, feat, out, R, g)
        return g

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
        Rcols = [np.ascontiguousarray(R[:, l]) for l in range(k)]
        c = self.chunk_size
        s = int(max(1, s))
        n_entries = c * q * k
        cap = 2 * s + n_entries
        buf_idx = np.empty(cap, dtype=np.int64)
        buf_val = np.empty(cap, dtype=np.float64)
        state = np.zeros(2, dtype=np.float64)
        g_sup = np.zeros(idx.shape[0], dtype=np.float64)
        H = np.empty((q, c), dtype=dtype, order="F")
        Z = np.empty((n, c), dtype=dtype)
        M = np.empty((n, c), dtype=dtype) if k > 1 else None
        G = np.empty((k, q, c), dtype=dtype)
        bounds = np.searchsorted(idx, np.arange(0, p + c, c, dtype=np.int64) * q * k)
        for b, j0 in enumerate(range(0, p, c)):
            cc = min(c, p - j0)
            if cc != c:
                H = np.empty((q, cc), dtype=dtype, order="F")
                Z = np.empty((n, cc), dtype=dtype)
                M = np.empty((n, cc), dtype=dtype) if k > 1 else None
                G = np.empty((k, q, cc), dtype=dtype)
            fill_gate_block(
                self.seed, j0, q, design.has_bias, self.n_gate_features,
                self.gate_neurons, self.gate_vectors, H,
            )
            design.gate_scores(H, out=Z)
            if k == 1:
                _mask_inplace(Z, Rcols[0])
                design.transpose_dot(Z, out=G[0])
            else:
                for l in range(k):
                    _mask_into(Z, Rcols[l], M)
                    design.transpose_dot(M, out=G[l])
            _collect_chunk(
                G, j0, q, k, idx, bounds[b], bounds[b + 1], g_sup,
                buf_idx, buf_val, state, s,
            )
        count = int(state[0])
        if count > s:
            _compact(buf_idx, buf_val, count, s)
            count = s
        return g_sup, buf_idx[:count].copy(), buf_val[:count].copy()
