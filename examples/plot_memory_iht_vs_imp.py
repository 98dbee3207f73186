"""
========================================
Memory of IHT against IMP as width grows
========================================

Iterative magnitude pruning (:class:`~sklearn_sparse_mlp.IMPRegressor`) trains
the dense network and prunes it, so it holds every dense weight (with its
gradient, Adam's two moments and its mask) and the minibatch activations of
every hidden unit.  Iterative hard thresholding
(:class:`~sklearn_sparse_mlp.SparseMLPRegressor`) streams the gradient over
chunks of hidden units and keeps only the support, so its memory does not
depend on the hidden width ``p``.  This example measures both, at a fixed
budget of 40 nonzero weights, for ``p`` from 100 to 100,000, and compares the
measurements with the memory model of the :ref:`user guide <memory_model>`.
"""

# %%
# How memory is measured
# ----------------------
# Each point runs in a fresh Python process, which imports the package, makes
# a warm-up fit at width 10 (this loads the compiled numba kernels and
# initialises BLAS), resets the kernel's record of the process's peak
# resident set size (RSS) by writing ``5`` to ``/proc/self/clear_refs``, and
# then fits at width ``p``.  The growth of the peak RSS (``VmHWM`` in
# ``/proc/self/status``) over the RSS just before the fit is the fit's own
# peak memory: everything the process touched, NumPy arrays, numba's own
# allocations and BLAS buffers included.  (:mod:`tracemalloc` would miss the
# arrays that numba kernels allocate, which it does not trace.)  The reset
# and ``VmHWM`` are Linux features; elsewhere the example falls back to
# :func:`resource.getrusage`, whose peak includes the imports.
#
# The data are small (300 samples, 10 features) and IMP prunes 99% of the
# remaining weights per round with one epoch per round: its peak is reached
# in the first (dense) round whatever the schedule, so a short schedule
# measures the same peak quickly.
import json
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np

CHILD = r"""
import json, os, resource, sys, warnings
from sklearn_sparse_mlp import IMPRegressor, SparseMLPRegressor
from sklearn_sparse_mlp.datasets import make_planted_mlp


def mib(key):
    # a field of /proc/self/status in MiB, or None off Linux
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def make(kind, width):
    if kind == "IMP":
        return IMPRegressor(40, hidden_layer_sizes=(width,), random_state=0,
                            epochs_per_round=1, prune_fraction=0.99)
    return SparseMLPRegressor(40, hidden_layer_sizes=(width,), max_iter=5,
                              random_state=0, n_jobs=1)


kind, width = sys.argv[1], int(sys.argv[2])
X, y = make_planted_mlp(n_samples=300, n_features=10, n_hidden=10,
                        n_nonzero=40, random_state=0)
warnings.simplefilter("ignore")
make(kind, 10).fit(X, y)  # warm-up
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak RSS to the current RSS
    before = mib("VmRSS")
except OSError:
    before = 0.0
make(kind, width).fit(X, y)
peak = mib("VmHWM")
if peak is None or before == 0.0:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # in KiB
print(json.dumps({"before": before, "peak": peak}))
"""

widths = [100, 1_000, 10_000, 100_000]
growth = {"IHT": [], "IMP": []}
for width in widths:
    for kind in ("IHT", "IMP"):
        out = subprocess.run([sys.executable, "-c", CHILD, kind, str(width)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        growth[kind].append(r["peak"] - r["before"])
    iht, imp = growth["IHT"][-1], growth["IMP"][-1]
    print(f"p={width:>7}: peak RSS growth of one fit: "
          f"IHT {iht:6.1f} MiB, IMP {imp:6.1f} MiB")

# %%
# The memory models
# -----------------
# The :ref:`user guide <memory_model>` lists the arrays a fit holds.  Here
# are both models in bytes, for one hidden layer of width ``p`` on ``d``
# features, ``n`` samples, one output and float64 data.  IMP peaks during
# backpropagation: 33 bytes per pruned parameter (the first-layer weights and
# the hidden biases) and 32 per output weight or intercept (value, gradient
# and Adam's two moments, plus a one-byte mask where pruned) and, per
# minibatch of ``b`` samples, the hidden activations, the backpropagated
# errors and a one-byte ReLU mask.  IHT's bound uses one thread (``n_jobs=1``),
# the budget ``s`` and chunks of ``c = min(512, p)`` units; the pattern cache
# is counted at its default limit of 4096 units, which a small fit does not
# reach.
n, d, b, s, k, threads = 300, 10, 200, 40, 1, 1


def imp_bytes(p):
    return 33 * (d + 1) * p + 32 * (p + 1) + 17 * b * p


def iht_bytes(p):
    q, c = d + 1, min(512, p)
    cache = max(64, min(4096, 2**26 // n))
    return (8 * n * q  # the design: X and the constant column
            + 8 * n * k * 10  # targets, sample weights, predictions, residuals
            + n * cache  # activation patterns (uint8)
            + 8 * n * k * s  # sequential gates: gate scores of entering units
            + 16 * (2 * s + c * q * k)  # streaming top-s buffer
            + 8 * (threads + 1) * k * q * c  # one chunk of the gradient
            + 8 * threads * 256 * (q + 2 * c)  # per-thread row tiles
            + 8 * -(-n // 2048) * s  # partial sums of the support's gradient
            + 8 * (threads + 4) * min(s, 2000) ** 2)  # exact refit on support


imp_model = np.array([imp_bytes(p) for p in widths]) / 2**20
iht_model = np.array([iht_bytes(p) for p in widths]) / 2**20
for i, width in enumerate(widths):
    print(f"p={width:>7}: IMP measured {growth['IMP'][i]:6.1f} MiB, "
          f"model {imp_model[i]:6.1f} MiB | IHT measured "
          f"{growth['IHT'][i]:4.1f} MiB, bound {iht_model[i]:4.1f} MiB")

# %%
# The plot
# --------
# IMP's peak grows linearly with the width, mostly through the minibatch
# activations at these sizes (with more features the dense weights take
# over), and the model accounts for most of it; the rest is BLAS and
# allocator overhead.  IHT's peak stays flat at a few MiB, under its bound.
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(widths, growth["IMP"], "s-", color="C1",
        label="IMPRegressor (measured)")
ax.plot(widths, imp_model, ":", color="C1", label="IMP memory model")
ax.plot(widths, growth["IHT"], "o-", color="C0",
        label="SparseMLPRegressor (measured)")
ax.plot(widths, iht_model, ":", color="C0", label="IHT memory bound")
ax.set(xscale="log", yscale="log", xlabel="hidden width p",
       ylabel="peak RSS growth of one fit (MiB)",
       title="Memory at a budget of 40 weights (n=300, d=10)")
ax.legend()
fig.tight_layout()
plt.show()
