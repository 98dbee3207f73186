"""Parametrisations of the hidden layer: fused and factored weights.

A layer is a small driver-side object (nothing here grows with ``n``):

``FusedLayer``
    the fused weights of the convex reformulation: sorted flat indices
    ``(j q + f) k + l`` with values, ``f(X) = sum_j D_j X W_j``; the budget
    counts every nonzero entry.  Candidates for thresholding come from the
    streaming full-gradient pass over all ``p`` units.
``FactoredLayer``
    the paper's vector-output network ``f(X) = sum_j (D_j X u_j) v_j^T``:
    first-layer weights ``U`` (q x m) and output weights ``V`` (m x k) of the
    active units, one budget over both.  Candidates are all entries of the
    active units (a unit with ``u_j = v_j = 0`` has zero gradient).

Both expose the same few operations to the IHT step (``_iht``): the network
as the row blocks see it (``spec``), gradient candidates, thresholding of a
trial point (``from_entries``), the directions of a normalised step, and
refinement on the support.  With sequential gates the activation pattern of
a fused unit follows its own weights, ``h_j = a_j w_j``, after each gate
update; that of a factored unit is always ``1[X u_j >= 0]``.
"""

import numpy as np
from scipy.linalg.lapack import dpocon as _pocon
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

from ._blocks import NetSpec
from ._operator import decode, fused_spec, gradient_pass


def top_s(values, keys, s):
    """Positions of the ``s`` largest ``|values|``, sorted; ties go to smaller keys."""
    if values.shape[0] <= s:
        return np.arange(values.shape[0])
    order = np.lexsort((keys, -np.abs(values)))
    return np.sort(order[:s])


def gate_offsets(mean, sd, H):
    """The offsets ``z`` of gates ``H`` (q x m, bias last) in units of their
    spread on data with column means ``mean`` and deviations ``sd``: the
    share of rows a gate activates is about ``Phi(z)`` (a Gaussian
    approximation)."""
    spread = np.sqrt((H[:-1] ** 2 * (sd ** 2)[:, None]).sum(axis=0))
    return (H[-1] + mean @ H[:-1]) / np.where(spread > 0, spread, 1.0)


def gate_bias(mean, sd, H, W):
    """Hidden biases that give the units of feature weights ``W`` ((q - 1) x
    m) the share of active rows of their gates ``H``: ``-w . mean + z
    sqrt(sum_f w_f^2 sd_f^2)`` (``z`` from ``gate_offsets``)."""
    return -(mean @ W) + gate_offsets(mean, sd, H) * np.sqrt(((W * sd[:, None]) ** 2).sum(axis=0))


def _eig_solve(G, rhs, rel_floor, mode="drop"):
    """``G^+ rhs`` through the eigendecomposition of the symmetric ``G``.

    ``mode="drop"``: eigenvalues below ``rel_floor`` times the largest are
    dropped (the minimum-norm solution); ``"floor"``: raised to that floor;
    ``"absolute"``: the eigenvalues' magnitudes, floored (a saddle-free Newton
    step for an indefinite Hessian).  None if the decomposition fails or G
    has no positive scale.

    With ``mode="floor"`` (Newton directions) a well-conditioned positive
    definite ``G`` (reciprocal condition number estimated above
    ``_CHOLESKY_RCOND``, far above the floor) is solved by Cholesky instead:
    no eigenvalue would be floored, so the answer is the same up to
    rounding, at a fraction of the cost.  The minimum-norm least squares of
    ``"drop"`` keeps the eigendecomposition: with Cholesky on the nearly
    collinear supports it meets, weighted and repeated samples gave models
    that differ (scikit-learn's sample-weight check, Sandybridge kernels)."""
    if mode == "floor" and G.shape[0] > 1:
        v = _cholesky_solve(G, rhs)
        if v is not None:
            return v
    try:
        evals, evecs = np.linalg.eigh(G)
    except np.linalg.LinAlgError:
        return None
    if evals.size == 0:
        return None
    top = np.abs(evals).max() if mode == "absolute" else max(evals[-1], 0.0)
    if not top > 0.0:
        return None
    if mode == "drop":
        keep = evals > top * rel_floor
        V = evecs[:, keep]
        return V @ ((V.T @ rhs) / evals[keep])
    scale = np.abs(evals) if mode == "absolute" else evals
    return evecs @ ((evecs.T @ rhs) / np.maximum(scale, rel_floor * top))


# A support's Gauss-Newton matrix is formed on a sample of the rows when
# there are at least 1.5 times this many (at least SKETCH_MIN_ROWS, and
# SKETCH_ROWS_PER_WEIGHT per weight of the support, rounded up to a multiple
# of SKETCH_QUANTUM).  The sample was once rounded up to a power of two and
# needed twice as many rows: a budget of 530 weights (16 x 530 = 8480 rows)
# then had its matrices formed on 16384 rows, or on all the rows of a
# 16384-row stage of a progressive fit (the 54000-row mixed-type pipeline,
# 3 folds: 25.3 -> 22.0 s a fold, accuracy 0.8662 -> 0.8674, with 9216).
SKETCH_MIN_ROWS = 8192
SKETCH_ROWS_PER_WEIGHT = 16
SKETCH_QUANTUM = 1024
# A sketched matrix's diagonal entries of units active on fewer rows of the
# sketch than this are taken from all the rows (``_rescaled``); the others
# are estimated well enough by the sketch (a sum over at least this many rows).
FULL_DIAGONAL_ROWS = 1024

# Cholesky is used when LAPACK's estimate of the reciprocal condition number
# (1-norm, within a factor of the size of the 2-norm one) is above this.
_CHOLESKY_RCOND = 1e-6


def _cholesky_solve(G, rhs):
    """``G^{-1} rhs`` by Cholesky when ``G`` is positive definite and well
    conditioned (see ``_CHOLESKY_RCOND``); None otherwise."""
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        return None
    c, info = _potrf(G, lower=False, clean=False, overwrite_a=False)
    if info != 0:
        return None
    rcond, info = _pocon(c, np.abs(G).sum(axis=0).max())
    if info != 0 or not rcond > _CHOLESKY_RCOND:
        return None
    x, info = _potrs(c, np.asarray(rhs, dtype=np.float64))
    return x if info == 0 else None


class SupportSystem:
    """The Gauss-Newton matrix of a fused support, kept and reused.

    Formed at one point for the support ``idx``: the matrix ``M`` of the
    loss's quadratic model in the support's weights at that point's
    activation patterns (``A_S^T diag(h) A_S``, ``h`` the rows' curvature
    weights: the sample weights for the squared loss), the output intercept
    eliminated (weighted centring), plus the penalty; block diagonal over
    outputs.  ``solve(g)`` gives the step ``-M^{-1} g`` (the minimum-norm
    solution for the squared loss, eigenvalues below ``DROP_FLOOR`` (1e-10)
    of the largest dropped; floored at 1e-8 of the largest otherwise).

    Gauss-Newton steps on one support reuse it while the patterns move: a
    step is always the exact gradient through an approximate curvature, and
    it is accepted only where the loss of the ReLU network decreases.
    Forming the matrix costs ``n S^2 / 2`` multiply-adds (S the support
    size), factorising it ``S^3 / 3``.
    """

    def __init__(self, idx, prob, blocks):
        self.idx = idx
        self.prob = prob
        self.blocks = blocks  # [(positions, matrix, mode, relative floor)]
        self.raw = None  # (G, C) before centring and penalty (one output): for updates
        self.rows = None  # the row blocks (all rows or a sketch) it was formed on
        self.updated = False  # formed partly from an earlier support's system
        self._factors = None
        self._top = None  # the largest eigenvalue of the decomposed blocks

    def matches(self, prob, layer):
        return self.prob is prob and np.array_equal(self.idx, layer.idx)

    def solve(self, g, drop=None):
        """``-M^{-1} g`` (None if a block could not be factorised).

        ``drop``: a larger relative floor for the blocks solved by their
        eigendecomposition with ``mode="drop"`` (a truncated step, for
        ``gauss_newton``'s retry); None if no block has one."""
        if self._factors is None:
            self._factors = [_factorise(M, floor, mode) for _, M, mode, floor in self.blocks]
            # The blocks dropped as parts of one matrix: below the floor of the
            # largest eigenvalue of them all (several outputs of the squared
            # loss, one block each), not of each block's own.
            tops = [fac[3] for fac in self._factors if fac is not None and fac[0] == "eig"]
            self._top = max(tops, default=None)
            if len(tops) > 1:
                self._factors = [_truncated(fac, floor, self._top) if mode == "drop" else fac
                                 for (_, _, mode, floor), fac in zip(self.blocks, self._factors)]
        factors = self._factors
        if drop is not None:
            if not any(mode == "drop" for _, _, mode, _ in self.blocks):
                return None
            factors = [_truncated(fac, drop, self._top) if mode == "drop" else fac
                       for (_, _, mode, _), fac in zip(self.blocks, factors)]
        dv = np.zeros(g.shape[0])
        for (sel, _, _, _), fac in zip(self.blocks, factors):
            step = _factor_solve(fac, g[sel])
            if step is None or not np.all(np.isfinite(step)):
                return None
            dv[sel] = -step
        return dv

    def model_decrease(self, g, dv):
        """The quadratic model's decrease ``-(g . dv + dv . M dv / 2)``."""
        quad = sum(float(dv[sel] @ (M @ dv[sel])) for sel, M, _, _ in self.blocks)
        return -(float(g @ dv) + 0.5 * quad)


def _constant_inputs(prob):
    """The inputs (q,) whose new entries are not candidates: with hidden
    biases, the input columns constant on the rows, which the bias can
    stand for.  With gates that follow the weights, a unit's gate on such a
    column is constant too (diabetes with a column of fives appended: every
    entry of the first step went to that column and the biases, every unit
    died, and the fit ended with no weights).  None without biases (a
    constant column is then the only offset a gate can have)."""
    if not prob.fit_intercept:
        return None
    const = prob.blocks.constant_columns()
    return np.append(const, False) if const.any() else None


def _lookup(keys, queries):
    """Positions of ``queries`` in the sorted ``keys`` and whether found."""
    if keys.size == 0:
        return np.zeros(queries.size, dtype=np.int64), np.zeros(queries.size, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return pos, keys[pos] == queries


def _rescaled(M, diag):
    """``M`` (a sketch's matrix) with its diagonal set to ``diag`` (all the
    rows'), its correlations kept: a unit active on few rows of the sketch
    keeps the scale of all its rows (its sketch column alone could be
    nearly empty, and the step along it far too long)."""
    d = np.diag(M).copy()
    ok = d > 0
    scale = np.zeros_like(d)
    scale[ok] = np.sqrt(diag[ok] / d[ok])
    M = M * scale[:, None] * scale[None, :]
    missing = np.flatnonzero(~ok)
    M[missing, missing] = diag[missing]
    return M


# Eigenvalues of a squared-loss SupportSystem below this fraction of the
# largest are dropped (its minimum-norm step).
DROP_FLOOR = 1e-10
# The truncated step gauss_newton retries when no fraction of the full one
# lowers the loss.  A step through the nearly singular directions of
# collinear supports (e.g. the ReLU features a second hidden layer is
# fitted on) moves the weights far along them and changes many activation
# patterns: on the two-layer image benchmark's second layer the loss stayed
# three times higher without the retry.  Dropping these directions from
# every step instead slowed the refit of well-posed supports (the paper's
# cell: the same network in 1.7x the time).
TRUNCATED_DROP_FLOOR = 1e-6


def _factorise(G, rel_floor, mode):
    """A factorisation of the symmetric ``G`` for ``_factor_solve``: Cholesky
    when ``mode="floor"`` and ``G`` is well conditioned (see ``_eig_solve``),
    otherwise its eigendecomposition; None when it has no positive scale."""
    if mode == "floor" and G.shape[0] > 1:
        c = _cholesky_factor(G)
        if c is not None:
            return ("chol", c)
    try:
        evals, evecs = np.linalg.eigh(G)
    except np.linalg.LinAlgError:
        return None
    if evals.size == 0:
        return None
    top = max(evals[-1], 0.0)
    if not top > 0.0:
        return None
    if mode == "drop":
        keep = evals > top * rel_floor
        return ("eig", evecs[:, keep], evals[keep], top)
    return ("eig", evecs, np.maximum(evals, rel_floor * top), top)


def _truncated(fac, rel_floor, top=None):
    """An eigendecomposition factor without its eigenvalues below
    ``rel_floor`` times ``top`` (default: its largest)."""
    if fac is None or fac[0] != "eig" or fac[2].size == 0:
        return fac
    top = fac[3] if top is None else top
    keep = fac[2] > top * rel_floor
    return ("eig", fac[1][:, keep], fac[2][keep], fac[3])


def _factor_solve(fac, rhs):
    if fac is None:
        return None
    if fac[0] == "chol":
        x, info = _potrs(fac[1], np.asarray(rhs, dtype=np.float64))
        return x if info == 0 else None
    V, ev = fac[1], fac[2]
    return V @ ((V.T @ rhs) / ev)


def _cholesky_factor(G):
    """The Cholesky factor of ``G`` when it is positive definite and well
    conditioned (``_CHOLESKY_RCOND``); None otherwise."""
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        return None
    c, info = _potrf(G, lower=False, clean=False, overwrite_a=False)
    if info != 0:
        return None
    rcond, info = _pocon(c, np.abs(G).sum(axis=0).max())
    if info != 0 or not rcond > _CHOLESKY_RCOND:
        return None
    return c


class FusedLayer:
    """Sparse fused weights of ``p`` units with ``q`` inputs and ``k`` outputs."""

    kind = "fused"
    # A new support may need refitting before it pays off (hard thresholding
    # pursuit): the problem on a support is convex, its refit cheap.
    refit_trials = True

    def __init__(self, p, q, k, idx, val, gates, signs=None):
        self.p, self.q, self.k = int(p), int(q), int(k)
        self.idx = np.ascontiguousarray(idx, dtype=np.int64)
        self.val = np.ascontiguousarray(val, dtype=np.float64)
        self.gates = gates
        self.signs = np.zeros(gates.units.size) if signs is None else np.asarray(signs, dtype=np.float64)

    def replace(self, idx, val):
        """The same gates with other weights."""
        return FusedLayer(self.p, self.q, self.k, idx, val, self.gates, self.signs)

    @property
    def nnz(self):
        return int(np.count_nonzero(self.val))

    @property
    def units(self):
        return np.unique(self.idx // (self.q * self.k))

    def sq_norm(self):
        return float(self.val @ self.val)

    def spec(self):
        return fused_spec(self.idx, self.val, self.gates, self.q, self.k)

    def pattern_gates(self):
        """Gates of the active units (their activation patterns)."""
        return self.gates(self.units)

    def truncate(self, s):
        """The ``s`` largest weights (a warm start at a smaller budget)."""
        if self.idx.size <= s:
            return self
        keep = top_s(self.val, self.idx, s)
        return self.replace(self.idx[keep], self.val[keep])

    # ---- the IHT step ----------------------------------------------------
    def candidates(self, prob, point, s, features_only=False):
        """(keys, gradient, weights, gradient on the support): the support and
        the ``s`` largest off-support gradient entries, sorted by key
        (``features_only``: no hidden bias among those entries)."""
        R = prob.residual(point)
        skip = _constant_inputs(prob)
        if features_only:
            skip = np.zeros(self.q, dtype=bool) if skip is None else skip.copy()
            skip[-1] = True
        g_sup, c_idx, c_g = gradient_pass(prob.blocks, self.gates, self.p, self.k, self.idx, R, s, skip)
        if prob.penalty:
            g_sup = g_sup + prob.penalty * self.val
        keys = np.concatenate([self.idx, c_idx])
        order = np.argsort(keys, kind="stable")
        g = np.concatenate([g_sup, c_g])[order]
        w = np.concatenate([self.val, np.zeros(c_idx.size)])[order]
        return keys[order], g, w, g_sup

    def from_entries(self, keys, vals):
        return self.replace(keys, vals)

    def same_support(self, other):
        return np.array_equal(self.idx, other.idx)

    def directions(self, keys, vals):
        """Networks whose outputs sum to the first-order change along (keys, vals)."""
        return [fused_spec(keys, vals, self.gates, self.q, self.k)]

    def support_gradient(self, prob, R):
        g, _ = prob.blocks.support_gradient(self.spec(), R)
        return g + prob.penalty * self.val if prob.penalty else g

    def step_gradient(self, prob, R):
        """``support_gradient`` for a Gauss-Newton step: through the dense
        gradient of the active units (two matrix products per tile, in X's
        dtype) when the support fills at least an eighth of their entries,
        entry by entry otherwise."""
        active, pos, feat, out = decode(self.idx, self.q, self.k)
        if self.q * active.size > 8 * max(self.idx.size, 1):
            return self.support_gradient(prob, R)
        G = prob.blocks.pattern_gradient(active, self.gates(active), R)
        g = G[out, feat, pos]
        return g + prob.penalty * self.val if prob.penalty else g

    # ---- refinement on the support -----------------------------------------
    def refine(self, prob, point, n_steps, tol=0.0):
        """Improve the weights on the fixed support.  Returns a Point."""
        if n_steps <= 0 or self.idx.size == 0:
            return point
        if prob.loss.is_quadratic:
            if self._direct_ok():
                return self._refine_direct(prob, point)
            return self._refine_cg(prob, point, n_steps, tol)
        if self.idx.size <= 1500:  # Newton: O(n m^2) per step, few steps
            return self._refine_newton(prob, point, n_steps)
        return prob.refine_gd(point, n_steps)

    def _direct_ok(self):
        """Solve on the support exactly when forming its normal equations
        (``n m^2`` flops) costs no more than a full gradient pass (``~4 n q p k``)."""
        m = self.idx.size
        return m <= 2000 and m * m <= max(4 * self.q * self.p * self.k, 64 * 64)

    def system_rows(self, prob):
        """The row blocks a support's matrix is formed on: all the rows, or
        a fixed sample of ``max(SKETCH_MIN_ROWS, SKETCH_ROWS_PER_WEIGHT S)``
        rows (rounded up to a multiple of SKETCH_QUANTUM) when there are at
        least 1.5 times as many (``RowBlocks.sketch``: a subsampled
        Gauss-Newton matrix; with the exact gradient, repeated steps still
        converge to the refit on all rows)."""
        m = max(SKETCH_MIN_ROWS, SKETCH_ROWS_PER_WEIGHT * self.idx.size)
        sub = prob.blocks.sketch(-(-m // SKETCH_QUANTUM) * SKETCH_QUANTUM)
        return prob.blocks if sub is None else sub

    def system_ok(self, prob):
        """Whether Gauss-Newton steps may form the support's matrix (see
        ``support_system``, ``n' S^2 / 2`` multiply-adds for S weights on n'
        rows): up to 1500 weights for the logistic and softmax losses (the
        Newton refinement's rule), and for the squared loss up to 2000 where
        forming it costs at most about four gradient passes, or no more than
        the conjugate-gradient refits it replaces (``refine``: five support
        products of about ``n S`` each per direction, in a gather kernel
        several times slower per multiply-add than the system's): forming it
        and its eigendecomposition, ``n' S + 8 S^2 <= 1000 n`` in units of
        ``S`` multiply-adds.  The system is reused while the support stays.
        (Measured with 5 folds of make_friedman1, 1600 rows: 220 weights on
        10 features, a fit 2.3 -> 1.2 s; 310 on 30 features, 2.3 -> 2.0 s;
        at 620 on 30 features or 220 on diabetes, outside the rule, the
        systems were slower.)"""
        m = self.idx.size
        if prob.loss.is_quadratic:
            rows = self.system_rows(prob).n
            n = prob.blocks.n
            return m <= 2000 and (rows * m * m <= max(16 * n * self.q * self.p * self.k, 64 * 64 * rows)
                                  or rows * m + 8 * m * m <= 1000 * n)
        return m <= 1500

    def support_system(self, prob, point, previous=None):
        """The SupportSystem of this support at ``point``.

        ``previous``: the system of an earlier support on the same problem
        (one output, squared loss).  When at most half of this support's entries are new,
        only their rows and columns of the matrix are formed at ``point``
        (``n S r`` multiply-adds for r new entries) and the rest is kept from
        ``previous`` (formed at earlier patterns: an approximation that the
        Gauss-Newton steps accept only where it lowers the loss)."""
        blocks = self.system_rows(prob)
        pos, feat, hcol, out = self._bases()
        quadratic = prob.loss.is_quadratic
        if not quadratic and blocks is not prob.blocks:
            # The curvature weights at the sketch's own outputs.
            W_all = blocks.hessian_weights(prob.kind, blocks.forward(self.spec()), point.b)
        else:
            W_all = None if quadratic else prob.hessian_weights(point)
        if self.k == 1:
            W = blocks.sw if quadratic else W_all
            # Updates for the squared loss only: with the logistic loss the
            # kept block was formed at earlier curvature weights and the new
            # columns at the current ones, and the mix was almost never
            # positive definite (breast_cancer at 310 weights: 27 of 29;
            # make_classification, 20000 rows: 60 of 60), each then
            # eigendecomposed (6 ms at 310 weights, more than forming the
            # whole system).
            update = (quadratic and previous is not None and previous.prob is prob and previous.raw is not None
                      and previous.rows is blocks)
            if update:
                old_pos, kept = _lookup(previous.idx, self.idx)
                n_new = int(np.count_nonzero(~kept))
                update = 0 < n_new <= self.idx.size // 2
            if update:
                return self._updated_system(prob, point, blocks, previous, kept, old_pos, n_new, W)
            G, _, C = blocks.normal_equations(self.spec(), pos, feat, hcol, W, out)
            return self._one_output_system(prob, point, blocks, W, G, C, False)
        # Several outputs: one system per output (they are decoupled), formed
        # together.  The squared loss weighs every output by the sample
        # weights and drops the near-null directions of a collinear support
        # (minimum norm); the classification losses weigh output l by its
        # curvature weights.  (The squared loss once formed and decomposed
        # the whole S x S matrix with the blocks between outputs masked:
        # with 10 outputs, 10 times the products and 100 times the
        # decomposition, a quarter of a planted 10-output fit.)
        perm = np.argsort(out, kind="stable")
        present, groups = np.unique(out[perm], return_inverse=True)
        groups = groups.astype(np.int64).ravel()
        Wp = blocks.sw if quadratic else blocks.columns(W_all, present)
        G, _, C = blocks.normal_equations(self.spec(), pos[perm], feat[perm], hcol[perm], Wp, out[perm], groups)
        bounds = np.searchsorted(groups, np.arange(present.size + 1))
        parts = []
        for gi in range(present.size):
            sel = slice(bounds[gi], bounds[gi + 1])
            Gl = G[sel, sel]
            if prob.fit_intercept:
                Cl = C[sel]
                # The normalised sample weights sum to one.
                total = 1.0 if quadratic else max(blocks.total(blocks.column(Wp, gi)), 1e-300)
                Gl = Gl - np.outer(Cl, Cl) / total
            Gl[np.diag_indices_from(Gl)] += prob.penalty
            parts.append((perm[sel], Gl, "drop", DROP_FLOOR) if quadratic else (perm[sel], Gl, "floor", 1e-8))
        return SupportSystem(self.idx, prob, parts)

    def _updated_system(self, prob, point, blocks, previous, kept, old_pos, n_new, W):
        """The one-output SupportSystem formed from ``previous`` and the new
        entries' columns (see ``support_system``)."""
        pos, feat, hcol, out = self._bases()
        order = np.concatenate([np.flatnonzero(kept), np.flatnonzero(~kept)])
        n_kept = order.size - n_new
        cols, _, c_new = blocks.normal_equations(self.spec(), pos[order], feat[order], hcol[order], W,
                                                 out[order], first_col=n_kept)
        G = np.empty((order.size, order.size))
        keep = old_pos[order[:n_kept]]
        G[:n_kept, :n_kept] = previous.raw[0][np.ix_(keep, keep)]
        G[:, n_kept:] = cols
        G[n_kept:, :n_kept] = cols[:n_kept].T
        C = np.concatenate([previous.raw[1][keep], c_new])
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        return self._one_output_system(prob, point, blocks, W, G[np.ix_(inv, inv)], C[inv], True)

    def _one_output_system(self, prob, point, blocks, W, G, C, updated):
        """The one-output SupportSystem of the normal equations ``G``, ``C``
        (formed with the weights ``W`` on ``blocks``)."""
        quadratic = prob.loss.is_quadratic
        s0 = 1.0 if quadratic else max(blocks.total(blocks.column(W, 0)), 1e-300)
        M = G - np.outer(C, C) / s0 if prob.fit_intercept else G.copy()
        M[np.diag_indices_from(M)] += prob.penalty
        if blocks is not prob.blocks:
            M = _rescaled(M, self._full_diagonal(prob, point, quadratic, blocks, np.diag(M)))
        # The squared loss: the minimum-norm solution (the support's
        # columns can be (nearly) collinear, and the answer must not
        # depend on rounding in the null space).
        mode = ("drop", DROP_FLOOR) if quadratic else ("floor", 1e-8)
        system = SupportSystem(self.idx, prob, [(slice(None), M, *mode)])
        system.raw = (G, C)
        system.rows = blocks
        system.updated = updated
        return system

    def _full_diagonal(self, prob, point, quadratic, sketch, sketch_diag):
        """The diagonal of the support's Gauss-Newton matrix on all the rows
        (one output) for the entries of units active on fewer than
        ``FULL_DIAGONAL_ROWS`` rows of the ``sketch`` (one gradient-like pass
        over those units gives the plain and the squared sums); the others
        keep the sketch's ``sketch_diag``, an estimate from at least that
        many rows (n=1e6: all the rows' diagonal took a quarter of a fit)."""
        blocks = prob.blocks
        active, pos, feat, _ = decode(self.idx, self.q, self.k)
        gates = self.gates(active)
        _, counts = sketch.pattern_keys(active, gates)
        few = np.flatnonzero(counts < FULL_DIAGONAL_ROWS)
        diag = np.array(sketch_diag, dtype=np.float64)
        if few.size == 0:
            return diag
        sel = np.flatnonzero(np.isin(pos, few))
        col = np.searchsorted(few, pos[sel])
        W = blocks.sw if quadratic else prob.hessian_weights(point)
        if prob.fit_intercept:
            C, sq = blocks.pattern_gradient(active[few], gates[:, few], W, square="both")
            C, sq = C[0][feat[sel], col], sq[0][feat[sel], col]
            s0 = 1.0 if quadratic else max(blocks.total(blocks.column(W, 0)), 1e-300)
            sq = sq - C * C / s0
        else:
            sq = blocks.pattern_gradient(active[few], gates[:, few], W, square=True)[0][feat[sel], col]
        diag[sel] = np.maximum(sq, 0.0) + prob.penalty
        return diag

    def _bases(self):
        _, pos, feat, out = decode(self.idx, self.q, self.k)
        return pos, feat, np.full(pos.size, -1, dtype=np.int64), out

    def _refine_direct(self, prob, point):
        # Least squares on the support (hard thresholding pursuit), the
        # intercept eliminated by weighted centring.
        blocks = prob.blocks
        pos, feat, hcol, out = self._bases()
        G, B, C = blocks.normal_equations(self.spec(), pos, feat, hcol, blocks.sw, out)
        same = out[:, None] == out[None, :]
        if self.k > 1:
            G *= same
        if prob.fit_intercept:
            G = G - np.outer(C, C) * same
            B = B - C * blocks.target_mean()[out]
        if prob.penalty:
            G[np.diag_indices_from(G)] += prob.penalty
        # Minimum-norm solution: the support's columns can be (nearly)
        # collinear, and the answer must not depend on rounding in the null
        # space (e.g. weighted vs repeated samples).
        v = _eig_solve(G, B, 1e-10)
        if v is None or not np.all(np.isfinite(v)):
            return point
        return prob.keep_better(self.replace(self.idx, v), point)

    def _refine_cg(self, prob, point, n_steps, tol):
        # Normal equations of the squared loss on the support, with the
        # intercept eliminated by weighted centring: Q v = A_S^T Sw P A_S v.
        blocks = prob.blocks
        spec = self.spec()
        r = -self.support_gradient(prob, prob.residual(point))
        r0 = np.sqrt(r @ r)
        if r0 == 0.0:
            return point
        v = self.val.copy()
        d = r.copy()
        rr = r @ r
        # One pass (one round trip on a cluster) per step: the outputs of the
        # direction, their spread and the gradient about each block's mean
        # (merged with the blocks' A^T sw, formed once for the support).
        c_parts = blocks.support_weight_parts(spec) if prob.fit_intercept else None
        for _ in range(n_steps):
            sq, _, Qd = blocks.centred_product(spec, d, prob.fit_intercept, c_parts)
            dQd = sq + prob.penalty * float(d @ d)
            if dQd <= 0.0 or not np.isfinite(dQd):
                break
            alpha = rr / dQd
            v += alpha * d
            r -= alpha * (Qd + prob.penalty * d)
            rr_new = r @ r
            if np.sqrt(rr_new) <= tol * r0:
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        return prob.keep_better(self.replace(self.idx, v), point)

    def _newton_direction(self, prob, g, W):
        """Newton direction ``-H^{-1} g`` on the support.

        ``H`` is the Gauss-Newton matrix for per-output curvature weights
        ``W`` (n x k), block diagonal over outputs (the softmax's cross-output
        terms are left out), intercept eliminated, plus the penalty; each
        output's block is solved on its own (eigenvalues floored at 1e-8 of
        the largest).  All outputs' blocks come from one pass over the rows.
        """
        blocks = prob.blocks
        pos, feat, hcol, out = self._bases()
        perm = np.argsort(out, kind="stable")
        present, groups = np.unique(out[perm], return_inverse=True)
        groups = groups.astype(np.int64).ravel()
        Wp = blocks.columns(W, present)
        G, _, C = blocks.normal_equations(self.spec(), pos[perm], feat[perm], hcol[perm], Wp, out[perm], groups)
        dv = np.zeros(self.idx.size)
        bounds = np.searchsorted(groups, np.arange(present.size + 1))
        for gi in range(present.size):
            sel = slice(bounds[gi], bounds[gi + 1])
            Gl = G[sel, sel]
            if prob.fit_intercept:
                Cl = C[sel]
                Gl = Gl - np.outer(Cl, Cl) / max(blocks.total(blocks.column(Wp, gi)), 1e-300)
            Gl[np.diag_indices_from(Gl)] += prob.penalty
            step = _eig_solve(Gl, g[perm[sel]], 1e-8, "floor")
            if step is not None:
                dv[perm[sel]] = -step
        return dv

    def alo(self, prob, point, alphas):
        """Approximate leave-one-out loss of the L2 penalty ``alpha`` on the support.

        At fixed activation patterns the network is linear in its weights on
        the support; the loss is replaced by its quadratic (IRLS) model at
        ``point``, weighted least squares of the working response with
        weights ``v = sw h`` (the targets and the sample weights for the
        squared loss), one system per output.  For each ``alpha``
        (MLPRegressor's scaling: ``alpha / n_samples`` per unit of normalised
        sample weight) the penalised refit and its leverages give each row's
        leave-one-out output by the one-step formula of Rad & Maleki (2020),
        ``eta_i + u g_i q_i / (1 - u v_i q_i)`` (``u`` the normalised weight
        left out: a weighted row is left out one unit of weight at a time, as
        its repeats would be, and a row of weight below one whole), exact for
        the squared loss (PRESS); the loss of those outputs is returned
        (len(alphas)), or None without a support.  An ``alpha`` whose refit
        spends more than ``ALO_MAX_DF_SHARE`` of the rows (``row_count``) on
        one output (degrees of freedom, the intercept's included) scores inf,
        unless every one does (then the largest alpha alone is scored): see
        ALO_MAX_DF_SHARE.
        """
        if self.idx.size == 0:
            return None
        blocks = prob.blocks
        k = self.k
        W = prob.hessian_weights(point)
        pos, feat, hcol, out = self._bases()
        perm = np.argsort(out, kind="stable")
        present, groups = np.unique(out[perm], return_inverse=True)
        groups = groups.astype(np.int64).ravel()
        spec = self.spec()
        G, _, C = blocks.normal_equations(spec, pos[perm], feat[perm], hcol[perm], blocks.columns(W, present),
                                          out[perm], groups)
        g, _ = blocks.support_gradient(spec, prob.residual(point))  # the loss's, no penalty
        S0, S1, _ = blocks.working_moments(prob.kind, point.F, point.b, np.zeros(k))
        if prob.fit_intercept:
            zbar = S1 / np.maximum(S0, 1e-300)
            s0inv = 1.0 / np.maximum(S0, 1e-300)
        else:
            zbar, s0inv = np.zeros(k), np.zeros(k)
        b = np.asarray(point.b, dtype=np.float64)
        bounds = np.searchsorted(groups, np.arange(present.size + 1)).astype(np.int64)
        S = perm.size
        abar = np.zeros(S)
        evals = np.zeros(S)
        Bq = np.zeros(S)
        Qt, q_off = [], [0]
        for gi, l in enumerate(present):
            sel = slice(bounds[gi], bounds[gi + 1])
            Gl, Cl = G[sel, sel], C[sel]
            Bl = Gl @ self.val[perm[sel]] + Cl * b[l] - g[perm[sel]]
            if prob.fit_intercept:
                abar[sel] = Cl * s0inv[l]
                Gl = Gl - np.outer(Cl, Cl) * s0inv[l]
                Bl = Bl - Cl * zbar[l]
            try:
                e, Q = np.linalg.eigh(0.5 * (Gl + Gl.T))
            except np.linalg.LinAlgError:
                return None
            evals[sel] = np.maximum(e, 0.0)
            Bq[sel] = Q.T @ Bl
            Qt.append(np.ascontiguousarray(Q.T).ravel())
            q_off.append(q_off[-1] + Q.size)
        pen = np.asarray(alphas, dtype=np.float64)[:, None] / blocks.weight_total
        invd = 1.0 / (evals[None, :] + pen)
        WQ = Bq[None, :] * invd
        Qcat, qo = np.concatenate(Qt), np.array(q_off[:-1], dtype=np.int64)

        def sums(WQ_, invd_):
            return blocks.alo_sums(spec, pos[perm], feat[perm], bounds, present, Qcat, qo, abar, WQ_, invd_, zbar,
                                   s0inv, prob.kind, point.F, b)

        scores, refit_losses = sums(WQ, invd)
        # Degrees of freedom of each output's refit (the trace of its hat
        # matrix) for every alpha, against the rows counted as they are left
        # out (a row of weight 2 is two rows, as its repeats are).
        df = np.add.reduceat(evals[None, :] * invd, bounds[:-1], axis=1).max(axis=1) + bool(prob.fit_intercept)
        flexible = df > ALO_MAX_DF_SHARE * blocks.row_count
        flexible[int(np.argmin(df))] = False
        scores = np.where(flexible, np.inf, scores)
        if not prob.loss.is_quadratic:
            # The refit is one Newton step of the loss's quadratic model: for
            # a log-loss far from its minimum it can overshoot (see
            # ALO_STEP_HALVINGS); each alpha is scored where its step, halved
            # as needed, does not raise the penalised loss.
            QTs = [Qcat[o:o + (e - a) ** 2].reshape(e - a, e - a) for o, a, e in zip(qo, bounds[:-1], bounds[1:])]
            w0 = self.val[perm]
            W0q = np.concatenate([QT @ w0[a:e] for QT, a, e in zip(QTs, bounds[:-1], bounds[1:])])
            data = point.L - 0.5 * prob.penalty * self.sq_norm()
            damped, rows = [], []
            for c in np.flatnonzero(np.isfinite(scores)):
                # The refit's loss at its own intercept (from the same pass)
                # bounds the loss at the best one: a step that passes here
                # needs no forward pass.
                at = prob.with_alpha(float(alphas[c]))
                if refit_losses[c] + 0.5 * at.penalty * float(WQ[c] @ WQ[c]) <= \
                        data + 0.5 * at.penalty * self.sq_norm():
                    continue
                w = np.concatenate([QT.T @ WQ[c, a:e] for QT, a, e in zip(QTs, bounds[:-1], bounds[1:])])
                dv = np.empty(S)
                dv[perm] = w - w0
                t = self._alo_step(at, point, data, dv)
                if t < 1.0:
                    damped.append(c)
                    rows.append((1.0 - t) * W0q + t * WQ[c])
            if damped:  # rescored in one pass
                scores[damped] = sums(np.array(rows), invd[damped])[0]
        return scores

    def _alo_step(self, prob, point, data, dv):
        """The largest of 1, 1/2, 1/4, ... (``ALO_STEP_HALVINGS`` of them, else
        0) at which the step ``dv`` from ``point`` does not raise ``prob``'s
        penalised loss (``data``: the loss at ``point``, penalty aside)."""
        start = data + 0.5 * prob.penalty * self.sq_norm()
        t = 1.0
        for _ in range(ALO_STEP_HALVINGS):
            if prob.evaluate(self.replace(self.idx, self.val + t * dv), point.b).L <= start:
                return t
            t *= 0.5
        return 0.0

    def _refine_newton(self, prob, point, n_steps):
        # Damped Newton steps on the support for a smooth convex loss, with
        # an Armijo backtracking line search; the intercept is re-solved at
        # every trial point.
        for _ in range(n_steps):
            layer = point.layer
            g = layer.support_gradient(prob, prob.residual(point))
            dv = layer._newton_direction(prob, g, prob.hessian_weights(point))
            new = prob.line_search(point, lambda t: layer.replace(layer.idx, layer.val + t * dv), float(g @ dv))
            if new is None:
                break
            decrease = point.L - new.L
            point = new
            if decrease <= 1e-10 * max(abs(point.L), 1e-300):
                break
        return point


# Gauss-Newton steps of a factored layer's squared loss on a large support
# (FactoredLayer._refine_cg): at most CG_STEPS conjugate-gradient products
# each, fewer once the residual is below CG_TOL of its start.  Planted
# networks with 10 outputs, width 100, s=100 (d=100, n=2000, random_state 0
# / 1, the wide start of fit_wide_first): test PSNR 43.4 / 38.7 dB in 10.0 /
# 8.2 s with 5 products, 42.1 / 41.4 with 3, 43.7 / 41.6 in 13.2 / 9.0 s
# with 10; normalised gradient steps in their place gave 38.2 / 38.1.
CG_STEPS = 5
CG_TOL = 0.1


# alpha="auto" (FusedLayer.alo): an L2 strength whose refit has more degrees
# of freedom on one output than this share of the rows is not chosen.  The
# leave-one-out estimate holds the support and the activation patterns
# fixed, but both were selected on the same rows, and near interpolation
# (leverages near 1) that optimism dominates: linnerud (20 rows, 3 targets,
# budget 10%; 3-fold CV over random_states 0-9) chose alpha=1e-4 at 0.84 to
# 0.93 of the rows, median R^2 -11.2 (-0.46 for the mean of the training
# targets); with the cap -0.51.  diabetes on 30 / 60 training rows (5
# draws): median R^2 -0.12 / -0.18 against 0.37 / 0.44 with the cap
# (RidgeCV 0.37 / 0.46).  On every set of benchmarks/tabular.py the choice
# has at most 0.15 of the rows and is unchanged.
ALO_MAX_DF_SHARE = 0.5
# A classifier's alpha="auto" scores each alpha by the leave-one-out loss of
# its refit, one Newton step of the log-loss's quadratic model from the
# current network.  On a network fitted ten iterations (the fused stage that
# starts digits' shared fit, under a gate rule for several outputs since
# reverted) the step at the network's own alpha moved the
# weights by three times their norm and raised the training loss from 0.18
# to 2.9; every alpha below 30 scored above 1 and alpha_ became 56 (a fold
# of benchmarks/tabular.py: test accuracy 0.960, against 0.983 at alpha_
# 0.56 from a network whose steps lowered the loss).  A step that raises the
# penalised loss is halved, at most this many times (then the network is
# scored as it is).  On the mixed-type pipeline of benchmarks/speed.py (36000
# rows, 530 weights, one logistic output) the steps of every alpha below 1.8
# were halved (to 1/2 .. 1/16), the same alpha_ chosen; a choice took 0.72 s
# instead of 0.42 (one forward pass per halved alpha and one more pass over
# the rows to score them).
ALO_STEP_HALVINGS = 10


class FactoredLayer:
    """First-layer weights ``U`` (q x m) and output weights ``V`` (m x k) of
    the active ``units``.  ``sequential``: unit j's pattern is ``1[X u_j >= 0]``;
    otherwise its random gate from ``gates``."""

    kind = "factored"
    # The problem on a support is bilinear: trial points are taken as they are.
    refit_trials = False

    def __init__(self, p, q, k, units, U, V, gates, sequential):
        self.p, self.q, self.k = int(p), int(q), int(k)
        self.units = np.ascontiguousarray(units, dtype=np.int64)
        self.U = np.asarray(U, dtype=np.float64).reshape(self.q, self.units.size)
        self.V = np.asarray(V, dtype=np.float64).reshape(self.units.size, self.k)
        self.gates = gates
        self.sequential = bool(sequential)

    def replace(self, units, U, V):
        return FactoredLayer(self.p, self.q, self.k, units, U, V, self.gates, self.sequential)

    @property
    def nnz(self):
        return int(np.count_nonzero(self.U) + np.count_nonzero(self.V))

    def sq_norm(self):
        return float(np.sum(self.U ** 2) + np.sum(self.V ** 2))

    def pattern_gates(self):
        """Gates of the active units: ``U`` itself (sequential) or their random gates."""
        return self.U if self.sequential else self.gates(self.units)

    def spec(self, U=None, V=None):
        """The network (or, with ``U`` or ``V`` replaced, a direction at the
        current patterns)."""
        Uw = self.U if U is None else U
        feat, unit = np.nonzero(Uw)
        m = self.units.size
        return NetSpec(self.units, self.pattern_gates(), unit.astype(np.int64), feat.astype(np.int64),
                       unit.astype(np.int64), Uw[feat, unit], np.arange(m, dtype=np.int64),
                       self.V if V is None else V)

    def truncate(self, s):
        """The ``s`` largest weights of both layers (a smaller budget)."""
        if self.nnz <= s:
            return self
        flat = self._flat()
        keep = top_s(flat, np.arange(flat.size), s)
        keep = keep[flat[keep] != 0]
        return self.from_entries(keep, flat[keep])

    def _flat(self):
        return np.concatenate([self.U.ravel(order="F"), self.V.ravel()])

    # ---- the IHT step ----------------------------------------------------
    def candidates(self, prob, point, s):
        """Every entry of the active units: (keys, gradient, weights, gradient
        on the support)."""
        gU, gV = prob.blocks.unit_gradient(self.units, self.pattern_gates(), self.U, self.V, prob.residual(point))
        if prob.penalty:
            gU = gU + prob.penalty * self.U
            gV = gV + prob.penalty * self.V
        w = self._flat()
        g = np.concatenate([gU.ravel(order="F"), gV.ravel()])
        return np.arange(w.size, dtype=np.int64), g, w, g[w != 0]

    def entries_per_unit(self):
        """The entries a unit holds on average (at least 2, at most q + k; q +
        k for an empty layer): what a new unit is given."""
        q, k, m = self.q, self.k, self.units.size
        return q + k if m == 0 else int(np.clip(round(self.nnz / m), 2, q + k))

    def entering(self, prob, point, free):
        """Units that enter on ``free`` entries of unused budget: ``(layer,
        step)``, the layer with them added (zero output weights) and the output
        weights of a normalised step, or None.

        A unit outside the layer has zero gradient in both of its factors
        (``u_j = v_j = 0`` is a saddle), so thresholding never brings one in
        and budget freed by dropped units (or a start with few units) would
        stay unused.  Each inactive unit is scored by the largest singular
        value of its fused gradient ``dL/dW_j`` (q x k) under its random gate;
        the best enter, as many as the layer's mean entries per unit allow.
        A new unit's first-layer weights are the leading left singular vector
        (oriented along its gate), its largest entries kept; with sequential
        gates it also gets a hidden bias that gives it its random gate's share
        of active rows (``gate_bias``).  Its output weights are the negative
        gradient on its output entries at the pattern it then has, all new
        units scaled together by the normalised step (gradient squared over
        curvature).
        """
        q, k = self.q, self.k
        inactive = np.setdiff1d(np.arange(self.p, dtype=np.int64), self.units)
        per = self.entries_per_unit()
        n_new = min(inactive.size, max(1, free // per))
        if n_new == 0 or free < 2:
            return None
        blocks = prob.blocks
        R = prob.residual(point)
        # Scores in chunks of units (bounded memory for wide layers).
        chunk = max(1, (1 << 20) // (q * k))
        score = np.empty(inactive.size)
        for c0 in range(0, inactive.size, chunk):
            units = inactive[c0:c0 + chunk]
            G = blocks.gradient_chunk(self.gates(units), R)  # k x q x c
            score[c0:c0 + units.size] = np.linalg.norm(G.transpose(2, 1, 0), ord=2, axis=(1, 2))
        best = np.lexsort((inactive, -score))[:4 * n_new]
        best = best[score[best] > 0]
        if best.size == 0:
            return None
        bias = self.sequential and self.gates.has_bias
        n_feat = q - 1 if bias else q
        # Units whose gates see nearly the same gradient would enter as copies
        # of one unit: of the best-scored, those whose leading directions
        # (feature part) differ from the ones already taken.
        Gb = blocks.gradient_chunk(self.gates(inactive[best]), R)
        # (One batched SVD: the leading pairs also give the entering weights.)
        lsv, _, rsv = np.linalg.svd(Gb.transpose(2, 1, 0), full_matrices=False)
        lead = lsv[:, :n_feat, 0] / np.maximum(np.linalg.norm(lsv[:, :n_feat, 0], axis=1), 1e-300)[:, None]
        taken = []
        for a in range(best.size):
            if len(taken) == n_new:
                break
            if all(abs(lead[a] @ lead[t]) < 0.9 for t in taken):
                taken.append(a)
        taken = np.array(taken, dtype=np.int64)
        taken = taken[np.argsort(inactive[best[taken]], kind="stable")]
        new_units = inactive[best[taken]]
        H = self.gates(new_units)
        lsv, rsv = lsv[taken], rsv[taken]
        Un = np.zeros((q, new_units.size))
        room = np.zeros((new_units.size, k), dtype=bool)
        left = free
        for a in range(new_units.size):
            avail = min(left, per) - bias
            if avail < 2:
                break
            u, v = lsv[a, :n_feat, 0], rsv[a, 0]
            if u @ H[:n_feat, a] < 0:
                u, v = -u, -v
            # The largest entries of the balanced rank-one factors, at least
            # one in each layer.
            mags = np.concatenate([np.abs(u), np.abs(v)])
            top = np.argsort(-mags, kind="stable")[:avail]
            if not np.any(top < n_feat):
                top[-1] = int(np.argmax(np.abs(u)))
            if not np.any(top >= n_feat):
                top[-1] = n_feat + int(np.argmax(np.abs(v)))
            fu = top[top < n_feat]
            Un[fu, a] = u[fu]
            room[a, top[top >= n_feat] - n_feat] = True
            left -= top.size + bias
        used = np.any(Un != 0, axis=0)
        if not used.any():
            return None
        new_units, H, Un, room = new_units[used], H[:, used], Un[:, used], room[used]
        if bias:
            mean, sd = blocks.column_moments()
            Un[q - 1] = gate_bias(mean, sd, H, Un[:-1])
        _, gV = blocks.unit_gradient(new_units, Un if self.sequential else H, Un, np.zeros((new_units.size, k)), R)
        dV = np.where(room, -gV, 0.0)
        # Balanced, a unit of output weights c dV costs ``penalty c ||u|| ||dV||``
        # (linear in c): it lowers the loss only if ||dV|| > penalty ||u||.
        nu, nv = np.linalg.norm(Un, axis=0), np.linalg.norm(dV, axis=1)
        pays = nv > prob.penalty * nu
        if not pays.any():
            return None
        new_units, Un, dV, nu, nv = new_units[pays], Un[:, pays], dV[pays], nu[pays], nv[pays]
        gg = float(np.sum(dV * dV)) - prob.penalty * float(nu @ nv)
        units = np.concatenate([self.units, new_units])
        order = np.argsort(units, kind="stable")
        U = np.concatenate([self.U, Un], axis=1)[:, order]
        V0 = np.concatenate([self.V, np.zeros_like(dV)])[order]
        dV_all = np.concatenate([np.zeros_like(self.V), dV])[order]
        grown = self.replace(units[order], U, V0)
        jv, lv = np.nonzero(dV_all)
        denom = prob.curvature(grown, q * units.size + jv * k + lv, dV_all[jv, lv])
        if not (denom > 0 and gg > 0):
            return None
        return grown, (gg / denom) * dV_all

    def balanced(self):
        """The same network with every unit rebalanced (``from_entries``)."""
        flat = self._flat()
        keys = np.flatnonzero(flat)
        return self.from_entries(keys, flat[keys])

    def from_entries(self, keys, vals):
        """The point with entries ``keys`` (flat positions) set to ``vals``,
        units left without a first-layer or an output weight dropped, and each
        unit rebalanced (``||u_j|| = ||v_j||``: a ReLU network is unchanged by
        ``u -> c u, v -> v / c``, and the two layers' magnitudes stay
        comparable for the thresholding)."""
        q, m, k = self.q, self.units.size, self.k
        flat = np.zeros(q * m + m * k)
        flat[keys] = vals
        U = flat[: q * m].reshape((q, m), order="F")
        V = flat[q * m:].reshape((m, k))
        keep = np.any(U != 0, axis=0) & np.any(V != 0, axis=1)
        U, V = np.ascontiguousarray(U[:, keep]), np.ascontiguousarray(V[keep])
        nu = np.linalg.norm(U, axis=0)
        nv = np.linalg.norm(V, axis=1)
        c = np.ones_like(nu)
        ok = (nu > 0) & (nv > 0)
        c[ok] = np.sqrt(nv[ok] / nu[ok])
        return self.replace(self.units[keep], U * c, V / c[:, None])

    def same_support(self, other):
        return (np.array_equal(self.units, other.units) and np.array_equal(self.U != 0, other.U != 0)
                and np.array_equal(self.V != 0, other.V != 0))

    def _split(self, keys, vals):
        q, m, k = self.q, self.units.size, self.k
        flat = np.zeros(q * m + m * k)
        flat[keys] = vals
        return flat[: q * m].reshape((q, m), order="F"), flat[q * m:].reshape((m, k))

    def directions(self, keys, vals):
        """First-order change of the outputs at the current patterns:
        ``D o (X dU) V + D o (X U) dV``."""
        dU, dV = self._split(keys, vals)
        return [self.spec(U=dU), self.spec(V=dV)]

    # ---- refinement on the support: Gauss-Newton -----------------------------
    def _support(self):
        """Support entries in the order of the flat keys: U by unit (column
        major), then V by row."""
        ju, fu = np.nonzero(self.U.T)
        jv, lv = np.nonzero(self.V)
        return fu, ju, jv, lv

    def support_gradient(self, prob, R):
        gU, gV = prob.blocks.unit_gradient(self.units, self.pattern_gates(), self.U, self.V, R)
        fu, ju, jv, lv = self._support()
        g = np.concatenate([gU[fu, ju], gV[jv, lv]])
        if prob.penalty:
            g += prob.penalty * np.concatenate([self.U[fu, ju], self.V[jv, lv]])
        return g

    def refine(self, prob, point, n_steps, tol=0.0):
        """Newton steps on the support (the exact Hessian at the current
        patterns, saddle-free), with an Armijo line search.  Large supports:
        Gauss-Newton steps by conjugate gradients for the squared loss on
        rows in memory (``_refine_cg``), gradient steps otherwise (the
        classifier's losses, a dask cluster's row blocks)."""
        if n_steps <= 0 or self.nnz == 0:
            return point
        if not self._newton_ok(prob):
            if prob.loss.is_quadratic and isinstance(point.F, np.ndarray):
                return self._refine_cg(prob, point, n_steps, tol)
            return prob.refine_gd(point, n_steps)
        for _ in range(n_steps):
            layer = point.layer
            if layer.nnz == 0:
                break
            R = prob.residual(point)
            G, g = layer.newton_system(prob, point, R)
            # Curvature magnitudes floored at 1e-6 of the largest: a smaller
            # floor turns rounding-level gradient components along nearly
            # flat directions into visible steps.
            step = _eig_solve(G, g, 1e-6, "absolute")
            if step is None or not np.all(np.isfinite(step)):
                break
            dv = -step
            new = layer._line_search(prob, point, g, dv)
            if new is None:
                break
            decrement = -float(g @ dv)  # the Newton decrement, squared
            point = new
            if decrement <= max(tol, 1e-10) * max(abs(point.L), 1e-300):
                break
        return point

    def _line_search(self, prob, point, g, dv):
        """The Point along the direction ``dv`` on the support entries (the
        order of ``_support``; ``g`` the gradient there) that the Armijo
        search of ``prob.line_search`` accepts from t = 1, or None."""
        fu, ju, jv, lv = self._support()

        def trial(t):
            U, V = self.U.copy(), self.V.copy()
            U[fu, ju] += t * dv[: fu.size]
            V[jv, lv] += t * dv[fu.size:]
            return self.replace(self.units, U, V)

        return prob.line_search(point, trial, float(g @ dv))

    def _gn_product(self, prob, keys, d):
        """``(J^T Sw P J + penalty) d`` on the support entries ``keys``: J the
        outputs' Jacobian at the current patterns, P the centring of the
        intercept (squared loss)."""
        blocks = prob.blocks
        dF = None
        for spec in self.directions(keys, d):
            if spec.e_val.size == 0 or not np.any(spec.Vout):
                continue
            F = blocks.forward(spec)
            dF = F if dF is None else dF + F
        if dF is None:
            return prob.penalty * d
        if prob.fit_intercept:
            dF = dF - blocks.centered_moments(dF, True)[1]
        sw = blocks.sw[:, None] if blocks.sw.size > 1 else blocks.sw[0]
        return self._support_transpose(prob, sw * dF) + prob.penalty * d

    def _support_transpose(self, prob, R):
        """``J^T R`` on the support entries (their order in ``_support``):
        one pass over the support, not over every first-layer weight."""
        spec = self.spec()
        g_e, gH = prob.blocks.support_gradient(spec, R, with_v=True)
        _, _, jv, lv = self._support()
        by_unit = np.lexsort((spec.e_feat, spec.e_unit))
        return np.concatenate([g_e[by_unit], gH[jv, lv]])

    def _refine_cg(self, prob, point, n_steps, tol):
        """Gauss-Newton steps on the support of a squared loss, each solved by
        conjugate gradients (at most CG_STEPS products), with an Armijo line
        search (large supports, where forming the Hessian costs too much)."""
        for _ in range(n_steps):
            layer = point.layer
            if layer.nnz == 0:
                break
            g = layer.support_gradient(prob, prob.residual(point))
            keys = np.flatnonzero(layer._flat())
            x = np.zeros_like(g)
            r = -g
            d = r.copy()
            rr = float(r @ r)
            if rr == 0.0:
                break
            r0 = rr
            for _ in range(CG_STEPS):
                Qd = layer._gn_product(prob, keys, d)
                dQd = float(d @ Qd)
                if not dQd > 0.0:
                    break
                a = rr / dQd
                x += a * d
                r -= a * Qd
                rr_new = float(r @ r)
                if rr_new <= CG_TOL ** 2 * r0:
                    break
                d = r + (rr_new / rr) * d
                rr = rr_new
            if not np.any(x):
                break
            new = layer._line_search(prob, point, g, x)
            if new is None:
                break
            gain = point.L - new.L
            point = new
            if gain <= max(tol, 1e-10) * max(abs(point.L), 1e-300):
                break
        return point

    def _newton_ok(self, prob):
        """Newton steps when one costs at most about 1e8 flops: forming the
        exact matrix takes ``2 (k + 1) n S^2`` and solving ``~10 S^3``."""
        S = self.nnz
        return 2 * (self.k + 1) * prob.blocks.n * S * S + 10 * S ** 3 <= 1e8

    def newton_system(self, prob, point, R):
        """(Hessian, gradient) of the loss on the support entries, the output
        intercept eliminated (it is re-solved at every point).

        Column of entry ``u_fj`` in the Jacobian: ``D_j x_f v_j^T``; of entry
        ``v_jl``: ``h_j e_l^T``.  The Hessian is ``sum_i J_i^T H_i J_i`` (the
        exact k x k curvature of each row's loss) plus the bilinear term
        ``d^2 F_il / du_fj dv_jl = D_ij x_if`` weighted by the residual, i.e.
        the fused gradient of unit j, plus the penalty.
        """
        blocks = prob.blocks
        fu, ju, jv, lv = self._support()
        nU = fu.size
        S = nU + jv.size
        b_unit = np.concatenate([ju, jv]).astype(np.int64)
        b_feat = np.concatenate([fu, np.full(jv.size, -1)]).astype(np.int64)
        b_hcol = np.concatenate([np.full(nU, -1), jv]).astype(np.int64)
        coef = np.zeros((S, self.k))
        coef[:nU] = self.V[ju]
        coef[nU + np.arange(jv.size), lv] = 1.0
        G, Cm = blocks.newton_matrix(self.spec(), b_unit, b_feat, b_hcol, coef, prob.kind, point.F, point.b)
        if prob.fit_intercept:
            Hb = blocks.intercept_hessian(prob.kind, point.F, point.b)
            G = G - Cm @ np.linalg.pinv(Hb, rcond=1e-12, hermitian=True) @ Cm.T
        Gf = blocks.gradient_chunk(self.pattern_gates(), R)  # (k, q, m): the fused gradient
        cross = np.where(ju[:, None] == jv[None, :], Gf[lv[None, :], fu[:, None], ju[:, None]], 0.0)
        G[:nU, nU:] += cross
        G[nU:, :nU] += cross.T
        G[np.diag_indices_from(G)] += prob.penalty
        gU, gV = blocks.unit_gradient(self.units, self.pattern_gates(), self.U, self.V, R)
        g = np.concatenate([gU[fu, ju], gV[jv, lv]])
        if prob.penalty:
            g += prob.penalty * np.concatenate([self.U[fu, ju], self.V[jv, lv]])
        return G, g


def factor_fused(layer, s, sequential, gates, max_units=None):
    """A factored layer from fused weights: each active unit's block ``W_j``
    (q x k) by its leading singular pair, oriented along the unit's gate,
    balanced, then the ``s`` largest entries of both layers.  ``gates``: the
    random gates (fixed-gate patterns); ``max_units``: only that many units,
    the largest by ``||u_j|| ||v_j||`` (the leading singular value)."""
    q, k = layer.q, layer.k
    active, pos, feat, out = decode(layer.idx, q, k)
    m = active.size
    W = np.zeros((q, m, k))
    W[feat, pos, out] = layer.val
    H = layer.gates(active) if m else np.zeros((q, 0))
    U = np.zeros((q, m))
    V = np.zeros((m, k))
    for a in range(m):
        u, sv, vt = np.linalg.svd(W[:, a, :], full_matrices=False)
        sign = 1.0 if u[:, 0] @ H[:, a] >= 0 else -1.0
        U[:, a] = sign * np.sqrt(sv[0]) * u[:, 0]
        V[a] = sign * np.sqrt(sv[0]) * vt[0]
    if max_units is not None and m > max_units:
        sv = np.linalg.norm(U, axis=0) * np.linalg.norm(V, axis=1)
        keep = np.sort(np.argsort(-sv, kind="stable")[:max_units])
        active, U, V = active[keep], U[:, keep], V[keep]
    return FactoredLayer(layer.p, q, k, active, U, V, gates, sequential).truncate(s)
