"""Sparse ReLU networks trained directly by iterative hard thresholding."""

from ._regressor import SparseMLPRegressor

__version__ = "0.1.0.dev0"

__all__ = ["SparseMLPRegressor", "__version__"]
