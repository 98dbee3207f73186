"""Sparse input: the memory and time of a fit on a CSR matrix, against the same data dense.

    python benchmarks/bench_sparse.py            # n=1e6, d=1000, 1% density, float32 (about 10 min)
    python benchmarks/bench_sparse.py --quick    # n=1e5 (about a minute)

The data: ``X`` float32 CSR with 10 stored entries per row at random columns
(1% density), ``y`` from a planted sparse ReLU network of 5 units on 100
features each (500 weights).  The model: ``SparseMLPRegressor(500, hidden_layer_sizes=(1000,),
max_iter=3)``.  Each fit runs in a fresh process: data built, a warm-up fit
(numba compilation) on a slice, the RSS high-water mark reset, then the fit.
"Growth" is the peak RSS during the fit minus the RSS before it, with ``X``
already in memory: what the fit itself needs beyond its input.  The same fit
on ``X.toarray()`` gives the dense time (its growth is measured the same way;
the dense input itself is not counted).

Writes benchmarks/results/sparse_<mode>.{md,json}.
"""

import argparse
import json
import subprocess
import sys

if __package__:
    from ._common import header, write_results
else:
    from _common import header, write_results

TARGET_MIB = 64

_CHILD = r"""
import json, sys, time, warnings
import numpy as np
import scipy.sparse as sp
from sklearn_sparse_mlp import SparseMLPRegressor

spec = json.loads(sys.argv[1])
n, d, per_row = spec["n"], spec["d"], spec["per_row"]
rng = np.random.default_rng(0)
indptr = np.arange(0, n * per_row + 1, per_row, dtype=np.int64)
indices = rng.integers(0, d, n * per_row).astype(np.int32)
data = rng.standard_normal(n * per_row).astype(np.float32)
X = sp.csr_matrix((data, indices, indptr), shape=(n, d))
X.sum_duplicates()
del data, indices, indptr
W = np.zeros((d, 5), dtype=np.float32)
for j in range(5):
    W[rng.choice(d, 100, replace=False), j] = rng.standard_normal(100)
y = np.maximum(np.asarray(X @ W), 0).sum(axis=1).astype(np.float64)
input_mib = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
if spec["dense"]:
    X = X.toarray()
    input_mib = X.nbytes / 2**20

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0

make = lambda **kw: SparseMLPRegressor(500, hidden_layer_sizes=(spec["width"],), max_iter=3, random_state=0, **kw)
warnings.simplefilter("ignore")
make().fit(X[:5000], y[:5000])  # warm-up: numba compilation
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
t0 = time.perf_counter()
reg = make().fit(X, y)
fit_s = time.perf_counter() - t0
peak = status("VmHWM")
r2 = reg.score(X[:20000], y[:20000])
print(json.dumps(dict(dense=spec["dense"], n=n, d=d, input_mib=input_mib, base_mib=base, peak_mib=peak,
                      growth_mib=peak - base, fit_s=fit_s, n_iter=reg.n_iter_, n_nonzero=int(reg.n_nonzero_),
                      r2_train=r2)))
"""


def run(n, d=1000, per_row=10, width=1000, dense=False):
    spec = dict(n=n, d=d, per_row=per_row, width=width, dense=dense)
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({spec}):\n{out.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {'dense' if dense else 'CSR  '} n={n}: input {row['input_mib']:.0f} MiB, fit growth "
          f"{row['growth_mib']:.1f} MiB, {row['fit_s']:.1f} s, {row['n_iter']} iterations, "
          f"{row['n_nonzero']} nonzeros, train R^2 {row['r2_train']:.3f}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n=1e5 instead of 1e6")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    rows = [run(n), run(n, dense=True)]
    sparse, dense = rows
    mode = "quick" if args.quick else "full"
    lines = header("Sparse input: memory and time of a fit", f"python benchmarks/bench_sparse.py"
                   f"{' --quick' if args.quick else ''}", mode)
    lines += [
        f"`SparseMLPRegressor(500, hidden_layer_sizes=(1000,), max_iter=3)` on n={n}, d=1000, float32, "
        "10 stored entries per row (1% density); y from a planted network of 5 units. One fresh process "
        "per fit; growth = peak RSS during the fit minus RSS before it (X already in memory).",
        "",
        "| input | input (MiB) | fit growth (MiB) | fit (s) | iterations | nonzeros | train R^2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {'dense' if r['dense'] else 'CSR'} | {r['input_mib']:.0f} | {r['growth_mib']:.1f} | "
                     f"{r['fit_s']:.1f} | {r['n_iter']} | {r['n_nonzero']} | {r['r2_train']:.3f} |")
    verdict = "met" if sparse["growth_mib"] <= TARGET_MIB else "MISSED"
    lines += ["", f"CSR growth over the input: {sparse['growth_mib']:.1f} MiB (target <= {TARGET_MIB} MiB: "
              f"{verdict}); CSR fit {sparse['fit_s']:.1f} s against {dense['fit_s']:.1f} s dense "
              f"(x{dense['fit_s'] / sparse['fit_s']:.1f})."]
    path = write_results(f"sparse_{mode}", lines, dict(rows=rows, target_mib=TARGET_MIB))
    print("\n".join(lines[-1:]) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
