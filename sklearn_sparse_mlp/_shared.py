"""The paper's vector-output network, with one budget over both layers.

``f(X) = sum_j (D_j X u_j) v_j^T + b``: first-layer weights ``u_j`` (length
q, the hidden bias included) shared by the k outputs, output weights ``v_j``
(length k), and ``nnz(U) + nnz(V) <= s``.  With sequential gates
``D_j = 1[X u_j >= 0]`` (an ordinary ReLU MLP); with fixed gates ``D_j``
comes from the unit's random gate.

The problem is bilinear, so it is started from the fused solution (each
active unit's fused block ``W_j`` factored by its leading singular pair) and
then refined by joint IHT: a gradient step on ``(U, V)`` of the active
units, hard thresholding of all their entries to ``s``, a backtracking line
search, and a rebalancing of each unit (``u_j -> c u_j``, ``v_j -> v_j / c``
with ``||u_j|| = ||v_j||``, which leaves a ReLU network unchanged and keeps
the two layers' magnitudes comparable for the thresholding).

Memory: ``O(n m + q m)`` for the ``m <= s`` active units, never ``p q``.
Plain arrays only, like the rest of the numeric core.
"""

from dataclasses import dataclass

import numpy as np

from ._iht import IHTResult, ToleranceRule


@dataclass
class SharedState:
    """Active units, their first-layer (q x m) and output (m x k) weights."""

    neurons: np.ndarray
    U: np.ndarray
    V: np.ndarray
    intercept: np.ndarray
    sequential: bool


def _patterns(op, state, Z):
    if state.sequential:
        return Z >= 0
    return op.masks(state.neurons).astype(bool)


def shared_forward(op, state):
    """Outputs without the intercept, (hidden activations, patterns)."""
    n = op.design.n_samples
    if state.neurons.size == 0:
        return np.zeros((n, state.V.shape[1])), np.zeros((n, 0)), np.zeros((n, 0), dtype=bool)
    Z = np.asarray(op.design.gate_scores(state.U.astype(op.design.dtype)), dtype=np.float64)
    M = _patterns(op, state, Z)
    Hid = np.where(M, Z, 0.0)
    return Hid @ state.V, Hid, M


def factor_fused(op, fused, s, sequential):
    """Shared weights from a fused solution: leading singular pair per unit,
    oriented along the unit's gate, balanced, jointly thresholded to ``s``."""
    q, k = op.q, op.k
    active, pos, feat, out = op.decode(fused.idx)
    m = active.size
    W = np.zeros((q, m, k))
    W[feat, pos, out] = fused.val
    gates = op.gates(active) if m else np.zeros((q, 0))
    U = np.zeros((q, m))
    V = np.zeros((m, k))
    for a in range(m):
        u, sv, vt = np.linalg.svd(W[:, a, :], full_matrices=False)
        sign = 1.0 if u[:, 0] @ gates[:, a] >= 0 else -1.0
        U[:, a] = sign * np.sqrt(sv[0]) * u[:, 0]
        V[a] = sign * np.sqrt(sv[0]) * vt[0]
    state = SharedState(active.copy(), U, V, np.asarray(fused.intercept, dtype=np.float64).copy(), sequential)
    _threshold(state, s)
    return state


def _threshold(state, s):
    """Keep the ``s`` largest entries of ``(U, V)`` together; drop units left
    without a first-layer or an output weight."""
    U, V = state.U, state.V
    flat = np.concatenate([U.ravel(order="F"), V.ravel()])
    if np.count_nonzero(flat) > s:
        order = np.argsort(-np.abs(flat), kind="stable")
        flat[order[s:]] = 0.0
        q, m = U.shape
        U[:] = flat[: q * m].reshape((q, m), order="F")
        V[:] = flat[q * m:].reshape(V.shape)
    keep = np.any(U != 0, axis=0) & np.any(V != 0, axis=1)
    state.neurons = state.neurons[keep]
    state.U = np.ascontiguousarray(U[:, keep])
    state.V = np.ascontiguousarray(V[keep])


def _rebalance(state):
    nu = np.linalg.norm(state.U, axis=0)
    nv = np.linalg.norm(state.V, axis=1)
    ok = (nu > 0) & (nv > 0)
    c = np.ones_like(nu)
    c[ok] = np.sqrt(nv[ok] / nu[ok])
    state.U *= c
    state.V /= c[:, None]


def _copy(state):
    return SharedState(state.neurons.copy(), state.U.copy(), state.V.copy(), state.intercept.copy(), state.sequential)


def shared_iht(
    op, loss, Y, sw, s, state, *, fit_intercept, max_iter, tol, absolute_tol,
    n_iter_no_change, penalty=0.0, verbose=0, print_fn=print,
):
    """Joint IHT on the shared weights from ``state``.  Returns an IHTResult
    whose ``state`` is a SharedState."""
    k = Y.shape[1]
    state = _copy(state)

    def evaluate(st, b0):
        F0, Hid, M = shared_forward(op, st)
        b = loss.intercept(F0, Y, sw, b0) if fit_intercept else np.zeros(k)
        F = F0 + b
        L = loss.value(F, Y, sw)
        if penalty:
            L += 0.5 * penalty * (float(np.sum(st.U ** 2)) + float(np.sum(st.V ** 2)))
        return b, F, Hid, M, L

    b, F, Hid, M, L = evaluate(state, state.intercept)
    state.intercept = b
    loss_curve = []
    mu_prev = None
    stable = 0
    tol_stop = ToleranceRule(tol, absolute_tol, n_iter_no_change)
    converged, stop_reason = False, "max_iter"
    it = 0
    for it in range(1, max_iter + 1):
        if state.neurons.size == 0:
            converged, stop_reason = True, "no active unit"
            break
        L_prev = L
        R = loss.gradient(F, Y, sw)
        gV = Hid.T @ R + penalty * state.V
        gU = np.asarray(op.design.transpose_product(np.where(M, R @ state.V.T, 0.0)), dtype=np.float64)
        gU += penalty * state.U
        gg = float(np.sum(gU ** 2) + np.sum(gV ** 2))
        if gg == 0.0:
            converged, stop_reason = True, "zero gradient"
            break
        if mu_prev is None:
            # Normalised step: the curvature along the gradient's first-order
            # change of the outputs.
            dZ = np.asarray(op.design.gate_scores(gU.astype(op.design.dtype)), dtype=np.float64)
            dF = np.where(M, dZ, 0.0) @ state.V + Hid @ gV
            if fit_intercept:
                dF = dF - sw @ dF
            denom = loss.curvature * float(sw @ np.einsum("ij,ij->i", dF, dF)) + penalty * gg
            mu = gg / denom if denom > 0 else 1.0
        else:
            mu = 2.0 * mu_prev
        support = (state.U != 0, state.V != 0)
        accepted = False
        for _ in range(30):
            trial = SharedState(state.neurons, state.U - mu * gU, state.V - mu * gV, b, state.sequential)
            _threshold(trial, s)
            _rebalance(trial)
            t_b, t_F, t_Hid, t_M, t_L = evaluate(trial, b)
            if t_L < L:
                accepted = True
                break
            mu *= 0.5
        if accepted:
            mu_prev = mu
            same = (
                np.array_equal(trial.neurons, state.neurons)
                and np.array_equal(trial.U != 0, support[0])
                and np.array_equal(trial.V != 0, support[1])
            )
            state = trial
            b, F, Hid, M, L = t_b, t_F, t_Hid, t_M, t_L
            state.intercept = b
        else:
            same = True
        loss_curve.append(L)
        stable = stable + 1 if same else 0
        if verbose:
            print_fn(
                f"Iteration {it}, loss = {L:.8g}, nonzeros = "
                f"{np.count_nonzero(state.U) + np.count_nonzero(state.V)}, "
                f"active neurons = {state.neurons.size}, step = {mu:.3g}"
            )
        if not accepted:
            converged, stop_reason = True, "no decrease"
            break
        if tol_stop.update(L_prev, L):
            converged, stop_reason = True, "tol"
            break
        if stable >= n_iter_no_change:
            converged, stop_reason = True, "stable support"
            break
    return IHTResult(state, loss_curve, it, converged, stop_reason, L)
