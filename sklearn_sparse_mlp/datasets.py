"""Synthetic data: the planted sparse ReLU network of the paper."""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_planted_mlp"]


@validate_params(
    {
        "n_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_features": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_hidden": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "n_nonzero": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_outputs": [Interval(numbers.Integral, 1, None, closed="left")],
        "noise": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "return_coef": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_planted_mlp(
    n_samples=1000,
    n_features=20,
    n_hidden=10,
    n_nonzero=20,
    *,
    n_outputs=1,
    noise=0.0,
    random_state=None,
    return_coef=False,
):
    """Generate data from a planted sparse ReLU network.

    The model of Fridovich-Keil & Pilanci (2025): Gaussian inputs
    ``X ~ N(0, I)``, a first-layer weight matrix ``W1`` (n_features x
    n_hidden) with ``n_nonzero`` standard Gaussian entries at uniformly random
    positions and zeros elsewhere, and ``y = relu(X @ W1) @ W2 + noise``.
    For one output ``W2`` is all ones (``y = sum_j relu(x . w_j)``, the
    paper's scalar model); for several outputs ``W2`` is standard Gaussian.

    With several hidden layers (``n_hidden`` a tuple of ``L`` widths), the
    paper's deep planted model: ``n_nonzero`` is split evenly over the ``L``
    hidden weight matrices (over ``L + 1`` matrices with several outputs,
    whose output layer is then sparse too), each nonzero standard Gaussian
    at a uniformly random position, and ``y = relu(...relu(X @ W1) @ W2...)
    @ W_out`` (``W_out`` all ones for one output).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples.
    n_features : int, default=20
        Input dimension ``d``.
    n_hidden : int or tuple of int, default=10
        Width ``m`` of the planted network, or the widths of its hidden
        layers.
    n_nonzero : int, default=20
        Number of nonzero first-layer weights ``s`` (at most
        ``n_features * n_hidden``); with several hidden layers, the nonzero
        weights of all the sparse layers together.
    n_outputs : int, default=1
        Number of outputs ``k``.
    noise : float, default=0.0
        Standard deviation of the Gaussian noise added to ``y``.
    random_state : int, RandomState instance or None, default=None
        Seed for the inputs, the weights and the noise.
    return_coef : bool, default=False
        Also return the planted weights ``[W1, W2]``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Targets (1-D when ``n_outputs == 1``).
    coefs : list of ndarrays
        ``[W1, W2]`` of shapes (n_features, n_hidden) and (n_hidden,
        n_outputs) (one weight matrix per layer with several hidden layers);
        only when ``return_coef`` is True.

    See Also
    --------
    sklearn_sparse_mlp.SparseMLPRegressor : Fits a sparse ReLU network; with
        sequential gates it can recover the planted one.
    sklearn_sparse_mlp.metrics.psnr_score : The score of the paper's recovery
        experiments.

    Examples
    --------
    >>> from sklearn_sparse_mlp.datasets import make_planted_mlp
    >>> X, y, (W1, W2) = make_planted_mlp(n_samples=100, n_features=5, n_hidden=3,
    ...                                   n_nonzero=4, random_state=0, return_coef=True)
    >>> X.shape, y.shape, int((W1 != 0).sum())
    ((100, 5), (100,), 4)
    """
    if not isinstance(n_hidden, numbers.Integral):
        widths = [int(m) for m in np.atleast_1d(n_hidden)]
        if not widths or min(widths) < 1:
            raise ValueError(f"n_hidden must hold positive widths, got {n_hidden!r}.")
        if len(widths) > 1:
            return _make_deep(n_samples, n_features, widths, n_nonzero, n_outputs, noise,
                              check_random_state(random_state), return_coef)
        n_hidden = widths[0]
    if n_nonzero > n_features * n_hidden:
        raise ValueError(
            f"n_nonzero={n_nonzero} is larger than n_features * n_hidden = "
            f"{n_features * n_hidden}."
        )
    rng = check_random_state(random_state)
    X = rng.standard_normal((n_samples, n_features))
    W1 = np.zeros(n_features * n_hidden)
    pos = rng.choice(n_features * n_hidden, size=n_nonzero, replace=False)
    W1[pos] = rng.standard_normal(n_nonzero)
    W1 = W1.reshape(n_features, n_hidden)
    if n_outputs == 1:
        W2 = np.ones((n_hidden, 1))
    else:
        W2 = rng.standard_normal((n_hidden, n_outputs))
    y = np.maximum(X @ W1, 0.0) @ W2
    if noise > 0:
        y = y + noise * rng.standard_normal(y.shape)
    if n_outputs == 1:
        y = y.ravel()
    if return_coef:
        return X, y, [W1, W2]
    return X, y


def _make_deep(n_samples, n_features, widths, n_nonzero, n_outputs, noise, rng, return_coef):
    """The planted network with several hidden layers (see make_planted_mlp)."""
    shapes = list(zip([n_features] + widths[:-1], widths))
    if n_outputs > 1:
        shapes.append((widths[-1], n_outputs))
    counts = np.full(len(shapes), n_nonzero // len(shapes))
    counts[: n_nonzero % len(shapes)] += 1
    for (a, b), c in zip(shapes, counts):
        if c > a * b:
            raise ValueError(
                f"n_nonzero={n_nonzero} puts {c} nonzero weights in a {a} x {b} layer; lower it or "
                "widen the layers."
            )
    X = rng.standard_normal((n_samples, n_features))
    coefs = []
    for (a, b), c in zip(shapes, counts):
        W = np.zeros(a * b)
        W[rng.choice(a * b, size=c, replace=False)] = rng.standard_normal(c)
        coefs.append(W.reshape(a, b))
    if n_outputs == 1:
        coefs.append(np.ones((widths[-1], 1)))
    A = X
    for W in coefs[:-1]:
        A = np.maximum(A @ W, 0.0)
    y = A @ coefs[-1]
    if noise > 0:
        y = y + noise * rng.standard_normal(y.shape)
    if n_outputs == 1:
        y = y.ravel()
    return (X, y, coefs) if return_coef else (X, y)
