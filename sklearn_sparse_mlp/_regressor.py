"""SparseMLPRegressor: a sparse one-hidden-layer ReLU network trained by IHT."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context

from ._base import BaseSparseMLP, _feature_spread, with_deep_parameters
from ._dask import RegressionTargets, is_dask_collection, predict_blockwise
from ._export import mlp_regressor
from ._losses import SquaredLoss


class SparseMLPRegressor(RegressorMixin, BaseSparseMLP):
    """Sparse ReLU network regressor trained by iterative hard thresholding.

    The network has one hidden layer of ``p`` ReLU units and at most
    ``n_nonzero_coefs`` nonzero first-layer weights (hidden biases included).
    It is trained directly at that sparsity, in memory that grows with the
    number of nonzero weights rather than with the dense ``p x d`` network:
    each hidden unit ``j`` has an activation pattern ``D_j = 1[X h_j >= 0]``
    given by a *gate* vector ``h_j``, the network is
    ``f(X) = sum_j D_j X w_j + b`` (linear in the fused weights ``w``), and
    the fused weights are fitted by iterative hard thresholding (IHT) on the
    squared loss, with conjugate-gradient refinement on the support.

    With ``gate_update="sequential"`` (the default) the gate of each active
    unit follows its own weights, ``h_j = a_j w_j`` with a fixed sign
    ``a_j``, so the fitted model is an ordinary ReLU network
    ``f(x) = sum_j a_j relu(x . u_j + c_j) + b`` (exported as ``coefs_`` and
    ``intercepts_`` for a single output).  With ``gate_update="fixed"`` the
    gates stay random: a gated ReLU network, for which the problem is convex
    apart from the sparsity constraint (the setting of the recovery theory).

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_nonzero_coefs : int or float, default=0.1
        Budget of nonzero parameters, with the package's one definition (the
        same for IMP): the hidden weights and biases count, and the output
        weights when there are several outputs; the output intercepts never
        do (with one output a unit's output weight folds into its fused
        weights).  An int is a count (at least 1, at most the dense
        network's counted size, ``width x (n_features + 1)``, plus ``width x
        n_outputs`` for several outputs with ``output_coupling="shared"``);
        a float in (0, 1] is a fraction of that size.  With several outputs
        and ``output_coupling="fused"`` (not a plain network) every entry of
        the fused blocks counts, out of ``width x (n_features + 1) x
        n_outputs``.  See :ref:`budget`.

    {deep_parameters}

    gate_update : {"sequential", "fixed"}, default="sequential"
        How activation patterns evolve.  "sequential": every
        ``gate_update_period`` iterations, each active unit's gate is set to
        its own weights times a fixed sign (a true ReLU network); units that
        leave the support return to their random gate and may come back.
        "fixed": random gates throughout (a gated ReLU network).

    output_coupling : {"auto", "fused", "shared"}, default="auto"
        How the budget is shared across several outputs.  "shared": the
        vector-output ReLU network ``sum_j relu(x . u_j + c_j) v_j + b`` with
        one budget over ``u`` and ``v`` (the budget of IMP), started from a
        short fused fit that picks the units (see
        :class:`SparseMLPClassifier`), then, with several outputs, fitted
        at 2, 1.5 and 1.2 times the budget before the budget itself (the
        weaker units are pruned step by step; see the user guide); it is
        exported in ``coefs_`` and by :meth:`to_mlp`.  "fused": each
        hidden unit has a weight block of shape ``(n_inputs, n_outputs)``
        under one activation pattern (convex for fixed patterns, but not a
        plain ReLU MLP for several outputs).
        "auto": "shared" for several outputs (on the planted networks of
        ``benchmarks/phase.py --outputs 10`` it matches or beats "fused" at
        the same network size on 7 of 9 cells), "fused" for one, where both
        give the same kind of network.

    gate_update_period : int, default=1
        Iterations between two sequential gate updates.  With 1 (the
        default) every iterate is an exact ReLU network: a step, and each
        damped Gauss-Newton refit on the support, is accepted only when the
        network with its gates updated lowers the loss, so the loss of the
        ReLU network decreases monotonically and the fit stops by its
        ``tol`` rule.  Larger periods alternate gated steps and gate updates
        (the paper's scheme; the loss is then not monotone).

    gate_n_features : int or None, default=None
        Random gates on this many input features each (drawn per unit)
        instead of on all features.  Sparse gates suit planted sparse
        networks, whose true gates are sparse.

    batch_size : int or None, default=None
        None: every iteration uses all the data (full-batch IHT).  An int:
        ``fit`` runs epochs of stochastic IHT steps on shuffled minibatches
        of this many rows (one step per minibatch, the step size carried from
        one to the next), then full-batch iterations on all the data from the
        epochs' network (their stopping rules, then the polish), which refill
        the budget freed by units that turn out dead or of one pattern on all
        the rows; ``n_iter_`` counts the epochs and those iterations.  A
        minibatch step leaves the weights of the units inactive on all of its
        rows.  ``partial_fit`` steps through the rows it is given in
        minibatches of this size, in order.  Unlike MLPRegressor's SGD, small
        minibatches are not a speed-up: each step refits the support on its
        minibatch (make_friedman1, 2000 rows, 110 weights: ``batch_size=64``
        fits in 48 s to a test R^2 of 0.984, 400 in 9 s to 0.984, the full
        batch in 1.2 s to 0.988).  Use them for data too large for
        full-batch iterations.

    progressive : bool, default=True
        With many rows and ``batch_size=None``, start the fit on growing
        random samples of the rows: 8192 rows (or 16 per weight of the
        budget, rounded up to a power of two, if more), then four times more
        at each stage while at most half of the rows, and at most 262144,
        are drawn (a stage copies its rows); each stage is a whole fit (its
        stopping rules, up to ``max_iter`` iterations) started from the
        previous stage's network, the last one on all the rows.  Most
        iterations, where the support moves, then run on few rows, and the
        iterations on all the rows refine a nearly settled network
        (``make_friedman1`` with 10^6 rows: see ``benchmarks/speed.py``).
        ``alpha="auto"`` is chosen in the first stage; ``early_stopping``
        watches the last one; ``n_iter_`` and ``loss_curve_`` count every
        stage (each stage's losses on its own rows).  Fits on fewer than
        16384 rows, and fits on dask collections, are not staged.  False:
        every iteration on all the rows.

    max_iter : int, default=100
        Maximum number of IHT iterations (one full-gradient pass each) of each
        stage of the fit (each ``progressive`` stage; with several outputs,
        the fit at the budget after a fused start of at most 10 iterations and
        three wider stages of at most 15; each hidden layer's), or of epochs
        when ``batch_size`` is set.

    tol : float, default=1e-4
        Stop when the relative change of the loss over one iteration is below
        ``tol``.  ``tol=0`` disables this rule.  MLPRegressor's ``tol`` is
        absolute (its loss is in units of ``y**2``, so the rule depends on
        the scale of ``y``) and waits ``n_iter_no_change`` epochs, because
        single stochastic epochs are noisy; a full-batch IHT iteration is
        not, and the relative rule stops at the same point for ``y`` in any
        unit.  With a budget of at least ``n_samples`` weights (the network
        can fit the rows exactly) the change is compared with the loss of the
        constant model instead (2000 rows, 1000 features, the default budget
        of 10010 weights: 7.8 s instead of 130 s at ``max_iter``, test R^2
        0.980 against 0.982).  The classifiers' ``tol`` has MLPClassifier's
        meaning.

    alpha : "auto" or float, default="auto"
        Strength of the L2 penalty ``alpha / (2 n_samples) * ||w||^2`` on the
        nonzero fused weights, added to the mean loss
        ``sum_i ||f(x_i) - y_i||^2 / (2 n_samples)``: the scaling of
        MLPRegressor's ``alpha`` (with sample weights, ``n_samples`` is their
        sum).  The network is linear in its fused weights, so the penalty's
        effect does not depend on the scale of ``y``.  "auto" chooses it on
        the data during the fit, and ``alpha_`` holds the choice: the fit
        starts at 1.0; after 10 iterations (or when it would stop earlier)
        each ``alpha`` of ``np.logspace(-4, 4, 33)`` is scored by the
        leave-one-out error of the penalised refit on the current support at
        its activation patterns (exact for this linear refit, PRESS, computed
        from the support's normal equations in two passes over the rows), and
        the fit continues with the best; the choice is made again when a
        stopping rule next ends the fit.  Noisy data get a strong penalty,
        interpolation (an image, a noiseless planted network) a weak one: on
        ``benchmarks/tabular.py`` (3-fold CV, budget 10%) diabetes scores
        R^2 0.50 with "auto" against 0.40 with 1.0, make_friedman3 0.98
        against 0.97; planted networks of ``benchmarks/phase.py`` with s <= 10
        are recovered to rounding (150 dB) where 1.0 stops near 72 dB.  A
        penalty whose refit has more degrees of freedom on one output than
        half the rows is not chosen: the estimate holds the support and the
        patterns fixed, yet they were selected on the same rows, and near
        interpolation that matters most (linnerud, 20 rows and a budget of
        70: median 3-fold R^2 -11.2 without this rule, -0.51 with it; the
        mean of the training targets scores -0.46).  With sample weights
        below one, the start and the grid are multiplied by the mean weight
        of a sample (the total weight over the number of samples, a row of
        weight w >= 1 counting as w samples: 1 for unit or integer weights),
        so that scaling such weights does not change the model.  The
        choice is skipped (1.0 kept) when the support's normal equations would
        cost more than ``2e10`` multiply-adds (``n_samples x support^2``) or
        the support has more than 4000 weights, for ``batch_size`` and for
        ``partial_fit``; a warm start keeps the previous ``alpha_``.  With
        several outputs (the shared coupling) the fused stage that picks the
        units is fitted from two starts, at 1.0 and at 0.1, and the shared fit
        of each runs at the alpha chosen on the first; the one of lower
        penalised training loss is kept (the lower validation loss with
        ``early_stopping``): planted networks of 4 outputs were recovered
        exactly on 9 of 16 seeds against 5 from one start, at about twice the
        fit time (not with ``batch_size``).  A float is used as given
        throughout, from one start.

    n_iter_no_change : int, default=5
        Patience of the stopping rules: stop when the support has not changed
        for this many iterations, and, with ``early_stopping``, when the loss
        on the validation split has not improved by ``tol`` (relative) for
        this many iterations (as in MLPRegressor).

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows, track the loss
        on them after every iteration, stop when it stops improving and
        return the network with the lowest validation loss (an exact ReLU
        network with sequential gates).  The training rows are copied.

    validation_fraction : float, default=0.1
        Fraction of the rows held out for ``early_stopping`` (stratified for
        classifiers).

    n_refine_steps : int, default=5
        Most refit steps on the support after each thresholding step: damped
        Gauss-Newton steps of the ReLU network with sequential gates (see
        the user guide's section on the solver), fewer when a step gains
        less than ``tol``; with fixed gates, the least-squares refit (or,
        for large supports, conjugate-gradient steps).  0 gives plain
        normalised IHT.

    fit_intercept : bool, default=True
        Fit hidden biases (a constant input, counted in the budget) and an
        output intercept (not counted).

    warm_start : bool, default=False
        Reuse the previous fit's weights, gates and seed as the starting
        point.  A smaller ``n_nonzero_coefs`` first keeps the largest weights.

    random_state : int, RandomState instance or None, default=None
        Seed of the random gates.  An int makes fits reproducible bit for bit
        on one machine.

    verbose : int, default=0
        Print the loss, number of nonzeros and step size every iteration.

    n_jobs : int or None, default=None
        Threads for the numba kernels (BLAS is held to one thread inside
        them, so the cores are not oversubscribed).  None or -1 means all
        cores.  Inside an outer parallel loop (e.g. ``GridSearchCV(n_jobs=...)``)
        pass 1.  The result does not depend on ``n_jobs``.

    Attributes
    ----------
    fused_coef_ : scipy.sparse.csr_array of shape (hidden units, n_inputs * `n_outputs_`)
        Fused weights; row ``j`` is unit ``j``, column ``f * n_outputs_ + l``
        is input ``f`` (the last input is the constant when
        ``fit_intercept``) and output ``l``.  With
        ``output_coupling="shared"``: the first-layer weights ``u_j``, shape
        (hidden units, n_inputs).  (Named ``coef_`` before 0.1: a linear
        model's name, which scikit-learn's meta-estimators read as one weight
        per feature.)

    feature_importances_ : ndarray of shape (`n_features_in_`,)
        Importance of each input feature: the sum, over the network's paths
        from the feature to an output, of the products of the absolute
        weights along them (``sum_j |u_fj| ||v_j||_1``), normalised to sum to
        one.  Features the sparse network does not read have importance 0,
        so that :class:`~sklearn.feature_selection.SelectFromModel` selects
        the features the network uses.  It depends on the feature scales
        (scale them first).

    intercept_ : ndarray of shape (`n_outputs_`,)
        Output intercept.

    coefs_ : list of two ndarrays
        Sequential gates with one output or ``output_coupling="shared"``
        (an ordinary ReLU network): the network in MLPRegressor's layout,
        restricted to the active units: ``coefs_[0]`` (n_features, n_active)
        first-layer weights ``u_j``, ``coefs_[1]`` (n_active, `n_outputs_`)
        output weights (``a_j = +1 or -1`` for one fused output).
        :meth:`to_mlp` returns it as a fitted MLPRegressor.  ``predict(X)`` equals
        ``relu(X @ coefs_[0] + intercepts_[0]) @ coefs_[1] + intercepts_[1]``.

    intercepts_ : list of two ndarrays
        Hidden biases of the active units and the output intercept.

    gate_signs_ : ndarray of shape (n_active,)
        The signs ``a_j`` of the active units (sequential gates, single output).

    active_neurons_ : ndarray of int
        Indices of the hidden units with at least one nonzero weight.

    gates_ : ndarray of shape (n_active, n_inputs)
        Gate vectors of the active units at the end of the fit.

    n_nonzero_ : int
        Number of nonzero fused weights (never above the budget; below it
        only when no further weight lowers the training objective: see the
        user guide, "What the budget counts").

    n_iter_ : int
        Number of IHT iterations run, summed over the stages of the fit (so
        it can exceed ``max_iter``, which bounds each stage; epochs with
        ``batch_size``; calls of ``partial_fit``).

    loss_ : float
        Final loss, ``sum_i w_i ||f(x_i) - y_i||^2 / 2`` with normalised
        sample weights ``w_i``, plus the penalty.

    alpha_ : float
        The L2 strength of the fitted network: ``alpha``, or the value
        chosen by ``alpha="auto"``.

    loss_curve_ : list of float
        Loss after each iteration (epoch; call of ``partial_fit``: the mean of
        its minibatches' losses).

    validation_loss_curve_ : list of float
        With ``early_stopping``: the loss on the validation split after each
        iteration (``best_validation_loss_``: its minimum, the returned
        network's).

    n_layers_ : int
        With several hidden layers: the number of layers, input and output
        included (as MLPRegressor's); ``stage_budgets_`` holds each stage's budget
        and ``n_joint_iter_`` the iterations of the joint phase (also counted
        in ``n_iter_``).

    n_outputs_ : int
        Number of outputs.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.neural_network.MLPRegressor : Dense multi-layer perceptron.
    sklearn.linear_model.OrthogonalMatchingPursuit : Sparse linear model by a
        greedy method with the same kind of budget.

    Notes
    -----
    One iteration costs about ``4 n (d + 1) p k`` flops, spent in two
    matrix products per chunk of hidden units.  Every sum over samples is
    taken over row blocks whose boundaries depend on the number of samples
    only, in a fixed order, so a fit is bit-identical for any ``n_jobs``.
    Beyond the data (used in place; sparse input is never densified), the
    memory holds a few vectors of length ``n``, bit-packed activation
    patterns (at most 32 MiB), the streaming top-``s`` buffer and the
    normal equations of the support, independent of the width ``p``: see
    the memory model in the :ref:`User Guide <memory_model>`.  Scale the
    features (e.g. with :class:`~sklearn.preprocessing.StandardScaler`):
    random gates and magnitude thresholding both assume comparable feature
    scales.

    References
    ----------
    S. Fridovich-Keil and M. Pilanci, "A Recovery Guarantee for Sparse Neural
    Networks", arXiv:2509.20323, 2025.

    T. Blumensath and M. E. Davies, "Normalized iterative hard thresholding:
    guaranteed stability and performance", IEEE J. Sel. Topics Signal
    Process., 4(2), 2010.

    Examples
    --------
    >>> from sklearn_sparse_mlp import SparseMLPRegressor
    >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
    >>> X, y = make_planted_mlp(n_samples=2000, n_features=10, n_hidden=5,
    ...                         n_nonzero=10, random_state=0)
    >>> reg = SparseMLPRegressor(n_nonzero_coefs=10, hidden_layer_sizes=(20,),
    ...                          random_state=0).fit(X, y)
    >>> reg.n_nonzero_ <= 10
    True
    >>> reg.score(X, y) > 0.99
    True
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the sparse network to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR or CSC sparse matrices are accepted).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples.  A weight counts as that
            many repeats of the sample: a float ``alpha`` is a penalty per
            unit of weight, as in MLPRegressor, so that weights scaled up
            weaken it.  ``alpha="auto"`` leaves out one unit of a row's
            weight at a time, or the whole row when its weight is below
            one, so that weights scaled to sum to one choose about as unit
            weights do (its start and grid are scaled with the weights:
            see ``alpha``).

        Returns
        -------
        self : SparseMLPRegressor
            The fitted estimator.

        Examples
        --------
        >>> from sklearn_sparse_mlp import SparseMLPRegressor
        >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
        >>> X, y = make_planted_mlp(n_samples=200, n_features=5, n_hidden=3,
        ...                         n_nonzero=4, random_state=0)
        >>> reg = SparseMLPRegressor(n_nonzero_coefs=6, hidden_layer_sizes=(10,),
        ...                          random_state=0)
        >>> reg.fit(X, y)
        SparseMLPRegressor(hidden_layer_sizes=(10,), n_nonzero_coefs=6, random_state=0)
        >>> reg.n_nonzero_ <= 6, reg.fused_coef_.shape
        (True, (10, 6))
        """
        if is_dask_collection(X) or is_dask_collection(y):
            return self._fit_dask(X, y, sample_weight, self._dask_targets)
        return self._fit(X, y, sample_weight)

    def _dask_targets(self, y):
        """Targets of a dask fit (see ``BaseSparseMLP._fit_dask``)."""
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must hold numbers for a regressor; got dtype {y.dtype}.")
        self._y_ndim = y.ndim
        k = 1 if y.ndim == 1 else int(y.shape[1])
        return RegressionTargets(k), k, SquaredLoss(), False

    def _fit(self, X, y, sample_weight, path=None):
        """fit, or the fits along a path of budgets (see ``_fit_arrays``)."""
        X, Y = self._validate_training(X, y, reset=True, ensure_min_samples=2)
        if len(self._hidden_sizes()) > 1:
            if path is not None:
                self._n_hidden()  # raises: the path has one hidden layer
            self._fit_deep(X, Y if Y.shape[1] > 1 else Y.ravel(), sample_weight, Y.shape[1])
            return self
        path = None if path is None else (path[0](X.shape[1], Y.shape[1]), path[1])
        return self._fit_arrays(X, Y, sample_weight, SquaredLoss(), coupling=self._coupling(Y.shape[1]),
                                path=path)

    def _output_spread(self, y, sample_weight):
        """Each output's (weighted) standard deviation, 1 for a constant one."""
        Y = np.asarray(y, dtype=np.float64)
        return _feature_spread(Y.reshape(Y.shape[0], -1), sample_weight)

    def _deep_targets(self, y, sample_weight, last):
        """(Y, sample weights, loss, stratify) of the joint phase of a deep fit."""
        Y = np.asarray(y, dtype=np.float64)
        return Y.reshape(Y.shape[0], -1), sample_weight, SquaredLoss(), None

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the network with stochastic IHT steps on the given data.

        The first call initialises the network; later calls continue from it
        (also after ``fit``).  Each call makes one IHT step per minibatch of
        ``batch_size`` rows (all the rows when ``batch_size`` is None): the
        support, the gates and the step size carry over from call to call, so
        a loop over chunks of a data set that does not fit in memory (for
        instance ``np.load(..., mmap_mode="r")``) trains a network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples.

        Returns
        -------
        self : SparseMLPRegressor
            The updated estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_sparse_mlp import SparseMLPRegressor
        >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
        >>> X, y = make_planted_mlp(n_samples=3000, n_features=5, n_hidden=3,
        ...                         n_nonzero=4, random_state=0)
        >>> reg = SparseMLPRegressor(n_nonzero_coefs=6, hidden_layer_sizes=(10,),
        ...                          random_state=0)
        >>> for epoch in range(3):
        ...     for start in range(0, 3000, 500):
        ...         reg = reg.partial_fit(X[start:start + 500], y[start:start + 500])
        >>> reg.n_iter_, reg.n_nonzero_ <= 6
        (18, True)
        """
        first = not hasattr(self, "_layer")
        X, Y = self._validate_training(X, y, reset=first, ensure_min_samples=1)
        return self._partial_fit_arrays(X, Y, sample_weight, SquaredLoss(), first,
                                        coupling=self._coupling(Y.shape[1]))

    def _validate_training(self, X, y, reset, ensure_min_samples):
        """Validated X and float64 targets as an (n, k) matrix."""
        X, y = self._validate_xy(X, y, reset, ensure_min_samples, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self._y_ndim = y.ndim
        return X, (y.reshape(-1, 1) if y.ndim == 1 else y)

    def predict(self, X):
        """Predict with the sparse network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted values (in the dtype of X).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_sparse_mlp import SparseMLPRegressor
        >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
        >>> X, y = make_planted_mlp(n_samples=200, n_features=5, n_hidden=3,
        ...                         n_nonzero=4, random_state=0)
        >>> reg = SparseMLPRegressor(n_nonzero_coefs=6, hidden_layer_sizes=(10,),
        ...                          alpha=1e-4, random_state=0).fit(X, y)
        >>> y_pred = reg.predict(X)
        >>> y_pred.shape, bool(np.mean((y_pred - y) ** 2) < 1e-3 * np.var(y))
        ((200,), True)
        """
        if is_dask_collection(X):
            return predict_blockwise(self, "predict", X)
        F, dtype = self._raw_predict(X)
        F = F.astype(dtype, copy=False)
        return F.ravel() if self._y_ndim == 1 else F

    def _to_mlp(self):
        return mlp_regressor(self, self.coefs_, self.intercepts_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


SparseMLPRegressor._stage_class = SparseMLPRegressor
SparseMLPRegressor.__doc__ = with_deep_parameters(SparseMLPRegressor.__doc__, "MLPRegressor")
