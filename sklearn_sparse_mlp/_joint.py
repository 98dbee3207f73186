"""The joint phase of a deep fit: IHT over all layers under one budget.

Layer-by-layer training (``BaseSparseMLP._fit_deep``) fixes each hidden layer
before the next one is trained, and splits the budget between the layers in
advance.  The joint phase then refines the whole network together:

- the gradient of the training objective with respect to every weight and
  bias of the active units, by backpropagation through the current
  activation patterns (``DeepObjective``: by row chunks, so that memory is a
  chunk of rows times the active widths);
- a step along it, hard thresholded to the ``n_keep`` largest counted
  parameters across all layers (the budget of ``_budget``), so that budget
  moves between layers; weights of units that no longer reach the output are
  dropped and their share refilled; the step size is backtracked until the
  objective is below its quadratic upper model;
- a refit of the weights on the new support (L-BFGS, the activation patterns
  re-synced at every evaluation), as hard thresholding pursuit does for one
  layer.

A unit outside the active ones has zero weights in and out, hence a zero
gradient: the candidates of the thresholding are the entries between active
units (and inputs and outputs), and nothing of the layers' full widths is
formed.  Everything is NumPy and BLAS: the arrays are the small active
network and a chunk of rows.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ._imp import _forward, _pruned, _value_and_gradient

# Rows per chunk of the backpropagation: about this many values in the widest
# layer (8 MiB), so that the few arrays of a chunk stay small against X.
_CHUNK_VALUES = 1 << 20


class DeepObjective:
    """Training objective of a ReLU network on ``(X, Y, sw)``.

    ``loss.value(F, Y, sw / sw.sum()) + l2 * sum_l ||W_l||^2 / 2`` (weights
    only, as MLPRegressor), with its gradient, summed over row chunks.
    """

    def __init__(self, X, Y, sw, loss, l2):
        self.X = X.tocsr() if sp.issparse(X) else X
        self.Y = np.asarray(Y, dtype=np.float64)
        sw = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
        # The normalised weight of one sample is 1 / n_units (a weighted row
        # counts as that many repeated rows).
        self.n_units = float(sw.sum())
        self.sw = sw / sw.sum()
        self.loss = loss
        self.l2 = float(l2)
        self.n_evaluations = 0

    def _chunks(self, coefs):
        widest = max([1] + [W.shape[1] for W in coefs])
        chunk = max(1, _CHUNK_VALUES // widest)
        n = self.X.shape[0]
        return [slice(start, min(n, start + chunk)) for start in range(0, n, chunk)]

    def value_and_gradient(self, coefs, intercepts):
        """Objective and its gradients ``(value, coef_grads, intercept_grads)``."""
        self.n_evaluations += 1
        value = 0.0
        coef_grads = [np.zeros_like(W) for W in coefs]
        intercept_grads = [np.zeros_like(b) for b in intercepts]
        gW = [np.empty_like(W) for W in coefs]
        gb = [np.empty_like(b) for b in intercepts]
        for rows in self._chunks(coefs):
            v, _, _ = _value_and_gradient(coefs, intercepts, self.X[rows], self.Y[rows], self.sw[rows],
                                          self.loss, 0.0, None, gW, gb)
            value += v
            for acc, g in zip(coef_grads + intercept_grads, gW + gb):
                acc += g
        if self.l2:
            value += 0.5 * self.l2 * sum(float(np.vdot(W, W)) for W in coefs)
            for g, W in zip(coef_grads, coefs):
                g += self.l2 * W
        return float(value), coef_grads, intercept_grads

    def value(self, coefs, intercepts):
        """The objective alone (one forward pass)."""
        self.n_evaluations += 1
        value = self.loss.value(_forward(self.X, coefs, intercepts), self.Y, self.sw)
        if self.l2:
            value += 0.5 * self.l2 * sum(float(np.vdot(W, W)) for W in coefs)
        return float(value)


class _Network:
    """The parameters ``coefs + intercepts`` with the budget's bookkeeping:
    which arrays are counted, which entries are free to move."""

    def __init__(self, coefs, intercepts, fit_intercept):
        self.coefs = [np.array(W, dtype=np.float64) for W in coefs]
        self.intercepts = [np.array(b, dtype=np.float64) for b in intercepts]
        n = len(self.coefs)
        sizes = [W.shape[0] for W in self.coefs] + [self.coefs[-1].shape[1]]
        # counted[i]: whether params[i] is counted (the budget's definition,
        # as IMP prunes); trainable[i]: whether it moves at all (no biases
        # without fit_intercept, so theirs stay zero and count nothing).
        where = set(_pruned(sizes))
        self.counted = [(kind, i) in where for kind in (0, 1) for i in range(n)]
        self.trainable = [True] * n + [fit_intercept] * n

    @property
    def params(self):
        return self.coefs + self.intercepts

    def with_params(self, params):
        new = _Network.__new__(_Network)
        n = len(self.coefs)
        new.coefs, new.intercepts = list(params[:n]), list(params[n:])
        new.counted, new.trainable = self.counted, self.trainable
        return new

    def support(self):
        """Entries that move in the refit: the counted nonzeros, every free entry."""
        return [np.ones(a.shape, dtype=bool) if free and not counted else
                (a != 0 if free else np.zeros(a.shape, dtype=bool))
                for a, counted, free in zip(self.params, self.counted, self.trainable)]

    def n_nonzero(self):
        return int(sum(np.count_nonzero(a) for a, c in zip(self.params, self.counted) if c))

    def threshold(self, n_keep):
        """The ``n_keep`` largest counted entries (ties to earlier positions).

        Counted entries of units that cannot carry a signal to the output (no
        outgoing weight; or no incoming weight and a bias <= 0, so that the
        unit is always zero) are left out, and their share of the budget goes
        to the next largest entries, until the selection is stable."""
        orig = self.params
        counted = [i for i in range(len(orig)) if self.counted[i]]
        banned = [np.zeros(a.shape, dtype=bool) for a in orig]
        while True:
            params = [np.where(b, 0.0, a) for a, b in zip(orig, banned)]
            mags = np.concatenate([np.abs(params[i]).ravel() for i in counted])
            keep = np.zeros(mags.size, dtype=bool)
            keep[np.argsort(-mags, kind="stable")[: int(n_keep)]] = True
            keep &= mags > 0
            start = 0
            for i in counted:
                size = params[i].size
                params[i].ravel()[~keep[start:start + size]] = 0.0
                start += size
            useless = self._useless(params)
            if not any(np.any(u) for u in useless):
                return self.with_params(params)
            for b, u in zip(banned, useless):
                b |= u

    def _useless(self, params):
        """Masks of the nonzero counted entries (weights in and out, bias) of
        hidden units that cannot carry a signal to the output."""
        n = len(self.coefs)
        out = [np.zeros(a.shape, dtype=bool) for a in params]
        for layer in range(n - 1):
            W, b, V = params[layer], params[n + layer], params[layer + 1]
            dead = _dead_units(W, b, V)
            for i, mask in ((layer, np.broadcast_to(dead, W.shape)), (n + layer, dead),
                            (layer + 1, np.broadcast_to(dead[:, None], V.shape))):
                if self.counted[i]:
                    out[i] |= mask & (params[i] != 0)
        return out

    def compact(self):
        """The same function on the units that matter: the units of
        ``_dead_units`` are removed.  Returns ``(coefs, intercepts, kept)``,
        ``kept`` the positions of the first hidden layer's remaining units."""
        coefs, intercepts = list(self.coefs), list(self.intercepts)
        kept = None
        for layer in range(len(coefs) - 1):
            W, b, V = coefs[layer], intercepts[layer], coefs[layer + 1]
            keep = ~_dead_units(W, b, V)
            coefs[layer], intercepts[layer] = W[:, keep], b[keep]
            coefs[layer + 1] = V[keep]
            if kept is None:
                kept = np.flatnonzero(keep)
        return coefs, intercepts, kept


def _dead_units(W, b, V):
    """Hidden units (weights in ``W``, biases ``b``, weights out ``V``) that
    carry no signal to the output: no outgoing weight, or no incoming weight
    and a bias <= 0 (always zero)."""
    return ~np.any(V != 0, axis=1) | (~np.any(W != 0, axis=0) & (b <= 0))


def _flatten(arrays, masks):
    return np.concatenate([a[m] for a, m in zip(arrays, masks)])


def _unflatten(x, like, masks):
    out, start = [], 0
    for a, m in zip(like, masks):
        b = np.zeros_like(a)
        size = int(np.count_nonzero(m))
        b[m] = x[start:start + size]
        out.append(b)
        start += size
    return out


def _refit(obj, net, n_steps):
    """L-BFGS on the support of ``net`` (at most ``n_steps`` iterations):
    the refitted network and its objective."""
    masks = net.support()
    like = net.params
    n = len(net.coefs)

    def fun(x):
        params = _unflatten(x, like, masks)
        value, gW, gb = obj.value_and_gradient(params[:n], params[n:])
        return value, _flatten(gW + gb, masks)

    x0 = _flatten(like, masks)
    res = minimize(fun, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(n_steps), "gtol": 0.0, "ftol": 1e-12})
    if not (np.isfinite(res.fun) and np.all(np.isfinite(res.x))):
        return net, obj.value(net.coefs, net.intercepts)
    return net.with_params(_unflatten(res.x, like, masks)), float(res.fun)


def joint_iht(obj, coefs, intercepts, n_keep, *, fit_intercept=True, max_iter=20, n_refit=20, tol=1e-4,
              n_iter_no_change=2, monitor=None, verbose=0):
    """Refine a ReLU network by IHT over all its layers (module docstring).

    Parameters
    ----------
    obj : DeepObjective on the training rows
    coefs, intercepts : the network (active units), MLPRegressor's layout
    n_keep : int, the budget of counted parameters
    max_iter : int, number of thresholding steps (each followed by a refit)
    n_refit : int, L-BFGS iterations per refit
    tol, n_iter_no_change : stop when the objective (or the monitored loss)
        has not decreased by ``tol`` (relative) for ``n_iter_no_change`` steps
    monitor : callable ``(coefs, intercepts) -> float`` or None
        A held-out loss: the network with the lowest one is returned.

    Returns
    -------
    dict with coefs, intercepts (compacted), loss (training objective),
    loss_curve, n_iter, validation_curve (with a monitor), n_nonzero.
    """
    net = _Network(coefs, intercepts, fit_intercept)
    if net.n_nonzero() > n_keep:
        # A start above the budget (stages given more): its largest entries, refitted.
        net, _ = _refit(obj, net.threshold(n_keep), n_refit)
    L, gW, gb = obj.value_and_gradient(net.coefs, net.intercepts)
    best, best_L = net, L
    best_val = monitor(net.coefs, net.intercepts) if monitor is not None else None
    curve, val_curve = [], []
    step, stall, n_iter = None, 0, 0
    for it in range(max_iter):
        grads = gW + gb
        free = [np.asarray(g) * t for g, t in zip(grads, net.trainable)]
        gnorm2 = sum(float(np.vdot(g, g)) for g in free)
        if not gnorm2 > 0.0:
            break
        if step is None:
            # A first step that moves the weights by a tenth of their norm.
            wnorm = np.sqrt(sum(float(np.vdot(a, a)) for a in net.params))
            step = 0.1 * max(wnorm, 1e-3) / np.sqrt(gnorm2)
        else:
            step *= 2.0
        new, step0 = None, step
        for _ in range(30):
            trial = net.with_params([a - step * g for a, g in zip(net.params, free)]).threshold(n_keep)
            delta = [b - a for a, b in zip(net.params, trial.params)]
            model = L + sum(float(np.vdot(g, d)) for g, d in zip(free, delta)) \
                + sum(float(np.vdot(d, d)) for d in delta) / (2.0 * step)
            L_trial = obj.value(trial.coefs, trial.intercepts)
            if np.isfinite(L_trial) and L_trial <= model and L_trial < L:
                new = trial
                break
            step *= 0.5
        L_new = np.inf
        if new is None:
            step = step0  # the next iteration starts from twice this step
        else:
            new, L_new = _refit(obj, new, n_refit)
        if not L_new < L:
            # No better support found: refit the current one (it may still
            # improve), as hard thresholding pursuit does.
            new, L_new = _refit(obj, net.threshold(n_keep), n_refit)
        n_iter += 1
        improved = L_new < L - tol * abs(L)
        if L_new <= L or monitor is not None:
            net = new
            L, gW, gb = obj.value_and_gradient(net.coefs, net.intercepts)
        curve.append(L)
        if monitor is not None:
            v = monitor(net.coefs, net.intercepts)
            val_curve.append(v)
            improved = v < best_val - tol * abs(best_val)
            if v < best_val:
                best, best_val, best_L = net, v, L
        elif L <= best_L:
            best, best_L = net, L
        if verbose:
            print(f"Joint iteration {it + 1}, loss = {L:.8g}, nonzeros = {net.n_nonzero()}"
                  + (f", validation loss = {val_curve[-1]:.8g}" if monitor is not None else ""))
        stall = 0 if improved else stall + 1
        if stall >= n_iter_no_change:
            break
    coefs, intercepts, kept_first = best.compact()
    # Counted on the compacted network: the weights of units that no longer
    # reach the output are gone with them.
    n_nonzero = int(sum(np.count_nonzero(a) for a, c in zip(coefs + intercepts, best.counted) if c))
    return dict(coefs=coefs, intercepts=intercepts, kept_first=kept_first, loss=float(best_L), loss_curve=curve, n_iter=n_iter,
                validation_curve=val_curve, n_nonzero=n_nonzero, best_validation_loss=best_val)


# Approximate leave-one-out scores of a deep network are computed where the
# support's Gauss-Newton matrix (P x P, formed over all rows and outputs) is
# affordable (about 0.5 s at this cost, once per joint phase); with more rows
# per weight the penalty barely matters.
ALO_MAX_COST = 2e9
ALO_MAX_PARAMS = 4000


def _jacobians(X, coefs, intercepts, masks):
    """Outputs ``F`` (c x k) of the rows ``X`` and the Jacobian ``J`` (c x k x
    P) of every output with respect to the ``P`` parameters of ``masks``
    (``coefs + intercepts`` order, each array's entries in C order), at the
    rows' activation patterns."""
    n_layers = len(coefs)
    A = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    acts, on = [A], []
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        Z = acts[-1] @ W + b
        on.append(Z > 0)
        acts.append(np.where(on[-1], Z, 0.0))
    F = acts[-1] @ coefs[-1] + intercepts[-1]
    c, k = F.shape
    # D[l]: (c x k x m_l) derivatives of the outputs with respect to layer
    # l's pre-activations (the output layer's is the identity).
    D = [None] * n_layers
    D[-1] = np.broadcast_to(np.eye(k), (c, k, k))
    for layer in range(n_layers - 2, -1, -1):
        D[layer] = (D[layer + 1] @ coefs[layer + 1].T) * on[layer][:, None, :]
    blocks = []
    for layer in range(n_layers):
        a, j = np.nonzero(masks[layer])
        blocks.append(acts[layer][:, None, a] * D[layer][:, :, j])
    for layer in range(n_layers):
        blocks.append(D[layer][:, :, np.flatnonzero(masks[n_layers + layer])])
    return F, np.concatenate(blocks, axis=2)


def _loss_curvature(loss, F):
    """Per-row Hessians (c x k x k) of the loss with respect to the outputs."""
    from ._losses import LOGISTIC, SOFTMAX

    c, k = F.shape
    if loss.kind == SOFTMAX:
        p = loss.link(F)
        return p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :]
    v = np.ones((c, k))
    if loss.kind == LOGISTIC:
        p = loss.link(F)
        v = p * (1.0 - p)
    return v[:, :, None] * np.eye(k)


def alo_losses(obj, net, l2_grid):
    """Approximate leave-one-out losses of the network's penalised refit on
    its support, for each L2 strength of ``l2_grid`` (``obj.l2``'s scaling).

    As the one-layer ``FusedLayer.alo``: at the current activation patterns
    the outputs are linearised in the support's parameters (``J``) and the
    loss replaced by its quadratic model; the penalised Newton step of that
    model (weights penalised, biases not, as ``DeepObjective``) gives the
    refit ``eta``, and each row's leave-one-out outputs follow from the
    one-step formula of Rad & Maleki (2020),
    ``eta_i + K_i (I - H_i K_i)^{-1} g_i`` with ``K_i = u J_i M^{-1} J_i^T``
    (``M`` the penalised Gauss-Newton matrix, ``u`` the normalised weight
    left out of row i as in ``RowBlocks.alo_sums``: one sample's, or the
    whole row's when its weight is below one; ``H_i`` and ``g_i`` the
    loss's curvature and gradient at ``eta_i``); exact (PRESS) for the
    squared loss of a linear model.
    Returns the losses (len(l2_grid)) of those outputs, or None when the
    support is empty or the matrix too costly to form.
    """
    masks = net.support()
    n_layers = len(net.coefs)
    params = net.params
    P = int(sum(np.count_nonzero(m) for m in masks))
    X, Y, sw = obj.X, obj.Y, obj.sw
    n, k = Y.shape
    if P == 0 or P > ALO_MAX_PARAMS or n * k * P * P > ALO_MAX_COST:
        return None
    theta = _flatten(params, masks)
    pen = np.concatenate([np.full(int(np.count_nonzero(m)), 1.0 if i < n_layers else 0.0)
                          for i, m in enumerate(masks)])
    # Rows per chunk: a few arrays of c x k x P values each (J, its weighted
    # and curvature products) of about 2 MiB.
    chunk = max(1, (_CHUNK_VALUES // 4) // max(1, k * P))
    rows = [slice(start, min(n, start + chunk)) for start in range(0, n, chunk)]
    G = np.zeros((P, P))
    grad = np.zeros(P)
    for r in rows:
        F, J = _jacobians(X[r], net.coefs, net.intercepts, masks)
        H = _loss_curvature(obj.loss, F)
        g = obj.loss.gradient(F, Y[r], np.ones(F.shape[0]))
        w = sw[r]
        HJ = H @ J  # c x k x P
        G += np.einsum("iop,ioq->pq", J * w[:, None, None], HJ, optimize=True)
        grad += np.einsum("iop,io->p", J, g * w[:, None], optimize=True)
    G = 0.5 * (G + G.T)
    # Biases are not penalised: they are eliminated (Schur complement) and
    # the weights' reduced matrix diagonalised once for the whole grid.
    wi, bi = np.flatnonzero(pen > 0), np.flatnonzero(pen == 0)
    # A pseudo-inverse: directions of no curvature (biases of units silent
    # on every row; the common shift of softmax outputs) do not move.
    try:
        Bi = np.linalg.pinv(G[np.ix_(bi, bi)], rtol=1e-12, hermitian=True) if bi.size else np.zeros((0, 0))
        T = G[np.ix_(wi, bi)] @ Bi  # Gwb B^-1
        e, Q = np.linalg.eigh(G[np.ix_(wi, wi)] - T @ G[np.ix_(bi, wi)])
    except np.linalg.LinAlgError:
        return None
    e = np.maximum(e, 0.0)
    l2 = np.asarray(l2_grid, dtype=np.float64)
    # The Newton step of each l2: delta = -(G + l2 D)^-1 (grad + l2 D theta).
    rw0, rb = grad[wi] - T @ grad[bi], grad[bi]
    deltas = np.zeros((l2.size, P))
    for a, lam in enumerate(l2):
        rw = rw0 + lam * theta[wi]
        dw = -Q @ ((Q.T @ rw) / (e + lam))
        deltas[a, wi] = dw
        if bi.size:
            deltas[a, bi] = -Bi @ (rb + G[np.ix_(bi, wi)] @ dw)
    invd = 1.0 / (e[None, :] + l2[:, None])  # n_l2 x P_w
    u = np.minimum(sw, 1.0 / obj.n_units)
    out = np.zeros(l2.size)
    eye = np.eye(k)
    for r in rows:
        F, J = _jacobians(X[r], net.coefs, net.intercepts, masks)
        H = _loss_curvature(obj.loss, F)
        g = obj.loss.gradient(F, Y[r], np.ones(F.shape[0]))
        Z = (J[:, :, wi] - J[:, :, bi] @ T.T) @ Q  # c x k x P_w
        C = np.einsum("iop,pq,irq->ior", J[:, :, bi], Bi, J[:, :, bi], optimize=True)
        Zt = Z.transpose(0, 2, 1)
        for a in range(l2.size):
            step = J @ deltas[a]  # c x k
            eta = F + step
            g_a = g + np.einsum("iop,ip->io", H, step)
            K = u[r, None, None] * (np.matmul(Z * invd[a], Zt) + C)  # c x k x k
            A = eye - H @ K
            loo = eta + np.einsum("iop,ip->io", K, np.linalg.solve(A, g_a[:, :, None])[..., 0])
            out[a] += obj.loss.value(loo, Y[r], sw[r])
    return out


def alo_penalty(obj, coefs, intercepts, fit_intercept, alphas):
    """The L2 strength (``obj.l2``'s scaling) of least approximate
    leave-one-out loss (``alo_losses``) at the network ``coefs,
    intercepts``, among ``alphas`` (MLPRegressor's scaling: ``obj.l2``
    times the sum of the sample weights); None when the scores cannot be
    computed."""
    grid = np.asarray(alphas, dtype=np.float64) / obj.n_units
    scores = alo_losses(obj, _Network(coefs, intercepts, fit_intercept), grid)
    if scores is None or not np.any(np.isfinite(scores)):
        return None
    return float(grid[int(np.argmin(np.where(np.isfinite(scores), scores, np.inf)))])


def joint_pays_off(obj, coefs, intercepts, n_keep, seed, **joint_kw):
    """Two-fold check of the joint phase: run from the network ``coefs,
    intercepts`` on each half of the rows (``joint_iht`` with ``joint_kw``),
    each result scored on the other half against the starting network.

    Returns ``(pays_off, start_loss, joint_loss)``: the held-out losses
    summed over both halves, and whether the joint phase's is lower.  The
    starting network was fitted on all the rows, the held-out half
    included, so the check leans towards it: the joint phase must beat a
    network that has seen the rows it is scored on.
    """
    n = obj.X.shape[0]
    perm = np.random.RandomState(seed).permutation(n)
    halves = (np.sort(perm[: n // 2]), np.sort(perm[n // 2:]))
    sw = obj.sw * obj.n_units
    start_loss = joint_loss = 0.0
    for fit_rows, held in (halves, halves[::-1]):
        part = DeepObjective(obj.X[fit_rows], obj.Y[fit_rows], sw[fit_rows], obj.loss, obj.l2)
        res = joint_iht(part, coefs, intercepts, n_keep, **joint_kw)
        scorer = DeepObjective(obj.X[held], obj.Y[held], sw[held], obj.loss, 0.0)
        start_loss += scorer.value(coefs, intercepts)
        joint_loss += scorer.value(res["coefs"], res["intercepts"])
    return joint_loss < start_loss, start_loss, joint_loss
