"""Scores used in the paper's experiments."""

import numpy as np
from sklearn.utils.validation import check_consistent_length

__all__ = ["psnr_score"]


def psnr_score(y_true, y_pred, *, data_range=None):
    """Peak signal-to-noise ratio of a prediction, in decibels.

    ``PSNR = 10 log10(data_range ** 2 / MSE)`` where ``MSE`` is the mean
    squared error over all entries and ``data_range`` defaults to
    ``max(y_true) - min(y_true)``.  40 dB means an error 100 times smaller
    than the range of the targets.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True values.
    y_pred : array-like of the same shape
        Predicted values.
    data_range : float or None, default=None
        Peak-to-peak range of the signal; from ``y_true`` when None.

    Returns
    -------
    psnr : float
        The PSNR in dB (``inf`` for a perfect prediction).

    See Also
    --------
    sklearn.metrics.mean_squared_error : The mean squared error that the PSNR
        rescales.
    sklearn_sparse_mlp.datasets.make_planted_mlp : The planted networks whose
        recovery the paper scores by PSNR.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sparse_mlp.metrics import psnr_score
    >>> round(psnr_score(np.array([0.0, 1.0]), np.array([0.0, 0.99])), 2)
    43.01
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    check_consistent_length(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        y_pred = y_pred.reshape(y_true.shape)
    if data_range is None:
        data_range = float(y_true.max() - y_true.min())
    mse = float(np.mean((y_true - y_pred) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))
