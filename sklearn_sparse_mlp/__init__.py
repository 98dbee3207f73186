"""Sparse ReLU networks trained directly by iterative hard thresholding."""

from ._classifier import SparseMLPClassifier
from ._imp import IMPClassifier, IMPRegressor
from ._path import SparseMLPClassifierCV, SparseMLPRegressorCV, sparse_mlp_path
from ._regressor import SparseMLPRegressor

__version__ = "0.1.0.dev0"

__all__ = [
    "IMPClassifier",
    "IMPRegressor",
    "SparseMLPClassifier",
    "SparseMLPClassifierCV",
    "SparseMLPRegressor",
    "SparseMLPRegressorCV",
    "__version__",
    "sparse_mlp_path",
]
