"""Demo: ``python -m sklearn_sparse_mlp``.

Fits SparseMLPRegressor and scikit-learn's MLPRegressor on a planted sparse
ReLU network and on scikit-learn's bundled diabetes data, and prints score,
nonzero weights, fit time and peak memory (numpy/Python allocations traced by
tracemalloc during the fit).
"""

import time
import tracemalloc
import warnings

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import SparseMLPRegressor
from .datasets import make_planted_mlp
from .metrics import psnr_score


def _fit(model, X, y):
    tracemalloc.start()
    t0 = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20


def _nonzeros(model):
    est = model[-1] if hasattr(model, "steps") else model
    if hasattr(est, "n_nonzero_"):
        return est.n_nonzero_
    return int(sum(np.count_nonzero(W) for W in est.coefs_) + sum(np.count_nonzero(b) for b in est.intercepts_))


def _row(name, model, score, seconds, mib):
    return f"| {name:<38} | {score:>10.3f} | {_nonzeros(model):>8} | {seconds:>7.2f} | {mib:>8.1f} |"


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    head = (f"| {'model':<38} | {'score':>10} | {'nonzero':>8} | {'fit s':>7} | {'peak MiB':>8} |\n"
            f"|{'-' * 40}|{'-' * 12}|{'-' * 10}|{'-' * 9}|{'-' * 10}|")

    # Warm the numba kernels (compiled once, then cached on disk).
    Xw, yw = make_planted_mlp(n_samples=300, n_features=5, n_hidden=3, n_nonzero=4, random_state=0)
    SparseMLPRegressor(4, hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(Xw, yw)

    print("Planted sparse ReLU network: d=20, width 50, 20 nonzero weights, n=10000 (+5000 test)")
    print("score = test PSNR in dB\n")
    X, y = make_planted_mlp(n_samples=15000, n_features=20, n_hidden=50, n_nonzero=20, random_state=0)
    X, Xt, y, yt = train_test_split(X, y, test_size=5000, random_state=0)
    print(head)
    for name, model in [
        ("SparseMLPRegressor(s=20, width 50)", SparseMLPRegressor(20, hidden_layer_sizes=(50,), random_state=0)),
        ("MLPRegressor(width 50), dense", MLPRegressor(hidden_layer_sizes=(50,), max_iter=500, random_state=0)),
    ]:
        seconds, mib = _fit(model, X, y)
        print(_row(name, model, psnr_score(yt, model.predict(Xt)), seconds, mib), flush=True)

    print("\nDiabetes (scikit-learn bundled, 442 x 10), StandardScaler pipeline")
    print("score = mean 5-fold cross-validated R^2; time and memory of one fit on all data\n")
    Xd, yd = load_diabetes(return_X_y=True)
    print(head)
    for name, model in [
        ("SparseMLPRegressor(s=20, width 100)",
         make_pipeline(StandardScaler(), SparseMLPRegressor(20, random_state=0))),
        ("SparseMLPRegressor(s=10%, width 100)",
         make_pipeline(StandardScaler(), SparseMLPRegressor(0.1, random_state=0))),
        ("MLPRegressor(width 100), dense",
         make_pipeline(StandardScaler(), MLPRegressor(max_iter=2000, random_state=0))),
    ]:
        score = cross_val_score(model, Xd, yd, cv=5).mean()
        seconds, mib = _fit(model, Xd, yd)
        print(_row(name, model, score, seconds, mib), flush=True)


if __name__ == "__main__":
    main()
