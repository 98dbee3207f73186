"""Core benchmark: hot-loop speed, memory flatness in p, planted recovery.

    python benchmarks/bench_core.py            # full
    python benchmarks/bench_core.py --quick    # a few minutes

Writes benchmarks/results/core.md and core.png (figure needs matplotlib).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

if __package__:
    from ._common import RESULTS, time_hot_loop
else:  # python benchmarks/bench_core.py
    from _common import RESULTS, time_hot_loop


def hot_loop(n=20000, d=100, p=2000, repeats=5):
    """Seconds of one streaming gradient pass and of one IHT iteration, over
    the seconds of NumPy's X @ H and X.T @ M of the same shapes."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        X = rng.standard_normal((n, d)).astype(dtype)
        y = rng.standard_normal(n)
        t_np, t_pass, t_fit = time_hot_loop(X, y, p, repeats, n_iter=4)
        rows.append(dict(dtype=np.dtype(dtype).name, numpy_s=t_np, pass_s=t_pass, iter_s=t_fit,
                         pass_ratio=t_pass / t_np, iter_ratio=t_fit / t_np,
                         gflops_numpy=4 * n * (d + 1) * p / t_np / 1e9,
                         gflops_pass=4 * n * (d + 1) * p / t_pass / 1e9))
        print(f"  {rows[-1]['dtype']}: numpy {t_np:.3f} s, pass {t_pass:.3f} s (x{t_pass / t_np:.2f}), "
              f"iteration {t_fit:.3f} s (x{t_fit / t_np:.2f})", flush=True)
    return rows


_RSS_CHILD = r"""
import resource, sys, json, warnings
import numpy as np
from sklearn_sparse_mlp import SparseMLPRegressor
from sklearn_sparse_mlp.datasets import make_planted_mlp
p = int(sys.argv[1])
X, y = make_planted_mlp(n_samples=2000, n_features=20, n_hidden=10, n_nonzero=30, random_state=0)
SparseMLPRegressor(5, hidden_layer_sizes=(10,), max_iter=1, random_state=0).fit(X[:100], y[:100])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
# Reset the high-water mark so that the JIT warm-up does not hide the fit's peak.
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = rss()
import time
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    reg = SparseMLPRegressor(200, hidden_layer_sizes=(p,), max_iter=2, random_state=0).fit(X, y)
t = time.perf_counter() - t0
peak = hwm()
print(json.dumps(dict(p=p, base_mib=base / 1024, peak_mib=peak / 1024, fit_s=t, nnz=reg.n_nonzero_)))
"""


def memory(ps):
    rows = []
    for p in ps:
        out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(p)], capture_output=True, text=True,
                             check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  p={p:>8}: peak RSS {row['peak_mib']:.1f} MiB (fit {row['fit_s']:.1f} s, 2 iterations)",
              flush=True)
    return rows


def recovery(cells, n=50000, d=100, seed=0):
    from sklearn_sparse_mlp import SparseMLPRegressor
    from sklearn_sparse_mlp.datasets import make_planted_mlp
    from sklearn_sparse_mlp.metrics import psnr_score

    rows = []
    for p, s in cells:
        X, y = make_planted_mlp(n_samples=n + 10000, n_features=d, n_hidden=p, n_nonzero=s, random_state=seed)
        Xt, yt, X, y = X[n:], y[n:], X[:n], y[:n]
        reg = SparseMLPRegressor(s, hidden_layer_sizes=(p,), random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            reg.fit(X, y)
            t = time.perf_counter() - t0
        rows.append(dict(p=p, s=s, test_psnr=psnr_score(yt, reg.predict(Xt)),
                         train_psnr=psnr_score(y, reg.predict(X)), fit_s=t, n_iter=reg.n_iter_,
                         nnz=reg.n_nonzero_))
        r = rows[-1]
        print(f"  p={p:>5} s={s:>5}: test PSNR {r['test_psnr']:.1f} dB, train {r['train_psnr']:.1f} dB, "
              f"{t:.1f} s, {r['n_iter']} iterations", flush=True)
    return rows


PAPER = {(100, 100): (29.9, 107), (10, 10): (41.0, 14.6), (1000, 100): (28.3, 557), (100, 1000): (28.7, 190)}


def write(results, quick):
    os.makedirs(RESULTS, exist_ok=True)
    name = "core_quick" if quick else "core"
    lines = [f"# Core benchmark ({'quick' if quick else 'full'} mode)", "",
             f"Command: `python benchmarks/bench_core.py{' --quick' if quick else ''}`  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", "",
             "## 1. Hot loop (n=20000, d=100, p=2000)", "",
             "IHT iteration: the seconds of a 4-iteration fit's iterations (without its set-up, the one-off "
             "choice of alpha=\"auto\" and the final polish) over 4.", "",
             "| dtype | NumPy X@H + X.T@M (s) | gradient pass (s) | pass / NumPy | IHT iteration (s) "
             "| iteration / NumPy | GFLOP/s NumPy | GFLOP/s pass |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["hot"]:
        lines.append(f"| {r['dtype']} | {r['numpy_s']:.3f} | {r['pass_s']:.3f} | {r['pass_ratio']:.2f} | "
                     f"{r['iter_s']:.3f} | {r['iter_ratio']:.2f} | {r['gflops_numpy']:.1f} | "
                     f"{r['gflops_pass']:.1f} |")
    lines += ["", "Target: iteration / NumPy <= 1.5.", "",
              "## 2. Peak RSS of a fit at s=200 (n=2000, d=20, 2 iterations), one process per p", "",
              "| p | dense weights (MiB) | RSS before fit (MiB) | peak RSS during fit (MiB) | fit (s) |", "|---|---|---|---|---|"]
    for r in results["mem"]:
        lines.append(f"| {r['p']:.0e} | {r['p'] * 21 * 8 / 2**20:.1f} | {r['base_mib']:.1f} | "
                     f"{r['peak_mib']:.1f} | {r['fit_s']:.1f} |")
    mem = results["mem"]
    growth = mem[-1]["peak_mib"] - mem[0]["peak_mib"]
    lines += ["", f"Growth from p={mem[0]['p']:.0e} to p={mem[-1]['p']:.0e}: {growth:.1f} MiB "
              "(target < 64 MiB).", "",
              "## 3. Planted recovery (n=50000 train + 10000 test, d=100, seed 0, model width = planted width)", "",
              "| p | s | test PSNR (dB) | train PSNR (dB) | fit (s) | iterations | paper's code: train PSNR, s |",
              "|---|---|---|---|---|---|---|"]
    for r in results["rec"]:
        paper = PAPER.get((r["p"], r["s"]))
        ptxt = f"{paper[0]} dB, {paper[1]} s" if paper else ""
        lines.append(f"| {r['p']} | {r['s']} | {r['test_psnr']:.1f} | {r['train_psnr']:.1f} | {r['fit_s']:.1f} | "
                     f"{r['n_iter']} | {ptxt} |")
    lines += ["", "Target: >= 40 dB test PSNR in under 5 s at p=100, s=100."]
    with open(os.path.join(RESULTS, name + ".md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, name + ".json"), "w") as fh:
        json.dump(results, fh, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no figure (pip install '.[bench]')")
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    hot = results["hot"]
    x = np.arange(len(hot))
    ax[0].bar(x - 0.2, [r["pass_ratio"] for r in hot], 0.4, label="gradient pass")
    ax[0].bar(x + 0.2, [r["iter_ratio"] for r in hot], 0.4, label="IHT iteration")
    ax[0].axhline(1.5, color="k", ls="--", lw=1, label="target 1.5")
    ax[0].set_xticks(x, [r["dtype"] for r in hot])
    ax[0].set_ylabel("seconds / NumPy matmul seconds")
    ax[0].set_title("Hot loop, n=20000 d=100 p=2000")
    ax[0].legend()
    ps = [r["p"] for r in mem]
    ax[1].loglog(ps, [r["peak_mib"] for r in mem], "o-", label="IHT peak RSS")
    ax[1].loglog(ps, [p * 21 * 8 / 2**20 for p in ps], "k--", label="dense weights alone")
    ax[1].set_xlabel("hidden width p")
    ax[1].set_ylabel("MiB")
    ax[1].set_title("Memory at s=200 (n=2000, d=20)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, name + ".png"), dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print("[1/3] hot loop", flush=True)
    hot = hot_loop(repeats=5)
    print("[2/3] memory", flush=True)
    mem = memory([1000, 100000, 1000000])
    print("[3/3] planted recovery", flush=True)
    cells = [(100, 100), (10, 10)] if args.quick else [(100, 100), (10, 10), (1000, 100), (100, 1000)]
    rec = recovery(cells)
    write(dict(hot=hot, mem=mem, rec=rec), args.quick)
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
