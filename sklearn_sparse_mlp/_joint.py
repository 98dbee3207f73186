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
    return dict(coefs=coefs, intercepts=intercepts, kept_first=kept_first, loss=float(best_L), loss_curve=curve, n_iter=n_iter,
                validation_curve=val_curve, n_nonzero=best.n_nonzero(), best_validation_loss=best_val)
