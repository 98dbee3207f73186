"""Iterative hard thresholding with support refinement (plain arrays only).

One iteration (see DESIGN.md, section 3):

1. residual ``R = dL/dF`` at the current network;
2. one streaming pass of the full gradient ``g = A^T R``: exact on the
   support, the ``s`` largest off-support magnitudes elsewhere.  Off the
   support ``w = 0``, so ``|w - mu g| = mu |g|`` ranks entries the same way
   for every step ``mu``: these ``2 s`` candidates are all that hard
   thresholding at any step size can select, and backtracking on ``mu`` costs
   no further pass;
3. normalised step ``mu = ||g_T||^2 / ||A g_T||^2`` on ``T``, the ``s``
   largest gradient entries (Blumensath & Davies, 2010), halved until the
   thresholded point (refined if needed) lowers the loss;
4. ``w <- H_s(w - mu g)`` over the candidates;
5. refinement on the new support: conjugate gradients for the squared loss
   (hard thresholding pursuit), safeguarded gradient steps otherwise;
6. sequential gates: every ``gate_update_period`` iterations the gate of each
   active neuron follows its own weights, ``h_j = a_j w_j``.

The loop stays in Python (stopping rules, verbose output, warm starts); the
per-iteration work happens in the operator's numba kernels and BLAS.
"""

from dataclasses import dataclass, field

import numpy as np

from ._operator import sorted_lookup


@dataclass
class IHTState:
    """Sparse fused weights, output intercept and sequential gates."""

    idx: np.ndarray  # sorted flat indices (int64)
    val: np.ndarray  # values (float64)
    intercept: np.ndarray  # (k,)
    gate_neurons: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gate_vectors: np.ndarray = None  # (q, m) float64
    gate_signs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))


@dataclass
class IHTResult:
    state: IHTState
    loss_curve: list
    n_iter: int
    converged: bool
    stop_reason: str
    loss: float


def _top_s(values, idx, s):
    """Positions of the ``s`` largest ``|values|``; ties go to smaller ``idx``."""
    if values.shape[0] <= s:
        return np.arange(values.shape[0])
    a = np.abs(values)
    order = np.lexsort((idx, -a))
    return np.sort(order[:s])


class _Problem:
    """Bundle of operator, loss, data and the current point's predictions."""

    def __init__(self, op, loss, Y, sw, fit_intercept, penalty=0.0):
        self.op = op
        self.penalty = float(penalty)  # L2 penalty  penalty / 2 * ||w||^2
        self.loss = loss
        self.Y = Y
        self.sw = sw
        self.fit_intercept = fit_intercept
        self.k = Y.shape[1]

    def evaluate(self, idx, val, b0):
        """(F0, intercept, F, loss) at the point (idx, val)."""
        F0 = self.op.forward(idx, val)
        if self.fit_intercept:
            b = self.loss.intercept(F0, self.Y, self.sw, b0)
        else:
            b = np.zeros(self.k)
        F = F0 + b
        L = self.loss.value(F, self.Y, self.sw)
        if self.penalty:
            L += 0.5 * self.penalty * float(val @ val)
        return F0, b, F, L

    def center(self, Q):
        """Weighted centring of a direction's image (the intercept absorbs the mean)."""
        if self.fit_intercept:
            return Q - self.sw @ Q
        return Q

    def wsq(self, Q):
        """``sum_i sw_i ||Q_i||^2``."""
        return float(self.sw @ np.einsum("ij,ij->i", Q, Q))

    def curvature_norm(self, idx, v):
        """``c * sum_i sw_i ||(A v)_i - mean||^2`` along direction v."""
        return self.loss.curvature * self.wsq(self.center(self.op.forward(idx, v))) + self.penalty * float(v @ v)

    def support_gradient(self, idx, val, F):
        """Gradient of the (penalised) loss on the support."""
        g = self.op.support_gradient(idx, self.loss.gradient(F, self.Y, self.sw))
        if self.penalty:
            g += self.penalty * val
        return g

    def keep_better(self, idx, v, b, val, F, L):
        """The point (idx, v) if its loss is not above ``L``, else the old one."""
        _, b_new, F_new, L_new = self.evaluate(idx, v, b)
        if L_new <= L:
            return v, b_new, F_new, L_new
        return val, b, F, L

    # ------------------------------------------------------------------
    def refine(self, idx, val, b, F, L, n_steps, tol=0.0):
        """Improve the weights on a fixed support.  Returns (val, b, F, L)."""
        if n_steps <= 0 or idx.size == 0:
            return val, b, F, L
        if self.loss.is_quadratic:
            if self.direct_ok(idx.size):
                return self._refine_direct(idx, val, b, F, L)
            return self._refine_cg(idx, val, b, F, L, n_steps, tol)
        if idx.size <= 1500:  # Newton: O(n m^2) per step, few steps
            return self._refine_newton(idx, val, b, F, L, n_steps)
        return self._refine_gd(idx, val, b, F, L, n_steps)

    def direct_ok(self, m):
        """Solve on the support exactly when forming its normal equations
        (``n m^2`` flops) costs no more than a full gradient pass (``~4 n q p k``)."""
        op = self.op
        return m <= 2000 and m * m <= max(4 * op.q * op.p * op.k, 64 * 64)

    def _refine_direct(self, idx, val, b, F, L):
        # Least squares on the support (hard thresholding pursuit), the
        # intercept eliminated by weighted centring.
        G, B, C = self.op.normal_equations(idx, self.sw, self.Y)
        if self.fit_intercept:
            out = idx % self.k
            same = out[:, None] == out[None, :]
            G = G - np.outer(C, C) * same
            B = B - C * (self.sw @ self.Y)[out]
        if self.penalty:
            G[np.diag_indices_from(G)] += self.penalty
        # Minimum-norm solution through the eigendecomposition: the support's
        # columns can be (nearly) collinear, and the answer must not depend on
        # rounding in the null space (e.g. weighted vs repeated samples).
        try:
            evals, evecs = np.linalg.eigh(G)
        except np.linalg.LinAlgError:
            return val, b, F, L
        cutoff = max(evals[-1], 0.0) * 1e-10 if evals.size else 0.0
        keep = evals > cutoff
        if not keep.any():
            return val, b, F, L
        V = evecs[:, keep]
        v = V @ ((V.T @ B) / evals[keep])
        if not np.all(np.isfinite(v)):
            return val, b, F, L
        return self.keep_better(idx, v, b, val, F, L)

    def _refine_cg(self, idx, val, b, F, L, n_steps, tol):
        # Normal equations of the squared loss on the support, with the
        # intercept eliminated by weighted centring: Q v = A_S^T Sw P A_S v.
        r = -self.support_gradient(idx, val, F)
        r0 = np.sqrt(r @ r)
        if r0 == 0.0:
            return val, b, F, L
        v = val.copy()
        d = r.copy()
        rr = r @ r
        for _ in range(n_steps):
            Ad = self.center(self.op.forward(idx, d))
            dQd = self.wsq(Ad) + self.penalty * float(d @ d)
            if dQd <= 0.0 or not np.isfinite(dQd):
                break
            alpha = rr / dQd
            v += alpha * d
            Qd = self.op.support_gradient(idx, self.sw[:, None] * Ad) + self.penalty * d
            r -= alpha * Qd
            rr_new = r @ r
            if np.sqrt(rr_new) <= tol * r0:
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        return self.keep_better(idx, v, b, val, F, L)

    def _newton_direction(self, idx, g, W):
        """Newton direction ``-H^{-1} g`` on the support.

        ``H`` is the Gauss-Newton matrix for per-output curvature weights
        ``W`` (n x k), block diagonal over outputs (the softmax's cross-output
        terms are left out), intercept eliminated, plus the penalty; each
        output's block is solved on its own (eigenvalues floored at 1e-8 of
        the largest).  None if there is no descent direction.
        """
        out = idx % self.k
        dv = np.zeros(idx.size)
        zeros = np.zeros((W.shape[0], self.k))
        for l in np.unique(out):
            sel = np.flatnonzero(out == l)
            G, _, C = self.op.normal_equations(idx[sel], W[:, l], zeros)
            if self.fit_intercept:
                G = G - np.outer(C, C) / max(W[:, l].sum(), 1e-300)
            G[np.diag_indices_from(G)] += self.penalty
            try:
                evals, evecs = np.linalg.eigh(G)
            except np.linalg.LinAlgError:
                return None
            floor = max(evals[-1], 0.0) * 1e-8
            if floor <= 0.0:
                continue
            dv[sel] = -(evecs @ ((evecs.T @ g[sel]) / np.maximum(evals, floor)))
        return dv

    def _refine_newton(self, idx, val, b, F, L, n_steps):
        # Damped Newton steps on the support for a smooth convex loss, with
        # an Armijo backtracking line search; the intercept is re-solved at
        # every trial point.
        for _ in range(n_steps):
            g = self.support_gradient(idx, val, F)
            dv = self._newton_direction(idx, g, self.loss.hessian_weights(F, self.Y, self.sw))
            if dv is None:
                break
            slope = float(g @ dv)
            if not slope < 0.0:
                break
            t = 1.0
            accepted = False
            for _ in range(30):
                v = val + t * dv
                _, b_new, F_new, L_new = self.evaluate(idx, v, b)
                if L_new <= L + 0.25 * t * slope:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                break
            decrease = L - L_new
            val, b, F, L = v, b_new, F_new, L_new
            if decrease <= 1e-10 * max(abs(L), 1e-300):
                break
        return val, b, F, L

    def _refine_gd(self, idx, val, b, F, L, n_steps):
        for _ in range(n_steps):
            g = self.support_gradient(idx, val, F)
            gg = g @ g
            if gg == 0.0:
                break
            denom = self.curvature_norm(idx, g)
            mu = gg / denom if denom > 0 else 1.0
            accepted = False
            for _ in range(30):
                v = val - mu * g
                _, b_new, F_new, L_new = self.evaluate(idx, v, b)
                if L_new <= L - 0.25 * mu * gg:
                    accepted = True
                    break
                mu *= 0.5
            if not accepted:
                break
            val, b, F, L = v, b_new, F_new, L_new
        return val, b, F, L


class ToleranceRule:
    """The ``tol`` stopping rule.

    Relative (the regressor): one iteration whose loss changes by less than
    ``tol`` times the loss ends the fit.  Absolute (the classifiers, as in
    MLPClassifier): ``patience`` consecutive iterations whose loss changes by
    less than ``tol`` (the log loss of a perfectly fitted training set keeps
    shrinking by relative steps, and single small steps occur on the way).
    """

    def __init__(self, tol, absolute, patience):
        self.tol, self.absolute, self.patience = tol, absolute, patience
        self.count = 0

    def update(self, L_prev, L):
        if self.tol <= 0:
            return False
        scale = 1.0 if self.absolute else max(abs(L_prev), np.finfo(float).tiny)
        if abs(L_prev - L) > self.tol * scale:
            self.count = 0
            return False
        self.count += 1
        return self.count >= (self.patience if self.absolute else 1)


def _save_gates(state):
    vec = state.gate_vectors
    return (state.gate_neurons.copy(), None if vec is None else vec.copy(), state.gate_signs.copy())


def _restore_gates(op, saved):
    neurons, vectors, _ = saved
    if vectors is None:
        vectors = np.zeros((op.q, 0))
    op.set_gates(neurons, vectors)


def _sync_gates(prob, state, F):
    """Sequential gates: each active neuron's gate becomes ``a_j w_j``.

    The sign ``a_j`` is fixed when the neuron turns active: of the two
    orientations, the one whose ReLU unit ``a_j relu(x . a_j w_j)`` fits the
    residual of the other neurons better (a neuron fitted under a random gate
    knows the sign of its slope, not which half-space it should cover).
    Neurons that leave the support return to their random gate and lose
    their sign.  ``F`` is the current prediction (with the old gates).
    """
    op = prob.op
    q, k = op.q, op.k
    active, pos, feat, out = op.decode(state.idx)
    m = active.size
    W = np.zeros((q, m, k), dtype=np.float64)
    W[feat, pos, out] = state.val
    if k == 1:
        U = W[:, :, 0]
    else:
        # The gate of a neuron with several outputs follows the leading left
        # singular vector of its q x k weight block, scaled by its singular value.
        U = np.empty((q, m))
        for a in range(m):
            u, svals, _ = np.linalg.svd(W[:, a, :], full_matrices=False)
            U[:, a] = u[:, 0] * svals[0]
    signs = np.empty(m)
    old_pos, had = sorted_lookup(state.gate_neurons, active)
    signs[had] = state.gate_signs[old_pos[had]]
    new = np.flatnonzero(~had)
    if new.size:
        dtype = op.design.dtype
        slots = op.mask_slots(active[new])  # patterns under the old gates
        XW = np.asarray(
            op.design.gate_scores(np.ascontiguousarray(W[:, new, :].reshape(q, -1), dtype=dtype)),
            dtype=np.float64,
        )
        if k == 1:
            XU = XW
        else:
            XU = np.asarray(op.design.gate_scores(np.ascontiguousarray(U[:, new], dtype=dtype)),
                            dtype=np.float64)
        for i, a in enumerate(new):
            XWa = XW[:, i * k:(i + 1) * k]
            E = F - op.slot_masks[:, slots[i]][:, None] * XWa
            best, best_sign = np.inf, 1.0
            for sign in (1.0, -1.0):
                C = (sign * XU[:, i] >= 0)[:, None] * XWa
                val = prob.loss.value(E + C, prob.Y, prob.sw)
                if val < best:
                    best, best_sign = val, sign
            signs[a] = best_sign
    vectors = np.asfortranarray(U * signs)
    op.set_gates(active, vectors)
    state.gate_neurons = active
    state.gate_vectors = vectors
    state.gate_signs = signs
    return _merge_duplicates(op, state, prob.sw > 0)


def _sync_point(prob, state, idx, val, b, F, best):
    """Gate update at (idx, val), then the new point and the best point seen.

    Right after a gate update the model is exactly a ReLU network; the path
    is not monotone, so the best such point is remembered in ``best``.
    """
    state.idx, state.val = idx, val
    # A merge sums the weights of units with one pattern: the survivor's gate
    # then follows the summed weights (another update), so that the network
    # stays exactly a ReLU network.
    for _ in range(4):
        if not _sync_gates(prob, state, F):
            break
    idx, val = state.idx, state.val
    _, b, F, L = prob.evaluate(idx, val, b)
    if best is None or L < best[-1]:
        best = (idx, val, b, F, _save_gates(state), L)
    return idx, val, b, F, L, best


def _merge_duplicates(op, state, rows):
    """Merge active neurons whose activation patterns coincide on the data.

    Two neurons with the same pattern ``D`` contribute ``D X (w_j + w_j')``:
    summing their weights into one of them leaves every training prediction
    (of positive weight) unchanged and frees budget (typically several neurons that entered
    together on the same feature and whose gates became parallel).  Neurons
    that are never active on the data are dropped for the same reason.
    Returns whether anything was merged or dropped.
    """
    active = state.gate_neurons
    if active.size == 0:
        return False
    q, k = op.q, op.k
    slots = op.mask_slots(active)
    first = {}
    target = np.arange(active.size)
    dead = np.zeros(active.size, dtype=bool)
    for a in range(active.size):
        col = op.slot_masks[rows, slots[a]]  # samples of zero weight do not count
        if not col.any():
            dead[a] = True
            continue
        key = col.tobytes()
        target[a] = first.setdefault(key, a)
    if not dead.any() and np.array_equal(target, np.arange(active.size)):
        return False
    _, pos, feat, out = op.decode(state.idx)
    keep_entry = ~dead[pos]
    new_flat = (active[target[pos]] * q + feat) * k + out
    uniq, inv = np.unique(new_flat[keep_entry], return_inverse=True)
    vals = np.bincount(inv.ravel(), weights=state.val[keep_entry], minlength=uniq.size)
    nz = vals != 0.0
    state.idx, state.val = uniq[nz], vals[nz]
    survivors = np.unique(state.idx // (q * k))
    spos = np.searchsorted(active, survivors)
    state.gate_neurons = survivors
    state.gate_vectors = np.asfortranarray(state.gate_vectors[:, spos])
    state.gate_signs = state.gate_signs[spos]
    op.set_gates(state.gate_neurons, state.gate_vectors)
    return True


def iht(
    op,
    loss,
    Y,
    sw,
    n_nonzero,
    *,
    state=None,
    fit_intercept=True,
    max_iter=100,
    tol=1e-4,
    n_iter_no_change=5,
    gate_update="sequential",
    gate_update_period=1,
    n_refine=5,
    penalty=0.0,
    absolute_tol=False,
    verbose=0,
    print_fn=print,
):
    """Fit sparse fused weights by IHT.

    Parameters
    ----------
    op : NetworkOperator
    loss : Loss
    Y : ndarray (n, k), float64
    sw : ndarray (n,), float64, normalised sample weights (sum to one)
    n_nonzero : int
        Budget ``s`` of nonzero fused weights.
    state : IHTState or None
        Starting point (warm start); zero weights if None.

    Returns
    -------
    IHTResult
    """
    s = int(n_nonzero)
    k = Y.shape[1]
    prob = _Problem(op, loss, Y, sw, fit_intercept, penalty)
    sequential = gate_update == "sequential"
    if state is None:
        b0 = loss.initial_intercept(Y, sw) if fit_intercept else np.zeros(k)
        state = IHTState(np.zeros(0, np.int64), np.zeros(0), b0)
    else:
        state = IHTState(state.idx.copy(), state.val.copy(), state.intercept.copy(), *_save_gates(state))
        if sequential and state.gate_vectors is not None:
            op.set_gates(state.gate_neurons, state.gate_vectors)
        else:
            state.gate_neurons = np.zeros(0, np.int64)
            state.gate_vectors = None
            state.gate_signs = np.zeros(0)
        if state.idx.size > s:  # a smaller budget than the warm start's
            keep = _top_s(state.val, state.idx, s)
            state.idx, state.val = state.idx[keep], state.val[keep]
    _, b, F, L = prob.evaluate(state.idx, state.val, state.intercept)
    idx, val = state.idx, state.val
    L_init = L
    eps = np.finfo(op.design.dtype).eps
    loss_curve = []
    mu_prev = None
    best_synced = None
    best_L, no_gain = np.inf, 0
    tol_stop = ToleranceRule(tol, absolute_tol, n_iter_no_change)
    stable = 0
    converged = False
    stop_reason = "max_iter"
    it = 0
    for it in range(1, max_iter + 1):
        L_prev = L
        R = loss.gradient(F, Y, sw)
        g_sup, c_idx, c_g = op.gradient_pass(idx, R, s)
        if penalty:
            g_sup = g_sup + penalty * val
        all_idx = np.concatenate([idx, c_idx])
        all_g = np.concatenate([g_sup, c_g])
        all_w = np.concatenate([val, np.zeros(c_idx.size)])
        order = np.argsort(all_idx, kind="stable")
        all_idx, all_g, all_w = all_idx[order], all_g[order], all_w[order]

        T = _top_s(all_g, all_idx, s)
        gT = all_g[T]
        gg = float(gT @ gT)
        if gg == 0.0:
            converged, stop_reason = True, "zero gradient"
            loss_curve.append(L)
            break
        if mu_prev is None:
            denom = prob.curvature_norm(all_idx[T], gT)
            mu = gg / denom if denom > 0 else 1.0
        else:
            # Start from twice the last accepted step: computing the normalised
            # step would need the activation patterns of every top-s neuron.
            mu = 2.0 * mu_prev
        gs_small = float(g_sup @ g_sup) <= 1e-20 * gg

        accepted = False
        n_same = 0
        for _ in range(40):
            u = all_w - mu * all_g
            sel = _top_s(u, all_idx, s)
            sel = sel[u[sel] != 0.0]
            n_idx, n_val = all_idx[sel], u[sel]
            same = np.array_equal(n_idx, idx)
            if same:
                # Smaller steps keep this support: only the weights on it can
                # still move, and not at all once they solve the support's
                # least squares problem.
                n_same += 1
                if gs_small or n_same > 8:
                    break
            _, n_b, n_F, n_L = prob.evaluate(n_idx, n_val, b)
            if n_L < L:
                accepted = True
                break
            if not same:
                # A new support may need refitting before it pays off
                # (hard thresholding pursuit).
                r_val, r_b, r_F, r_L = prob.refine(n_idx, n_val, n_b, n_F, n_L, n_refine)
                if r_L < L:
                    n_val, n_b, n_F, n_L = r_val, r_b, r_F, r_L
                    accepted = True
                    break
            mu *= 0.5
        if accepted:
            mu_prev = mu
            same_support = np.array_equal(n_idx, idx)
            idx, val, b, F, L = n_idx, n_val, n_b, n_F, n_L
        else:
            same_support = True

        if sequential and it % gate_update_period == 0:
            idx, val, b, F, L, best_synced = _sync_point(prob, state, idx, val, b, F, best_synced)
            # Gate updates make the path non-monotone: count the updates that
            # do not improve the best exact ReLU network by more than tol.
            if best_synced[-1] < best_L - tol * (1.0 if absolute_tol else abs(best_L)):
                best_L, no_gain = best_synced[-1], 0
            else:
                no_gain += 1
        val, b, F, L = prob.refine(idx, val, b, F, L, n_refine)

        loss_curve.append(L)
        stable = stable + 1 if same_support else 0
        if verbose:
            print_fn(
                f"Iteration {it}, loss = {L:.8g}, nonzeros = {idx.size}, "
                f"active neurons = {np.unique(idx // (op.q * k)).size}, step = {mu:.3g}"
            )
        if not np.isfinite(L):
            stop_reason = "non-finite loss"
            break
        if L <= L_init * (100 * eps) ** 2:
            converged, stop_reason = True, "loss at machine precision"
            break
        if tol_stop.update(L_prev, L):
            converged, stop_reason = True, "tol"
            break
        if stable >= n_iter_no_change:
            converged, stop_reason = True, "stable support"
            break
        if absolute_tol and no_gain >= n_iter_no_change:
            converged, stop_reason = True, "no improvement after gate updates"
            break

    state.idx, state.val, state.intercept = idx, val, b
    if np.isfinite(L):
        L = _polish(prob, state, sequential, n_refine, b, F, L, best_synced)
    return IHTResult(state, loss_curve, it, converged, stop_reason, L)


def _polish(prob, state, sequential, n_refine, b, F, L, best=None):
    """Final fit on the final support; in sequential mode alternate gate
    updates and refits until the activation patterns settle, and end on a gate
    update so that the network is exactly ``sum_j a_j relu(x . a_j w_j)``."""
    op = prob.op
    n_steps = max(50, 4 * n_refine) if prob.loss.is_quadratic else 4 * n_refine
    idx, val = state.idx, state.val
    if not sequential:
        val, b, F, L = prob.refine(idx, val, b, F, L, n_steps, tol=1e-12)
    else:
        # Every point right after a gate update is exactly a ReLU network;
        # keep the best of those met while refits and updates alternate
        # (and during the iterations: ``best``).
        for _ in range(6):
            active = np.unique(idx // (op.q * op.k))
            before = op.masks(active)
            idx, val, b, F, L, best = _sync_point(prob, state, idx, val, b, F, best)
            after = op.masks(np.unique(idx // (op.q * op.k)))
            if before.shape == after.shape and np.array_equal(before, after):
                break
            val, b, F, L = prob.refine(idx, val, b, F, L, n_steps, tol=1e-12)
        idx, val, b, F, saved, L = best
        state.gate_neurons, state.gate_vectors, state.gate_signs = saved
        _restore_gates(op, saved)
    state.idx, state.val, state.intercept = idx, val, b
    return L
