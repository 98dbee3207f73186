"""Sparse ReLU networks trained directly by iterative hard thresholding.

The public names are imported on first use (PEP 562), so that a process
that needs only the numeric core, such as a dask worker holding row blocks,
does not import scikit-learn.
"""

import importlib

__version__ = "0.1.0.dev0"

_WHERE = {
    "IMPClassifier": "._imp",
    "IMPRegressor": "._imp",
    "SparseMLPClassifier": "._classifier",
    "SparseMLPClassifierCV": "._path",
    "SparseMLPRegressor": "._regressor",
    "SparseMLPRegressorCV": "._path",
    "dask_row_chunks": "._dask",
    "sparse_mlp_path": "._path",
}

__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
