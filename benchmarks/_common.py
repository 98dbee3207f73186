"""Shared plumbing of the benchmark suite: results folder, machine line,
markdown/JSON writers, matplotlib import, timed fits, peak RSS in a child."""

import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine():
    """One line naming the machine, the library versions and the load."""
    import numba
    import sklearn

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = ""
    try:
        from threadpoolctl import threadpool_info

        libs = [f"{i['internal_api']} {i['version']}" for i in threadpool_info() if i["user_api"] == "blas"]
        blas = ", BLAS " + "/".join(sorted(set(libs))) if libs else ""
    except ImportError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
            f"scikit-learn {sklearn.__version__}, numba {numba.__version__}{blas}; load average at start "
            f"{load:.2f}")


def header(title, command, mode):
    return [f"# {title} ({mode} mode)", "", f"Command: `{command}`  ", f"Machine: {machine()}", ""]


def write_results(name, lines, data):
    """Write results/<name>.md and results/<name>.json; return the md path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name + ".md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, name + ".json"), "w") as fh:
        json.dump(data, fh, indent=1, default=float)
    return path


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None (figures need the bench extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib missing: no figure (pip install '.[bench]')")
        return None
    return plt


def save_figure(fig, name):
    os.makedirs(RESULTS, exist_ok=True)
    fig.savefig(os.path.join(RESULTS, name + ".png"), dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def blas_limit(threads):
    """Context limiting BLAS threads (None: library default)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


# IMP and the dense MLP train on minibatches of 200 rows: their matrix products
# are small, and on 2 cores threaded BLAS made them slower and erratic (an IMP
# fit at n=2000, m=100: 6.1 s with default threads, 1.6 s with one thread, on a
# loaded machine).  They run with one BLAS thread, their faster setting;
# SparseMLP* manage their own threads (numba tiles, one BLAS thread inside).
MINIBATCH_BLAS_THREADS = 1


def timed_fit(est, X, y, blas_threads=None):
    """Fit with warnings silenced (ConvergenceWarning at small budgets is expected); seconds."""
    with warnings.catch_warnings(), blas_limit(blas_threads):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0


def time_hot_loop(X, y, p, repeats=2, support=200, n_iter=3):
    """Seconds (best of ``repeats``) of NumPy's ``Xa @ H`` plus ``Xa.T @ Z``
    (Xa: X with a ones column), of one streaming gradient pass of the lazy
    operator with a support of ``support`` entries, and of one IHT iteration (a fit at that
    budget; ``n_iter`` iterations: their seconds without the set-up, the one-off choice of
    alpha="auto" and the final polish, which the fit times apart), for a hidden width ``p``."""
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    from sklearn_sparse_mlp import SparseMLPRegressor
    from sklearn_sparse_mlp._base import thread_limits
    from sklearn_sparse_mlp._blocks import RowBlocks
    from sklearn_sparse_mlp._gates import Gates
    from sklearn_sparse_mlp._operator import gradient_pass

    n, d = X.shape
    rng = np.random.default_rng(0)
    Xa = np.asfortranarray(np.hstack([X, np.ones((n, 1), X.dtype)]))
    H = rng.standard_normal((d + 1, p)).astype(X.dtype)
    # Best of ``repeats`` for both sides: on a shared machine the minimum is
    # the repeatable figure (the mean drifts with whatever else runs).
    with threadpool_limits(limits=None):
        Xa.T @ (Xa @ H)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            Z = Xa @ H
            Xa.T @ Z
            times.append(time.perf_counter() - t0)
        numpy_s = min(times)
    del Z
    blocks = RowBlocks(X, True, np.zeros((n, 1)))
    gates = Gates(0, d + 1, True)
    idx = np.sort(rng.choice(p * (d + 1), support, replace=False))
    R = rng.standard_normal((n, 1))
    with thread_limits(None):
        gradient_pass(blocks, gates, p, 1, idx, R, support)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            gradient_pass(blocks, gates, p, 1, idx, R, support)
            times.append(time.perf_counter() - t0)
        pass_s = min(times)
    # Every iteration on all the rows (no progressive stages): the figure is
    # the cost of one full-data iteration.
    reg = SparseMLPRegressor(support, hidden_layer_sizes=(p,), max_iter=n_iter, tol=0, n_iter_no_change=100,
                             progressive=False, random_state=0)
    # A fit on a few rows first compiles the kernels for this dtype: after an
    # edit of the kernels' module their cache is empty, and compiling inside
    # the timed iterations once gave float32 1.32 s an iteration instead of 0.27.
    clone(reg).fit(X[:1000], y[:1000])
    timed_fit(reg, X, y)
    iter_s = reg._fit_seconds["iterations"] / reg.n_iter_
    return numpy_s, pass_s, iter_s


def is_minibatch(est):
    """True for the Adam-trained estimators (IMP*, MLP*), possibly inside a pipeline."""
    last = est.steps[-1][1] if hasattr(est, "steps") else est
    last = getattr(last, "regressor", last)  # TransformedTargetRegressor
    return type(last).__name__.startswith(("IMP", "MLP"))


def _proc_status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")


def reset_peak():
    """Reset the process's RSS high-water mark; return the RSS now (MiB).  Linux only (else NaN)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _proc_status("VmRSS")
    except OSError:
        return float("nan")


def peak_since_reset():
    try:
        return _proc_status("VmHWM")
    except OSError:
        return float("nan")


def warm_up():
    """Compile the numba kernels (parallel and serial copies, float64 and float32)
    so that no timing below includes compilation.  The fits on one row block
    run past the choice of ``alpha="auto"`` (after 10 iterations) and into the
    shared coupling's Newton steps, whose kernels a shorter warm-up left to the
    first real fit (wine in tabular.py: 3.5 s instead of 0.7 right after a
    kernel change)."""
    from sklearn_sparse_mlp import SparseMLPClassifier, SparseMLPRegressor

    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for n in (60, 5000):  # one row block (serial kernels) and several (parallel)
            X = rng.standard_normal((n, 5)).astype(dtype)
            y = X[:, 0] - X[:, 1]
            # Long fits on one row block only (the small data sets' serial kernels).
            kw = dict(hidden_layer_sizes=(4,), max_iter=14 if n < 100 else 3, tol=0.0, random_state=0)
            timed_fit(SparseMLPRegressor(4, **kw), X, y)
            timed_fit(SparseMLPRegressor(8, **kw), X, np.c_[y, -y])
            timed_fit(SparseMLPClassifier(8, **kw), X, y > 0)
            timed_fit(SparseMLPClassifier(8, **kw), X, np.digitize(y, [-1, 1]))


# A child process measures the peak RSS of one fit: imports and a warm-up fit
# first, then the high-water mark is reset (Linux /proc/self/clear_refs) so the
# peak is the fit's own.  The estimator is built from a Python expression.
_RSS_CHILD = r"""
import json, sys, time, warnings
import numpy as np
from sklearn_sparse_mlp import IMPRegressor, SparseMLPRegressor
from sklearn_sparse_mlp.datasets import make_planted_mlp

spec = json.loads(sys.argv[1])
X, y = make_planted_mlp(n_samples=spec["n"], n_features=spec["d"], n_hidden=10, n_nonzero=spec["d"],
                        random_state=0)

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0  # MiB

warnings.simplefilter("ignore")
eval(spec["make"].format(width=10)).fit(X, y)  # warm-up: numba compilation, BLAS buffers
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
t0 = time.perf_counter()
est = eval(spec["make"].format(width=spec["width"])).fit(X, y)
fit_s = time.perf_counter() - t0
print(json.dumps(dict(base_mib=base, peak_mib=status("VmHWM"), fit_s=fit_s, n_nonzero=int(est.n_nonzero_))))
"""


def peak_rss(make, width, n=2000, d=100):
    """Peak RSS (MiB) of one fit of ``make.format(width=width)`` in a fresh process."""
    spec = dict(make=make, width=width, n=n, d=d)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed for {make} width={width}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_db(v):
    if v is None or not np.isfinite(v):
        return "exact" if v == np.inf else "n/a"
    return f"{v:.1f}"
