"""Iterative hard thresholding with support refinement (plain arrays only).

One step (see DESIGN.md, sections 3 and 8), the same for every driver and
for both parametrisations of ``_layers``:

1. residual ``R = dL/dF`` at the current network (held by the row blocks);
2. gradient candidates: for fused weights one streaming pass of the full
   gradient ``g = A^T R``, exact on the support, the ``s`` largest
   off-support magnitudes elsewhere (off the support ``w = 0``, so
   ``|w - mu g| = mu |g|`` ranks entries the same way for every step ``mu``:
   these ``2 s`` candidates are all that thresholding at any step can select,
   and backtracking costs no further pass); for factored weights every entry
   of the active units;
3. normalised step ``mu = ||g_T||^2 / ||A g_T||^2`` on ``T``, the ``s``
   largest gradient entries (Blumensath & Davies, 2010), then twice the last
   accepted step, halved until the thresholded point (refined if its support
   is new) lowers the loss;
4. ``w <- H_s(w - mu g)`` over the candidates;
5. sequential gates: every ``gate_update_period`` steps the gate of each
   active fused unit follows its own weights, ``h_j = a_j w_j``;
6. refinement on the support: least squares or conjugate gradients for the
   squared loss (hard thresholding pursuit), Newton or Gauss-Newton steps
   otherwise.

Drivers: ``fit_full`` (steps on all the data until a stopping rule, then a
final polish), ``fit_minibatch`` (epochs of steps on minibatches) and
``partial_step`` (steps on the blocks it is given).  The solver never reads a
row: the outputs ``F`` are handles that only the row blocks interpret.
"""

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ._blocks import RowBlocks
from ._layers import TRUNCATED_DROP_FLOOR, gate_offsets, top_s
from ._operator import sorted_lookup


# Losses closer than this (relative) are treated as equal: a step is taken
# only when it lowers the loss by more than rounding, so that fits whose sums
# are rounded differently (other BLAS kernels, weighted vs repeated samples)
# take the same decisions.
ROUNDING = 1e-13

# Rows of the sample that Gauss-Newton steps are first tried on (data with at
# least four times as many rows).
SAMPLE_ROWS = 8192


def lower(new, old):
    """Whether the loss ``new`` is below ``old`` by more than rounding."""
    return new < old - ROUNDING * abs(old)


@dataclass
class Point:
    """A network, its output intercept, its outputs (a handle) and its loss."""

    layer: object
    b: np.ndarray
    F: object
    L: float

    def kept(self):
        """The point without its outputs: what is remembered of a best point
        (only its network is returned), so that it holds no row."""
        return Point(self.layer, self.b, None, self.L)


@dataclass
class IHTResult:
    layer: object
    intercept: np.ndarray
    loss_curve: list
    n_iter: int
    converged: bool
    stop_reason: str
    loss: float
    polish_seconds: float = 0.0
    problem: object = None  # the Problem the network was fitted on (its penalty)
    select_seconds: float = 0.0  # alpha="auto": the time of the choice


POLISH_TOL = 1e-10


@dataclass
class Control:
    """What persists from one step to the next (and across ``partial_fit``)."""

    s: int
    n_refine: int = 5
    sequential: bool = False
    gate_update_period: int = 1
    mu_prev: float = None
    n_halvings: int = 40
    # Gauss-Newton steps within an iteration stop when one lowers the loss by
    # less than this fraction (the estimator's tol).
    refine_tol: float = 1e-4
    # The final polish's Gauss-Newton steps (sequential fused gates) stop when
    # one gains less than this fraction of the loss (POLISH_TOL; looser along
    # a budget path).  Other layers' polish refines to 1e-12 as before.
    polish_tol: float = POLISH_TOL
    system: object = None  # the SupportSystem of the current support (exact gates)
    fill_failed: object = None  # (support, budget) where refilling failed
    settled: bool = False  # the last step kept its support
    steps: int = 0


class Problem:
    """The (penalised) loss of a network on a set of row blocks.

    ``penalty`` is the L2 strength per unit of normalised sample weight:
    ``L = sum_i sw_i l_i + penalty / 2 * ||w||^2``.
    """

    def __init__(self, blocks, loss, fit_intercept, penalty=0.0, alpha=None, minibatch=False):
        self.blocks = blocks
        # A minibatch's rows: activation patterns seen on them are a sample's,
        # so units are neither merged nor dropped on them (see ``sync_point``).
        self.minibatch = bool(minibatch)
        self.loss = loss
        self.kind = loss.kind
        self.fit_intercept = bool(fit_intercept)
        self.penalty = float(penalty)
        # The estimator's alpha behind the penalty (alpha / total weight), as given.
        self.alpha = float(self.penalty * blocks.weight_total if alpha is None else alpha)
        self.k = blocks.k

    def sample(self):
        """The same loss on a fixed sample of the rows (``SAMPLE_ROWS``, see
        ``RowBlocks.sketch``), or None with fewer than four times as many rows."""
        if "_sample" not in self.__dict__:
            many = hasattr(self.blocks, "sketch") and 4 * SAMPLE_ROWS <= self.blocks.n
            sub = self.blocks.sketch(SAMPLE_ROWS) if many else None
            self._sample = None if sub is None else \
                Problem(sub, self.loss, self.fit_intercept, self.penalty, self.alpha, self.minibatch)
        return self._sample

    def with_alpha(self, alpha):
        """The same loss on the same blocks with the L2 strength ``alpha``
        (the estimators' scaling)."""
        return Problem(self.blocks, self.loss, self.fit_intercept, alpha / self.blocks.weight_total, alpha,
                       self.minibatch)

    def evaluate(self, layer, b0, F=None):
        """The Point of ``layer``, its intercept re-solved from ``b0`` (``F``:
        its outputs when already known)."""
        blocks = self.blocks
        if F is None:
            F = blocks.forward(layer.spec()) if layer.nnz else blocks.zeros(self.k)
        b, L = self._intercept_loss(F, b0)
        if self.penalty:
            L += 0.5 * self.penalty * layer.sq_norm()
        return Point(layer, b, F, L)

    def _intercept_loss(self, F, b0):
        """The intercept for outputs ``F`` (re-solved from ``b0``) and the
        loss there, penalty aside."""
        blocks = self.blocks
        if self.fit_intercept and self.loss.is_quadratic:
            return blocks.squared_fit(F)  # one pass
        b = blocks.intercept(self.kind, F, b0) if self.fit_intercept else np.zeros(self.k)
        return b, blocks.loss(self.kind, F, b)

    def constant_loss(self, b0=None):
        """The loss of the network without weights (its intercept fitted)."""
        return self._intercept_loss(self.blocks.zeros(self.k), b0)[1]

    def residual(self, point):
        return self.blocks.residual(self.kind, point.F, point.b)

    def hessian_weights(self, point):
        return self.blocks.hessian_weights(self.kind, point.F, point.b)

    def curvature(self, layer, keys, vals):
        """``c * sum_i sw_i ||(A v)_i - mean||^2 + penalty ||v||^2`` along the
        direction (keys, vals) of ``layer``'s weights."""
        blocks = self.blocks
        dF = None
        for spec in layer.directions(keys, vals):
            if spec.e_val.size == 0 or not np.any(spec.Vout):
                continue  # zero outputs
            F = blocks.forward(spec)
            dF = F if dF is None else blocks.combine(dF, F, 1.0)
        sq = 0.0 if dF is None else blocks.centered_moments(dF, self.fit_intercept)[0]
        return self.loss.curvature * sq + self.penalty * float(vals @ vals)

    def keep_better(self, layer, point):
        """The Point of ``layer`` (a refit) unless its loss is above ``point``'s
        by more than rounding."""
        new = self.evaluate(layer, point.b)
        return point if lower(point.L, new.L) else new

    def line_search(self, point, trial, slope, n_halvings=30):
        """Armijo backtracking along ``t -> trial(t)`` from t = 1 (``slope`` the
        directional derivative); the accepted Point, or None."""
        if not slope < 0.0:
            return None
        t = 1.0
        for _ in range(n_halvings):
            new = self.evaluate(trial(t), point.b)
            if new.L <= point.L + 0.25 * t * slope and lower(new.L, point.L):
                return new
            t *= 0.5
        return None

    def refine_gd(self, point, n_steps):
        """Gradient steps on the support (large supports), with Armijo
        backtracking: the first from the normalised step, the next from
        twice the last accepted one (as ``iht_step``).  The normalised step
        at every step cost a forward pass of its own and was always
        accepted at once: digits, 5 folds at seeds 0-2, fits took 15-24%
        less time this way, accuracy 0.9761 / 0.9800 / 0.9733 before and
        0.9777 / 0.9800 / 0.9744 after."""
        mu_last = None
        for _ in range(n_steps):
            layer = point.layer
            g = layer.support_gradient(self, self.residual(point))
            gg = float(g @ g)
            if gg == 0.0:
                break
            keys, _, w, _ = _support_entries(layer)
            if mu_last is None:
                denom = self.curvature(layer, keys, g)
                mu = gg / denom if denom > 0 else 1.0
            else:
                mu = 2.0 * mu_last
            new = None
            for _ in range(30):
                cand = self.evaluate(layer.from_entries(keys, w - mu * g), point.b)
                if cand.L <= point.L - 0.25 * mu * gg and lower(cand.L, point.L):
                    new = cand
                    break
                mu *= 0.5
            if new is None:
                break
            mu_last = mu
            point = new
        return point


def _support_entries(layer):
    """(keys, -, values, -) of the current nonzero weights in candidate keys."""
    if layer.kind == "fused":
        return layer.idx, None, layer.val, None
    flat = layer._flat()
    keys = np.flatnonzero(flat)
    return keys, None, flat[keys], None


# --------------------------------------------------------------------------
# sequential gates (fused weights)
# --------------------------------------------------------------------------
def _sync_gates(prob, point):
    """Sequential gates: each active unit's gate becomes ``a_j w_j``.

    The sign ``a_j`` is fixed when the unit turns active: of the two
    orientations, the one whose ReLU unit ``a_j relu(x . a_j w_j)`` fits the
    residual of the other units better (a unit fitted under a random gate
    knows the sign of its slope, not which half-space it should cover),
    judged on ``Problem.sample`` when there is one.  Units that leave the
    support return to their random gate and lose their sign.  Returns the
    new layer (``_merge_duplicates`` then merges units with one activation
    pattern).
    """
    layer = point.layer
    q, k = layer.q, layer.k
    active, pos, feat, out = _decode(layer)
    m = active.size
    W = np.zeros((q, m, k))
    W[feat, pos, out] = layer.val
    if k == 1:
        U = W[:, :, 0]
    else:
        # The gate of a unit with several outputs follows the leading left
        # singular vector of its q x k weight block, scaled by its singular value.
        # (One batched call: the same LAPACK routine on each block.)
        U = np.empty((q, m))
        if m:
            u, svals, _ = np.linalg.svd(W.transpose(1, 0, 2), full_matrices=False)
            U[:] = (u[:, :, 0] * svals[:, :1]).T
    signs = np.empty(m)
    old_pos, had = sorted_lookup(layer.gates.units, active)
    signs[had] = layer.signs[old_pos[had]]
    new = np.flatnonzero(~had)
    if new.size:
        # On many rows the signs are chosen on the row sample of the
        # Gauss-Newton trials (n=1e6: a fifth of an iteration went to the
        # scores and the outputs they need).
        on = prob.sample()
        on = prob if on is None else on
        at = point if on is prob and point.F is not None else on.evaluate(point.layer, point.b)
        scores = on.blocks.sign_scores(prob.kind, active[new], layer.gates(active[new]), W[:, new, :],
                                       U[:, new], at.F, at.b)
        signs[new] = np.where(scores[:, 1] < scores[:, 0], -1.0, 1.0)
    gates = layer.gates.copy()
    gates.set(active, U * signs)
    return type(layer)(layer.p, q, k, layer.idx, layer.val, gates, signs)


def _to_sync(prob, layer, b0):
    """The Point of ``layer`` before its gate update (``sync_point``).  Its
    outputs are needed there only for the signs of entering units
    (``_sync_gates`` evaluates it then), and its loss not at all: it is left
    unevaluated when the intercept does not depend on the start ``b0``
    (squared loss, or no intercept), so the synced Point is the same."""
    if prob.loss.is_quadratic or not prob.fit_intercept:
        return Point(layer, b0, None, np.nan)
    return prob.evaluate(layer, b0)


def _decode(layer):
    from ._operator import decode

    return decode(layer.idx, layer.q, layer.k)


def _merge_duplicates(prob, layer, keys=None):
    """Merge active units whose activation patterns coincide on the data.

    Two units with the same pattern ``D`` contribute ``D X (w_j + w_j')``:
    summing their weights into one of them leaves every training prediction
    (of positive weight) unchanged and frees budget (typically several units
    that entered together on the same feature and whose gates became
    parallel).  Units that are never active on the data are dropped for the
    same reason.  Returns (layer, whether anything was merged or dropped).
    """
    gates = layer.gates
    active = gates.units
    if active.size == 0:
        return layer, False
    keys, counts = prob.blocks.pattern_keys(active, gates.vectors) if keys is None else keys
    dead = counts == 0
    # One output: units of one pattern and one sign, whose summed weights are
    # again a ReLU unit of that pattern (of opposite signs they would not be).
    # Several outputs: the gate follows a singular vector, not the weights.
    signs = layer.signs if layer.k == 1 and layer.signs.size == active.size else np.zeros(active.size)
    order, starts = _merge_groups(keys, signs)
    if not dead.any() and starts.all():
        return layer, False  # the usual case: nothing to merge
    q, k = layer.q, layer.k
    _, pos, feat, out = _decode(layer)
    idx, val = _merged_entries(active, pos, feat, out, layer.val, dead, order, starts, q, k)
    survivors = np.unique(idx // (q * k))
    spos = np.searchsorted(active, survivors)
    new_gates = gates.copy()
    new_gates.set(survivors, gates.vectors[:, spos])
    return type(layer)(layer.p, q, k, idx, val, new_gates, layer.signs[spos]), True


def _merged_entries(active, pos, feat, out, val, dead, order, starts, q, k):
    """The weights (keys, values) once each group of ``_merge_groups`` is
    summed into its first unit and dead units are dropped."""
    target = np.empty(active.size, dtype=np.int64)
    target[order] = order[starts][np.cumsum(starts) - 1]
    target = np.where(dead, np.arange(active.size), target)
    keep_entry = ~dead[pos]
    new_flat = (active[target[pos]] * q + feat) * k + out
    uniq, inv = np.unique(new_flat[keep_entry], return_inverse=True)
    vals = np.bincount(inv.ravel(), weights=val[keep_entry], minlength=uniq.size)
    nz = vals != 0.0
    return uniq[nz], vals[nz]


def _merge_groups(keys, signs):
    """Units grouped by (pattern key, sign): the order of one stable sort
    (lowest index first in each group) and where each group starts in it."""
    order = np.lexsort((signs, keys[:, 1], keys[:, 0]))
    k0, k1, sg = keys[order, 0], keys[order, 1], signs[order]
    starts = np.ones(keys.shape[0], dtype=bool)
    starts[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1]) | (sg[1:] != sg[:-1])
    return order, starts


def sync_point(prob, point, merge=True):
    """Gate update at ``point``: the new Point, exactly a ReLU network.

    A merge sums the weights of units with one pattern: the survivor's gate
    then follows the summed weights (another update), so that the network
    stays exactly a ReLU network.  With one output the synced network's
    outputs, patterns and pattern keys come from one pass
    (``forward_exact``).  ``merge=False``: units are not merged (a trial on a
    sample of the rows).
    """
    F = None
    for _ in range(4):
        layer = _sync_gates(prob, point)
        F, keys = None, None
        if layer.k == 1 and layer.nnz:
            F, *keys = prob.blocks.forward_exact(layer.gates.units, layer.gates.vectors, layer.signs)
        if not merge or prob.minibatch:
            point = Point(layer, point.b, point.F, point.L)
            break
        layer, merged = _merge_duplicates(prob, layer, keys)
        point = Point(layer, point.b, point.F, point.L)
        if not merged:
            break
        F = None
    return prob.evaluate(point.layer, point.b, F)


# --------------------------------------------------------------------------
# one step
# --------------------------------------------------------------------------
@dataclass
class StepResult:
    point: Point
    synced: Point = None  # the point right after a gate update (a ReLU network)
    accepted: bool = False
    same_support: bool = True
    mu: float = 0.0
    zero_gradient: bool = False


def iht_step(prob, point, ctl):
    """One IHT step from ``point`` on the blocks of ``prob`` (see the module
    docstring); updates ``ctl`` (the step size, the step count)."""
    ctl.steps += 1
    s = ctl.s
    layer = point.layer
    exact = _exact(ctl, layer)
    if layer.kind == "factored" and s - layer.nnz >= 2 and ctl.mu_prev is not None \
            and (ctl.settled or (layer.q + layer.k) * layer.units.size < s):
        # Budget free once thresholding has settled below it, or beyond what
        # the active units can hold: new units enter.
        filled = _enter_units(prob, point, ctl, s)
        if filled is not None:
            return StepResult(filled, None, True, False, ctl.mu_prev)
    keys, g, w, g_sup = layer.candidates(prob, point, s)
    T = top_s(g, keys, s)
    gT = g[T]
    gg = float(gT @ gT)
    if gg == 0.0:
        return StepResult(point, zero_gradient=True)
    if ctl.mu_prev is None:
        denom = prob.curvature(layer, keys[T], gT)
        mu = gg / denom if denom > 0 else 1.0
    else:
        # Start from twice the last accepted step: computing the normalised
        # step would need the activation patterns of every top-s unit.
        mu = 2.0 * ctl.mu_prev
    gs_small = float(g_sup @ g_sup) <= 1e-20 * gg
    if exact and layer.nnz < s and ctl.mu_prev is not None:
        filled = _fill(prob, point, ctl, keys, g, w, s)
        if filled is not None:
            return StepResult(filled, filled, True, False, ctl.mu_prev)

    accepted = False
    n_same = 0
    # Refits of trial supports (hard thresholding pursuit): each costs a few
    # gate updates with exact gates, so only the first, largest steps are
    # refitted there (without them planted networks are recovered less
    # often: 21 of 30 cells against 27).
    n_refits = 2 if exact else ctl.n_halvings
    new = point
    more_features = False
    for _ in range(ctl.n_halvings):
        u = w - mu * g
        if exact and prob.fit_intercept:
            sel, dropped = _top_without_lone_biases(layer, u, keys, s)
            if dropped and sel.size < s and not more_features:
                # Lone biases took candidates' places: the largest feature
                # entries join the candidates (one more gradient pass).
                more_features = True
                keys, g, w = _with_feature_candidates(prob, point, s, keys, g, w)
                u = w - mu * g
                sel, _ = _top_without_lone_biases(layer, u, keys, s)
        else:
            sel = top_s(u, keys, s)
        sel = sel[u[sel] != 0.0]
        if exact and prob.fit_intercept:
            trial = layer.from_entries(*_with_biases(prob, layer, keys[sel], u[sel], s))
        else:
            trial = layer.from_entries(keys[sel], u[sel])
        same = trial.same_support(layer)
        if same:
            # Smaller steps keep this support: only the weights on it can
            # still move, and not at all once they solve the support's
            # least squares problem.
            n_same += 1
            if gs_small or n_same > 8:
                break
        if exact:
            # Sequential gates, updated at every step: a trial is judged as
            # the ReLU network it becomes once its gates follow its weights.
            cand = sync_point(prob, _to_sync(prob, trial, point.b))
        else:
            cand = prob.evaluate(trial, point.b)
        if lower(cand.L, point.L):
            new, accepted = cand, True
            break
        if not same and trial.refit_trials and n_refits > 0:
            # A new support may need refitting before it pays off
            # (hard thresholding pursuit).
            n_refits -= 1
            if exact:
                refined = gauss_newton(prob, cand, ctl.n_refine, tol=ctl.refine_tol, ctl=ctl)
            else:
                refined = trial.refine(prob, cand, ctl.n_refine)
            if lower(refined.L, point.L):
                new, accepted = refined, True
                break
        mu *= 0.5
    same_support = True
    if accepted:
        ctl.mu_prev = mu
        same_support = new.layer.same_support(layer)
    ctl.settled = same_support
    point = new
    synced = None
    if exact:
        point = synced = gauss_newton(prob, point, ctl.n_refine, tol=ctl.refine_tol, ctl=ctl)
    else:
        if ctl.sequential and point.layer.kind == "fused" and ctl.steps % ctl.gate_update_period == 0:
            point = synced = sync_point(prob, point)
        point = point.layer.refine(prob, point, ctl.n_refine)
    return StepResult(point, synced, accepted, same_support, mu)


def _top_without_lone_biases(layer, u, keys, s):
    """``top_s(u, keys, s)``, or, when it holds hidden biases alone, the
    same without lone biases: a bias whose unit keeps no feature weight is
    a constant unit (exact sequential gates: active on all rows or none),
    which the output intercept already holds.
    Thresholding picked only such biases on features of small scale:
    diabetes as ``load_diabetes`` gives it (column norms 1 against the bias
    column's sqrt(442)) with budgets of 1 to 10 ended at the constant model
    with no weights.  Their budget goes to the next entries.  Lone biases
    next to feature weights are kept: passed over at every step, planted
    networks were recovered less well (``test_recovers_planted_network``
    38.5 dB against 40 and more; an active lone bias is a unit whose
    features enter at the next steps).  Returns the positions and whether
    any bias was passed over."""
    q, k = layer.q, layer.k
    bias = (keys // k) % q == q - 1
    unit = keys // (q * k)
    dropped = False
    while True:
        sel = top_s(u, keys, s)
        sel = sel[u[sel] != 0.0]
        if not dropped and not bias[sel].all():
            return sel, False
        with_feature = np.unique(unit[sel[~bias[sel]]])
        lone = sel[bias[sel] & ~np.isin(unit[sel], with_feature)]
        if lone.size == 0:
            return sel, dropped
        if not dropped:
            u, dropped = u.copy(), True
        u[lone] = 0.0


def _with_feature_candidates(prob, point, s, keys, g, w):
    """The candidates ``(keys, g, w)`` joined by the ``s`` largest
    off-support feature entries (no hidden bias), sorted by key."""
    k2, g2, w2, _ = point.layer.candidates(prob, point, s, features_only=True)
    all_keys, first = np.unique(np.concatenate([keys, k2]), return_index=True)
    return all_keys, np.concatenate([g, g2])[first], np.concatenate([w, w2])[first]


def _fill(prob, point, ctl, keys, g, w, s):
    """Budget left free (by merged or dead units, exact sequential gates):
    the current weights stay and the largest off-support gradient entries
    enter with a normalised step, refitted by Gauss-Newton.  The new Point,
    or None if no such step lowers the loss.

    A full step may trade current weights for new ones; entering units whose
    gates then follow their weights rarely pay off at the large steps where
    that happens, and freed budget would stay unused.  Two step sizes are
    tried; a support where both failed is not tried again at the same
    budget (the next iterations would repeat the same failed attempts).
    """
    layer = point.layer
    attempt = (layer.idx.tobytes(), s)
    if ctl.fill_failed == attempt:
        return None
    off = np.flatnonzero(w == 0.0)
    if prob.fit_intercept:
        # A unit cannot enter on its bias alone: its pattern would be constant
        # (all rows or none), and it would merge into the output intercept
        # or die at the gate update (image fitting, 250 weights: 68 of the
        # 131 entries of the first refill).
        lone_bias = _new_unit_biases(layer, keys[off])
        off = off[~lone_bias]
        if lone_bias.any() and off.size == 0:
            # Such biases took the candidates' places (features of small
            # scale): the largest feature entries join them.
            keys, g, w = _with_feature_candidates(prob, point, s, keys, g, w)
            off = np.flatnonzero(w == 0.0)
            off = off[~_new_unit_biases(layer, keys[off])]
    new, mu = _largest_entries(prob, layer, keys, g, off, s)
    if new.size == 0:
        return None
    mu = ctl.mu_prev if mu is None else mu
    cand = _try_entries(prob, point, ctl, keys, g, w, s, [(new, mu), (new, 0.25 * mu)])
    if cand is None:
        ctl.fill_failed = attempt
    return cand


def _new_unit_biases(layer, keys):
    """Which of ``keys`` are hidden biases of units outside ``layer``."""
    q, k = layer.q, layer.k
    return ((keys // k) % q == q - 1) & ~np.isin(keys // (q * k), layer.units)


def _try_entries(prob, point, ctl, keys, g, w, s, tries):
    """The first of ``tries`` (positions of new entries among ``keys``, a
    step length) whose entries, by a step along ``-g`` with the current
    weights ``w`` kept, lower the loss once the gates follow and two
    Gauss-Newton steps refit, or None."""
    layer = point.layer
    on = np.flatnonzero(w != 0.0)
    for new, step in tries:
        both = np.sort(np.concatenate([on, new]))  # keys are sorted: positions keep their order
        is_new = np.isin(both, new)
        k_all = keys[both]
        v_all = np.where(is_new, -step * g[both], w[both])
        if prob.fit_intercept:
            k_all, v_all = _with_biases(prob, layer, k_all, v_all, s)
        cand = sync_point(prob, _to_sync(prob, layer.from_entries(k_all, v_all), point.b))
        # Two Gauss-Newton steps tell a useful refill from a useless one; the
        # iterations that follow refit it further.
        cand = gauss_newton(prob, cand, min(ctl.n_refine, 2), ctl=ctl)
        if lower(cand.L, point.L) and cand.layer.nnz > layer.nnz:
            return cand
    return None


def _grow_units(prob, point, ctl):
    """A fit with exact sequential gates that has stopped with budget free
    (``_fill`` found no new units that pay off): the active units' largest
    off-support gradient entries enter by a short step (FILL_SHORT_STEP of
    the normalised one), their patterns moving a little, and the loss
    falls to first order.  The new Point (for the final polish), or None."""
    layer = point.layer
    s = ctl.s
    if layer.kind != "fused" or not _exact(ctl, layer) or layer.nnz >= s or not layer.units.size:
        return None
    keys, g, w, _ = layer.candidates(prob, point, s)
    off = np.flatnonzero(w == 0.0)
    off = off[np.isin(keys[off] // (layer.q * layer.k), layer.units)]
    new, mu = _largest_entries(prob, layer, keys, g, off, s)
    if mu is None:
        return None
    return _try_entries(prob, point, ctl, keys, g, w, s, [(new, FILL_SHORT_STEP * mu)])


def _largest_entries(prob, layer, keys, g, off, s):
    """The positions among ``off`` of the ``s - layer.nnz`` largest nonzero
    gradient entries, and the normalised step along them (None without
    curvature or entries)."""
    new = off[top_s(g[off], keys[off], s - layer.nnz)]
    new = new[g[new] != 0.0]
    if new.size == 0:
        return new, None
    gn = g[new]
    denom = prob.curvature(layer, keys[new], gn)
    return new, (float(gn @ gn) / denom if denom > 0 else None)


# The step of _grow_units, a share of the normalised step.  Default fits
# of benchmarks/tabular.py (3 folds) ended 1-3 weights short of the budget
# on diabetes, friedman1, breast_cancer, moons and circles.
FILL_SHORT_STEP = 0.01


def _enter_units(prob, point, ctl, s, room=None):
    """Budget left free in a factored layer: new units enter
    (``FactoredLayer.entering``) and the network is refitted on its support.
    ``room``: the layer with entries removed to make room for them (a swap;
    by default ``point``'s).  The new Point, or None if neither of two step
    sizes lowers the loss below ``point``'s (not tried again on the same
    support and budget)."""
    layer = point.layer
    attempt = (room is None, layer.units.tobytes(), layer.nnz, s)
    if ctl.fill_failed == attempt:
        return None
    room = point if room is None else prob.evaluate(room, point.b)
    entering = room.layer.entering(prob, room, s - room.layer.nnz)
    if entering is not None:
        grown, step = entering
        for scale in (1.0, 0.25):
            trial = grown.replace(grown.units, grown.U, grown.V + scale * step).balanced()
            cand = trial.refine(prob, prob.evaluate(trial, point.b), ctl.n_refine)
            if lower(cand.L, point.L) and cand.layer.nnz > room.layer.nnz:
                return cand
    ctl.fill_failed = attempt
    return None


# Stopping rules after which a factored fit with fewer active units than its
# width tries a swap (``_swap_unit``); not after early stopping (the held-out
# rows decide there) nor at an exact fit.
SWAP_REASONS = ("tol", "stable support", "no improvement after gate updates", "no decrease")


def _swap_unit(prob, point, ctl):
    """A factored fit that has stopped with its budget full and fewer active
    units than its width: the smallest entries (as many as a unit holds on
    average) make room for a new unit (``_enter_units``).  Units merged or
    lost before the budget filled never come back otherwise (a unit outside
    the layer is a saddle of both its factors).  Planted networks with 10
    outputs (d=100, n=2000, seeds 0-7; ``benchmarks/phase.py``'s cells),
    median / lowest test PSNR without and with swaps: width 10, s=100: 38.2 /
    29.2 against 38.4 / 29.4 dB; width 100, s=10 (seeds 0-3): 51.1 / 44.4
    against 62.0 / 49.4; width 10, s=10 (seeds 0-3): 50.7 / 40.1 against
    54.9 / 45.7; width 100, s=100 (seeds 0-3): 39.4 / 37.7 against 43.9 /
    40.5 (fit time 7.7 -> 13.3 s, the iterations after the swaps).  The
    new Point, or None."""
    layer = point.layer
    if layer.kind != "factored" or not 0 < layer.units.size < layer.p or ctl.s - layer.nnz >= 2:
        return None
    return _enter_units(prob, point, ctl, ctl.s, layer.truncate(max(layer.nnz - layer.entries_per_unit(), 0)))


def _with_biases(prob, layer, keys, vals, s):
    """Entering units bring their hidden bias (sequential gates).

    A unit enters with the few entries that thresholding gives it, under its
    random gate; its gate then follows those weights.  Without a bias entry
    its hyperplane would pass through the origin, and every unit entering on
    the same feature would share one activation pattern (and be merged into
    one).  The bias added gives the new unit the random gate's share of
    active samples: on data with column means ``m`` and deviations ``sd``,
    ``b = -w . m + z sqrt(sum_f w_f^2 sd_f^2)`` with
    ``z = (h_b + h . m) / sqrt(sum_f h_f^2 sd_f^2)`` the random gate's offset
    in the same units (a Gaussian approximation of both activation shares).
    The smallest entries of entering units make room, so the budget holds.
    """
    q, k = layer.q, layer.k
    unit = keys // (q * k)
    feat = (keys // k) % q
    out = keys % k
    old = np.isin(unit, layer.idx // (q * k))
    new_units = np.unique(unit[~old])
    if new_units.size == 0:
        return keys, vals
    H = layer.gates(new_units)  # q x m
    pos = np.searchsorted(new_units, unit)
    is_new = ~old
    has_bias = np.zeros((new_units.size, k), dtype=bool)
    nb = is_new & (feat == q - 1)
    has_bias[pos[nb], out[nb]] = True
    mean, sd = prob.blocks.column_moments()
    z = gate_offsets(mean, sd, H)
    dot = np.zeros((new_units.size, k))  # w . m
    sq = np.zeros((new_units.size, k))  # sum_f w_f^2 sd_f^2
    nf = is_new & (feat < q - 1)
    np.add.at(dot, (pos[nf], out[nf]), vals[nf] * mean[feat[nf]])
    np.add.at(sq, (pos[nf], out[nf]), (vals[nf] * sd[feat[nf]]) ** 2)
    # Only units that would share their features with another unit need a
    # bias to tell them apart (a planted network without biases keeps none).
    shared = _shared_features(unit, feat, q, new_units)
    uu, ll = np.nonzero(~has_bias & (sq > 0) & shared[:, None])
    if uu.size == 0:
        return keys, vals
    add_keys = (new_units[uu] * q + (q - 1)) * k + ll
    add_vals = -dot[uu, ll] + z[uu] * np.sqrt(sq[uu, ll])
    keep = add_vals != 0.0
    add_keys, add_vals = add_keys[keep], add_vals[keep]
    excess = keys.size + add_keys.size - s
    if excess > 0:
        # Drop the smallest feature entries of entering units; a unit left
        # without a feature entry loses its added bias too.
        cand = np.flatnonzero(nf)
        cand = cand[np.argsort(np.abs(vals[cand]), kind="stable")]
        left = np.bincount(pos[nf] * k + out[nf], minlength=new_units.size * k)
        added = np.zeros(new_units.size * k, dtype=bool)
        added[uu * k + ll] = True
        added[uu[~keep] * k + ll[~keep]] = False
        mask = np.ones(keys.size, dtype=bool)
        for t in cand:
            if excess <= 0:
                break
            g = pos[t] * k + out[t]
            mask[t] = False
            excess -= 1
            left[g] -= 1
            if left[g] == 0 and added[g]:
                added[g] = False
                excess -= 1
        keys, vals = keys[mask], vals[mask]
        kept_bias = added[np.searchsorted(new_units, add_keys // (q * k)) * k + add_keys % k]
        add_keys, add_vals = add_keys[kept_bias], add_vals[kept_bias]
    all_keys = np.concatenate([keys, add_keys])
    order = np.argsort(all_keys, kind="stable")
    return all_keys[order], np.concatenate([vals, add_vals])[order]


def _shared_features(unit, feat, q, new_units):
    """For each of ``new_units``: whether another unit of the trial has the
    same set of (non-bias) features."""
    bias = feat == q - 1
    pairs = np.unique(unit[~bias].astype(np.int64) * q + feat[~bias])  # by unit, then feature
    u = pairs // q
    f = pairs - u * q
    if u.size == 0:
        return np.zeros(new_units.size, dtype=bool)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(u)) + 1, [u.size]])
    by_set = {}
    for a, b in zip(edges[:-1], edges[1:]):
        by_set.setdefault(f[a:b].tobytes(), []).append(u[a])
    shared = [x for units in by_set.values() if len(units) > 1 for x in units]
    return np.isin(new_units, np.asarray(shared, dtype=np.int64))


def _exact(ctl, layer):
    """Whether every iterate is an exact ReLU network (sequential fused gates
    updated at every step)."""
    return ctl.sequential and layer.kind == "fused" and ctl.gate_update_period == 1


# Fractions of a Gauss-Newton direction tried (1, 1/2, ..., 1/32).
GN_TRIALS = 6


def gauss_newton(prob, point, n_steps, tol=0.0, ctl=None, retry=True):
    """Damped Gauss-Newton steps on the support of a ReLU network (sequential
    gates): the refit at the current activation patterns gives a direction,
    and a fraction of it is taken whose network, its gates updated, lowers
    the loss.  Every point returned is an exact ReLU network.  Stops after
    a step that lowers the loss by at most ``tol`` (relative), or before one
    whose quadratic model predicts no more than that.

    Fused supports within ``system_ok`` take the step ``-M^{-1} g``: ``g`` the
    exact gradient at the point, ``M`` the support's SupportSystem, kept in
    ``ctl`` and reused while the support stays (its patterns may have moved
    since it was formed); when no fraction of a step from an older system
    lowers the loss, the system is formed again at the current point and
    the step retried once; when no fraction of a step from a fresh system
    does, the truncated step (``SupportSystem.solve`` with
    ``TRUNCATED_DROP_FLOOR``, squared loss) is tried, unless ``retry`` is
    False (the final polish).  Without ``ctl`` the system is formed afresh
    at every step.  Other supports refit
    at the current patterns
    (``refine``) for the direction.  With many rows the fractions are first
    tried on a sample of them (``Problem.sample``): the rows' loss is then
    evaluated at the first fraction the sample accepts, and the search goes
    on from there only if it is not lower; the step fails if the sample
    accepts none.
    """
    use_system = point.layer.kind == "fused" and point.layer.system_ok(prob)
    sample = prob.sample() if use_system else None
    fresh = True
    for _ in range(n_steps):
        layer = point.layer
        if use_system:
            system = None if ctl is None else ctl.system
            fresh = system is None or not system.matches(prob, layer)
            if fresh:
                system = layer.support_system(prob, point, system)
                # An update of an earlier support's system is not fresh.
                fresh = not system.updated
                if ctl is not None:
                    ctl.system = system
            g = layer.step_gradient(prob, prob.residual(point))
            dv = system.solve(g)
            if dv is None or not np.any(dv):
                break
            if system.model_decrease(g, dv) <= tol * abs(point.L):
                break
        else:
            target = layer.refine(prob, point, 5 if prob.loss.is_quadratic else 1)
            if target is point or not target.layer.same_support(layer):
                break
            dv = target.layer.val - layer.val

        new = _damped(prob, sample, point, dv)
        if new is None and use_system and fresh and retry and ctl is not None and system.rows is prob.blocks:
            # No fraction of the step through a fresh system: the
            # truncated step (squared loss), without the nearly singular
            # directions of a collinear support, where they make up most
            # of the step.  Not at a converged refit, whose steps fail by
            # rounding, nor in the final polish or on a sketch of many
            # rows, where retries gained little at the cost of passes over
            # all the rows (the paper's cell: polish 0.2 -> 3.9 s for the
            # same network; friedman1 at n=1e5: 1.8x the fit time).
            short = system.solve(g, drop=TRUNCATED_DROP_FLOOR)
            if short is not None and np.linalg.norm(short - dv) > 0.5 * np.linalg.norm(dv) \
                    and system.model_decrease(g, short) > tol * abs(point.L):
                new = _damped(prob, sample, point, short)
        if new is None:
            if use_system and not fresh and ctl is not None:
                ctl.system = None  # formed again at this point for the next step
                continue
            break
        decrease = point.L - new.L
        point = new
        if decrease <= tol * abs(point.L):
            break
    return point


def _silent_entries(prob, layer):
    """On a minibatch: the weights of the units inactive on all of its rows
    (None if there are none, or off a minibatch).  Damped Gauss-Newton steps
    leave them:
    the minibatch holds nothing about them but the penalty, whose Newton
    step sets them to zero, and budget lost that way was not regained
    (make_friedman1, 2000 rows, 110 weights, ``batch_size=64``: 13 nonzero
    weights at the end)."""
    if not prob.minibatch or layer.kind != "fused" or layer.idx.size == 0:
        return None
    units = layer.units
    _, counts = prob.blocks.pattern_keys(units, layer.pattern_gates())
    if counts.all():
        return None
    return np.isin(layer.idx // (layer.q * layer.k), units[counts == 0])


def _damped(prob, sample, point, dv):
    """The first of the points ``point + t dv``, ``t`` = 1, 1/2, ...
    (``GN_TRIALS`` fractions), its gates updated, that lowers the loss; None
    if none does.  With a row ``sample`` the fractions are first tried on it
    and the rows' loss is evaluated from the first one it accepts (None if
    it accepts none).  Small
    networks on few rows evaluate every fraction in one call
    (``_trial_losses``); the point returned is the same."""
    layer = point.layer
    frozen = _silent_entries(prob, layer)
    if frozen is not None:
        dv = np.where(frozen, 0.0, dv)
        if not np.any(dv):
            return None

    def trial(t, on):
        # The support (hence every unit's sign) is unchanged: the trial is
        # evaluated only once its gates follow its weights.
        return sync_point(on, Point(layer.replace(layer.idx, layer.val + t * dv), point.b, None, np.nan),
                          merge=on is prob)

    t, h = 1.0, 0
    if sample is not None:
        # No fraction that the sample rejects is tried on all the rows: the
        # two agree closely (make_friedman1 at n=1e6: the relative changes
        # on 8192 rows and on all of them matched to 2 digits at every
        # fraction), and the smallest fraction tried on all the rows after
        # the sample rejected every other one almost never lowered the loss:
        # a forward pass over all the rows for nothing at most failed steps
        # (make_friedman1, n=1e6, s=210: a default fit 18.1 -> 8.5 s).
        L_sample = sample.evaluate(layer, point.b).L
        while not lower(trial(t, sample).L, L_sample):
            t, h = 0.5 * t, h + 1
            if h == GN_TRIALS:
                return None
    else:
        losses = _trial_losses(prob, point, dv, [0.5 ** h for h in range(GN_TRIALS)])
        if losses is not None:
            for h, (L, exact) in enumerate(losses):
                # A trial whose units merge is decided as it becomes, unless
                # its loss is clearly not lower.
                if lower(L, point.L) or not (exact or L > point.L + 1e-9 * abs(point.L)):
                    cand = trial(0.5 ** h, prob)
                    if lower(cand.L, point.L):
                        return cand
            return None
    while h < GN_TRIALS:
        cand = trial(t, prob)
        if lower(cand.L, point.L):
            return cand
        t, h = 0.5 * t, h + 1
    return None


# --------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------
# Damped steps evaluate all their fractions in one kernel call when a trial's
# forward pass (about n q m multiply-adds) costs less than the Python around a
# gate update (a few hundred microseconds): below this many.
TRIAL_BATCH_WORK = 1 << 20


def _trial_losses(prob, point, dv, ts):
    """The losses of the synced networks ``point + t dv`` (one output, the
    support unchanged) for all ``ts`` from one call of the forward kernel,
    as ``(loss, exact)``: exact, the loss ``sync_point`` gives it bit for bit;
    for a trial whose units merge (``sync_point`` then sums or drops them),
    the merged weights' loss at the unmerged outputs, equal up to rounding;
    an iterator, each loss computed when it is reached.  None when the
    network is not small, not dense enough for the kernel's matrix product,
    or the blocks cannot batch."""
    layer, blocks = point.layer, prob.blocks
    if layer.kind != "fused" or layer.k != 1 or not hasattr(blocks, "forward_exact_trials"):
        return None
    active, pos, feat, _ = _decode(layer)
    m, q = active.size, layer.q
    if m == 0 or blocks.n * q * m > TRIAL_BATCH_WORK or q * m > 8 * layer.idx.size:
        return None
    old_pos, had = sorted_lookup(layer.gates.units, active)
    if not had.all() or layer.signs.size != layer.gates.units.size:
        return None
    signs = layer.signs[old_pos]
    vals = layer.val[None, :] + np.asarray(ts)[:, None] * dv[None, :]
    if not np.all(vals != 0.0):
        return None  # a weight that vanishes changes the support
    gates = np.zeros((len(ts), q, m))
    gates[:, feat, pos] = vals * signs[pos]
    outputs = blocks.forward_exact_trials(gates, signs)

    def losses():
        # Lazily, in order: the caller stops at the first fraction it
        # accepts (most steps accept the first or second of six).
        for h, (F, keys, counts) in enumerate(outputs):
            dead = counts == 0
            order, starts = _merge_groups(keys, signs)
            if dead.any() or not starts.all():
                # The merged network has these outputs on the rows of positive
                # weight up to rounding, and the merged weights' penalty.
                merged = layer.replace(*_merged_entries(active, pos, feat, np.zeros_like(pos), vals[h], dead,
                                                        order, starts, q, 1))
                yield prob.evaluate(merged, point.b, F).L, False
            else:
                yield prob.evaluate(layer.replace(layer.idx, vals[h]), point.b, F).L, True

    return losses()


class ToleranceRule:
    """The ``tol`` stopping rule.

    Relative (the regressor): one iteration whose loss changes by less than
    ``tol`` times the loss (or ``floor``, if larger) ends the fit.  Absolute
    (the classifiers, as in MLPClassifier): ``patience`` consecutive
    iterations whose loss changes by less than ``tol`` (the log loss of a
    perfectly fitted training set keeps shrinking by relative steps, and
    single small steps occur on the way).
    """

    def __init__(self, tol, absolute, patience, floor=0.0):
        self.tol, self.absolute, self.patience, self.floor = tol, absolute, patience, floor
        self.count = 0

    def update(self, L_prev, L):
        if self.tol <= 0:
            return False
        scale = 1.0 if self.absolute else max(abs(L_prev), self.floor, np.finfo(float).tiny)
        if abs(L_prev - L) > self.tol * scale:
            self.count = 0
            return False
        self.count += 1
        return self.count >= (self.patience if self.absolute else 1)


class Monitor:
    """Early stopping: the loss on held-out rows (``prob``, penalty left
    out) after each iteration, the best network met, and the ``tol`` /
    ``patience`` rule of MLPRegressor on it (relative to the loss, or
    absolute)."""

    def __init__(self, prob, tol, absolute, patience):
        self.prob, self.tol, self.absolute, self.patience = prob, tol, absolute, patience
        self.restart()

    def restart(self):
        self.curve, self.best, self.best_L, self.count = [], None, np.inf, 0

    def saved(self):
        """What ``restart`` resets, for ``restore``."""
        return dict(curve=self.curve, best=self.best, best_L=self.best_L, count=self.count)

    def restore(self, saved):
        self.curve, self.best, self.best_L, self.count = (saved[key] for key in ("curve", "best", "best_L", "count"))

    def loss(self, layer, b):
        blocks = self.prob.blocks
        F = blocks.forward(layer.spec()) if layer.nnz else blocks.zeros(self.prob.k)
        return float(blocks.loss(self.prob.kind, F, b))

    def update(self, point):
        """Record ``point``; whether the patience has run out."""
        L = self.loss(point.layer, point.b)
        self.curve.append(L)
        scale = 1.0 if self.absolute else abs(self.best_L) if np.isfinite(self.best_L) else 0.0
        if L < self.best_L - self.tol * scale:
            self.count = 0
        else:
            self.count += 1
        if L < self.best_L or self.best is None:
            self.best_L, self.best = L, point.kept()
        return self.count >= self.patience

    def choose(self, point):
        """``point`` or the best point met, whichever has the lower held-out loss."""
        L = self.loss(point.layer, point.b)
        if self.best is not None and self.best_L <= L:
            return self.best
        self.best_L = min(self.best_L, L)
        return point


@dataclass
class Stopping:
    max_iter: int = 100
    tol: float = 1e-4
    n_iter_no_change: int = 5
    absolute_tol: bool = False
    verbose: int = 0
    print_fn: object = field(default=print)
    # Whether a fit that stops with budget free grows into it (_grow_units):
    # not in the fused stage that starts a shared fit, whose network is
    # factored and fitted on.
    grow: bool = True


def _report(stop, it, point, mu):
    if stop.verbose:
        layer = point.layer
        units = layer.units.size
        stop.print_fn(f"Iteration {it}, loss = {point.L:.8g}, nonzeros = {layer.nnz}, "
                      f"active neurons = {units}, step = {mu:.3g}")


# alpha="auto": the grid searched, the iterations before the choice, and the
# largest support solve it may cost (n x S^2 multiply-adds, S the support).
ALPHA_GRID = np.logspace(-4, 4, 33)
ALPHA_WARMUP = 10
# Choices per fit: after the warm-up, and again when a stopping rule ends the
# fit (an unconverged support can look noisy: a planted network of width
# 1000 with 500 weights got alpha=100 and 30 dB from the first choice alone,
# 3.2 and 47 dB with the second).
ALPHA_CHOICES = 2
# The later choice moves alpha only when the best score is below the current
# alpha's by more than this share: a neighbouring alpha a hair better
# restarted the fit for nothing (diabetes, 3 folds: two of three fits ran 8
# more iterations to move one grid step, 178 -> 316 and 100 -> 178, for ALO
# gains of 0.5% and 0.3%; 3-fold R^2 0.502 with those moves, 0.505 without,
# fit 0.45 -> 0.37 s a fold).
ALPHA_SWITCH_GAIN = 0.01
ALPHA_MAX_COST = 2e10
ALPHA_MAX_SUPPORT = 4000


class AlphaSelection:
    """``alpha="auto"``: the L2 strength chosen on the data during the fit.

    The fit starts at ``alpha`` (1.0).  After ``warmup`` iterations (or when
    a stopping rule ends the fit before), every ``alpha`` of ``grid`` is
    scored by the approximate leave-one-out loss of the penalised refit on
    the current support at its activation patterns (``FusedLayer.alo``),
    and the fit continues with the best one (stopping rules reset).  The
    choice is made again when a stopping rule next ends the fit (at most
    ``ALPHA_CHOICES`` choices, a later one moving alpha only for a gain
    above ``ALPHA_SWITCH_GAIN``); the fit goes on while it changes alpha.  Skipped (``alpha`` kept) when the support's solve
    would cost more than ``max_cost``: with that many rows per weight the
    penalty barely matters; and when the loss is below ``min_loss`` (a
    classifier's path sets it: see ``PATH_ALO_MIN_LOSS``).
    """

    def __init__(self, alpha=1.0, grid=ALPHA_GRID, warmup=None, max_cost=ALPHA_MAX_COST,
                 max_support=ALPHA_MAX_SUPPORT, min_loss=0.0):
        warmup = ALPHA_WARMUP if warmup is None else warmup
        self.alpha, self.grid, self.warmup = float(alpha), np.asarray(grid, dtype=np.float64), int(warmup)
        self.min_loss = float(min_loss)
        self.max_cost, self.max_support = float(max_cost), int(max_support)
        self.done = False
        self.n_choices = 0
        self.max_choices = ALPHA_CHOICES
        self.scores = None
        self.seconds = 0.0

    def affordable(self, prob, layer):
        S = layer.nnz
        return layer.kind == "fused" and 0 < S <= self.max_support and prob.blocks.n * S * S <= self.max_cost

    def choose(self, prob, point):
        """The Problem to continue on, or None to continue on ``prob``."""
        self.n_choices += 1
        self.done = self.n_choices >= self.max_choices
        if not self.affordable(prob, point.layer) or point.L < self.min_loss:
            return None
        t0 = time.perf_counter()
        scores = point.layer.alo(prob, point, self.grid)
        self.seconds += time.perf_counter() - t0
        if scores is None or not np.any(np.isfinite(scores)):
            return None
        self.scores = scores
        finite = np.where(np.isfinite(scores), scores, np.inf)
        i = int(np.argmin(finite))
        best = float(self.grid[i])
        if best == self.alpha:
            return None
        if self.n_choices > 1:
            now = np.flatnonzero(self.grid == self.alpha)
            if now.size and finite[now[0]] - finite[i] <= ALPHA_SWITCH_GAIN * abs(finite[i]):
                return None
        self.alpha = best
        return prob.with_alpha(best)


def interpolation_floor(prob, s, b0=None):
    """The loss of the constant model (no weights, intercept fitted) when
    the budget ``s`` is at least the number of samples (``row_count``: a
    row of weight w >= 1 counts as its w repeats, one of weight below one as
    one row), else 0.

    With that many weights the network can fit the rows exactly: the loss
    then keeps shrinking by small relative steps long after the fit has
    explained the data (2000 rows, 1000 features, 10010 weights: training
    R^2 1.0 and test R^2 0.980 after one iteration, 0.9815 after the 100 of
    ``max_iter``, 130 s), so the ``tol`` rule measures an iteration's change
    against this loss instead, as MLPRegressor's absolute ``tol`` on
    standardised targets.  The Gauss-Newton refits and the polish keep their
    relative rules: loosened too, they left a weighted fit and the fit on
    repeated rows 1e-6 apart (scikit-learn's sample-weight check, Haswell and
    Sandybridge kernels)."""
    if s < prob.blocks.row_count:
        return 0.0
    return abs(prob.constant_loss(b0))


def fit_full(prob, layer, b0, ctl, stop, monitor=None, select=None, final=True):
    """IHT steps on all the data until a stopping rule, then the polish.

    ``monitor``: early stopping on held-out rows (see Monitor); the best
    network on them is returned.  ``select``: an AlphaSelection (the penalty
    chosen during the fit); the result's ``problem`` has the final one.
    ``final=False``: a stage that another continues, not polished."""
    point = prob.evaluate(layer.truncate(ctl.s), b0)
    L_init = point.L
    # The constant model's loss depends on neither the weights nor alpha:
    # formed once, and only for the relative rule (the regressor's).
    floor = 0.0 if stop.absolute_tol else interpolation_floor(prob, ctl.s, b0)
    eps = np.finfo(prob.blocks.dtype).eps
    loss_curve = []
    best_synced = None
    best_L, no_gain = np.inf, 0
    tol_rule = ToleranceRule(stop.tol, stop.absolute_tol, stop.n_iter_no_change, floor)
    stable = 0
    converged, reason = False, "max_iter"
    it = 0
    for it in range(1, stop.max_iter + 1):
        L_prev = point.L
        res = iht_step(prob, point, ctl)
        if res.zero_gradient:
            loss_curve.append(point.L)
            converged, reason = True, "zero gradient"
            break
        point = res.point
        if res.synced is not None:
            if best_synced is None or lower(res.synced.L, best_synced.L):
                best_synced = res.synced.kept()
            # Gate updates make the path non-monotone: count the updates that
            # do not improve the best exact ReLU network by more than tol.
            if best_synced.L < best_L - stop.tol * (1.0 if stop.absolute_tol else abs(best_L)):
                best_L, no_gain = best_synced.L, 0
            else:
                no_gain += 1
        loss_curve.append(point.L)
        stable = stable + 1 if res.same_support else 0
        _report(stop, it, point, res.mu)
        if not np.isfinite(point.L):
            reason = "non-finite loss"
            break
        reason = _stop_reason(stop, point, L_init, eps, tol_rule, L_prev, monitor, ctl, res, stable, no_gain)
        warmed = select is not None and select.n_choices == 0 and it >= min(select.warmup, stop.max_iter)
        if select is not None and not select.done and (reason is not None or warmed):
            new_prob = select.choose(prob, point)
            if new_prob is not None:
                # The objective changed: its value at the current network,
                # and the stopping rules and step size start afresh.
                prob = new_prob
                point = prob.evaluate(point.layer, point.b)
                L_init = point.L
                best_synced, best_L, no_gain = None, np.inf, 0
                tol_rule = ToleranceRule(stop.tol, stop.absolute_tol, stop.n_iter_no_change, floor)
                stable, ctl.mu_prev, reason = 0, None, None
                if stop.verbose:
                    stop.print_fn(f"alpha = {select.alpha:.3g} (approximate leave-one-out), loss = {point.L:.8g}")
        if final and (reason in SWAP_REASONS or (reason is None and it == stop.max_iter)):
            # (No swap at the last iteration: a swapped support is refilled by
            # the iterations that follow; unscaled iris ended 79 of 80 weights.
            # A fit that reaches max_iter with budget free grows into it as a
            # stopped one does: a planted network of width 1000 and 500
            # weights ended at max_iter with 499.)
            swapped = _swap_unit(prob, point, ctl) if it < stop.max_iter else None
            if swapped is not None:
                # A new support: the stopping rules start afresh.
                point, reason, stable = swapped, None, 0
                tol_rule = ToleranceRule(stop.tol, stop.absolute_tol, stop.n_iter_no_change, floor)
            else:
                # The fit stops; the polish refits the grown support.  Going
                # on from it (the rules reset) cost breast_cancer's 3 folds
                # 30% more time (0.53 -> 0.69 s a fold) for the same accuracy.
                point = (_grow_units(prob, point, ctl) if stop.grow else None) or point
        if reason is not None:
            converged = reason != "max_iter"
            break
        reason = "max_iter"
    t_polish = time.perf_counter()
    if final and np.isfinite(point.L):
        point = polish(prob, point, ctl, best_synced)
    if monitor is not None:
        point = monitor.choose(point)
    ctl.system = None  # it refers to the rows: not kept beyond the fit
    return IHTResult(point.layer, point.b, loss_curve, it, converged, reason, point.L,
                     time.perf_counter() - t_polish, prob, 0.0 if select is None else select.seconds)


# Fits on many rows start on samples of them: PROGRESSIVE_START rows (or
# PROGRESSIVE_ROWS_PER_WEIGHT per weight of the budget, rounded up to a power
# of two, if more), then PROGRESSIVE_FACTOR times more at each stage while
# at most half of the rows, at most PROGRESSIVE_MAX_ROWS, and at most an
# eighth of X or PROGRESSIVE_COPY_BYTES, whichever is more (a stage copies
# its rows), are drawn, each stage started from the previous one's network,
# the last on all the rows.  Most iterations, where the support
# moves, then run on few rows; those on all the rows refine a support that
# is nearly settled.
PROGRESSIVE_START = 8192
PROGRESSIVE_ROWS_PER_WEIGHT = 16
PROGRESSIVE_FACTOR = 4
PROGRESSIVE_MAX_ROWS = 1 << 18
PROGRESSIVE_COPY_BYTES = 32 << 20


def progressive_sizes(n, s, max_rows=PROGRESSIVE_MAX_ROWS):
    """The sample sizes of the stages before the fit on all ``n`` rows (a
    budget of ``s`` weights; ``max_rows``: the most rows a stage may copy)."""
    m = max(PROGRESSIVE_START, PROGRESSIVE_ROWS_PER_WEIGHT * int(s))
    m = 1 << int(np.ceil(np.log2(m)))
    sizes = []
    while 2 * m <= n and m <= min(max_rows, PROGRESSIVE_MAX_ROWS):
        sizes.append(m)
        m *= PROGRESSIVE_FACTOR
    return sizes


def fit_progressive(prob, layer, b0, ctl, stop, monitor=None, select=None):
    """``fit_full`` on all the rows, started on growing samples of them when
    there are many (see PROGRESSIVE_START).  Each stage is a whole fit (its
    stopping rules, its polish); ``select`` chooses alpha in the first
    stage, which the later ones keep; ``monitor`` (early stopping) watches
    the last stage.  The result counts the iterations of every stage and
    its loss curve strings theirs together (each on its own rows)."""
    blocks = prob.blocks
    # A stage copies its rows: at most an eighth of X, or PROGRESSIVE_COPY_BYTES.
    row_bytes = max(blocks.row_bytes(), 1e-300) if hasattr(blocks, "row_bytes") else np.inf
    copy_rows = max(blocks.n / 8, PROGRESSIVE_COPY_BYTES / row_bytes)
    sizes = progressive_sizes(blocks.n, ctl.s, copy_rows)
    n_iter, polish_s, select_s, curve = 0, 0.0, 0.0, []
    for m in sizes:
        rows = prob.blocks.sample(m)
        if rows is None:
            break
        sub = Problem(rows, prob.loss, prob.fit_intercept, prob.alpha / rows.weight_total, prob.alpha)
        res = fit_full(sub, layer, b0, ctl, stop, None, select)
        if select is not None:
            prob = prob.with_alpha(res.problem.alpha)
            select = None
        layer, b0 = res.layer, res.intercept
        n_iter, polish_s, curve = n_iter + res.n_iter, polish_s + res.polish_seconds, curve + res.loss_curve
        select_s += res.select_seconds
        # The stage's rows (a copy) and their caches go before the next stage.
        del rows, sub, res
    result = fit_full(prob, layer, b0, ctl, stop, monitor, select)
    result.n_iter += n_iter
    result.polish_seconds += polish_s
    result.select_seconds += select_s
    result.loss_curve = curve + result.loss_curve
    return result


# A factored fit from a fused start (the shared coupling of a regressor's
# outputs) first runs stages at WIDE_FACTORS times the budget, each at most
# WIDE_ITER iterations, then continues at the budget: thresholding picks
# among the weights of more units, and the weaker ones go step by step, as
# in pruning a wider network.  If the wide network cut to the budget fits
# worse than the start did, the last stage starts from the start (13 rows
# of linnerud, 3 targets: a wide network that fits them with cancelling
# weights can cut to far worse; without this, one of 24 fits ended at a
# loss of 1.51, above the constant model's 1.5, and 21.4 with a larger fused
# stage tried before).  Planted networks with 10
# outputs (d=100, n=2000, the budget s + 10 x active units, Gauss-Newton
# refits), test PSNR started at the budget against these stages:
# - width 100, s=100 (random_state 0 / 1): 36.4 / 37.5 dB against 43.4 / 38.7;
# - width 10, s=100 (random_state 0 / 3 / 4): 31.7 / 33.9 / 35.4 against
#   33.3 / 46.0 / 41.2.
# One stage at twice the budget cut a small budget over redundant units:
# make_regression (500 x 10, 3 targets, budget 20, 4 seeds), training R^2
# 0.920-0.959 against 0.936-0.977 with three stages (0.913-0.978 started
# at the budget).
WIDE_FACTORS = (2.0, 1.5, 1.2)
WIDE_ITER = 15


def fit_wide_first(prob, layer, b0, ctl, stop, monitor=None):
    """``fit_full`` of a factored layer after first stages at WIDE_FACTORS
    times the budget (each at most WIDE_ITER iterations, not polished); the
    result counts every stage's iterations."""
    n_iter, curve = 0, []
    plain = prob.evaluate(layer.truncate(ctl.s), b0)
    for factor in WIDE_FACTORS:
        wide = Control(min(int(round(factor * ctl.s)), layer.p * (layer.q + layer.k)), ctl.n_refine,
                       ctl.sequential, ctl.gate_update_period, refine_tol=ctl.refine_tol,
                       polish_tol=ctl.polish_tol)
        stage = fit_full(prob, layer, b0, wide, dataclasses.replace(stop, max_iter=min(WIDE_ITER, stop.max_iter)),
                         final=False)
        layer, b0 = stage.layer, stage.intercept
        n_iter, curve = n_iter + stage.n_iter, curve + stage.loss_curve
    if n_iter and not lower(prob.evaluate(layer.truncate(ctl.s), b0).L, plain.L):
        # Cut to the budget, the wider network fits worse than the start did.
        layer, b0 = plain.layer, plain.b
    result = fit_full(prob, layer, b0, ctl, stop, monitor)
    result.n_iter += n_iter
    result.loss_curve = curve + result.loss_curve
    return result


def _stop_reason(stop, point, L_init, eps, tol_rule, L_prev, monitor, ctl, res, stable, no_gain):
    """The stopping rule that ends the fit after this iteration, or None."""
    if point.L <= L_init * (100 * eps) ** 2:
        return "loss at machine precision"
    if tol_rule.update(L_prev, point.L):
        return "tol"
    watched = None if monitor is None else _monitored(ctl, point, res)
    if watched is not None and monitor.update(watched):
        return "validation loss"
    if stable >= stop.n_iter_no_change:
        return "stable support"
    if stop.absolute_tol and no_gain >= stop.n_iter_no_change:
        return "no improvement after gate updates"
    if not res.accepted and point.L == L_prev and res.synced is None:
        return "no decrease"  # the next step would be the same
    return None


def _monitored(ctl, point, res):
    """The network of a step that early stopping may restore: one the
    estimator can export (with sequential gates, right after a gate update)."""
    if ctl.sequential and point.layer.kind == "fused" and not _exact(ctl, point.layer):
        return res.synced
    return point


def polish(prob, point, ctl, best=None):
    """Final fit on the final support.

    Fused weights with fixed gates, factored weights: refinement to
    convergence.  Sequential fused gates: alternate gate updates and refits
    until the activation patterns settle, and end on a gate update so that
    the network is exactly ``sum_j a_j relu(x . a_j w_j)``; the best such
    point met (here or during the iterations: ``best``) is returned.
    """
    n_steps = max(50, 4 * ctl.n_refine) if prob.loss.is_quadratic else 4 * ctl.n_refine
    layer = point.layer
    if _exact(ctl, layer):
        # Each Gauss-Newton step re-syncs the gates (a full pass over the
        # rows): stop when a step gains less than ctl.polish_tol of the loss.
        # The classifiers' losses keep the support's matrix from step to
        # step, as the iterations do (formed again when no fraction of a
        # step through it lowers the loss; no truncated retry, see
        # gauss_newton): their curvature weights move at every step, so a
        # fresh matrix is no exact Newton step either, and forming one at
        # every step took most of a large fit's polish (the 54000-row mixed
        # pipeline, 3 folds: polish 5.6 -> 2.3 s on fold 0, fits 30.1 -> 25.3
        # s a fold, accuracy 0.8668 -> 0.8662).  The squared loss forms it
        # afresh: on a settled support that is the exact refit, and on the
        # collinear support of a second hidden layer a kept one moved along
        # its near-null directions (two-layer diabetes, one fold's test R^2
        # 0.55 -> 0.40).
        holder = None if prob.loss.is_quadratic else Control(ctl.s)
        point = gauss_newton(prob, point, n_steps, tol=ctl.polish_tol, ctl=holder, retry=False)
        return point if best is None or not lower(best.L, point.L) else best
    if not (ctl.sequential and layer.kind == "fused"):
        return layer.refine(prob, point, max(n_steps, 1), tol=1e-12)
    for _ in range(6):
        before = _pattern_state(prob, point.layer)
        point = sync_point(prob, point)
        if best is None or lower(point.L, best.L):
            best = point.kept()
        if _pattern_state(prob, point.layer) == before:
            break
        point = point.layer.refine(prob, point, n_steps, tol=1e-12)
    return best


def _pattern_state(prob, layer):
    """The active units and the keys of their activation patterns."""
    keys, _ = prob.blocks.pattern_keys(layer.units, layer.pattern_gates())
    return layer.units.tobytes(), keys.tobytes()


def partial_step(prob, layer, b0, ctl):
    """One stochastic IHT step on the blocks of ``prob`` (a minibatch)."""
    point = prob.evaluate(layer.truncate(ctl.s), b0)
    res = iht_step(prob, point, ctl)
    ctl.system = None  # formed on these rows only
    return res.point, res


def fit_minibatch(make_problem, batches, layer, b0, ctl, stop, epochs_rng, final_problem=None, monitor=None):
    """Epochs of stochastic IHT steps over minibatches.

    ``batches(rng)`` yields the row selections of one epoch (shuffled with
    ``epochs_rng``); ``make_problem(rows)`` builds the Problem of a minibatch.
    The epoch loss is the weighted mean of the minibatch losses after their
    steps; the stopping rules act on it.  ``final_problem``: all the data,
    on which the epochs' network is then fitted by full-batch iterations
    (``fit_full``: its stopping rules and polish, as the last stage of a
    progressive fit), which refill the budget freed once the network is
    seen on all the rows (units dead or of one pattern there are dropped or
    merged).  The result counts the epochs and those iterations.
    """
    loss_curve = []
    tol_rule = ToleranceRule(stop.tol, stop.absolute_tol, stop.n_iter_no_change)
    converged, reason = False, "max_iter"
    stable = 0
    b = b0
    it = 0
    point = None
    L_prev = np.inf
    for it in range(1, stop.max_iter + 1):
        total, weight = 0.0, 0.0
        support_before = layer
        mu = 0.0
        for rows in batches(epochs_rng):
            prob = make_problem(rows)
            point, res = partial_step(prob, layer, b, ctl)
            layer, b, mu = point.layer, point.b, res.mu
            total += point.L * prob.blocks.weight_total
            weight += prob.blocks.weight_total
        L = total / weight
        loss_curve.append(L)
        _report(stop, it, Point(layer, b, None, L), mu)
        stable = stable + 1 if layer.same_support(support_before) else 0
        if not np.isfinite(L):
            reason = "non-finite loss"
            break
        if it > 1 and tol_rule.update(L_prev, L):
            converged, reason = True, "tol"
            break
        if monitor is not None and (not ctl.sequential or _exact(ctl, layer)):
            if monitor.update(Point(layer, b, None, L)):
                converged, reason = True, "validation loss"
                break
        if stable >= stop.n_iter_no_change:
            converged, reason = True, "stable support"
            break
        L_prev = L
    ctl.system = None
    if final_problem is not None and np.isfinite(L):
        # The step size of the minibatches is no guide on all the rows.
        ctl.mu_prev = None
        if monitor is not None:
            monitor.restart()
        result = fit_full(final_problem, layer, b, ctl, stop, monitor)
        result.n_iter += it
        result.loss_curve = loss_curve + result.loss_curve
        return result
    t_polish = time.perf_counter()
    if final_problem is not None:
        point = final_problem.evaluate(layer, b)
        if monitor is not None:
            point = monitor.choose(point)
        layer, b, L = point.layer, point.b, point.L
    return IHTResult(layer, b, loss_curve, it, converged, reason, L, time.perf_counter() - t_polish)


def blocks_for(X, has_bias, Y, sample_weight, cache_bytes=None):
    """Row blocks of a fit (``cache_bytes`` None: the default pattern cache)."""
    if cache_bytes is None:
        return RowBlocks(X, has_bias, Y, sample_weight)
    return RowBlocks(X, has_bias, Y, sample_weight, cache_bytes=cache_bytes)
