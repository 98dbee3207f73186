"""Shared estimator code: parameters, validation, threads, fitted attributes.

Nothing here knows numba: the numeric work goes through ``_blocks`` (the row
blocks: the data and every sum over rows), ``_layers`` (the parametrisations)
and ``_iht`` (the IHT step and its drivers).
"""

import dataclasses
import functools
import numbers
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._blocks import TILE, RowBlocks, sample_count
from ._budget import counted_name, counted_nonzeros, counted_size, counts_output_weights, resolve_budget
from ._export import path_importances
from ._gates import Gates
from ._iht import (ALPHA_GRID, POLISH_TOL, AlphaSelection, Control, IHTResult, Monitor, Problem, Stopping,
                   fit_full, fit_minibatch, fit_progressive, fit_wide_first, lower, partial_step)
from ._layers import FusedLayer, factor_fused


@functools.cache
def _blas_controller():
    """One threadpoolctl controller per process: building one scans the
    loaded libraries (about 2 ms), too slow to repeat on every predict."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def thread_limits(n_jobs, n_rows=None):
    """Use ``n_jobs`` threads for numba, one thread for BLAS, restored on exit.

    The heavy products run inside numba's parallel kernels, each thread
    calling BLAS on its own tile, so BLAS itself is limited to one thread
    while numba gets the ``n_jobs`` threads: the cores are never
    oversubscribed, and an outer process pool (e.g.
    ``GridSearchCV(n_jobs=...)``) can pass ``n_jobs=1``.  Results do not
    depend on ``n_jobs``: the row blocks fix how every sum is split.
    ``n_rows`` at most one tile (a predict on a few rows): the kernels run
    serially and nothing is switched.
    """
    if n_rows is not None and n_rows <= TILE:
        yield 1
        return
    import numba

    n_max = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        n = n_max
    elif n_jobs < 0:
        n = max(1, n_max + 1 + n_jobs)
    else:
        n = min(int(n_jobs), n_max)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)  # per thread in numba
    try:
        with _one_blas_thread():
            yield n
    finally:
        numba.set_num_threads(previous)


# BLAS's thread count is one setting for the whole process: fits running in
# several threads at once (joblib's threading backend, dask's threaded
# scheduler) share one limit, set by the first to start and restored when
# the last ends.  A limit of each fit's own, restored at its end, gave the
# other fits two BLAS threads partway through theirs, and other rounding
# (digits, 4-fold cross_val_score in two threads: mean accuracy 0.9449 once
# against 0.9466 run in sequence).  Recent OpenBLAS and MKL also keep a
# count per thread, which the process-wide one does not reach in threads
# other than the main one (OpenBLAS 0.3.30: a fit in a worker thread ran
# its BLAS calls on two threads, and ended on other weights than the same
# fit in the main thread); it is set too, where the library has it.
_BLAS_LOCK = threading.Lock()
_BLAS_HOLD = {"users": 0, "limiter": None}
_LOCAL_SETTERS = ("openblas_set_num_threads_local", "MKL_Set_Num_Threads_Local")


@functools.cache
def _local_blas_setters():
    """The per-thread thread-count setters of the loaded BLAS libraries."""
    import ctypes

    setters = []
    for lib in _blas_controller().select(user_api="blas").lib_controllers:
        dynlib = getattr(lib, "dynlib", None)
        for name in _LOCAL_SETTERS:
            fn = getattr(dynlib, name, None) if dynlib is not None else None
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                setters.append(fn)
                break
    return tuple(setters)


@contextmanager
def _one_blas_thread():
    """One BLAS thread for the calls of this thread (and the whole process)
    while the block runs."""
    with _BLAS_LOCK:
        if _BLAS_HOLD["users"] == 0:
            _BLAS_HOLD["limiter"] = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_HOLD["users"] += 1
    setters = _local_blas_setters()
    previous = [fn(1) for fn in setters]
    try:
        yield
    finally:
        for fn, n in zip(setters, previous):
            fn(n)
        with _BLAS_LOCK:
            _BLAS_HOLD["users"] -= 1
            if _BLAS_HOLD["users"] == 0:
                _BLAS_HOLD["limiter"].restore_original_limits()
                _BLAS_HOLD["limiter"] = None


# Iterations of the fused stage that starts a fit with the shared coupling:
# it only picks the units and their first weights for the shared stage, which
# refits them (digits, 10% budget: 5.7 s -> 4.3 s per fold, CV accuracy
# 0.975 -> 0.977; wine, iris, make_classification within a sample).
# A classifier's stage is half as long: each of its iterations re-solves the
# softmax intercept at every trial network and costs about five of the
# shared stage's.  5 folds at random_state 0-3, mean accuracy and fit time
# a fold: digits 0.9766 -> 0.9754 (seeds range 0.972-0.979), 2.71 -> 1.91 s;
# wine 0.9818 -> 0.9832, 0.57 -> 0.45 s; iris 0.9633 both, 0.49 -> 0.28 s.
# A regressor's keeps 10: its shared stage starts wide and ran longer from
# 5 (10 planted outputs, width 100, s=100: 24.6 -> 40.4 s).
SHARED_START_ITER = 10
SHARED_START_ITER_CLASSIFIER = 5


# Budgets after the first of a path (sparse_mlp_path, the CV estimators'
# fold paths) start from the previous network at its alpha_ and are fitted to
# a looser tolerance: the tol rule at PATH_TOL_FACTOR x tol, at most
# PATH_REFINE_STEPS Gauss-Newton steps per iteration, a final polish whose
# steps stop below PATH_POLISH_TOL of the loss (1e-10 alone).  The path ranks
# budgets; the chosen one is refitted alone.  Measured on one fold of
# make_friedman1 (1600 rows, 6 budgets from 6 to 220 weights): the path took
# 2.2 s with the standalone rules (the six standalone fits 2.7 s), 0.8 s with
# these, the mean fold scores within 0.006 of GridSearchCV's.  With the shared
# coupling (several classes or outputs) every budget starts from an empty
# network, as a standalone fit, under the same rules: continued from the
# previous budget's fused network the path was no faster than the standalone
# fits (digits, one fold of 8 budgets: 24.5 s against 24.3 s), started afresh
# it took 7.8 s with scores as good; continued from the previous factored
# network it took 2.1 s but stalled at 0.942 accuracy from 182 weights on
# (0.97-0.98 otherwise).
PATH_TOL_FACTOR = 10.0
PATH_REFINE_STEPS = 1
PATH_POLISH_TOL = 1e-6
# A classifier's path does not choose alpha="auto" on a network whose log
# loss is below this (one that separates its training rows): there the rows'
# curvature weights p (1 - p) vanish and the one-step leave-one-out
# approximation is misled (breast_cancer, a fold's path at 26 weights: the
# second choice, at a loss of 0.0015, gave alpha=1e4 and accuracy 0.63).
PATH_ALO_MIN_LOSS = 0.01


# alpha="auto" on a regressor's shared fit of several outputs: the fused
# stage that picks the units is fitted at the starting alpha (1.0) and again
# at SHARED_RESTART_ALPHA times it; both shared fits run at the alpha chosen on
# the first start's network, and the one of lower penalised training loss
# (held-out loss with early stopping) is kept.  The start's alpha is a guess
# that decides which units the shared stage refits, and the bilinear fit has
# local optima: planted networks (d=20, 6 units of 20 weights, 4 outputs,
# n=800, 16 seeds) were recovered exactly on 5 seeds from the start at 1.0
# alone and on 9 with both starts (median test PSNR 46.8 -> 83.4 dB); 10
# outputs, d=100, n=2000, m=10, s=100, seeds 0-7: median 38.4 -> 44.2 dB,
# lowest 29.4 -> 38.0.  It costs a second fit: the quick 10-output grid of
# benchmarks/phase.py took 14 s -> 33 s.  The start at 0.1 alone lost other
# seeds (the 4-output networks: 3 exact of 16, measured with other gates).
# None: one start.
SHARED_RESTART_ALPHA = 0.1


def _start_stage(stop, loss):
    """The stopping rules of the fused stage that starts a shared fit."""
    n_iter = SHARED_START_ITER if loss.is_quadratic else SHARED_START_ITER_CLASSIFIER
    return dataclasses.replace(stop, max_iter=min(stop.max_iter, n_iter), grow=False)


def _minibatches(n, batch_size):
    """Row selections of one epoch: a shuffled partition into batches."""

    def batches(rng):
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield np.sort(perm[start:start + batch_size])

    return batches


def _largest_fused(U, c, V, s, out_scale):
    """The hidden layer ``(U, c)`` of a stage (output weights ``V``) with
    only its ``s`` counted entries of largest fused magnitude
    (``|U_fj| ||V_j / out_scale||``: what each carries to the outputs, each
    output in units of its spread, so that an output of small values keeps
    its units)."""
    vn = np.sqrt(np.sum((V / out_scale) ** 2, axis=1))
    W = np.vstack([U, c[None, :]])
    mag = np.abs(W) * vn[None, :]
    nz = np.flatnonzero(W.ravel())
    if nz.size <= s:
        return U, c
    keep = nz[np.argsort(-mag.ravel()[nz], kind="stable")[:s]]
    out = np.zeros(W.size)
    out[keep] = W.ravel()[keep]
    out = out.reshape(W.shape)
    return out[:-1], out[-1]


def _target_spread(Y, sw):
    """The weighted standard deviation of the targets (over all outputs), 1
    for constant targets."""
    w = np.full(Y.shape[0], 1.0 / Y.shape[0]) if sw is None else sw / np.sum(sw)
    spread = float(np.sqrt(np.sum(w[:, None] * (Y - w @ Y) ** 2) / Y.shape[1]))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


def _balance_units(coefs, intercepts):
    """Rescale each hidden unit (in place, layer by layer) so that its
    incoming weights (with its bias) and its outgoing weights have equal
    norms: the same function (ReLU units are positively homogeneous) at
    the least L2 penalty over the two layers, where the joint phase starts
    (the stages scale each unit's feature to unit spread, which leaves the
    weights of a unit of small spread large on one side).  With several
    hidden layers, balancing one layer changes the norms of the next: the
    sweeps over the layers are repeated until they change nothing (a fixed
    point, whatever scale the layers started from)."""
    for _ in range(_BALANCE_SWEEPS):
        change = 0.0
        for layer in range(len(coefs) - 1):
            W_in, b_in, W_out = coefs[layer], intercepts[layer], coefs[layer + 1]
            if W_in.shape[1] == 0:
                continue
            n_in = np.sqrt(np.sum(W_in ** 2, axis=0) + b_in ** 2)
            n_out = np.sqrt(np.sum(W_out ** 2, axis=1))
            ok = (n_in > 0) & (n_out > 0)
            a = np.ones(n_in.size)
            a[ok] = np.sqrt(n_out[ok] / n_in[ok])
            W_in *= a
            b_in *= a
            W_out /= a[:, None]
            change = max(change, float(np.max(np.abs(np.log(a)))))
        if change <= 1e-12:
            break


# Sweeps of _balance_units at most (one suffices for one hidden layer).
_BALANCE_SWEEPS = 100


def _feature_spread(H, sample_weight=None):
    """Per column of ``H``: its (weighted) standard deviation over the rows;
    1 where that is not finite or is rounding on a constant column (below
    1e-8 of the column's root mean square: a unit active on every row with
    its bias alone, whose spread 1e-16 made a feature of 3.7e14 and an
    empty next stage, diabetes)."""
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w is not None and not np.sum(w) > 0:
        w = None
    mean = np.average(H, axis=0, weights=w)
    spread = np.sqrt(np.average((H - mean) ** 2, axis=0, weights=w))
    rms = np.sqrt(np.average(H ** 2, axis=0, weights=w))
    return np.where(np.isfinite(spread) & (spread > 1e-8 * rms), spread, 1.0)


def _auto_unit(total, count):
    """The unit of ``alpha="auto"``'s values (its start and grid): the mean
    weight of a sample, ``total / count`` for rows of total weight ``total``
    that stand for ``count`` samples (``RowBlocks.row_count``).  It is 1 for
    unit or integer weights (a weight counts as that many repeats), and for
    weights all below one it makes the choice invariant to their scale: the
    penalty per unit of weight (MLPRegressor's) would otherwise grow as the
    weights shrink (weights of 1e-12 chose a constant model)."""
    return float(total) / float(count) if count > 0 else 1.0


def _rows(A, rows):
    return None if A is None else A[rows]


# The parameters of several hidden layers, documented once for both IHT
# estimators (``with_deep_parameters`` puts them in a class docstring).
_DEEP_PARAMETERS = """    hidden_layer_sizes : tuple of int or int, default=(100,)
        Widths of the hidden layers.  With several, the network is trained
        layer by layer, as in the paper's code: stage ``l`` fits a
        one-hidden-layer network of width ``m_l`` and budget ``s_l`` (see
        ``budget_split``) on the ReLU features of the layers before it (stage
        1 on X) and keeps its hidden layer; the last stage's network ends the
        model.  Only the active units' features are formed.  Deep networks
        need sequential gates (with ``output_coupling="shared"`` for several
        fused outputs); ``partial_fit``, ``warm_start`` and the budget path
        support one hidden layer.  A joint IHT phase then refines all the
        layers together under the whole budget (``joint_max_iter``).

    budget_split : {"even", "proportional"} or array-like, default="even"
        How ``n_nonzero_coefs`` (for a fraction: of the network's counted
        size, see :ref:`budget`) is split across several hidden layers for
        the layer-by-layer stages: evenly (the paper's ``s/L``), in
        proportion to each layer's counted size, or by the given positive
        shares (one per hidden layer).  With several outputs, the output
        weights that an intermediate stage fits (and drops with it) do not
        take its hidden layer's share (unless that share is below twice the
        number of outputs).  The joint phase may then move budget
        between the layers.  Ignored for one hidden layer.

    joint_max_iter : int, default=20
        With several hidden layers: the most iterations of the joint phase
        that follows the layer-by-layer stages.  Each iteration takes a
        gradient step on every weight and bias of the active units (by
        backpropagation through the current activation patterns), keeps the
        ``n_nonzero_coefs`` largest counted parameters across all layers
        (hard thresholding; units that can no longer reach the output give
        their share to the next largest) and refits the weights on that
        support by L-BFGS.  It stops after ``n_iter_no_change`` iterations
        without a relative decrease of ``tol`` in the training objective
        (in the validation loss with ``early_stopping``, whose best network
        is kept).  Its L2 penalty is {mlp}'s: ``alpha`` on every
        layer's weights{joint_auto}0 keeps the layer-by-layer network.  On by
        default: it scored above the layer-by-layer network on the
        two-layer phase diagram, on image fitting and on the tabular sets
        of :ref:`deep` (on diabetes the regressor's check keeps the
        layer-by-layer network).  Ignored
        for one hidden layer.
"""


def with_deep_parameters(doc, mlp):
    """``doc`` with its ``{deep_parameters}`` line replaced by the documentation
    of ``hidden_layer_sizes``, ``budget_split`` and ``joint_max_iter``
    (``mlp``: the scikit-learn MLP whose penalty the joint phase uses)."""
    joint_auto = ".\n        " + _JOINT_AUTO if mlp == "MLPRegressor" else \
        ', the last stage\'s ``alpha_`` for ``alpha="auto"``.  '
    return doc.replace("    {deep_parameters}\n",
                       _DEEP_PARAMETERS.replace("{mlp}", mlp).replace("{joint_auto}", joint_auto))


# How the regressor's joint phase treats alpha="auto" (the squared loss).
_JOINT_AUTO = """The regressor fits ``y`` over its standard deviation
        there (the penalty on every layer does not scale with ``y`` as the
        loss does: a change of ``y``'s units changes only the fit's units).
        With ``alpha="auto"`` its penalty is the one of least approximate
        leave-one-out loss of the linearised refit at its start (as for one
        layer, over all the layers' parameters; ``alpha_`` holds it), and,
        without ``early_stopping``, a two-fold check runs the phase on each
        half of the rows and scores it on the other half against the
        layer-by-layer network: the phase runs only if it pays off there
        (diabetes, 3-fold: it overfitted, R^2 0.37 against 0.49; the check
        doubles the phase's cost).  """


class BaseSparseMLP(BaseEstimator):
    """Base class of the IHT-trained sparse one-hidden-layer networks."""

    _parameter_constraints = {
        "n_nonzero_coefs": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Real, 0, 1, closed="right"),
        ],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "gate_update": [StrOptions({"sequential", "fixed"})],
        "output_coupling": [StrOptions({"auto", "fused", "shared"})],
        "budget_split": [StrOptions({"even", "proportional"}), "array-like"],
        "joint_max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "gate_update_period": [Interval(numbers.Integral, 1, None, closed="left")],
        "gate_n_features": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "progressive": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "alpha": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_refine_steps": [Interval(numbers.Integral, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [
            None,
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Integral, None, -1, closed="right"),
        ],
    }

    def __init__(
        self,
        n_nonzero_coefs=0.1,
        *,
        hidden_layer_sizes=(100,),
        budget_split="even",
        joint_max_iter=20,
        gate_update="sequential",
        output_coupling="auto",
        gate_update_period=1,
        gate_n_features=None,
        batch_size=None,
        progressive=True,
        max_iter=100,
        tol=1e-4,
        alpha="auto",
        n_iter_no_change=5,
        early_stopping=False,
        validation_fraction=0.1,
        n_refine_steps=5,
        fit_intercept=True,
        warm_start=False,
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_nonzero_coefs = n_nonzero_coefs
        self.hidden_layer_sizes = hidden_layer_sizes
        self.gate_update = gate_update
        self.output_coupling = output_coupling
        self.budget_split = budget_split
        self.joint_max_iter = joint_max_iter
        self.gate_update_period = gate_update_period
        self.gate_n_features = gate_n_features
        self.batch_size = batch_size
        self.progressive = progressive
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.n_refine_steps = n_refine_steps
        self.fit_intercept = fit_intercept
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _hidden_sizes(self):
        """The widths of the hidden layers, as a list of ints."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        sizes = list(sizes)
        if not sizes or not all(isinstance(m, numbers.Integral) and m >= 1 for m in sizes):
            raise ValueError(
                f"hidden_layer_sizes must hold positive integers, got {self.hidden_layer_sizes!r}."
            )
        return [int(m) for m in sizes]

    def _n_hidden(self):
        """The width of the (single) hidden layer."""
        sizes = self._hidden_sizes()
        if len(sizes) != 1:
            raise ValueError(
                f"hidden_layer_sizes={self.hidden_layer_sizes!r}: this operation supports one hidden "
                "layer only (the budget path, partial_fit)."
            )
        return sizes[0]

    def _coupling(self, n_outputs):
        """"fused" or "shared" ("auto": shared for several outputs)."""
        if self.output_coupling == "auto":
            return "shared" if n_outputs > 1 else "fused"
        return self.output_coupling

    def _gate_mode(self, n_outputs, coupling="fused"):
        """"sequential" or "fixed" ("auto": sequential for one output and for
        the shared output coupling)."""
        if self.gate_update == "auto":
            return "sequential" if n_outputs == 1 or coupling == "shared" else "fixed"
        return self.gate_update

    def _validate_xy(self, X, y, reset, ensure_min_samples, y_numeric):
        """Validated training data (dense float32/float64 or CSR/CSC X)."""
        return validate_data(
            self,
            X,
            y,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
            multi_output=True,
            y_numeric=y_numeric,
            ensure_min_samples=ensure_min_samples,
        )

    def _validate_X(self, X, reset):
        return validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
        )

    # ------------------------------------------------------------------
    def _check_arrays(self, X, Y, sample_weight):
        """Finite targets, nonnegative weights with a positive sum, features
        within the arithmetic's range.  Returns the weights (float64, or None
        for equal weights)."""
        if not np.all(np.isfinite(Y)):
            raise ValueError("Input y contains NaN or infinity.")
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not sw.sum() > 0:
                raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        d = X.shape[1]
        # The largest magnitude without a temporary copy of X.
        values = X.data if sp.issparse(X) else X
        x_max = max(float(values.max()), -float(values.min())) if values.size else 0.0
        if x_max * (d + 1) > np.finfo(X.dtype).max ** 0.5:
            raise ValueError(
                f"X holds values too large for the network's arithmetic (max |X| = {x_max:.3g} "
                f"in {X.dtype}). Scale the features, e.g. with StandardScaler."
            )
        if self.gate_n_features is not None and self.gate_n_features > d:
            raise ValueError(
                f"gate_n_features={self.gate_n_features} is larger than the number of "
                f"features ({d})."
            )
        return sw

    def _setup(self, d, k, coupling, reuse, budget=None):
        """Budget, seed, starting layer and intercept, step control.

        ``reuse``: continue from the previous fit's network when its shape
        matches (warm start, a later ``partial_fit``, the next budget of a
        path).  ``budget``: in place of ``n_nonzero_coefs``."""
        p = self._n_hidden()
        q = d + 1 if self.fit_intercept else d
        s = resolve_budget(self.n_nonzero_coefs if budget is None else budget, *self._counted(d, k, coupling))
        gate_mode = self._gate_mode(k, coupling)
        signature = (d, k, p, bool(self.fit_intercept), self.gate_n_features, coupling, gate_mode)
        self._reused = bool(reuse and hasattr(self, "_layer") and getattr(self, "_signature", None) == signature)
        if self._reused:
            seed, layer, b0 = self._seed, self._layer, self._intercept
            if layer.kind == "fused" and gate_mode != "sequential":
                layer = FusedLayer(p, q, k, layer.idx, layer.val, Gates(seed, q, self.fit_intercept,
                                                                        self.gate_n_features))
            ctl = self._control
            ctl.s = s
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            layer = FusedLayer(p, q, k, np.zeros(0, np.int64), np.zeros(0),
                               Gates(seed, q, self.fit_intercept, self.gate_n_features))
            b0 = None
            ctl = Control(s, self.n_refine_steps, gate_mode == "sequential", self.gate_update_period)
        ctl.n_refine = self.n_refine_steps
        ctl.refine_tol = self.tol
        ctl.polish_tol = POLISH_TOL
        ctl.gate_update_period = self.gate_update_period
        self._seed, self._signature, self._control = seed, signature, ctl
        return p, q, s, layer, b0, ctl

    def _counted(self, d, k, coupling=None):
        """``(size, what)``: the counted parameters of the full network (the
        definition of ``_budget``), what a fractional budget is a fraction
        of, and their name.  Fused blocks of several outputs (one hidden
        layer) count every entry."""
        sizes = self._hidden_sizes()
        coupling = self._coupling(k) if coupling is None else coupling
        if len(sizes) == 1 and k > 1 and coupling == "fused":
            return (sizes[0] * (d + int(bool(self.fit_intercept))) * k,
                    "fused weights (hidden units x inputs x outputs)")
        return counted_size([d] + sizes + [k], bool(self.fit_intercept)), counted_name(k)

    def _network_size(self, d, k, coupling=None):
        """Counted parameters of the full network (see ``_counted``)."""
        return self._counted(d, k, coupling)[0]

    def _stopping(self, absolute_tol):
        return Stopping(self.max_iter, self.tol, self.n_iter_no_change, absolute_tol, self.verbose)

    def _fit_arrays(self, X, Y, sample_weight, loss, coupling="fused", absolute_tol=False, stratify=None,
                    path=None, blocks=None):
        """Common fit on validated X (n x d) and float64 targets Y (n x k).

        ``path``: ``(budgets, callback)``, budgets in increasing order: fit
        each in turn on the same row blocks, each started from the previous
        budget's network (the first as ``warm_start`` says), and call
        ``callback(i)`` with the estimator fitted at ``budgets[i]``.
        ``blocks``: row blocks built and checked elsewhere (a dask fit), in
        place of X, Y and the weights."""
        t_start = time.perf_counter()
        if blocks is None:
            d = X.shape[1]
            k = Y.shape[1]
            sw = self._check_arrays(X, Y, sample_weight)
        else:
            d, k, sw = blocks.d, blocks.k, None
        budgets = [None] if path is None else list(path[0])
        p, q, s, layer, b0, ctl = self._setup(d, k, coupling, self.warm_start, budgets[0])
        alpha = self._alpha_start()
        monitor = None
        if self.early_stopping:
            X, Y, sw, monitor = self._validation_split(X, Y, sw, loss, stratify, absolute_tol)
        # The penalty is alpha / 2 * ||w||^2 per unit of sample weight (per
        # sample for unit weights, as in MLPRegressor), so that weighting a
        # sample equals repeating it.
        stop = self._stopping(absolute_tol)
        if blocks is None:
            blocks = RowBlocks(X, self.fit_intercept, Y, sw)
        unit = _auto_unit(blocks.weight_total, blocks.row_count)
        if self.alpha == "auto" and not getattr(self, "_reused", False):
            alpha *= unit
        prob = Problem(blocks, loss, self.fit_intercept, alpha / blocks.weight_total, alpha)
        if b0 is None:
            b0 = loss.start(blocks.target_mean())
        for i, budget in enumerate(budgets):
            if i:
                t_start = time.perf_counter()
                # With the shared coupling every budget starts from an empty
                # network (see PATH_TOL_FACTOR).
                p, q, s, layer, b0, ctl = self._setup(d, k, coupling, coupling != "shared", budget)
                if b0 is None:
                    b0 = loss.start(blocks.target_mean())
                # The step size is normalised afresh for the new budget: the
                # last accepted step of the smaller network is no guide (it
                # can be many times too long, and every trial is then halved).
                ctl.mu_prev = None
                if monitor is not None:
                    monitor.restart()
                # A path ranks budgets: see PATH_TOL_FACTOR.
                stop = dataclasses.replace(stop, tol=PATH_TOL_FACTOR * self.tol)
                ctl.n_refine = min(ctl.n_refine, PATH_REFINE_STEPS)
                ctl.polish_tol = PATH_POLISH_TOL
            # alpha="auto" is chosen by every fit of a path.  A regression
            # path starts each budget at the previous budget's alpha_; a
            # classifier's starts at 1.0, as a standalone fit (from the tiny
            # penalty of a network that fits its training rows exactly, the
            # logistic leave-one-out approximation was misled: breast_cancer,
            # budget 75 after 1.8e-4 at 44, alpha 1e4 and accuracy 0.68), and
            # so does the shared coupling, which starts every budget afresh.
            # A warm start continues the previous fit at its alpha_.
            choose = self.alpha == "auto" and (i > 0 or not self._reused)
            if i:
                start = self.alpha_ if coupling != "shared" and loss.is_quadratic else unit
                prob = prob.with_alpha(start if self.alpha == "auto" else float(self.alpha))
            self._solve(X, Y, sw, prob, layer, b0, ctl, stop, monitor, loss, coupling, s, t_start, choose,
                        PATH_ALO_MIN_LOSS if i and not loss.is_quadratic else 0.0)
            if path is not None:
                path[1](i)
        return self

    def _alpha_start(self):
        """The L2 strength a fit starts from: ``alpha``; with "auto", 1.0 (then
        chosen during the fit), or the previous fit's ``alpha_`` when it
        continues that fit (warm start, partial_fit; kept there)."""
        if self.alpha != "auto":
            return float(self.alpha)
        return float(getattr(self, "alpha_", 1.0)) if getattr(self, "_reused", False) else 1.0

    def _solve(self, X, Y, sw, prob, layer, b0, ctl, stop, monitor, loss, coupling, s, t_start, choose=False,
               alo_min_loss=0.0):
        """Run the solver from ``layer`` and set the fitted attributes
        (``choose``: alpha="auto" is chosen, not below ``alo_min_loss``)."""
        n, q = prob.blocks.n, layer.q
        alpha = prob.alpha
        unit = _auto_unit(prob.blocks.weight_total, prob.blocks.row_count)
        select = AlphaSelection(alpha, ALPHA_GRID * unit, min_loss=alo_min_loss) if choose else None
        t_solver = time.perf_counter()
        polish_s = 0.0
        # A regressor's shared fit of several outputs starts wide (see
        # fit_wide_first) from at most as many of the fused stage's units as
        # the budget holds with one input each (s / (k + 1)), the strongest.
        wide = coupling == "shared" and layer.kind == "fused" and loss.is_quadratic and layer.k > 1
        full_batch = self.batch_size is None or self.batch_size >= n
        # A second start for the shared stage (see SHARED_RESTART_ALPHA).
        restart = None
        if wide and full_batch and select is not None and SHARED_RESTART_ALPHA is not None:
            restart = layer, b0, dataclasses.replace(ctl)
        with thread_limits(self.n_jobs):
            if layer.kind == "fused":
                if full_batch:
                    if coupling == "shared" and select is not None:
                        # The fused stage only starts the shared one: it is
                        # fitted at the starting alpha, and the alpha chosen
                        # on its network is the shared stage's (choosing it
                        # inside the fused stage gave weights that the shared
                        # stage's truncation to the budget lost: 3 blobs, 5
                        # weights, training accuracy 0.75 against 0.93).
                        result = fit_full(prob, layer, b0, ctl, _start_stage(stop, loss), monitor)
                        chosen = select.choose(prob, prob.evaluate(result.layer, result.intercept))
                        prob = prob if chosen is None else chosen
                    elif coupling == "shared":
                        result = fit_full(prob, layer, b0, ctl, _start_stage(stop, loss), monitor)
                    else:
                        fit = fit_progressive if self.progressive else fit_full
                        result = fit(prob, layer, b0, ctl, stop, monitor, select)
                        prob = result.problem
                else:
                    batch_size = self.batch_size

                    def make_problem(rows):
                        rb = RowBlocks(X[rows], self.fit_intercept, Y[rows], _rows(sw, rows))
                        return Problem(rb, loss, self.fit_intercept, alpha / rb.weight_total, minibatch=True)

                    rng = np.random.RandomState(self._seed)
                    # As with full batches, the fused stage that starts a
                    # shared fit is short (digits, batch_size=64: 270 s with
                    # max_iter epochs).
                    result = fit_minibatch(make_problem, _minibatches(n, batch_size), layer, b0, ctl,
                                           _start_stage(stop, loss) if coupling == "shared" else stop, rng,
                                           final_problem=prob, monitor=monitor)
                if coupling == "shared":
                    result, ctl = self._shared_stage(prob, result, ctl, stop, monitor, s, wide)
                    if restart is not None:
                        first, first_ctl = result, ctl
                        kept = None if monitor is None else monitor.saved()
                        start_layer, start_b, start_ctl = restart
                        start_prob = prob.with_alpha(SHARED_RESTART_ALPHA * alpha)
                        if monitor is not None:
                            monitor.restart()
                        fused = fit_full(start_prob, start_layer, start_b, start_ctl, _start_stage(stop, loss), monitor)
                        second, second_ctl = self._shared_stage(prob, fused, start_ctl, stop, monitor, s, wide)
                        if monitor is None:
                            second_better = lower(second.loss, first.loss)
                        else:
                            second_better = lower(monitor.best_L, kept["best_L"])
                            if not second_better:
                                monitor.restore(kept)
                        result, ctl = (second, second_ctl) if second_better else (first, first_ctl)
                        # The other start's polish (the kept one's is added below).
                        polish_s += (first if second_better else second).polish_seconds
                    self._control = ctl
            else:
                result = fit_full(prob, layer, b0, ctl, stop, monitor)
        polish_s += result.polish_seconds
        self.alpha_ = prob.alpha
        # Where the fit's time went (benchmarks/speed.py reports it): set-up
        # (checks, row blocks), the iterations, the choice of alpha="auto",
        # the final polish.
        choice_s = 0.0 if select is None else select.seconds
        self._fit_seconds = dict(setup=t_solver - t_start,
                                 iterations=time.perf_counter() - t_solver - polish_s - choice_s,
                                 alpha=choice_s, polish=polish_s)
        self._finish(result)
        if monitor is not None:
            self.validation_loss_curve_ = list(monitor.curve)
            self.best_validation_loss_ = float(monitor.best_L)
        if result.stop_reason == "max_iter":
            warnings.warn(
                f"SparseMLP: the maximum number of iterations ({self.max_iter}) was reached "
                "before convergence. Raise max_iter or tol.",
                ConvergenceWarning,
            )
        self.n_iter_ = int(result.n_iter)
        self.loss_curve_ = list(result.loss_curve)

    def _shared_stage(self, prob, fused, ctl, stop, monitor, s, wide):
        """The shared fit started from the fused stage's result ``fused``
        (``wide``: first at several times the budget, see fit_wide_first);
        the result counts the fused stage's iterations, and its Control."""
        layer = fused.layer
        # The bilinear problem starts from the fused solution.
        start = factor_fused(layer, s, ctl.sequential,
                             Gates(self._seed, layer.q, self.fit_intercept, self.gate_n_features),
                             max_units=max(1, s // (layer.k + 1)) if wide else None)
        ctl = Control(s, ctl.n_refine, ctl.sequential, self.gate_update_period,
                      refine_tol=self.tol, polish_tol=ctl.polish_tol)
        if monitor is not None:
            monitor.restart()
        fit = fit_wide_first if wide else fit_full
        result = fit(prob, start, fused.intercept, ctl, stop, monitor)
        result.polish_seconds += fused.polish_seconds
        result.n_iter += fused.n_iter
        result.loss_curve = fused.loss_curve + result.loss_curve
        return result, ctl

    def _fit_dask(self, X, y, sample_weight, targets_for):
        """fit on dask collections (see ``_dask``): the row blocks live with
        the partitions, the solver runs here.

        ``targets_for(y)`` (y a dask array) returns ``(targets, k, loss,
        absolute_tol)``: the per-partition target encoder, the number of
        outputs, the loss and the tolerance rule."""
        from ._dask import as_dask_arrays, row_blocks

        unsupported = [
            (len(self._hidden_sizes()) > 1, "several hidden layers"),
            (self.early_stopping, "early_stopping=True"),
            (self.batch_size is not None, "batch_size (minibatch epochs)"),
        ]
        for bad, what in unsupported:
            if bad:
                raise NotImplementedError(
                    f"A fit on dask collections does not support {what} yet: it runs full-gradient "
                    "IHT on one hidden layer. Fit on in-memory arrays, or use partial_fit over "
                    "the partitions (e.g. dask-ml's Incremental)."
                )
        X, y, sample_weight, names = as_dask_arrays(X, y, sample_weight)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got {y.ndim} dimensions.")
        d = int(X.shape[1])
        if self.warm_start and hasattr(self, "n_features_in_") and self.n_features_in_ != d:
            raise ValueError(f"X has {d} features, but the previous fit had {self.n_features_in_}.")
        self.n_features_in_ = d
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self.gate_n_features is not None and self.gate_n_features > d:
            raise ValueError(
                f"gate_n_features={self.gate_n_features} is larger than the number of features ({d})."
            )
        targets, k, loss, absolute_tol = targets_for(y)
        with thread_limits(self.n_jobs) as n_threads:
            blocks = row_blocks(X, y, sample_weight, targets, k, self.fit_intercept, n_threads)
        try:
            self._fit_arrays(None, None, None, loss, coupling=self._coupling(k), absolute_tol=absolute_tol,
                             blocks=blocks)
        finally:
            blocks.close()
        return self

    def _validation_split(self, X, Y, sw, loss, stratify, absolute_tol):
        """Hold out ``validation_fraction`` of the rows (stratified by
        ``stratify`` when given): the training rows and a Monitor of the
        loss on the held-out ones."""
        n = X.shape[0]
        n_val = int(np.ceil(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 2:
            raise ValueError(
                f"early_stopping needs at least one validation sample and two training samples; "
                f"validation_fraction={self.validation_fraction} of {n} samples leaves "
                f"{n_val} and {n - n_val}. Raise validation_fraction or pass more samples."
            )
        train, val = self._split_rows(n, self._seed, stratify)
        vblocks = RowBlocks(X[val], self.fit_intercept, Y[val], _rows(sw, val), cache_bytes=0)
        monitor = Monitor(Problem(vblocks, loss, self.fit_intercept), self.tol, absolute_tol, self.n_iter_no_change)
        return X[train], Y[train], _rows(sw, train), monitor

    def _split_rows(self, n, seed, stratify):
        """Sorted (training, held-out) row indices of the early-stopping split."""
        from sklearn.model_selection import train_test_split

        n_val = int(np.ceil(self.validation_fraction * n))
        rows = np.arange(n)
        try:
            train, val = train_test_split(rows, test_size=n_val, random_state=seed % (2**31 - 1),
                                          stratify=stratify)
        except ValueError:
            # Too few samples of a class to stratify: a plain random split.
            train, val = train_test_split(rows, test_size=n_val, random_state=seed % (2**31 - 1))
        return np.sort(train), np.sort(val)

    def _partial_fit_arrays(self, X, Y, sample_weight, loss, first, coupling="fused"):
        """One call of ``partial_fit``: stochastic IHT steps on the given rows
        (minibatches of ``batch_size`` rows in order, or all of them as one)."""
        n, d = X.shape
        k = Y.shape[1]
        sw = self._check_arrays(X, Y, sample_weight)
        if not first and getattr(self, "_signature", (None, None))[:2] != (d, k):
            raise ValueError(
                f"partial_fit got data with {d} features and {k} outputs; the model was started "
                f"with {self._signature[0]} features and {self._signature[1]} outputs."
            )
        p, q, s, layer, b0, ctl = self._setup(d, k, coupling, not first)
        alpha = self._alpha_start()
        if self.alpha == "auto" and first and sw is not None:
            alpha *= _auto_unit(sw.sum(), sample_count(sw, n))
        self.alpha_ = alpha
        batch = n if self.batch_size is None else min(self.batch_size, n)
        total_loss, total_weight = 0.0, 0.0
        with thread_limits(self.n_jobs):
            for start in range(0, n, batch):
                rows = slice(start, min(n, start + batch))
                blocks = RowBlocks(X[rows], self.fit_intercept, Y[rows], _rows(sw, rows))
                # The rows of a call are a part of the data, as a minibatch.
                prob = Problem(blocks, loss, self.fit_intercept, alpha / blocks.weight_total, minibatch=True)
                if b0 is None:
                    b0 = loss.start(blocks.target_mean())
                point, _ = partial_step(prob, layer, b0, ctl)
                layer, b0 = point.layer, point.b
                total_loss += point.L * blocks.weight_total
                total_weight += blocks.weight_total
        loss_value = total_loss / total_weight
        if coupling == "shared" and layer.kind == "fused":
            # As in fit: the factored network starts from the fused one.
            layer = factor_fused(layer, s, ctl.sequential, Gates(self._seed, q, self.fit_intercept,
                                                                 self.gate_n_features))
            self._control = Control(s, self.n_refine_steps, ctl.sequential, self.gate_update_period,
                                    refine_tol=self.tol)
        self._finish(IHTResult(layer, b0, [loss_value], 1, False, "partial_fit", loss_value))
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1 if not first else 1
        self.loss_curve_ = (list(getattr(self, "loss_curve_", [])) if not first else []) + [loss_value]
        return self

    def _stage_budgets(self, d, k):
        """Budgets of the layers of a deep network (``budget_split``)."""
        sizes = self._hidden_sizes()
        ins = [d] + sizes[:-1]
        layer_size = [counted_size([a, m, 1], bool(self.fit_intercept)) for a, m in zip(ins, sizes)]
        if counts_output_weights(k):
            layer_size[-1] += sizes[-1] * k
        total = resolve_budget(self.n_nonzero_coefs, *self._counted(d, k))
        split = self.budget_split
        if isinstance(split, str):
            weights = np.ones(len(sizes)) if split == "even" else np.asarray(layer_size, dtype=float)
        else:
            weights = np.asarray(split, dtype=float).ravel()
            if weights.shape != (len(sizes),) or not np.all(weights > 0):
                raise ValueError(
                    f"budget_split={split!r}: give one positive share per hidden layer "
                    f"({len(sizes)} here), 'even' or 'proportional'."
                )
        shares = weights / weights.sum() * total
        budgets = np.floor(shares).astype(int)
        # The rounding remainder goes to the layers with the largest remainders.
        for i in np.argsort(-(shares - budgets), kind="stable")[: total - budgets.sum()]:
            budgets[i] += 1
        return [max(1, int(b)) for b in budgets]

    def _fit_deep(self, X, y, sample_weight, k_out):
        """Several hidden layers, trained layer by layer (the paper's scheme).

        ``X`` is validated, ``y`` the targets as given to ``fit``, ``k_out``
        the number of network outputs.  Stage ``l`` fits a one-hidden-layer
        network of width ``m_l`` with budget ``s_l`` (``budget_split``) on
        the previous layers' ReLU features (stage 1 on X) and keeps its hidden
        layer; the last stage's whole network ends the model.  Only the
        active units' features are formed (n x active units).  Returns the
        last stage's estimator."""
        stage_cls = self._stage_class
        params = {name: getattr(self, name) for name in stage_cls._get_param_names()}
        if k_out > 1 and params.get("output_coupling") == "fused":
            # Fused blocks of several outputs are not ReLU layers: the hidden
            # layers of a deep network come from the shared coupling.
            params["output_coupling"] = "shared"
        budgets = self._stage_budgets(X.shape[1], k_out)
        sizes = self._hidden_sizes()
        coefs, intercepts, stages = [], [], []
        complete = False
        Z = X
        for i, (m, s) in enumerate(zip(sizes, budgets)):
            s_fit = s
            if i < len(sizes) - 1 and counts_output_weights(k_out) and s >= 2 * k_out:
                # The output weights of an intermediate stage are dropped with
                # it: they do not take the hidden layer's budget (with 10
                # outputs, the first stage of a (10, 10) network with 50
                # weights kept 30 on 2 units, and the planted network of
                # benchmarks/phase.py --outputs 10 --layers 2, m=10 s=100, was
                # fitted to 39.0 dB; 41.8 dB with this).  The stage's fit has
                # room for them on up to min(m, s) units; its hidden layer then
                # keeps its s entries of largest fused magnitude.  Not below
                # two units' worth of output weights: there the stage's own
                # trade-off (few units) suits the next stage's tiny budget
                # better (3 blobs, (10, 5), 10 weights: training accuracy 0.78
                # against 0.91).
                s_fit = s + k_out * min(m, s)
            stage = stage_cls(**{**params, "hidden_layer_sizes": (m,), "warm_start": False,
                                 "n_nonzero_coefs": min(s_fit, counted_size([Z.shape[1], m, k_out],
                                                                            bool(self.fit_intercept)))})
            stage.fit(Z, y, sample_weight)
            if not hasattr(stage, "coefs_"):
                raise ValueError(
                    "Several hidden layers need every layer to be a plain ReLU layer: use "
                    "gate_update='sequential' (and output_coupling='shared' for several outputs)."
                )
            stages.append(stage)
            if i == len(sizes) - 1:
                coefs += [np.asarray(W, dtype=np.float64) for W in stage.coefs_]
                intercepts += [np.asarray(b, dtype=np.float64) for b in stage.intercepts_]
                complete = True
                break
            U = np.asarray(stage.coefs_[0], dtype=np.float64)
            c = np.asarray(stage.intercepts_[0], dtype=np.float64)
            if s_fit > s:
                U, c = _largest_fused(U, c, np.asarray(stage.coefs_[1], dtype=np.float64), s,
                                      self._output_spread(y, sample_weight))
            if U.shape[1]:
                # A ReLU unit is positively homogeneous: each kept unit is
                # scaled so that its feature has unit spread on the rows, the
                # next stage's weights taking the scale (the same function).
                # The stage's own balance between its layers is arbitrary:
                # make_friedman3, one fold, left features of spread 0.006 to
                # 0.14, on which the next stage at alpha=1 ended empty (R^2 0).
                scale = _feature_spread(np.maximum(Z @ U + c, 0.0), sample_weight)
                U, c = U / scale, c / scale
            coefs.append(U)
            intercepts.append(c)
            if U.shape[1] == 0:
                # No active unit: the network is this stage's constant.
                for _ in range(len(sizes) - 1 - i):
                    coefs.append(np.zeros((0, 0)))
                    intercepts.append(np.zeros(0))
                coefs.append(np.zeros((0, stage.intercept_.size)))
                intercepts.append(np.asarray(stage.intercept_, dtype=np.float64).copy())
                break
            Z = np.maximum(Z @ U + c, 0.0)
        last = stages[-1]
        if complete:
            _balance_units(coefs, intercepts)
        joint = None
        if complete and self.joint_max_iter > 0:
            joint = self._joint_phase(X, y, sample_weight, last, coefs, intercepts)
            coefs, intercepts = joint["coefs"], joint["intercepts"]
        self._deep = True
        self._layer = None
        for name in ("fused_coef_", "gates_", "gate_signs_", "validation_loss_curve_", "best_validation_loss_"):
            if hasattr(self, name):
                delattr(self, name)
        self.coefs_, self.intercepts_ = coefs, intercepts
        self.intercept_ = intercepts[-1].copy()
        self._intercept = self.intercept_.copy()
        self.n_outputs_ = coefs[-1].shape[1]
        # Counted on the network as it ends: units that no longer reach the
        # output (a later stage without them, the joint phase's compaction)
        # are not in coefs_, and their weights are not counted.
        self.n_nonzero_ = counted_nonzeros(coefs, intercepts)
        self.active_neurons_ = stages[0].active_neurons_.copy()
        self.feature_importances_ = path_importances(coefs)
        self.n_iter_ = int(sum(st.n_iter_ for st in stages))
        self.loss_curve_ = [v for st in stages for v in st.loss_curve_]
        self.loss_ = float(last.loss_)
        self.n_layers_ = len(coefs) + 1
        self.stage_budgets_ = np.asarray(budgets)
        self.alpha_ = float(last.alpha_)
        self.n_joint_iter_ = 0
        if hasattr(last, "validation_loss_curve_"):
            self.validation_loss_curve_ = list(last.validation_loss_curve_)
            self.best_validation_loss_ = last.best_validation_loss_
        if not np.any(coefs[-1]) and stages[0].n_nonzero_ > 0:
            widths = [int(np.count_nonzero(np.any(W != 0, axis=1))) for W in coefs[1:]]
            warnings.warn(
                f"SparseMLP: the network predicts a constant: no path of nonzero weights joins the inputs "
                f"to the outputs (units with a nonzero weight out, per hidden layer: {widths}), although the "
                f"first layer's stage fitted {stages[0].n_nonzero_} weights. Raise n_nonzero_coefs, change "
                "budget_split, or use fewer hidden layers.",
                UserWarning,
            )
        if joint is not None:
            self.active_neurons_ = self.active_neurons_[joint["kept_first"]]
            self.n_joint_iter_ = joint["n_iter"]
            self.n_iter_ += joint["n_iter"]
            self.loss_curve_ += joint["loss_curve"]
            self.loss_ = joint["loss"]
            self.alpha_ = float(joint["alpha"])
            if joint["validation_curve"]:
                self.validation_loss_curve_ = list(getattr(self, "validation_loss_curve_", [])) \
                    + joint["validation_curve"]
                self.best_validation_loss_ = joint["best_validation_loss"]
        return last

    def _output_spread(self, y, sample_weight):
        """The scale of each network output (1: comparable outputs, as logits)."""
        return 1.0

    def _joint_phase(self, X, y, sample_weight, last, coefs, intercepts):
        """Refine the layer-by-layer network by IHT over all layers under the
        whole budget (``_joint``), on the stages' training rows; with
        early_stopping, the network with the lowest loss on the stages'
        held-out rows is kept."""
        from ._joint import DeepObjective, alo_penalty, joint_iht, joint_pays_off

        Y, sw, loss, stratify = self._deep_targets(y, sample_weight, last)
        if sw is not None:
            sw = _check_sample_weight(sw, X, dtype=np.float64)
        d, k = X.shape[1], Y.shape[1]
        n_keep = resolve_budget(self.n_nonzero_coefs, *self._counted(d, k))
        scale = 1.0
        coefs, intercepts = list(coefs), list(intercepts)
        if loss.is_quadratic:
            # The penalty on every layer's weights does not scale with y as
            # the squared loss does: the joint phase fits y over its spread
            # (the output layer scaled alike, the same network), so that a
            # change of y's units changes nothing but the units of the fit.
            scale = _target_spread(Y, sw)
            Y = Y / scale
            coefs[-1], intercepts[-1] = coefs[-1] / scale, intercepts[-1] / scale
            _balance_units(coefs, intercepts)
        monitor = None
        if self.early_stopping:
            train, val = self._split_rows(X.shape[0], last._seed, stratify)
            held_out = DeepObjective(X[val], Y[val], _rows(sw, val), loss, 0.0)
            monitor = held_out.value
            X, Y, sw = X[train], Y[train], _rows(sw, train)
        total = X.shape[0] if sw is None else float(np.sum(sw))
        obj = DeepObjective(X, Y, sw, loss, float(last.alpha_) / total)
        check = None
        joint_kw = dict(fit_intercept=bool(self.fit_intercept), max_iter=self.joint_max_iter, tol=self.tol,
                        n_iter_no_change=self.n_iter_no_change)
        with thread_limits(self.n_jobs):
            if self.alpha == "auto" and loss.is_quadratic:
                # The penalty on every layer's weights is not the stages'
                # penalty on fused weights: it is chosen for the joint phase,
                # by approximate leave-one-out loss at its start.
                l2 = alo_penalty(obj, coefs, intercepts, bool(self.fit_intercept),
                                 ALPHA_GRID * _auto_unit(total, sample_count(sw, X.shape[0])))
                if l2 is not None:
                    obj.l2 = l2
                if monitor is None:
                    # Moving the support of every layer at once can fit the
                    # noise of a small noisy set (diabetes, 3-fold: R^2 0.37
                    # against 0.50 for the layer-by-layer network, which the
                    # leave-one-out scores of a fixed support did not see):
                    # the phase runs only if it pays off on held-out rows.
                    check = joint_pays_off(obj, coefs, intercepts, n_keep, last._seed, **joint_kw)
                    if self.verbose:
                        print(f"Joint phase, two-fold check: held-out loss {check[2] * scale ** 2:.8g} "
                              f"against {check[1] * scale ** 2:.8g} for the layer-by-layer network"
                              + ("" if check[0] else ": skipped"))
                    if not check[0]:
                        joint_kw["max_iter"] = 0
            result = joint_iht(obj, coefs, intercepts, n_keep, monitor=monitor, verbose=self.verbose, **joint_kw)
        result["alpha"] = obj.l2 * total
        result["coefs"][-1] = result["coefs"][-1] * scale
        result["intercepts"][-1] = result["intercepts"][-1] * scale
        # The objective and held-out losses in y's units.
        result["loss"] *= scale ** 2
        result["loss_curve"] = [v * scale ** 2 for v in result["loss_curve"]]
        result["validation_curve"] = [v * scale ** 2 for v in result["validation_curve"]]
        if result["best_validation_loss"] is not None:
            result["best_validation_loss"] *= scale ** 2
        return result

    def _finish(self, result):
        """Check the result and set the fitted attributes."""
        self._deep = False
        for name in ("n_layers_", "stage_budgets_"):
            if hasattr(self, name):
                delattr(self, name)
        layer = result.layer
        values = np.concatenate([layer.U.ravel(), layer.V.ravel()]) if layer.kind == "factored" else layer.val
        if not (np.isfinite(result.loss) and np.all(np.isfinite(values))):
            raise ValueError(
                "The solver produced non-finite weights: the input values are too large "
                "for the network's arithmetic. Scale the features (e.g. StandardScaler)."
            )
        self._layer = layer
        # The network in the forward kernel's layout, built once per fit.
        self._predict_spec = layer.spec()
        self._predict_spec.by_feature(layer.q)
        self._intercept = np.asarray(result.intercept, dtype=np.float64).copy()
        d, k, p = self._signature[:3]
        q = layer.q
        self.intercept_ = self._intercept.copy()
        self.loss_ = float(result.loss)
        self.n_outputs_ = k
        for name in ("coefs_", "intercepts_", "gate_signs_"):
            if hasattr(self, name):
                delattr(self, name)
        if layer.kind == "factored":
            self._set_factored_attributes(layer, d, p, q)
        else:
            self._set_fused_attributes(layer, d, k, p, q)

    def _set_factored_attributes(self, layer, d, p, q):
        U, V, units = layer.U, layer.V, layer.units
        rows, cols = np.nonzero(U.T)
        self.fused_coef_ = sp.csr_array((U.T[rows, cols], (units[rows], cols)), shape=(p, q))
        self.n_nonzero_ = layer.nnz
        self.feature_importances_ = path_importances([U[:d], V])
        self.active_neurons_ = units.copy()
        self.gates_ = layer.pattern_gates().T.copy()
        if layer.sequential:
            self.coefs_ = [U[:d].copy(), V.copy()]
            self.intercepts_ = [U[d].copy() if self.fit_intercept else np.zeros(units.size), self.intercept_.copy()]

    def _set_fused_attributes(self, layer, d, k, p, q):
        from ._operator import decode

        rows = layer.idx // (q * k)
        cols = layer.idx % (q * k)
        self.fused_coef_ = sp.csr_array((layer.val, (rows, cols)), shape=(p, q * k))
        self.n_nonzero_ = layer.nnz
        # Per input feature: the absolute fused weights over units and outputs
        # (for a ReLU network, those of the paths through its first layer).
        active, pos, feat, _ = decode(layer.idx, q, k)
        by_input = np.bincount(feat, weights=np.abs(layer.val), minlength=q)
        self.feature_importances_ = path_importances([by_input[:d].reshape(-1, 1)])
        self.active_neurons_ = active
        self.gates_ = layer.gates(active).T.copy() if active.size else np.zeros((0, q))
        if self._signature[-1] == "sequential" and k == 1:
            # The network is exactly sum_j a_j relu(x . u_j + c_j) + b: export it
            # in MLPRegressor's layout (active units only).
            signs = np.ones(active.size)
            if layer.gates.units.size:
                signs = layer.signs[np.searchsorted(layer.gates.units, active)]
            W = np.zeros((q, active.size))
            W[feat, pos] = layer.val
            U = W * signs  # u_j = a_j w_j
            self.coefs_ = [U[:d].copy(), signs.reshape(-1, 1).copy()]
            self.intercepts_ = [
                U[d].copy() if self.fit_intercept else np.zeros(active.size),
                self.intercept_.copy(),
            ]
            self.gate_signs_ = signs

    def to_mlp(self):
        """The fitted network as a fitted scikit-learn MLP.

        Returns an :class:`~sklearn.neural_network.MLPRegressor` (or
        :class:`~sklearn.neural_network.MLPClassifier`) whose ``coefs_`` and
        ``intercepts_`` are this network's active units, so that its
        ``predict`` (and ``predict_proba``) give the same values, up to
        rounding.  Through it the network can be saved with any tool that
        reads scikit-learn's MLPs, for instance to ONNX with skl2onnx.  The
        MLP is not meant to be refitted: its hyper-parameters are MLP's
        defaults, with ``alpha`` and ``random_state`` copied.

        Returns
        -------
        mlp : MLPRegressor or MLPClassifier
            The fitted dense equivalent (one hidden unit per active unit).

        Raises
        ------
        ValueError
            When the network is not a plain ReLU MLP: random fixed gates
            (``gate_update="fixed"``) give a gated ReLU network
            ``sum_j 1[X h_j >= 0] X W_j``, and several outputs with
            ``output_coupling="fused"`` share one activation pattern per unit
            across different weight vectors; neither is a ReLU MLP.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_sparse_mlp import SparseMLPRegressor
        >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
        >>> X, y = make_planted_mlp(n_samples=200, n_features=5, n_hidden=3,
        ...                         n_nonzero=4, random_state=0)
        >>> reg = SparseMLPRegressor(n_nonzero_coefs=6, hidden_layer_sizes=(10,),
        ...                          random_state=0).fit(X, y)
        >>> mlp = reg.to_mlp()
        >>> type(mlp).__name__, np.allclose(mlp.predict(X), reg.predict(X))
        ('MLPRegressor', True)
        """
        check_is_fitted(self, "_layer")
        if not hasattr(self, "coefs_"):
            if self._signature[-1] != "sequential":
                why = ("its gates are random and fixed (gate_update='fixed'): it is a gated ReLU "
                       "network sum_j 1[X h_j >= 0] X W_j. Fit with gate_update='sequential'")
            else:
                why = ("its several outputs use fused weight blocks under one activation pattern "
                       "per unit (output_coupling='fused'). Fit with output_coupling='shared'")
            raise ValueError(f"This network cannot be written as a plain ReLU MLP: {why} to export it.")
        return self._to_mlp()

    def _raw_predict(self, X):
        """Network outputs (n x k, float64) for validated X."""
        check_is_fitted(self, "_layer")
        X = self._validate_X(X, reset=False)
        if self._deep:
            from ._imp import _forward

            return _forward(X, self.coefs_, self.intercepts_), X.dtype
        k = self._signature[1]
        layer = self._layer
        if not layer.nnz:
            return np.zeros((X.shape[0], k)) + self._intercept, X.dtype
        blocks = RowBlocks(X, self.fit_intercept, cache_bytes=0)
        with thread_limits(self.n_jobs, X.shape[0]):
            F = blocks.forward(self._predict_spec)
        return np.ascontiguousarray(F + self._intercept), X.dtype

