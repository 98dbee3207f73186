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
        "n_hidden": [Interval(numbers.Integral, 1, None, closed="left")],
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
    """Generate data from a planted sparse one-hidden-layer ReLU network.

    The model of Fridovich-Keil & Pilanci (2025): Gaussian inputs
    ``X ~ N(0, I)``, a first-layer weight matrix ``W1`` (n_features x
    n_hidden) with ``n_nonzero`` standard Gaussian entries at uniformly random
    positions and zeros elsewhere, and ``y = relu(X @ W1) @ W2 + noise``.
    For one output ``W2`` is all ones (``y = sum_j relu(x . w_j)``, the
    paper's scalar model); for several outputs ``W2`` is standard Gaussian.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples.
    n_features : int, default=20
        Input dimension ``d``.
    n_hidden : int, default=10
        Width ``m`` of the planted network.
    n_nonzero : int, default=20
        Number of nonzero first-layer weights ``s`` (at most
        ``n_features * n_hidden``).
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
    coefs : list of two ndarrays
        ``[W1, W2]`` of shapes (n_features, n_hidden) and (n_hidden,
        n_outputs); only when ``return_coef`` is True.

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
