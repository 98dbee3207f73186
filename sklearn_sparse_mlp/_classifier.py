"""SparseMLPClassifier: a sparse one-hidden-layer ReLU classifier trained by IHT."""

import numbers

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import BaseSparseMLP, with_deep_parameters
from ._dask import LabelTargets, is_dask_collection, predict_blockwise
from ._export import mlp_classifier
from ._labels import TargetEncoder


class SparseMLPClassifier(ClassifierMixin, BaseSparseMLP):
    """Sparse ReLU network classifier trained by iterative hard thresholding.

    The classifier counterpart of :class:`SparseMLPRegressor`: one hidden
    layer of ReLU units with at most ``n_nonzero_coefs`` nonzero weights,
    trained directly at that sparsity by iterative hard thresholding (IHT) on
    the logistic loss (two classes, or one independent output per label of a
    multilabel target), the softmax loss (more classes) or the squared loss on
    one-hot targets (as in the paper).  Memory grows with the number of
    nonzero weights, not with the dense network.

    Two ways to share the budget across the ``k`` outputs (classes):

    - ``output_coupling="fused"``: each hidden unit ``j`` has a
      fused weight block ``W_j`` of shape ``(n_features + 1, k)`` and the
      network is ``f(X) = sum_j D_j X W_j + b``, with activation patterns
      ``D_j`` shared by all outputs.  For fixed patterns the problem is convex
      (apart from the budget), and every nonzero entry of every block counts.
    - ``output_coupling="shared"``: the paper's vector-output network
      ``f(X) = sum_j relu(X u_j) v_j^T + b``: first-layer weights ``u_j``
      shared by all outputs and output weights ``v_j`` (length ``k``), with
      one joint budget over both layers (``nnz(U) + nnz(V)``).  It is a
      plain ReLU MLP (exported in ``coefs_``), but the problem is bilinear:
      it is started from the fused solution (at most 5 iterations of fused
      IHT, which pick the units) and refined by joint IHT.

    The default, "auto", is "shared" with sequential gates for more than two
    classes (and multilabel targets) and "fused" for two.  With exact
    sequential gates, "shared" was the only setting within a point of the
    dense MLP and at least IMP's accuracy on every multi-class set of
    ``benchmarks/tabular.py`` (3-fold CV, budget 10%: make_classification
    0.833 against 0.751 for "fused" with fixed gates, digits 0.976 against
    0.973, iris 0.973, wine 0.972), at several times the fit time.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_nonzero_coefs : int or float, default=0.1
        Budget of nonzero parameters, with the package's one definition (the
        same for IMP): the hidden weights and biases count, and the output
        weights when there are several outputs (``n_outputs`` is 1 for two
        classes, the number of classes or labels otherwise); the output
        intercepts never do.  An int is a count (at least 1, at most the
        dense network's counted size, ``width x (n_features + 1)`` plus
        ``width x n_outputs`` for several outputs); a float in (0, 1] is a
        fraction of that size.  ``output_coupling="fused"`` with several
        outputs is not a plain network: every entry of its fused blocks
        counts, out of ``width x (n_features + 1) x n_outputs``.  See
        :ref:`budget`.

    loss : {"log_loss", "squared_error"}, default="log_loss"
        "log_loss": logistic loss for two classes and for multilabel targets
        (one sigmoid output per label), softmax cross-entropy for more
        classes.  "squared_error": half the squared error on one-hot (0/1)
        targets, as in the paper; probabilities are then the outputs clipped
        to [0, 1] (and normalised over the classes).

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
        "balanced" uses ``n_samples / (n_classes * bincount(y))``; a dict maps
        labels to weights (missing labels weigh 1).  Multilabel targets accept
        None or "balanced" (the product over labels).

    output_coupling : {"auto", "fused", "shared"}, default="auto"
        How the budget is shared across outputs (see above).  With one output
        (two classes) both give the same kind of network.  "auto": "shared"
        for several outputs, "fused" for one.

    alpha : "auto" or float, default="auto"
        Strength of the L2 penalty ``alpha / (2 n_samples) * ||w||^2`` on the
        nonzero weights (scaled like MLPClassifier's ``alpha``; with sample
        weights, ``n_samples`` is their sum).  It also keeps the weights
        finite on separable data, where the unpenalised logistic loss has no
        minimiser.  "auto" chooses it on the data during the fit
        (``alpha_``): the fit starts at 1.0; after 10 iterations (with several
        classes, on the network of the 5-iteration fused start; or when it
        would stop earlier) each ``alpha`` of ``np.logspace(-4, 4, 33)`` is
        scored by the approximate leave-one-out log loss (Rad & Maleki, 2020)
        of the penalised Newton refit on the current support at its
        activation patterns, and the fit continues with the best (chosen
        again when a stopping rule next ends the fit).  On
        ``benchmarks/tabular.py`` (3-fold CV, budget 10%) make_moons scores
        0.938 with "auto" against 0.912 with 1.0, breast_cancer 0.974
        against 0.972, the other sets within a sample or two.  A penalty
        whose refit has more degrees of freedom on one output than half the
        rows is not chosen (the support and patterns were selected on the
        same rows; see SparseMLPRegressor).  With sample weights below one
        the start and the grid are multiplied by the mean weight of a sample,
        as in SparseMLPRegressor.  With several
        classes and the "shared" coupling the fused stage that starts the
        fit runs at 1.0, and the choice made on its network is the shared
        stage's.  Skipped (1.0 kept) when the
        support's normal equations would cost more than ``2e10``
        multiply-adds or the support has more than 4000 weights, for
        ``batch_size`` and for ``partial_fit``; a warm start keeps the
        previous ``alpha_``.  A float is used as given.

    {deep_parameters}

    gate_update : {"auto", "sequential", "fixed"}, default="auto"
        "sequential": every ``gate_update_period`` iterations the gate of
        each active unit follows its own weights (a ReLU network).  "fixed":
        random gates throughout (a gated ReLU network
        ``sum_j 1[X h_j >= 0] X W_j``, the setting of the recovery theory;
        convex for the log loss apart from the budget).  "auto": sequential
        for one output (two classes) and for the "shared" coupling, fixed for
        several fused outputs (a fused unit's gate can follow only one
        direction of its weight block: make_classification 0.67 sequential
        against 0.75 fixed).

    gate_update_period : int, default=1
        Iterations between two sequential gate updates.  With 1 (the
        default) every iterate is an exact ReLU network: a step, and each
        damped Gauss-Newton refit on the support, is accepted only when the
        network with its gates updated lowers the loss, so the loss of the
        ReLU network decreases monotonically and the fit stops by its
        ``tol`` rule.  Larger periods alternate gated steps and gate updates
        (the paper's scheme; the loss is then not monotone).

    gate_n_features : int or None, default=None
        Random gates on this many input features each instead of all.

    batch_size : int or None, default=None
        None: every iteration uses all the data (full-batch IHT).  An int:
        ``fit`` runs epochs of stochastic IHT steps on shuffled minibatches
        of this many rows, then continues from their network with full-batch
        iterations on all the data (stopping rules, polish), which refill
        the budget of units found dead or merged there (``n_iter_`` counts
        both); with several classes and the shared coupling, the epochs
        only start the fused stage, as with full batches.  A minibatch step
        keeps the weights of units inactive on all of its rows.
        ``partial_fit`` steps through the rows it is given in minibatches
        of this size, in order.  Small minibatches are no speed-up, unlike
        MLPClassifier's SGD: each step refits the support on its rows
        (digits, 1347 training rows, 750 weights: ``batch_size=64`` in 27 s,
        256 in 12 s, the full batch in 2.6 s, test accuracy 0.978, 0.971
        and 0.978).  They are for data too large for full-batch iterations.

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
        stage of the fit (each ``progressive`` stage; with several classes,
        the fit at the budget after a fused start of at most 5 iterations;
        each hidden layer's), or of epochs when ``batch_size`` is set.

    tol : float, default=1e-4
        Stop when the loss (in nats for the log loss) changes by less than
        ``tol`` over one iteration, like MLPClassifier's ``tol`` (an absolute
        change: the log loss of a training set fitted perfectly keeps
        shrinking by relative steps).  ``tol=0`` disables this rule.

    n_iter_no_change : int, default=5
        Patience of the stopping rules: stop when the support has not changed
        for this many iterations, and, with ``early_stopping``, when the loss
        on the validation split has not improved by ``tol`` (absolute, as the log loss) for
        this many iterations (as in MLPClassifier, which tracks the accuracy).

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
        less than ``tol``; with fixed gates, Newton steps (or,
        for large supports, gradient steps).  0 gives plain normalised IHT.

    fit_intercept : bool, default=True
        Fit hidden biases (counted in the budget) and output intercepts (not
        counted).

    warm_start : bool, default=False
        Start from the previous fit's weights and gates.  The classes must be
        the same as in the previous fit.

    random_state : int, RandomState instance or None, default=None
        Seed of the random gates; an int makes fits reproducible bit for bit.

    verbose : int, default=0
        Print the loss and the number of nonzeros every iteration.

    n_jobs : int or None, default=None
        Threads for the numba kernels (BLAS is held to one thread inside
        them).  None or -1 means all cores.  The result does not depend on
        ``n_jobs``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (for multilabel targets, ``arange(n_labels)``).

    fused_coef_ : scipy.sparse.csr_array
        "fused": the fused weights, shape (hidden units, n_inputs *
        ``n_outputs_``), column ``f * n_outputs_ + l`` for input ``f`` and output
        ``l``.  "shared": the first-layer weights, shape (hidden units,
        n_inputs).  (Named ``coef_`` before 0.1.)

    feature_importances_ : ndarray of shape (`n_features_in_`,)
        Importance of each input feature: the sum over the paths from the
        feature to an output of the products of absolute weights,
        normalised to sum to one (0 for the features the network does not
        read; see :class:`SparseMLPRegressor`).

    intercept_ : ndarray of shape (`n_outputs_`,)
        Output intercepts.

    coefs_ : list of two ndarrays
        The network in MLPClassifier's layout, active units only, when it is
        an ordinary ReLU network (sequential gates with one output, or
        "shared" coupling): ``decision_function`` is
        ``relu(X @ coefs_[0] + intercepts_[0]) @ coefs_[1] + intercepts_[1]``.

    intercepts_ : list of two ndarrays
        Hidden biases and output intercepts matching ``coefs_``.

    active_neurons_ : ndarray of int
        Hidden units with at least one nonzero weight.

    n_nonzero_ : int
        Number of nonzero weights (never above the budget; below it only when
        no further weight lowers the training objective: see the user guide,
        "What the budget counts").

    n_iter_ : int
        Number of IHT iterations run, summed over the stages of the fit (so
        it can exceed ``max_iter``, which bounds each stage; epochs with
        ``batch_size``; calls of ``partial_fit``).

    loss_ : float
        Final loss (mean over samples, weighted), plus the penalty.

    alpha_ : float
        The L2 strength of the fitted network: ``alpha``, or the value
        chosen by ``alpha="auto"``.

    loss_curve_ : list of float
        Loss after each iteration.

    validation_loss_curve_ : list of float
        With ``early_stopping``: the loss on the validation split after each
        iteration (``best_validation_loss_``: its minimum, the returned
        network's).

    n_layers_ : int
        With several hidden layers: the number of layers, input and output
        included (as MLPClassifier's); ``stage_budgets_`` holds each stage's budget
        and ``n_joint_iter_`` the iterations of the joint phase (also counted
        in ``n_iter_``).

    n_outputs_ : int
        Number of network outputs.

    out_activation_ : str
        "logistic", "softmax" or "identity" (squared loss).

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SparseMLPRegressor : The regressor trained the same way.
    sklearn.neural_network.MLPClassifier : Dense multi-layer perceptron.

    Notes
    -----
    Like :class:`SparseMLPRegressor`, scale the features first (e.g. with
    :class:`~sklearn.preprocessing.StandardScaler`).  Without a penalty, the
    logistic loss of separable data keeps decreasing as the weights grow; the
    fit then ends when the support stops changing (``n_iter_no_change``) or
    the relative change falls under ``tol``.

    References
    ----------
    S. Fridovich-Keil and M. Pilanci, "A Recovery Guarantee for Sparse Neural
    Networks", arXiv:2509.20323, 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_sparse_mlp import SparseMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), SparseMLPClassifier(
    ...     n_nonzero_coefs=40, hidden_layer_sizes=(20,), random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    >>> clf[-1].n_nonzero_ <= 40
    True
    """

    _parameter_constraints = {
        **BaseSparseMLP._parameter_constraints,
        "loss": [StrOptions({"log_loss", "squared_error"})],
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "output_coupling": [StrOptions({"auto", "fused", "shared"})],
        "alpha": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "gate_update": [StrOptions({"auto", "sequential", "fixed"})],
    }

    def __init__(
        self,
        n_nonzero_coefs=0.1,
        *,
        loss="log_loss",
        class_weight=None,
        output_coupling="auto",
        alpha="auto",
        hidden_layer_sizes=(100,),
        budget_split="even",
        joint_max_iter=20,
        gate_update="auto",
        gate_update_period=1,
        gate_n_features=None,
        batch_size=None,
        progressive=True,
        max_iter=100,
        tol=1e-4,
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
        super().__init__(
            n_nonzero_coefs,
            hidden_layer_sizes=hidden_layer_sizes,
            budget_split=budget_split,
            joint_max_iter=joint_max_iter,
            gate_update=gate_update,
            gate_update_period=gate_update_period,
            gate_n_features=gate_n_features,
            batch_size=batch_size,
            progressive=progressive,
            max_iter=max_iter,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            alpha=alpha,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_refine_steps=n_refine_steps,
            fit_intercept=fit_intercept,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
            n_jobs=n_jobs,
        )
        self.loss = loss
        self.class_weight = class_weight
        self.output_coupling = output_coupling

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the sparse network to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR or CSC sparse matrices are accepted).
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples (multiplied by the class
            weights).  A weight counts as that many repeats of the sample:
            a float ``alpha`` is a penalty per unit of weight, as in
            MLPClassifier, so that weights scaled up weaken it.
            ``alpha="auto"`` leaves out one unit of a row's weight at a
            time, or the whole row when its weight is below one, so that
            weights scaled to sum to one choose about as unit weights do
            (its start and grid are scaled with the weights: see
            ``alpha``).

        Returns
        -------
        self : SparseMLPClassifier
            The fitted estimator.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0)
        >>> clf.fit(X, y)
        SparseMLPClassifier(hidden_layer_sizes=(20,), n_nonzero_coefs=40,
                            random_state=0)
        >>> clf.classes_, clf.n_outputs_, clf.out_activation_
        (array([0, 1, 2]), 3, 'softmax')
        """
        if is_dask_collection(X) or is_dask_collection(y):
            return self._fit_dask(X, y, sample_weight, self._dask_targets)
        return self._fit(X, y, sample_weight)

    def _dask_targets(self, y):
        """Targets of a dask fit: the classes and their counts from one pass
        over the labels (see ``BaseSparseMLP._fit_dask``)."""
        import dask
        import dask.array as da

        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise NotImplementedError(
                "A fit on dask collections takes one label per sample; multilabel targets "
                "need in-memory arrays for now."
            )
        classes, counts = dask.compute(*da.unique(y, return_counts=True))
        encoder = TargetEncoder().fit(classes)
        self._check_warm_classes(encoder)
        cw = None
        if self.class_weight == "balanced":
            cw = counts.sum() / (classes.size * counts.astype(np.float64))
        elif self.class_weight is not None:
            unknown = set(self.class_weight) - set(classes.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight names labels that are not in the data: {sorted(unknown, key=str)!r}; "
                    f"the classes are {classes.tolist()!r}."
                )
            cw = np.array([float(self.class_weight.get(c, 1.0)) for c in classes.tolist()])
        loss = self._set_encoder(encoder)
        return LabelTargets(encoder.classes_, cw), encoder.n_outputs_, loss, True

    def _fit(self, X, y, sample_weight, path=None):
        """fit, or the fits along a path of budgets (see ``_fit_arrays``)."""
        X, y = self._validate_training(X, y, reset=True, ensure_min_samples=2)
        encoder = TargetEncoder().fit(y)
        if len(self._hidden_sizes()) > 1:
            if path is not None:
                self._n_hidden()  # raises: the path has one hidden layer
            last = self._fit_deep(X, y, sample_weight, encoder.n_outputs_)
            self._set_encoder(last._encoder)
            return self
        self._check_warm_classes(encoder)
        Y = encoder.transform(y)
        cw = encoder.sample_weight(self.class_weight, y)
        if cw is not None:
            sample_weight = cw if sample_weight is None else cw * np.asarray(sample_weight, dtype=np.float64)
        loss = self._set_encoder(encoder)
        stratify = y if encoder.target_type_ != "multilabel-indicator" else None
        path = None if path is None else (path[0](X.shape[1], Y.shape[1]), path[1])
        return self._fit_arrays(
            X, Y, sample_weight, loss, coupling=self._coupling(Y.shape[1]), absolute_tol=True,
            stratify=stratify, path=path
        )

    def _deep_targets(self, y, sample_weight, last):
        """(Y, sample weights, loss, stratify) of the joint phase of a deep fit."""
        encoder = last._encoder
        sw = encoder.sample_weight(self.class_weight, y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            sw = sample_weight if sw is None else sw * sample_weight
        stratify = y if encoder.target_type_ != "multilabel-indicator" else None
        return encoder.transform(y), sw, encoder.loss(self.loss), stratify

    def _check_warm_classes(self, encoder):
        """With warm_start, the classes must be those of the previous fit."""
        if (
            self.warm_start
            and hasattr(self, "_encoder")
            and not (
                encoder.target_type_ == self._encoder.target_type_
                and np.array_equal(encoder.classes_, self._encoder.classes_)
            )
        ):
            raise ValueError(
                "warm_start can only be used where y has the same classes as in the "
                f"previous call to fit: previous {self._encoder.classes_.tolist()!r}, "
                f"now {encoder.classes_.tolist()!r}."
            )

    def _set_encoder(self, encoder):
        self._encoder = encoder
        self.classes_ = encoder.classes_
        loss = encoder.loss(self.loss)
        self.out_activation_ = {"SquaredLoss": "identity", "LogisticLoss": "logistic"}.get(
            type(loss).__name__, "softmax"
        )
        return loss

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the network with stochastic IHT steps on the given data.

        The first call initialises the network and needs ``classes``; later
        calls continue from it (also after ``fit``).  Each call makes one IHT
        step per minibatch of ``batch_size`` rows (all the rows when
        ``batch_size`` is None); the support, the gates and the step size
        carry over from call to call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data set: required on the first call
            (a chunk may lack some classes), ignored afterwards.  For
            multilabel targets, ``arange(n_labels)``.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples (multiplied by the class
            weights).

        Returns
        -------
        self : SparseMLPClassifier
            The updated estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> order = np.random.RandomState(0).permutation(150)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0)
        >>> for epoch in range(20):
        ...     for chunk in np.array_split(order, 3):
        ...         clf = clf.partial_fit(X[chunk], y[chunk], classes=[0, 1, 2])
        >>> clf.score(X, y) > 0.9
        True
        """
        first = _check_partial_fit_first_call(self, classes)
        X, y = self._validate_training(X, y, reset=first, ensure_min_samples=1)
        if first:
            multilabel = type_of_target(y).startswith("multilabel")
            encoder = TargetEncoder().fit(y if multilabel else np.asarray(self.classes_))
        else:
            encoder = self._encoder
        if encoder.target_type_ != "multilabel-indicator":
            unknown = np.setdiff1d(np.unique(y), encoder.classes_)
            if unknown.size:
                if first:
                    del self.classes_  # nothing was fitted: the next call is a first one again
                raise ValueError(
                    f"y holds labels that are not in classes: {unknown.tolist()!r}; the classes "
                    f"given on the first call to partial_fit are {encoder.classes_.tolist()!r}."
                )
        Y = encoder.transform(y)
        cw = encoder.sample_weight(self.class_weight, y)
        if cw is not None:
            sample_weight = cw if sample_weight is None else cw * np.asarray(sample_weight, dtype=np.float64)
        loss = self._set_encoder(encoder)
        return self._partial_fit_arrays(X, Y, sample_weight, loss, first, coupling=self._coupling(Y.shape[1]))

    def _validate_training(self, X, y, reset, ensure_min_samples):
        """Validated X and labels (a column vector of labels made 1-D, with
        the warning of scikit-learn's classifiers)."""
        X, y = self._validate_xy(X, y, reset, ensure_min_samples, y_numeric=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _outputs(self, X):
        """(raw outputs, target encoder) for X."""
        check_is_fitted(self, "_layer")
        F, _ = self._raw_predict(X)
        return F, self._encoder

    def decision_function(self, X):
        """Raw network outputs, positive for the predicted class (or label).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, `n_outputs_`)
            One column for two classes (positive: ``classes_[1]``), one per
            class or label otherwise.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0).fit(X, y)
        >>> scores = clf.decision_function(X[:2])
        >>> scores.shape, scores.argmax(axis=1)
        ((2, 3), array([0, 0]))
        """
        if is_dask_collection(X):
            return predict_blockwise(self, "decision_function", X)
        F, encoder = self._outputs(X)
        return encoder.decision(F, self.loss)

    def predict(self, X):
        """Predict class labels (or label indicators).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Predicted labels.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0).fit(X, y)
        >>> clf.predict(X[[0, 60, 120]])
        array([0, 1, 2])
        """
        if is_dask_collection(X):
            return predict_blockwise(self, "predict", X)
        F, encoder = self._outputs(X)
        return encoder.predict(F, self.loss)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to one (for multilabel targets: one probability per
            label).  Columns follow ``classes_``.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0).fit(X, y)
        >>> proba = clf.predict_proba(X[[0, 120]])
        >>> proba.shape, proba.sum(axis=1).round(6), proba.argmax(axis=1)
        ((2, 3), array([1., 1.]), array([0, 2]))
        """
        if is_dask_collection(X):
            return predict_blockwise(self, "predict_proba", X)
        F, encoder = self._outputs(X)
        return encoder.proba(F, self.loss)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed without overflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns following ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifier(n_nonzero_coefs=40, hidden_layer_sizes=(20,),
        ...                           random_state=0).fit(X, y)
        >>> log_proba = clf.predict_log_proba(X[:5])
        >>> np.allclose(np.exp(log_proba), clf.predict_proba(X[:5]))
        True
        """
        if is_dask_collection(X):
            return predict_blockwise(self, "predict_log_proba", X)
        F, encoder = self._outputs(X)
        return encoder.log_proba(F, self.loss)

    def _to_mlp(self):
        return mlp_classifier(self, self.coefs_, self.intercepts_, self._encoder._binarizer,
                              self.out_activation_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


SparseMLPClassifier._stage_class = SparseMLPClassifier
SparseMLPClassifier.__doc__ = with_deep_parameters(SparseMLPClassifier.__doc__, "MLPClassifier")
