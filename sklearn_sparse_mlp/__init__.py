"""Sparse ReLU networks trained directly by iterative hard thresholding."""

from ._classifier import SparseMLPClassifier
from ._imp import IMPClassifier, IMPRegressor
from ._regressor import SparseMLPRegressor

__version__ = "0.1.0.dev0"

__all__ = ["IMPClassifier", "IMPRegressor", "SparseMLPClassifier", "SparseMLPRegressor", "__version__"]
