"""Shared estimator code: parameters, validation, threads, fitted attributes.

Nothing here knows numba: the numeric work goes through ``_operator`` (the
data-access layer and the lazy operator) and ``_iht`` (the solver loop).
"""

import numbers
import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._iht import IHTState, iht
from ._operator import NetworkOperator, make_design
from ._shared import SharedState, factor_fused, shared_forward, shared_iht


@contextmanager
def thread_limits(n_jobs):
    """Use ``n_jobs`` threads for numba and BLAS alike, restored on exit.

    The heavy products run inside numba's parallel kernels, each thread
    calling BLAS on its own tile, so BLAS itself is limited to one thread
    while numba gets the ``n_jobs`` threads: the cores are never
    oversubscribed, and an outer process pool (e.g.
    ``GridSearchCV(n_jobs=...)``) can pass ``n_jobs=1``.
    """
    import numba
    from threadpoolctl import threadpool_limits

    n_max = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        n = n_max
    elif n_jobs < 0:
        n = max(1, n_max + 1 + n_jobs)
    else:
        n = min(int(n_jobs), n_max)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield n
    finally:
        numba.set_num_threads(previous)


def _budget(n_nonzero_coefs, size):
    """Integer budget from an int (count) or a float in (0, 1] (fraction)."""
    if isinstance(n_nonzero_coefs, numbers.Integral):
        s = int(n_nonzero_coefs)
        if s > size:
            raise ValueError(
                f"n_nonzero_coefs={s} is larger than the network, which has "
                f"{size} fused weights (hidden units x inputs x outputs). "
                "Lower n_nonzero_coefs or widen hidden_layer_sizes."
            )
        return s
    return max(1, int(np.ceil(float(n_nonzero_coefs) * size)))


class BaseSparseMLP(BaseEstimator):
    """Base class of the IHT-trained sparse one-hidden-layer networks."""

    _parameter_constraints = {
        "n_nonzero_coefs": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Real, 0, 1, closed="right"),
        ],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "gate_update": [StrOptions({"sequential", "fixed"})],
        "gate_update_period": [Interval(numbers.Integral, 1, None, closed="left")],
        "gate_n_features": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_refine_steps": [Interval(numbers.Integral, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [None, numbers.Integral],
    }

    def __init__(
        self,
        n_nonzero_coefs=0.1,
        *,
        hidden_layer_sizes=(100,),
        gate_update="sequential",
        gate_update_period=1,
        gate_n_features=None,
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=5,
        n_refine_steps=5,
        fit_intercept=True,
        warm_start=False,
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.n_nonzero_coefs = n_nonzero_coefs
        self.hidden_layer_sizes = hidden_layer_sizes
        self.gate_update = gate_update
        self.gate_update_period = gate_update_period
        self.gate_n_features = gate_n_features
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

    def _n_hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        sizes = list(sizes)
        if len(sizes) != 1:
            raise ValueError(
                f"hidden_layer_sizes={self.hidden_layer_sizes!r}: only one hidden layer is "
                "supported for now; pass a single width such as (100,)."
            )
        if not isinstance(sizes[0], numbers.Integral) or sizes[0] < 1:
            raise ValueError(
                f"hidden_layer_sizes must hold a positive integer, got {self.hidden_layer_sizes!r}."
            )
        return int(sizes[0])

    def _gate_mode(self, n_outputs):
        """"sequential" or "fixed" ("auto": sequential for one output)."""
        if self.gate_update == "auto":
            return "sequential" if n_outputs == 1 else "fixed"
        return self.gate_update

    def _validate_X(self, X, reset):
        return validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
        )

    def _fit_arrays(self, X, Y, sample_weight, loss, coupling="fused", alpha=0.0, absolute_tol=False):
        """Common fit on validated X (n x d) and float64 targets Y (n x k)."""
        n, d = X.shape
        k = Y.shape[1]
        p = self._n_hidden()
        if not np.all(np.isfinite(Y)):
            raise ValueError("Input y contains NaN or infinity.")
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = sw.sum()
        if not total > 0:
            raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        sw = sw / total
        # The penalty is alpha / 2 * ||w||^2 per unit of sample weight (per
        # sample for unit weights, as in MLPClassifier), so that weighting a
        # sample equals repeating it.
        q = d + 1 if self.fit_intercept else d
        size = p * q * k
        s = _budget(self.n_nonzero_coefs, size)
        if self.gate_n_features is not None and self.gate_n_features > d:
            raise ValueError(
                f"gate_n_features={self.gate_n_features} is larger than the number of "
                f"features ({d})."
            )
        gate_mode = self._gate_mode(k)
        signature = (d, k, p, bool(self.fit_intercept), self.gate_n_features, coupling, gate_mode)
        warm = (
            self.warm_start
            and hasattr(self, "_state")
            and getattr(self, "_signature", None) == signature
        )
        if warm:
            seed, state = self._seed, self._state
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            state = None

        x_max = abs(X).max() if X.size else 0.0
        if sp.issparse(x_max):
            x_max = x_max.toarray().max()
        if float(x_max) * (d + 1) > np.finfo(X.dtype).max ** 0.5:
            raise ValueError(
                f"X holds values too large for the network's arithmetic (max |X| = {float(x_max):.3g} "
                f"in {X.dtype}). Scale the features, e.g. with StandardScaler."
            )
        design = make_design(X, self.fit_intercept)
        op = NetworkOperator(design, p, k, seed, self.gate_n_features or 0)
        solver = dict(
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            penalty=alpha / total,
            absolute_tol=absolute_tol,
            verbose=self.verbose,
        )
        with thread_limits(self.n_jobs):
            if coupling == "shared" and state is not None:
                result = shared_iht(op, loss, Y, sw, s, state, **solver)
            else:
                result = iht(
                    op, loss, Y, sw, s,
                    state=state,
                    gate_update=gate_mode,
                    gate_update_period=self.gate_update_period,
                    n_refine=self.n_refine_steps,
                    **solver,
                )
                if coupling == "shared":
                    # The bilinear problem starts from the fused solution.
                    start = factor_fused(op, result.state, s, gate_mode == "sequential")
                    fused = result
                    result = shared_iht(op, loss, Y, sw, s, start, **solver)
                    result.n_iter += fused.n_iter
                    result.loss_curve = fused.loss_curve + result.loss_curve
        st = result.state
        values = np.concatenate([st.U.ravel(), st.V.ravel()]) if coupling == "shared" else st.val
        if not (np.isfinite(result.loss) and np.all(np.isfinite(values))):
            raise ValueError(
                "The solver produced non-finite weights: the input values are too large "
                "for the network's arithmetic. Scale the features (e.g. StandardScaler)."
            )
        if result.stop_reason == "max_iter":
            warnings.warn(
                f"SparseMLP: the maximum number of iterations ({self.max_iter}) was reached "
                "before convergence. Raise max_iter or tol.",
                ConvergenceWarning,
            )
        self._seed = seed
        self._state = st
        self._signature = signature
        if coupling == "shared":
            self._set_shared_attributes(op, result, d, k, p, q)
        else:
            self._set_fitted_attributes(op, result, d, k, p, q)
        return self

    def _set_common_attributes(self, result, k, active):
        st = result.state
        self.intercept_ = np.asarray(st.intercept, dtype=np.float64).copy()
        self.n_iter_ = int(result.n_iter)
        self.loss_curve_ = list(result.loss_curve)
        self.loss_ = float(result.loss)
        self.n_outputs_ = k
        self.active_neurons_ = active

    def _set_shared_attributes(self, op, result, d, k, p, q):
        st = result.state
        m = st.neurons.size
        U, V = st.U, st.V
        rows, cols = np.nonzero(U.T)
        self.coef_ = sp.csr_array((U.T[rows, cols], (st.neurons[rows], cols)), shape=(p, q))
        self.n_nonzero_ = int(np.count_nonzero(U) + np.count_nonzero(V))
        self._set_common_attributes(result, k, st.neurons.copy())
        self.gates_ = U.T.copy() if st.sequential else op.gates(st.neurons).T.copy()
        for name in ("gate_signs_",):
            if hasattr(self, name):
                delattr(self, name)
        if st.sequential:
            self.coefs_ = [U[:d].copy(), V.copy()]
            self.intercepts_ = [U[d].copy() if self.fit_intercept else np.zeros(m), self.intercept_.copy()]
        else:
            for name in ("coefs_", "intercepts_"):
                if hasattr(self, name):
                    delattr(self, name)

    def _set_fitted_attributes(self, op, result, d, k, p, q):
        st = result.state
        rows = st.idx // (q * k)
        cols = st.idx % (q * k)
        self.coef_ = sp.csr_array((st.val, (rows, cols)), shape=(p, q * k))
        self.n_nonzero_ = int(np.count_nonzero(st.val))
        active = np.unique(rows)
        self._set_common_attributes(result, k, active)
        self.gates_ = op.gates(active).T.copy() if active.size else np.zeros((0, q))
        sequential = self._signature[-1] == "sequential"
        if sequential and k == 1:
            # The network is exactly sum_j a_j relu(x . u_j + c_j) + b: export it
            # in MLPRegressor's layout (active neurons only).
            signs = np.ones(active.size)
            if st.gate_neurons.size:
                pos = np.searchsorted(st.gate_neurons, active)
                signs = st.gate_signs[pos]
            W = np.zeros((q, active.size))
            _, pos, feat, _ = op.decode(st.idx)
            W[feat, pos] = st.val
            U = W * signs  # u_j = a_j w_j
            self.coefs_ = [U[:d].copy(), signs.reshape(-1, 1).copy()]
            self.intercepts_ = [
                U[d].copy() if self.fit_intercept else np.zeros(active.size),
                self.intercept_.copy(),
            ]
            self.gate_signs_ = signs
        else:
            for name in ("coefs_", "intercepts_", "gate_signs_"):
                if hasattr(self, name):
                    delattr(self, name)

    def _raw_predict(self, X):
        """Network outputs (n x k, float64) for validated X."""
        check_is_fitted(self, "_state")
        X = self._validate_X(X, reset=False)
        d, k, p, fit_intercept, n_gate_features = self._signature[:5]
        design = make_design(X, fit_intercept)
        op = NetworkOperator(design, p, k, self._seed, n_gate_features or 0)
        st = self._state
        if isinstance(st, SharedState):
            with thread_limits(self.n_jobs):
                F = shared_forward(op, st)[0]
            return np.ascontiguousarray(F + st.intercept), X.dtype
        with thread_limits(self.n_jobs):
            if st.gate_vectors is not None:
                op.set_gates(st.gate_neurons, st.gate_vectors)
            F = op.forward(st.idx, st.val)
        return np.ascontiguousarray(F + st.intercept), X.dtype
