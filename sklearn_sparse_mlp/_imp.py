"""Iterative magnitude pruning (IMP): the lottery-ticket baseline.

A dense ReLU network is trained with Adam on minibatches; after each round a
fraction of the remaining weights is pruned by global magnitude, the
survivors are rewound to their initial values (or to their values after a few
optimizer steps) and the network is retrained, until the budget is reached.

The numeric core (``_value_and_gradient``, ``_adam_step``, ``_prune``,
``_rewind``, ``_imp_train``) works on plain arrays and knows nothing of
scikit-learn; the estimators at the end of the file wrap it.  Everything is
NumPy: the heavy work is the BLAS matrix products of the forward and backward
passes, so BLAS keeps its own threading.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._budget import counted_name, counted_size, counts_output_weights, resolve_budget
from ._export import mlp_classifier, mlp_regressor, path_importances
from ._labels import TargetEncoder
from ._losses import SquaredLoss, log_softmax, sigmoid_log

# Adam's constants (those of scikit-learn's MLP).
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8
# Rows per chunk of a full-data forward pass: about this many hidden values.
_CHUNK_VALUES = 1 << 22


# ----------------------------------------------------------------------------
# Numeric core
# ----------------------------------------------------------------------------
def _init_layers(layer_sizes, seed):
    """Yield each layer's initial ``(W, b)`` in order, drawn from ``seed``.

    Glorot-uniform as in scikit-learn's MLP with ReLU units: weights and
    biases uniform in ``+-sqrt(6 / (fan_in + fan_out))``.  A generator, so
    that rewinding can regenerate the initial network one layer at a time
    instead of keeping a copy of it.
    """
    rng = np.random.RandomState(seed)
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W = rng.uniform(-bound, bound, (fan_in, fan_out))
        b = rng.uniform(-bound, bound, fan_out)
        yield W, b


def _forward(X, coefs, intercepts):
    """Raw outputs ``F`` (n x k, float64) of the ReLU network, by row chunks."""
    n = X.shape[0]
    widest = max(W.shape[1] for W in coefs)
    chunk = max(1, _CHUNK_VALUES // widest)
    F = np.empty((n, coefs[-1].shape[1]))
    for start in range(0, n, chunk):
        A = X[start:start + chunk]
        A = A.astype(np.float64) if sp.issparse(A) else np.asarray(A, dtype=np.float64)
        for W, b in zip(coefs[:-1], intercepts[:-1]):
            A = A @ W
            A += b
            np.maximum(A, 0.0, out=A)
        F[start:start + chunk] = A @ coefs[-1] + intercepts[-1]
    return F


def _value_and_gradient(coefs, intercepts, X, Y, sw, loss, l2, masks=None, coef_grads=None,
                        intercept_grads=None, intercept_masks=None):
    """Objective and its gradient for one (mini)batch, by backpropagation.

    The objective is ``loss.value(F, Y, sw) + l2 * sum_l ||W_l||^2 / 2``
    where ``F`` are the raw outputs of ``X`` and ``sw`` sums to one.  The
    gradients of the weights are multiplied by ``masks`` when given (pruned
    weights get a zero gradient), those of the biases by ``intercept_masks``;
    a ``None`` entry in either list leaves that layer unmasked.  ``coef_grads`` / ``intercept_grads`` are
    optional output buffers.

    Returns
    -------
    value : float
    coef_grads, intercept_grads : lists of ndarrays shaped like the weights
    """
    n_layers = len(coefs)
    if coef_grads is None:
        coef_grads = [np.empty_like(W) for W in coefs]
        intercept_grads = [np.empty_like(b) for b in intercepts]
    acts = [X]
    A = X
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        A = A @ W
        A += b
        np.maximum(A, 0.0, out=A)
        acts.append(A)
    F = A @ coefs[-1]
    F += intercepts[-1]
    value = loss.value(F, Y, sw)
    delta = loss.gradient(F, Y, sw)
    del F
    if l2:
        value += 0.5 * l2 * sum(float(np.vdot(W, W)) for W in coefs)
    for layer in range(n_layers - 1, -1, -1):
        A = acts[layer]
        g = coef_grads[layer]
        if sp.issparse(A):
            g[...] = A.T @ delta
        else:
            np.matmul(A.T, delta, out=g)
        if l2:
            g += l2 * coefs[layer]
        if masks is not None and masks[layer] is not None:
            np.multiply(g, masks[layer], out=g)
        np.sum(delta, axis=0, out=intercept_grads[layer])
        if intercept_masks is not None and intercept_masks[layer] is not None:
            np.multiply(intercept_grads[layer], intercept_masks[layer], out=intercept_grads[layer])
        if layer > 0:
            delta = delta @ coefs[layer].T
            np.multiply(delta, A > 0.0, out=delta)  # ReLU'(z) = 1[z > 0]
        acts[layer] = None
    return float(value), coef_grads, intercept_grads


def _adam_step(params, grads, first, second, t, learning_rate):
    """One Adam step (in place; ``grads`` are used as scratch space).

    The update is scikit-learn's: ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``,
    ``p -= lr_t m / (sqrt(v) + eps)``.  A parameter whose gradient has been
    zero since the moments were reset does not move at all, so pruned
    weights stay exactly zero.
    """
    lr_t = learning_rate * np.sqrt(1.0 - _BETA2**t) / (1.0 - _BETA1**t)
    for p, g, m, v in zip(params, grads, first, second):
        # m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2 without temporaries.
        m *= _BETA1 / (1.0 - _BETA1)
        m += g
        m *= 1.0 - _BETA1
        np.multiply(g, g, out=g)
        v *= _BETA2 / (1.0 - _BETA2)
        v += g
        v *= 1.0 - _BETA2
        np.sqrt(v, out=g)
        g += _EPS
        np.divide(m, g, out=g)
        g *= lr_t
        p -= g


def _prune(coefs, masks, n_keep):
    """Masks keeping the ``n_keep`` largest-magnitude entries among the unmasked.

    ``coefs`` is the list of pruned arrays (weights and biases, see
    :func:`_pruned`).  The ranking is global across them.  Ties at the
    threshold are broken by position (list order, then C order), so the
    count is exact and the result deterministic.  A masked-out entry never
    comes back.
    """
    mags = np.concatenate([np.abs(W[M]) for W, M in zip(coefs, masks)])
    n_remove = mags.size - int(n_keep)
    if n_remove <= 0:
        return [M.copy() for M in masks]
    threshold = np.partition(mags, n_remove - 1)[n_remove - 1]
    ties_to_remove = n_remove - int(np.count_nonzero(mags < threshold))
    del mags
    new_masks = []
    for W, M in zip(coefs, masks):
        A = np.abs(W)
        keep = M & (A > threshold)
        if ties_to_remove > 0:
            tie = M & (A == threshold)
            flat = np.flatnonzero(tie)
            # Remove the first ties; keep the others.
            keep.ravel()[flat[ties_to_remove:]] = True
            ties_to_remove -= min(ties_to_remove, flat.size)
        else:
            keep |= M & (A == threshold)
        new_masks.append(keep)
    return new_masks


def _rewind(coefs, intercepts, masks, source, intercept_masks=None):
    """Reset the surviving weights and biases to ``source``; zero the rest.

    ``source`` yields ``(W0, b0)`` per layer (the initial network from
    :func:`_init_layers`, or a stored snapshot).  A ``None`` mask (or no
    ``intercept_masks``) keeps the whole layer.  In place, bit for bit.
    """
    if intercept_masks is None:
        intercept_masks = [None] * len(coefs)
    for W, b, M, Mb, (W0, b0) in zip(coefs, intercepts, masks, intercept_masks, source):
        for a, a0, mask in ((W, W0, M), (b, b0, Mb)):
            if mask is None:
                a[...] = a0
            else:
                a[...] = 0.0
                np.copyto(a, a0, where=mask)


def _pruned(layer_sizes):
    """Indices ``(kind, layer)`` (kind 0: weights, 1: biases) of the pruned
    (counted) arrays of the network of ``layer_sizes``, in ranking order:
    each hidden layer's weights then biases, and the output weights when
    there are several outputs.  This is the package's one definition of the
    budget (``_budget``); the output intercepts, and the output weights of a
    one-output network, are never pruned."""
    n_layers = len(layer_sizes) - 1
    order = []
    for layer in range(n_layers - 1):
        order += [(0, layer), (1, layer)]
    if counts_output_weights(layer_sizes[-1]):
        order.append((0, n_layers - 1))
    return order


def _prune_schedule(n_total, n_keep, fraction):
    """Weight counts of the rounds: ``n_total``, then ``floor(m (1 - fraction))``
    each round (at least one fewer), the last clipped to exactly ``n_keep``."""
    counts = [int(n_total)]
    while counts[-1] > n_keep:
        m = counts[-1]
        nxt = min(m - 1, int(np.floor(m * (1.0 - fraction))))
        counts.append(max(int(n_keep), nxt))
    return counts


def _imp_train(X, Y, sw, loss, layer_sizes, n_keep, *, prune_fraction=0.2, epochs_per_round=20,
               rewind_iter=0, learning_rate=1e-3, batch_size=200, alpha=1e-4, shuffle=True,
               init_seed=0, shuffle_seed=0, score=None, n_iter_no_change=10, verbose=0,
               callback=None):
    """Iterative magnitude pruning on float64 arrays.

    Parameters
    ----------
    X : ndarray or CSR matrix (n, d), float64
    Y : ndarray (n, k), float64 encoded targets
    sw : ndarray (n,), positive sample weights (not normalised)
    loss : a loss of ``_losses``
    layer_sizes : list of int, ``[d, hidden..., k]``
    n_keep : int, final number of counted (pruned) parameters
    score : callable ``(coefs, intercepts) -> float`` or None
        Validation score (higher is better) for early stopping: evaluated
        after every epoch; each round keeps its best weights and ends after
        ``n_iter_no_change`` epochs without improvement.
    callback : callable ``(round, stage, coefs, intercepts, masks, intercept_masks)`` or None
        Called with ``stage="start"`` after the round's rewind and
        ``stage="end"`` after its training.

    Returns
    -------
    dict with coefs, intercepts, masks and intercept_masks (None for a layer
    that is not pruned), n_nonzero (counted nonzeros), loss_curve, path (dict
    of arrays), n_iter (epochs).
    """
    n = X.shape[0]
    coefs, intercepts = [], []
    for W, b in _init_layers(layer_sizes, init_seed):
        coefs.append(W)
        intercepts.append(b)
    where = _pruned(layer_sizes)
    masks, intercept_masks = [None] * len(coefs), [None] * len(coefs)
    for kind, layer in where:
        (masks, intercept_masks)[kind][layer] = np.ones(((coefs, intercepts)[kind][layer]).shape, dtype=bool)

    def counted(arrays, bias_arrays):
        return [(arrays, bias_arrays)[kind][layer] for kind, layer in where]

    coef_grads = [np.empty_like(W) for W in coefs]
    intercept_grads = [np.empty_like(b) for b in intercepts]
    first = [np.zeros_like(W) for W in coefs] + [np.zeros_like(b) for b in intercepts]
    second = [np.zeros_like(a) for a in first]
    best = None
    if score is not None:
        best = ([np.empty_like(W) for W in coefs], [np.empty_like(b) for b in intercepts])
    shuffle_rng = np.random.RandomState(shuffle_seed)
    counts = _prune_schedule(sum(M.size for M in counted(masks, intercept_masks)), n_keep, prune_fraction)
    # Weights after rewind_iter steps of the first round (rewind_iter > 0 only:
    # the initial network is regenerated from its seed instead of stored).
    snapshot = None
    total_w = float(sw.sum())
    loss_curve = []
    path = {"n_nonzero": [], "loss": [], "n_epochs": []}
    if score is not None:
        path["validation_score"] = []

    for rnd, count in enumerate(counts):
        if rnd > 0:
            kept = _prune(counted(coefs, intercepts), counted(masks, intercept_masks), count)
            masks, intercept_masks = list(masks), list(intercept_masks)
            for (kind, layer), M in zip(where, kept):
                (masks, intercept_masks)[kind][layer] = M
            source = _init_layers(layer_sizes, init_seed) if rewind_iter == 0 else zip(*snapshot)
            _rewind(coefs, intercepts, masks, source, intercept_masks)
        for a in first + second:
            a[...] = 0.0
        if callback is not None:
            callback(rnd, "start", coefs, intercepts, masks, intercept_masks)
        t = 0
        best_score, stall, n_epochs = -np.inf, 0, 0
        for epoch in range(epochs_per_round):
            order = shuffle_rng.permutation(n) if shuffle else None
            epoch_loss = 0.0
            for start in range(0, n, batch_size):
                if order is None:
                    idx = slice(start, start + batch_size)
                else:
                    idx = order[start:start + batch_size]
                wb = sw[idx]
                wsum = float(wb.sum())
                value, _, _ = _value_and_gradient(
                    coefs, intercepts, X[idx], Y[idx], wb / wsum, loss, alpha / wsum, masks,
                    coef_grads, intercept_grads, intercept_masks)
                epoch_loss += value * wsum
                t += 1
                _adam_step(coefs + intercepts, coef_grads + intercept_grads, first, second, t,
                           learning_rate)
                if rnd == 0 and t == rewind_iter:
                    snapshot = ([W.copy() for W in coefs], [b.copy() for b in intercepts])
            n_epochs += 1
            loss_curve.append(epoch_loss / total_w)
            if not np.isfinite(loss_curve[-1]):
                raise ValueError(
                    "IMP training diverged (non-finite loss): the input values are too large "
                    "for the network's arithmetic. Scale the features (e.g. StandardScaler) or "
                    "lower learning_rate_init."
                )
            if verbose > 1:
                print(f"Round {rnd + 1}, epoch {epoch + 1}, loss = {loss_curve[-1]:.8f}")
            if score is not None:
                current = float(score(coefs, intercepts))
                if current > best_score:
                    best_score, stall = current, 0
                    for dst, src in zip(best[0] + best[1], coefs + intercepts):
                        np.copyto(dst, src)
                else:
                    stall += 1
                    if stall >= n_iter_no_change:
                        break
        if rnd == 0 and rewind_iter > 0 and snapshot is None:
            # Early stopping ended the first round before rewind_iter steps.
            snapshot = ([W.copy() for W in coefs], [b.copy() for b in intercepts])
        if score is not None:
            for dst, src in zip(coefs + intercepts, best[0] + best[1]):
                np.copyto(dst, src)
        F = _forward(X, coefs, intercepts)
        round_loss = loss.value(F, Y, sw / total_w)
        round_loss += 0.5 * alpha / total_w * sum(float(np.vdot(W, W)) for W in coefs)
        del F
        path["n_nonzero"].append(int(sum(int(np.count_nonzero(M)) for M in counted(masks, intercept_masks))))
        path["loss"].append(float(round_loss))
        path["n_epochs"].append(n_epochs)
        if score is not None:
            path["validation_score"].append(best_score)
        if verbose:
            msg = (f"Round {rnd + 1}/{len(counts)}: {path['n_nonzero'][-1]} parameters, "
                   f"{n_epochs} epochs, loss = {round_loss:.8f}")
            if score is not None:
                msg += f", validation score = {best_score:.6f}"
            print(msg)
        if callback is not None:
            callback(rnd, "end", coefs, intercepts, masks, intercept_masks)
    path = {key: np.asarray(val) for key, val in path.items()}
    return dict(coefs=coefs, intercepts=intercepts, masks=masks, intercept_masks=intercept_masks,
                n_nonzero=int(sum(np.count_nonzero(a) for a in counted(coefs, intercepts))),
                loss_curve=loss_curve,
                path=path, n_iter=len(loss_curve))


# ----------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------
class _BaseIMP(BaseEstimator):
    """Shared code of the IMP estimators."""

    _parameter_constraints = {
        "n_nonzero_coefs": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Real, 0, 1, closed="right"),
        ],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "prune_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "epochs_per_round": [Interval(numbers.Integral, 1, None, closed="left")],
        "rewind_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_nonzero_coefs=0.1,
        *,
        hidden_layer_sizes=(100,),
        prune_fraction=0.2,
        epochs_per_round=20,
        rewind_iter=0,
        learning_rate_init=3e-3,
        batch_size="auto",
        alpha=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        shuffle=True,
        random_state=None,
        verbose=0,
    ):
        self.n_nonzero_coefs = n_nonzero_coefs
        self.hidden_layer_sizes = hidden_layer_sizes
        self.prune_fraction = prune_fraction
        self.epochs_per_round = epochs_per_round
        self.rewind_iter = rewind_iter
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        sizes = list(sizes)
        if not sizes or not all(isinstance(h, numbers.Integral) and h >= 1 for h in sizes):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive integers, got "
                f"{self.hidden_layer_sizes!r}."
            )
        return [int(h) for h in sizes]

    def _validate_X(self, X, reset):
        return validate_data(self, X, reset=reset, accept_sparse=["csr", "csc"],
                             dtype=[np.float64, np.float32])

    def _fit_arrays(self, X, Y, y, sample_weight, loss, stratify, scorer):
        """Common fit on validated X, encoded targets Y (n x k) and raw targets y.

        ``scorer(y_val, F_val, sw_val)`` gives the validation score of raw
        outputs; ``stratify`` says whether the split may be stratified on y.
        """
        hidden = self._hidden_sizes()
        n, d = X.shape
        k = Y.shape[1]
        layer_sizes = [d] + hidden + [k]
        n_keep = resolve_budget(self.n_nonzero_coefs, counted_size(layer_sizes),
                                f"{counted_name(k)} with layer sizes {layer_sizes}")

        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        positive = sw > 0
        if not positive.any():
            raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        if not positive.all():
            # A zero-weight sample is dropped: exactly the same model as without it.
            X, Y, y, sw = X[positive], Y[positive], y[positive], sw[positive]
            n = X.shape[0]
        X = X.astype(np.float64).tocsr() if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)
        x_max = float(abs(X).max()) if X.shape[0] and X.shape[1] else 0.0
        if x_max * max(layer_sizes) > np.finfo(np.float64).max ** 0.5:
            raise ValueError(
                f"X holds values too large for the network's arithmetic (max |X| = {x_max:.3g}). "
                "Scale the features, e.g. with StandardScaler."
            )

        rng = check_random_state(self.random_state)
        init_seed, shuffle_seed, split_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=3))
        score = None
        if self.early_stopping:
            n_val = int(np.ceil(self.validation_fraction * n))
            if n < 2 or n_val >= n:
                raise ValueError(
                    f"early_stopping needs at least one training and one validation sample: "
                    f"{n} samples with validation_fraction={self.validation_fraction}."
                )
            strat = None
            if stratify:
                _, counts = np.unique(y, return_counts=True)
                if counts.min() >= 2 and counts.size <= min(n_val, n - n_val):
                    strat = y
            tr, va = train_test_split(np.arange(n), test_size=n_val, random_state=split_seed,
                                      stratify=strat)
            tr, va = np.sort(tr), np.sort(va)
            X_val, y_val, sw_val = X[va], y[va], sw[va]
            X, Y, sw = X[tr], Y[tr], sw[tr]
            n = X.shape[0]

            def score(coefs, intercepts):
                return scorer(y_val, _forward(X_val, coefs, intercepts), sw_val)

        batch_size = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        steps_first_round = self.epochs_per_round * int(np.ceil(n / batch_size))
        if self.rewind_iter > steps_first_round:
            raise ValueError(
                f"rewind_iter={self.rewind_iter} is larger than the {steps_first_round} optimizer "
                f"steps of the first round (epochs_per_round={self.epochs_per_round} x "
                f"{steps_first_round // self.epochs_per_round} minibatches)."
            )
        result = _imp_train(
            X, Y, sw, loss, layer_sizes, n_keep,
            prune_fraction=self.prune_fraction, epochs_per_round=self.epochs_per_round,
            rewind_iter=self.rewind_iter, learning_rate=self.learning_rate_init,
            batch_size=batch_size, alpha=self.alpha, shuffle=self.shuffle, init_seed=init_seed,
            shuffle_seed=shuffle_seed, score=score, n_iter_no_change=self.n_iter_no_change,
            verbose=self.verbose,
        )
        coefs, intercepts = result["coefs"], result["intercepts"]
        if not all(np.all(np.isfinite(a)) for a in coefs + intercepts):
            raise ValueError(
                "IMP training produced non-finite weights: the input values are too large for "
                "the network's arithmetic. Scale the features (e.g. StandardScaler)."
            )
        self.coefs_ = coefs
        self.intercepts_ = intercepts
        self.masks_ = [np.ones(W.shape, dtype=bool) if M is None else M
                       for W, M in zip(coefs, result["masks"])]
        self.intercept_masks_ = [np.ones(b.shape, dtype=bool) if M is None else M
                                 for b, M in zip(intercepts, result["intercept_masks"])]
        self.n_nonzero_ = result["n_nonzero"]
        self.path_ = result["path"]
        self.n_rounds_ = int(self.path_["n_nonzero"].size)
        self.n_iter_ = int(result["n_iter"])
        self.loss_curve_ = list(result["loss_curve"])
        self.loss_ = float(self.path_["loss"][-1])
        self.n_layers_ = len(layer_sizes)
        self.n_outputs_ = k
        w = sw / sw.sum()
        constant = loss.value(np.zeros_like(Y) + loss.initial_intercept(Y, w), Y, w)
        if not self.loss_ < constant:
            # Rounds too short to train the rewound network (e.g. 150 rows:
            # 20 optimizer steps a round, and iris at 20 weights ended with a
            # training accuracy of 0.05).
            warnings.warn(
                f"IMP: the pruned network fits the training data no better than a constant (loss "
                f"{self.loss_:.4g} against {constant:.4g}). Each round trains the rewound network for "
                f"epochs_per_round={self.epochs_per_round} epochs ({steps_first_round} optimizer steps "
                "here): raise epochs_per_round or learning_rate_init.",
                ConvergenceWarning,
            )
        return self

    @property
    def feature_importances_(self):
        """Importance of each input feature (normalised to sum to one): the
        sum over the paths from the feature to an output of the products of
        the absolute weights, as for the IHT estimators."""
        check_is_fitted(self, "coefs_")
        return path_importances(self.coefs_)

    def to_mlp(self):
        """The pruned network as a fitted scikit-learn MLP.

        Returns
        -------
        mlp : MLPRegressor or MLPClassifier
            A fitted MLP with the same ``coefs_`` and ``intercepts_`` (pruned
            entries are zeros), whose ``predict`` (and ``predict_proba``)
            give the same values.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_sparse_mlp import IMPRegressor
        >>> rng = np.random.RandomState(0)
        >>> X = rng.standard_normal((200, 4))
        >>> y = np.maximum(X[:, 0] - X[:, 1], 0) + 0.5 * X[:, 2]
        >>> reg = IMPRegressor(n_nonzero_coefs=20, hidden_layer_sizes=(10,),
        ...                    random_state=0).fit(X, y)
        >>> np.allclose(reg.to_mlp().predict(X), reg.predict(X))
        True
        """
        check_is_fitted(self, "coefs_")
        if isinstance(self, ClassifierMixin):
            act = "softmax" if self._encoder.target_type_ == "multiclass" else "logistic"
            return mlp_classifier(self, self.coefs_, self.intercepts_, self._encoder._binarizer, act)
        return mlp_regressor(self, self.coefs_, self.intercepts_)

    def _raw_predict(self, X):
        """Raw network outputs (n x k, float64) and the dtype of X."""
        check_is_fitted(self, "coefs_")
        X = self._validate_X(X, reset=False)
        return _forward(X, self.coefs_, self.intercepts_), X.dtype


_SHARED_DOC = """
    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_nonzero_coefs : int or float, default=0.1
        Budget of nonzero parameters at the end, counted as for the IHT
        estimators (one definition, so that a budget is one network size for
        both): the weights and biases of the hidden layers, and the output
        weights when there are several outputs.  With one output the output
        weights are neither pruned nor counted (a unit's output weight can be
        folded into its incoming weights, leaving a sign); the output
        intercepts never are.  An int is a count (at least 1, at most the
        dense network's number of counted parameters, ``sum_l (m_(l-1) + 1)
        m_l`` over the hidden layers, plus ``m_L n_outputs`` for several
        outputs); a float in (0, 1] is a fraction of that number.  Pruning
        stops as soon as at most this many parameters remain; the last round
        prunes exactly to the budget.

    hidden_layer_sizes : array-like of int or int, default=(100,)
        Widths of the hidden ReLU layers (one or more).

    prune_fraction : float in (0, 1), default=0.2
        Fraction of the remaining counted parameters pruned after each round,
        by magnitude across all layers, weights and biases at once (global
        pruning).

    epochs_per_round : int, default=20
        Passes over the training data in each round (the dense first round
        included).  A round makes ``epochs_per_round * ceil(n_samples /
        batch_size)`` Adam steps: small data sets need more epochs or
        smaller batches (a fit whose pruned network ends no better than a
        constant on its training rows warns with a ``ConvergenceWarning``).

    rewind_iter : int, default=0
        Rewind point.  0 rewinds the surviving weights and biases to
        their initial values (the lottery ticket); ``k > 0`` rewinds them to
        their values after ``k`` optimizer steps of the first round (or at
        the end of the first round if early stopping ends it sooner).

    learning_rate_init : float, default=3e-3
        Adam's step size.  The Adam moments are reset at every round.  The
        default is three times MLP's: the rounds are short (see
        ``epochs_per_round``).

    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.

    alpha : float, default=1e-4
        L2 penalty: each minibatch adds ``alpha * sum ||W||^2 / 2`` divided
        by the batch's total sample weight (its size without sample
        weights), as scikit-learn's MLP does.  Biases are not penalised.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified
        when possible){score_doc}; every round keeps the weights of its best
        epoch and ends after ``n_iter_no_change`` epochs without improvement.

    validation_fraction : float in (0, 1), default=0.1
        Share of the training data held out when ``early_stopping``.

    n_iter_no_change : int, default=10
        Epochs without a better validation score that end a round (only
        with ``early_stopping``).

    shuffle : bool, default=True
        Shuffle the samples at every epoch.

    random_state : int, RandomState instance or None, default=None
        Seed of the initial weights, the shuffling and the validation split.
        An int makes fits reproducible bit for bit on one machine.

    verbose : int, default=0
        Print a line per round (1) or per epoch as well (2).

    Attributes
    ----------
{extra_attributes}    coefs_ : list of ndarrays
        Weights of each layer, ``coefs_[i]`` of shape (n_in, n_out) as in
        scikit-learn's MLP; pruned entries are exactly 0.0.

    intercepts_ : list of ndarrays
        Biases of each layer (dense).

    masks_ : list of ndarrays of bool
        Surviving weights, shaped like ``coefs_`` (all True where a layer is
        not pruned).

    intercept_masks_ : list of ndarrays of bool
        Surviving biases, shaped like ``intercepts_`` (all True for the
        output layer).

    feature_importances_ : ndarray of shape (`n_features_in_`,)
        Importance of each input feature: the sum over the paths from the
        feature to an output of the products of the absolute weights,
        normalised to sum to one (0 for features no surviving weight reads).

    n_nonzero_ : int
        Nonzero counted parameters of the final network (see
        ``n_nonzero_coefs``): the budget, unless training itself produced
        exact zeros.

    n_rounds_ : int
        Training rounds (the dense round included).

    n_iter_ : int
        Epochs run over all rounds.

    loss_curve_ : list of float
        Training loss (penalty included{loss_units}) of every epoch over all
        rounds, the mean of the minibatch losses weighted by their sample
        weight.

    loss_ : float
        Training loss (penalty included{loss_units}) of the final network on
        the whole training set.

    path_ : dict of ndarrays
        The sparsity path, one entry per round: ``"n_nonzero"`` (counted
        parameters kept in that round, strictly decreasing), ``"loss"``
        (training loss of the round's network), ``"n_epochs"`` and, with early stopping,
        ``"validation_score"`` (best score of the round).

    n_layers_ : int
        Number of layers (input and output included).

    n_outputs_ : int
        Number of outputs of the network.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    {see_also}

    Notes
    -----
    IMP is the baseline of the sparse estimators of this package: it
    trains the *dense* network, so its memory is the dense network's (float64
    weights, the masks, Adam's two moment arrays and the gradients, plus the
    activations of a minibatch), growing linearly with the widths, whereas
    the IHT estimators use memory that grows with the budget.  One fit costs
    about ``n_rounds_ * epochs_per_round`` dense epochs; with the default
    ``prune_fraction=0.2`` a budget of 10% takes 12 rounds.  Training is in
    float64 whatever the input dtype.  Zero-weight samples are dropped before
    training, so they change nothing.

    References
    ----------
    J. Frankle and M. Carbin, "The Lottery Ticket Hypothesis: Finding Sparse,
    Trainable Neural Networks", ICLR 2019.

    J. Frankle, G. K. Dziugaite, D. M. Roy and M. Carbin, "Linear Mode
    Connectivity and the Lottery Ticket Hypothesis", ICML 2020 (rewinding to
    an early iteration).
"""


class IMPRegressor(RegressorMixin, _BaseIMP):
    __doc__ = (
        """ReLU network regressor sparsified by iterative magnitude pruning (IMP).

    The lottery-ticket recipe: a dense ReLU network (one or more hidden
    layers) is trained with Adam on minibatches of the squared loss; after
    each round ``prune_fraction`` of the remaining weights (and hidden
    biases) are pruned by global magnitude, the survivors are rewound to
    their initial values and the network is retrained, until at most
    ``n_nonzero_coefs`` remain.  One fit traces a whole sparsity path (``path_``).

    The network is trained on standardised targets (weighted mean and
    standard deviation of each output); the scaling is folded into the last
    layer afterwards, so ``coefs_`` and ``intercepts_`` predict ``y`` itself.
"""
        + _SHARED_DOC.format(
            score_doc=" and score it with R^2 after every epoch",
            loss_units="; of the standardised targets",
            extra_attributes="",
            see_also=(
                "SparseMLPRegressor : Sparse network trained directly at the budget by IHT.\n"
                "    SparseMLPClassifier : The same for classification.\n"
                "    IMPClassifier : IMP for classification.\n"
                "    sklearn.neural_network.MLPRegressor : The dense network."
            ),
        )
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sparse_mlp import IMPRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.standard_normal((500, 5))
    >>> y = np.maximum(X[:, 0] - X[:, 1], 0) + 0.5 * X[:, 2]
    >>> reg = IMPRegressor(n_nonzero_coefs=30, hidden_layer_sizes=(20,),
    ...                    epochs_per_round=50, random_state=0).fit(X, y)
    >>> reg.n_nonzero_, reg.n_rounds_
    (30, 7)
    >>> reg.path_["n_nonzero"]
    array([120,  96,  76,  60,  48,  38,  30])
    >>> reg.score(X, y) > 0.9
    True
    """
    )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network, pruning it round by round down to the budget.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR or CSC sparse matrices are accepted).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples.

        Returns
        -------
        self : IMPRegressor
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_sparse_mlp import IMPRegressor
        >>> rng = np.random.RandomState(0)
        >>> X = rng.standard_normal((200, 4))
        >>> y = np.maximum(X[:, 0] - X[:, 1], 0) + 0.5 * X[:, 2]
        >>> reg = IMPRegressor(n_nonzero_coefs=20, hidden_layer_sizes=(10,),
        ...                    random_state=0)
        >>> reg.fit(X, y)
        IMPRegressor(hidden_layer_sizes=(10,), n_nonzero_coefs=20, random_state=0)
        >>> reg.n_nonzero_, reg.path_["n_nonzero"].tolist()
        (20, [50, 40, 32, 25, 20])
        """
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"],
                             dtype=[np.float64, np.float32], multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        # Train on standardised targets (weighted mean and standard deviation):
        # Adam moves each weight by about learning_rate_init per step, so
        # targets of any scale then take the same number of steps to fit.
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = sw.sum()
        if not total > 0:
            raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        pos = sw > 0  # as if zero-weight samples were not there, bit for bit
        mean = (sw[pos] @ Y[pos]) / total
        scale = np.sqrt((sw[pos] @ (Y[pos] - mean) ** 2) / total)
        scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
        Y = (Y - mean) / scale

        def scorer(Y_val, F, sw_val):
            # R^2 (averaged over outputs) is unchanged by the standardisation.
            return r2_score(Y_val, F, sample_weight=sw_val)

        self._fit_arrays(X, Y, Y, sw, SquaredLoss(), False, scorer)
        # Fold the standardisation into the output layer (zeros stay zeros).
        self.coefs_[-1] *= scale
        self.intercepts_[-1] = self.intercepts_[-1] * scale + mean
        return self

    def predict(self, X):
        """Predict with the pruned network.

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
        >>> from sklearn_sparse_mlp import IMPRegressor
        >>> rng = np.random.RandomState(0)
        >>> X = rng.standard_normal((200, 4))
        >>> y = np.maximum(X[:, 0] - X[:, 1], 0) + 0.5 * X[:, 2]
        >>> reg = IMPRegressor(n_nonzero_coefs=20, hidden_layer_sizes=(10,),
        ...                    random_state=0).fit(X, y)
        >>> y_pred = reg.predict(X[:3])
        >>> y_pred.shape, y_pred.dtype
        ((3,), dtype('float64'))
        """
        F, dtype = self._raw_predict(X)
        F = F.astype(dtype, copy=False)
        return F.ravel() if self._y_ndim == 1 else F

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class IMPClassifier(ClassifierMixin, _BaseIMP):
    __doc__ = (
        """ReLU network classifier sparsified by iterative magnitude pruning (IMP).

    The lottery-ticket recipe: a dense ReLU network (one or more hidden
    layers) is trained with Adam on minibatches of the cross-entropy
    (softmax for several classes, logistic for two classes and for
    multilabel targets); after each round ``prune_fraction`` of the
    remaining weights (and hidden biases) are pruned by global magnitude,
    the survivors are rewound to their initial values and the network is
    retrained, until at most ``n_nonzero_coefs`` remain.  Labels are handled as by the
    sparse classifier: any labels (strings included), binary, multiclass or
    multilabel-indicator targets.
"""
        + _SHARED_DOC.format(
            score_doc=" and score it with the accuracy after every epoch",
            loss_units="",
            extra_attributes=(
                "    classes_ : ndarray of shape (n_classes,)\n"
                "        Class labels (multilabel: ``arange(n_labels)``).\n\n"
            ),
            see_also=(
                "SparseMLPClassifier : Sparse network trained directly at the budget by IHT.\n"
                "    SparseMLPRegressor : The same for regression.\n"
                "    IMPRegressor : IMP for regression.\n"
                "    sklearn.neural_network.MLPClassifier : The dense network."
            ),
        )
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_sparse_mlp import IMPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), IMPClassifier(
    ...     n_nonzero_coefs=0.2, hidden_layer_sizes=(16,), batch_size=16,
    ...     random_state=0))
    >>> clf = clf.fit(X, y)
    >>> imp = clf[-1]
    >>> imp.n_nonzero_, imp.path_["n_nonzero"].tolist()
    (26, [128, 102, 81, 64, 51, 40, 32, 26])
    >>> clf.score(X, y) > 0.9
    True
    >>> clf.predict_proba(X[[0, 120]]).round(1)
    array([[1. , 0. , 0. ],
           [0. , 0.3, 0.7]])
    """
    )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network, pruning it round by round down to the budget.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR or CSC sparse matrices are accepted).
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Nonnegative weights of the samples.

        Returns
        -------
        self : IMPClassifier
            The fitted estimator.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import IMPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = IMPClassifier(n_nonzero_coefs=30, hidden_layer_sizes=(10,),
        ...                     batch_size=16, random_state=0)
        >>> clf.fit(X, y)
        IMPClassifier(batch_size=16, hidden_layer_sizes=(10,), n_nonzero_coefs=30,
                      random_state=0)
        >>> clf.n_nonzero_, clf.n_rounds_, [W.shape for W in clf.coefs_]
        (30, 6, [(4, 10), (10, 3)])
        """
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"],
                             dtype=[np.float64, np.float32], multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # a column of labels, not multilabel
        encoder = TargetEncoder().fit(y)
        Y = encoder.transform(y)
        self._encoder = encoder
        self.classes_ = encoder.classes_

        def scorer(y_val, F, sw_val):
            return accuracy_score(y_val, encoder.predict(F, "log_loss"), sample_weight=sw_val)

        stratify = encoder.target_type_ != "multilabel-indicator"
        return self._fit_arrays(X, Y, y, sample_weight, encoder.loss("log_loss"), stratify, scorer)

    def predict(self, X):
        """Predict class labels.

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
        >>> from sklearn_sparse_mlp import IMPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = IMPClassifier(n_nonzero_coefs=30, hidden_layer_sizes=(10,),
        ...                     batch_size=16, random_state=0).fit(X, y)
        >>> clf.predict(X[[0, 60, 120]])
        array([0, 1, 2])
        """
        F, _ = self._raw_predict(X)
        return self._encoder.predict(F, "log_loss")

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_`` (multilabel: one
            independent probability per label); in the dtype of X.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import IMPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = IMPClassifier(n_nonzero_coefs=30, hidden_layer_sizes=(10,),
        ...                     batch_size=16, random_state=0).fit(X, y)
        >>> proba = clf.predict_proba(X[[0, 120]])
        >>> proba.shape, proba.sum(axis=1).round(6), proba.argmax(axis=1)
        ((2, 3), array([1., 1.]), array([0, 2]))
        """
        F, dtype = self._raw_predict(X)
        return self._encoder.proba(F, "log_loss").astype(dtype, copy=False)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities (computed without overflow).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities in the order of ``classes_``; in the dtype of X.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn_sparse_mlp import IMPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> clf = IMPClassifier(n_nonzero_coefs=30, hidden_layer_sizes=(10,),
        ...                     batch_size=16, random_state=0).fit(X, y)
        >>> log_proba = clf.predict_log_proba(X[:5])
        >>> np.allclose(np.exp(log_proba), clf.predict_proba(X[:5]))
        True
        """
        F, dtype = self._raw_predict(X)
        kind = self._encoder.target_type_
        if kind == "multiclass":
            L = log_softmax(F)
        elif kind == "binary":
            L = np.hstack([sigmoid_log(-F), sigmoid_log(F)])
        else:
            L = sigmoid_log(F)
        return L.astype(dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
