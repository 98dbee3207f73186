"""The budget path: warm-started fits over budgets, and the CV estimators.

A path fits the budgets in increasing order on one set of row blocks (the
data, their caches and the thread settings are built once); each budget
starts from the previous budget's network instead of from an empty one.
``SparseMLPRegressorCV`` and ``SparseMLPClassifierCV`` run one path per
cross-validation fold, pick the budget with the best mean score and refit
at that budget on all the data.
"""

import copy
import numbers

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils import Bunch, _safe_indexing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import indexable

from ._base import BaseSparseMLP
from ._budget import resolve_budget
from ._classifier import SparseMLPClassifier
from ._regressor import SparseMLPRegressor


def budget_grid(n_nonzero_coefs, n_budgets, size):
    """Increasing distinct integer budgets.

    ``n_nonzero_coefs`` None: ``n_budgets`` points spaced geometrically from
    0.5% to 20% of the network's ``size`` (at least 1).  Otherwise a list of
    counts (int) and fractions of ``size`` (float in (0, 1]).
    """
    if n_nonzero_coefs is None:
        lo, hi = max(1.0, 0.005 * size), max(1.0, 0.2 * size)
        grid = np.round(np.geomspace(lo, hi, int(n_budgets))).astype(np.int64)
    else:
        values = np.atleast_1d(np.asarray(n_nonzero_coefs, dtype=object))
        if values.size == 0:
            raise ValueError("n_nonzero_coefs is an empty list: give at least one budget.")
        grid = []
        for b in values:
            if isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Real):
                raise ValueError(f"n_nonzero_coefs holds {b!r}: budgets are ints (counts) or floats in (0, 1].")
            if isinstance(b, numbers.Integral):
                if b < 1:
                    raise ValueError(f"n_nonzero_coefs holds {b}: a budget is at least 1.")
                grid.append(resolve_budget(int(b), size))
            else:
                if not 0 < b <= 1:
                    raise ValueError(f"n_nonzero_coefs holds {b}: a fractional budget is in (0, 1].")
                grid.append(resolve_budget(float(b), size))
        grid = np.asarray(grid, dtype=np.int64)
    return np.unique(np.clip(grid, 1, size))


def _check_estimator(estimator):
    if estimator is None:
        return SparseMLPRegressor()
    if not isinstance(estimator, (SparseMLPRegressor, SparseMLPClassifier)):
        raise TypeError(
            f"estimator must be a SparseMLPRegressor or SparseMLPClassifier, got {type(estimator).__name__}."
        )
    base = SparseMLPClassifier if isinstance(estimator, SparseMLPClassifier) else SparseMLPRegressor
    params = {name: getattr(estimator, name) for name in base._get_param_names()}
    return base(**params)


def sparse_mlp_path(X, y, *, n_nonzero_coefs=None, n_budgets=8, estimator=None, sample_weight=None):
    """Fit sparse networks along increasing budgets, each warm-started.

    The budgets are fitted in increasing order on the same row blocks (the
    data and their caches are prepared once); the fit at each budget starts
    from the network of the previous one (its support, gates and output
    intercept; a regressor's with ``alpha="auto"`` also from its
    ``alpha_``), and IHT then grows it to the new budget.  The first budget
    is fitted from scratch, exactly as a standalone fit.

    Read more in the :ref:`User Guide <budget_path>`.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Training data.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets (class labels for a classifier).
    n_nonzero_coefs : array-like of int or float, default=None
        The budgets: counts (int) or fractions (float in (0, 1]) of the
        network's size, as ``n_nonzero_coefs`` of the estimators.  They are
        sorted and duplicates dropped.  None: ``n_budgets`` budgets spaced
        geometrically from 0.5% to 20% of the network's size.
    n_budgets : int, default=8
        Number of budgets of the default grid.
    estimator : SparseMLPRegressor or SparseMLPClassifier, default=None
        Gives every parameter but the budget (None: ``SparseMLPRegressor()``).
        It is not modified.
    sample_weight : array-like of shape (n_samples,), default=None
        Nonnegative sample weights.

    Returns
    -------
    path : Bunch
        ``n_nonzero_coefs`` (ndarray of int, increasing): the budgets;
        ``estimators``: one fitted estimator per budget (its
        ``n_nonzero_coefs`` set to the budget); ``n_nonzero``, ``loss`` and
        ``n_iter``: ndarrays of the fits' ``n_nonzero_``, ``loss_`` and
        ``n_iter_``.

    See Also
    --------
    SparseMLPRegressorCV : Chooses the budget by cross-validation along
        one path per fold.

    Notes
    -----
    A fit inside the path is *not* the same model as a standalone fit at that
    budget (except the first): IHT is a local method, and the path starts
    each budget from the smaller network before it instead of from an empty
    one.  The starting support is the previous network's, and the new budget
    is filled by the next thresholding steps, so the path's networks tend to
    be nested.  The path ranks budgets: after the first, each is fitted to
    looser rules than a standalone fit (the ``tol`` rule at ten times
    ``tol``, at most one Gauss-Newton step per iteration, a final
    Gauss-Newton polish of sequential gates to ``1e-6`` of the loss instead
    of ``1e-10``); with several classes or outputs (the shared coupling)
    every budget starts from an empty network under these rules.  See the User Guide for the measured times and
    scores.  Their quality is comparable (see the benchmark
    ``benchmarks/cv.py``); for the exact standalone model, fit the estimator
    at the chosen budget (what the CV estimators do in their final refit).

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_sparse_mlp import SparseMLPRegressor, sparse_mlp_path
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> path = sparse_mlp_path(X, y, n_nonzero_coefs=[5, 10, 20],
    ...                        estimator=SparseMLPRegressor(random_state=0))
    >>> path.n_nonzero_coefs
    array([ 5, 10, 20])
    >>> [bool(est.n_nonzero_ <= s) for est, s in zip(path.estimators, path.n_nonzero_coefs)]
    [True, True, True]
    """
    est = _check_estimator(estimator)
    est.set_params(warm_start=False)
    fits = []

    def grid(d, k):
        budgets = budget_grid(n_nonzero_coefs, n_budgets, est._network_size(d, k))
        fits.append(budgets)
        return budgets

    def record(i):
        fitted = copy.deepcopy(est)
        fitted.n_nonzero_coefs = int(fits[0][i])
        fits.append(fitted)

    est._fit(X, y, sample_weight, path=(grid, record))
    estimators = fits[1:]
    return Bunch(
        n_nonzero_coefs=fits[0],
        estimators=estimators,
        n_nonzero=np.array([e.n_nonzero_ for e in estimators]),
        loss=np.array([e.loss_ for e in estimators]),
        n_iter=np.array([e.n_iter_ for e in estimators]),
    )


def _information_criterion(est, X, y, sample_weight, kind):
    """BIC or AIC of a fitted estimator from its training loss."""
    n_eff = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    if is_classifier(est):
        proba = np.clip(est.predict_proba(X), 1e-15, 1 - 1e-15)
        Y = est._encoder.transform(y)
        if est._encoder.target_type_ == "multilabel-indicator":
            per_sample = -(Y * np.log(proba) + (1 - Y) * np.log1p(-proba)).sum(axis=1)
        else:
            column = np.searchsorted(est.classes_, np.asarray(y).ravel())
            per_sample = -np.log(proba[np.arange(len(proba)), column])
        w = np.ones(len(per_sample)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        fit_term = 2.0 * float(w @ per_sample)
    else:
        pred = est.predict(X).reshape(X.shape[0], -1)
        Y = np.asarray(y, dtype=np.float64).reshape(pred.shape[0], -1)
        w = np.ones(pred.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        rss = float(w @ ((Y - pred) ** 2).sum(axis=1))
        fit_term = n_eff * Y.shape[1] * np.log(max(rss / (n_eff * Y.shape[1]), np.finfo(float).tiny))
    penalty = np.log(n_eff) if kind == "bic" else 2.0
    return fit_term + penalty * est.n_nonzero_


class _SparseMLPCVMixin:
    """Budget selection along warm-started paths (one per fold)."""

    _cv_constraints = {
        "n_nonzero_coefs": [None, "array-like"],
        "n_budgets": [Interval(numbers.Integral, 1, None, closed="left")],
        "cv": ["cv_object"],
        "scoring": [None, str, callable],
        "criterion": [StrOptions({"cv", "bic", "aic"})],
    }

    def _single(self):
        """A plain estimator with this one's parameters (budget aside)."""
        base = self._base_class
        params = {name: getattr(self, name) for name in base._get_param_names() if name != "n_nonzero_coefs"}
        return base(n_nonzero_coefs=1, **params)

    def _fit_cv(self, X, y, sample_weight):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X, y, sample_weight = indexable(X, y, sample_weight)
        single = self._single().set_params(warm_start=False)
        grids = []

        def grid(d, k):
            grids.append(budget_grid(self.n_nonzero_coefs, self.n_budgets, single._network_size(d, k)))
            if not np.array_equal(grids[-1], grids[0]):
                raise ValueError(
                    "The budget grid differs between folds (a training fold lacks a class, so its "
                    "network has fewer outputs): use a stratified cv or give n_nonzero_coefs as counts."
                )
            return grids[-1]

        if self.criterion == "cv":
            cv = check_cv(self.cv, y, classifier=is_classifier(self))
            scorer = check_scoring(single, scoring=self.scoring)
            columns = []
            for train, test in cv.split(X, y):
                X_tr, y_tr = _safe_indexing(X, train), _safe_indexing(y, train)
                X_te, y_te = _safe_indexing(X, test), _safe_indexing(y, test)
                sw_tr = None if sample_weight is None else _safe_indexing(np.asarray(sample_weight), train)
                fold_est = clone(single)
                fold = []

                def score(i, fold=fold, fold_est=fold_est, X_te=X_te, y_te=y_te):
                    fold.append((scorer(fold_est, X_te, y_te), fold_est.n_nonzero_))

                fold_est._fit(X_tr, y_tr, sw_tr, path=(grid, score))
                columns.append(fold)
            self.scores_path_ = np.array([[v for v, _ in fold] for fold in columns], dtype=float).T
            self.n_nonzero_path_ = np.array([[m for _, m in fold] for fold in columns]).T
            self.mean_scores_ = self.scores_path_.mean(axis=1)
            if not np.any(np.isfinite(self.mean_scores_)):
                raise ValueError("Every budget scored NaN on some fold: check the scoring.")
            # Ties go to the smallest budget.
            best = int(np.flatnonzero(self.mean_scores_ == np.nanmax(self.mean_scores_))[0])
        else:
            values = []
            path_est = clone(single)

            def criterion(i):
                values.append(_information_criterion(path_est, X, y, sample_weight, self.criterion))

            path_est._fit(X, y, sample_weight, path=(grid, criterion))
            self.criterion_path_ = np.array(values)
            best = int(np.argmin(self.criterion_path_))
        self.budgets_ = grids[0]
        self.n_nonzero_coefs_ = int(self.budgets_[best])
        # The final model: a standalone fit at the chosen budget on all data.
        return self._fit(X, y, sample_weight, path=(lambda d, k: [self.n_nonzero_coefs_], lambda i: None))


_CV_PARAMS_DOC = """
    n_nonzero_coefs : array-like of int or float, default=None
        The budgets to choose from: counts (int) or fractions (float in
        (0, 1]) of the network's size, as the estimator's
        ``n_nonzero_coefs``.  None: ``n_budgets`` budgets spaced
        geometrically from 0.5% to 20% of the network's size.

    n_budgets : int, default=8
        Number of budgets of the default grid.

    cv : int, cross-validation generator or iterable, default=None
        As in scikit-learn's CV estimators: None is 5-fold ({fold_kind}).

    scoring : str, callable or None, default=None
        Score to maximise on the held-out folds (None: the estimator's
        ``score``, {score_kind}).

    criterion : {{"cv", "bic", "aic"}}, default="cv"
        "cv": cross-validation, one warm-started path per fold.  "bic" or
        "aic": one path on all the data, scored by an information criterion
        on the training loss (``n log(RSS / n)`` for regression, twice the
        log loss for classification, plus ``log(n)`` or 2 per nonzero
        weight): about ``n_folds`` times cheaper, but it counts the budget,
        not the network's nonlinear degrees of freedom, so prefer "cv" when
        the time allows.
"""

_CV_ATTRS_DOC = """
    n_nonzero_coefs_ : int
        The chosen budget.

    budgets_ : ndarray of int
        The budgets tried (increasing).

    scores_path_ : ndarray of shape (n_budgets, n_folds)
        With ``criterion="cv"``: the score of each budget on each held-out
        fold (``mean_scores_``: its mean over the folds).

    n_nonzero_path_ : ndarray of shape (n_budgets, n_folds)
        With ``criterion="cv"``: the nonzero weights of each fold's network.

    criterion_path_ : ndarray of shape (n_budgets,)
        With ``criterion="bic"`` or ``"aic"``: the criterion of each budget.
"""


class SparseMLPRegressorCV(_SparseMLPCVMixin, RegressorMixin, BaseSparseMLP):
    """Sparse ReLU network regressor with the budget chosen by cross-validation.

    For each cross-validation fold, one warm-started path (see
    :func:`sparse_mlp_path`) fits the budgets in increasing order and scores
    each on the held-out rows; the budget with the best mean score is
    refitted on all the data, as a standalone
    :class:`SparseMLPRegressor` with ``n_nonzero_coefs=n_nonzero_coefs_``
    (the same model, bit for bit).  It replaces
    ``GridSearchCV(SparseMLPRegressor(), {{"n_nonzero_coefs": [...]}})``,
    where every budget of every fold is fitted from an empty network.

    Read more in the :ref:`User Guide <budget_path>`.

    Parameters
    ----------
{params}

{single_params}

    Attributes
    ----------
{attrs}

{single_attrs}

    See Also
    --------
    sparse_mlp_path : The warm-started path over budgets.
    SparseMLPClassifierCV : The classifier counterpart.
    sklearn.linear_model.LassoCV : The same pattern for the lasso.

    Notes
    -----
    A fit along a path starts from the previous budget's network (with
    several classes or outputs, from an empty one) and stops sooner than a
    standalone fit, so a fold's score at a budget is not exactly that of a
    standalone fit there (see :func:`sparse_mlp_path`); ``GridSearchCV`` over
    the same grid and folds may therefore pick a neighbouring budget.  The
    final model is the standalone fit at the chosen budget.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_sparse_mlp import SparseMLPRegressorCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), SparseMLPRegressorCV(
    ...     n_nonzero_coefs=[5, 20, 80], cv=3, random_state=0)).fit(X, y)
    >>> reg = model[-1]
    >>> reg.budgets_, reg.scores_path_.shape
    (array([ 5, 20, 80]), (3, 3))
    >>> int(reg.n_nonzero_coefs_) in (5, 20, 80), reg.n_nonzero_ <= reg.n_nonzero_coefs_
    (True, True)
    """

    _base_class = SparseMLPRegressor
    _stage_class = SparseMLPRegressor
    _parameter_constraints = {**BaseSparseMLP._parameter_constraints, **_SparseMLPCVMixin._cv_constraints}

    def __init__(
        self,
        n_nonzero_coefs=None,
        *,
        n_budgets=8,
        cv=None,
        scoring=None,
        criterion="cv",
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
        super().__init__(
            n_nonzero_coefs, hidden_layer_sizes=hidden_layer_sizes, budget_split=budget_split,
            joint_max_iter=joint_max_iter,
            gate_update=gate_update, output_coupling=output_coupling, gate_update_period=gate_update_period,
            gate_n_features=gate_n_features, batch_size=batch_size, progressive=progressive, max_iter=max_iter,
            tol=tol,
            alpha=alpha, n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_refine_steps=n_refine_steps,
            fit_intercept=fit_intercept, warm_start=warm_start, random_state=random_state,
            verbose=verbose, n_jobs=n_jobs,
        )
        self.n_budgets = n_budgets
        self.cv = cv
        self.scoring = scoring
        self.criterion = criterion

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose the budget along warm-started paths, then refit on all data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples (used in the fits, not in
            the scores).

        Returns
        -------
        self : SparseMLPRegressorCV
            The fitted estimator.

        Examples
        --------
        >>> from sklearn_sparse_mlp import SparseMLPRegressorCV
        >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
        >>> X, y = make_planted_mlp(n_samples=300, n_features=5, n_hidden=3,
        ...                         n_nonzero=4, random_state=0)
        >>> reg = SparseMLPRegressorCV(n_nonzero_coefs=[2, 6], hidden_layer_sizes=(10,),
        ...                            cv=3, random_state=0).fit(X, y)
        >>> reg.n_nonzero_coefs_
        6
        """
        return self._fit_cv(X, y, sample_weight)

    _fit = SparseMLPRegressor._fit
    _validate_training = SparseMLPRegressor._validate_training
    _to_mlp = SparseMLPRegressor._to_mlp
    predict = SparseMLPRegressor.predict

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class SparseMLPClassifierCV(_SparseMLPCVMixin, ClassifierMixin, BaseSparseMLP):
    """Sparse ReLU network classifier with the budget chosen by cross-validation.

    The classifier counterpart of :class:`SparseMLPRegressorCV`: one
    warm-started path per (stratified) fold, the budget with the best mean
    score (accuracy by default), and a standalone
    :class:`SparseMLPClassifier` refitted at that budget on all the data.

    Read more in the :ref:`User Guide <budget_path>`.

    Parameters
    ----------
{params}

{single_params}

    Attributes
    ----------
{attrs}

{single_attrs}

    See Also
    --------
    sparse_mlp_path : The warm-started path over budgets.
    SparseMLPRegressorCV : The regressor counterpart.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_sparse_mlp import SparseMLPClassifierCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), SparseMLPClassifierCV(
    ...     n_nonzero_coefs=[5, 40], hidden_layer_sizes=(20,), cv=3,
    ...     random_state=0)).fit(X, y)
    >>> clf = model[-1]
    >>> clf.scores_path_.shape, clf.n_nonzero_coefs_ in (5, 40)
    ((2, 3), True)
    """

    _base_class = SparseMLPClassifier
    _stage_class = SparseMLPClassifier
    _parameter_constraints = {**SparseMLPClassifier._parameter_constraints, **_SparseMLPCVMixin._cv_constraints}

    def __init__(
        self,
        n_nonzero_coefs=None,
        *,
        n_budgets=8,
        cv=None,
        scoring=None,
        criterion="cv",
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
            n_nonzero_coefs, hidden_layer_sizes=hidden_layer_sizes, budget_split=budget_split,
            joint_max_iter=joint_max_iter,
            gate_update=gate_update, gate_update_period=gate_update_period, gate_n_features=gate_n_features,
            batch_size=batch_size, progressive=progressive, max_iter=max_iter, tol=tol, alpha=alpha,
            n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_refine_steps=n_refine_steps,
            fit_intercept=fit_intercept, warm_start=warm_start, random_state=random_state,
            verbose=verbose, n_jobs=n_jobs,
        )
        self.output_coupling = output_coupling
        self.loss = loss
        self.class_weight = class_weight
        self.n_budgets = n_budgets
        self.cv = cv
        self.scoring = scoring
        self.criterion = criterion

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose the budget along warm-started paths, then refit on all data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples (used in the fits, not in
            the scores).

        Returns
        -------
        self : SparseMLPClassifierCV
            The fitted estimator.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import SparseMLPClassifierCV
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = SparseMLPClassifierCV(n_nonzero_coefs=[3, 30], hidden_layer_sizes=(10,),
        ...                             cv=3, random_state=0).fit(X, y)
        >>> clf.budgets_, int(clf.mean_scores_.argmax())
        (array([ 3, 30]), 1)
        """
        return self._fit_cv(X, y, sample_weight)

    _fit = SparseMLPClassifier._fit
    _set_encoder = SparseMLPClassifier._set_encoder
    _check_warm_classes = SparseMLPClassifier._check_warm_classes
    _validate_training = SparseMLPClassifier._validate_training
    _outputs = SparseMLPClassifier._outputs
    _to_mlp = SparseMLPClassifier._to_mlp
    decision_function = SparseMLPClassifier.decision_function
    predict = SparseMLPClassifier.predict
    predict_proba = SparseMLPClassifier.predict_proba
    predict_log_proba = SparseMLPClassifier.predict_log_proba

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _section(doc, title):
    """The lines of a numpydoc section of ``doc`` (a class docstring): from
    its underline to the next section's title."""
    lines = doc.split("\n")
    start = lines.index(f"    {title}") + 2
    end = start
    while end + 1 < len(lines) and set(lines[end + 1].strip()) != {"-"}:
        end += 1
    return lines[start:end]


def _entries(lines, drop=()):
    """``lines`` of a section without the entries named in ``drop``."""
    out, keep = [], True
    for line in lines:
        if line.startswith("    ") and not line.startswith("     ") and line.strip():
            keep = line.split(" :")[0].strip() not in drop
        if keep:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


for _cls, _single, _fold_kind, _score_kind in (
    (SparseMLPRegressorCV, SparseMLPRegressor, "KFold", "R^2"),
    (SparseMLPClassifierCV, SparseMLPClassifier, "StratifiedKFold for single-label targets", "the accuracy"),
):
    _cls.__doc__ = _cls.__doc__.format(
        params=_CV_PARAMS_DOC.strip("\n").format(fold_kind=_fold_kind, score_kind=_score_kind),
        attrs=_CV_ATTRS_DOC.strip("\n"),
        single_params=_entries(_section(_single.__doc__, "Parameters"), drop={"n_nonzero_coefs"}),
        single_attrs=_entries(_section(_single.__doc__, "Attributes")),
    )
