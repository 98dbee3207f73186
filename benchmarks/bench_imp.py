"""IMP baseline benchmark: digits accuracy against the dense MLP, memory against IHT.

    python benchmarks/bench_imp.py --quick    # a few minutes on 2 cores
    python benchmarks/bench_imp.py            # full: 3 seeds, widths up to 1e5

(a) scikit-learn's digits, StandardScaler pipeline, 5-fold cross_val_score
    splits: IMPClassifier at 10% of the weights of a (100,) network against
    MLPClassifier(hidden_layer_sizes=(100,)), accuracy and fit seconds; fit
    times with BLAS at its default threading and at one thread (the matrices
    are tiny, and a shared machine makes threaded BLAS erratic).
(b) Peak RSS of one fit as the hidden width p grows (n=2000, d=100,
    synthetic planted-network regression), one fresh process per point, the
    high-water mark reset after imports and a warm-up fit: IMPRegressor
    (dense network: linear in p) against SparseMLPRegressor(100,
    max_iter=5) (IHT: flat).

Writes benchmarks/results/imp_quick.{md,json,png} (full mode: imp_full.*).
"""

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np

if __package__:
    from ._common import RESULTS, peak_rss
else:  # python benchmarks/bench_imp.py
    from _common import RESULTS, peak_rss

# IMP's memory is the dense network's from the first optimizer step on, so a
# short schedule (one epoch per round, 90% pruned per round) measures the same
# peak as the default one in a fraction of the time.
IMP_MEMORY_PARAMS = dict(epochs_per_round=1, prune_fraction=0.9)



def memory(widths):
    makes = {"imp": "IMPRegressor(100, hidden_layer_sizes=({width},), random_state=0, "
                    + ", ".join(f"{k}={v}" for k, v in IMP_MEMORY_PARAMS.items()) + ")",
             "iht": "SparseMLPRegressor(100, hidden_layer_sizes=({width},), max_iter=5, random_state=0)"}
    rows = []
    for p in widths:
        for kind in ("imp", "iht"):
            row = peak_rss(makes[kind], p)
            row.update(kind=kind, p=p, dense_mib=(100 * p + p) * 8 / 2**20)  # float64 weights of the dense network
            rows.append(row)
            print(f"  {kind:>3} p={p:>7}: peak RSS {row['peak_mib']:8.1f} MiB "
                  f"(+{row['peak_mib'] - row['base_mib']:7.1f} over the {row['base_mib']:.0f} MiB before the fit), "
                  f"fit {row['fit_s']:.1f} s", flush=True)
    return rows


def digits(seeds):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_validate
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from sklearn_sparse_mlp import IMPClassifier

    X, y = load_digits(return_X_y=True)
    makers = {
        "MLPClassifier((100,))": lambda s: MLPClassifier(hidden_layer_sizes=(100,), random_state=s),
        "IMPClassifier(0.1)": lambda s: IMPClassifier(0.1, random_state=s),
        "IMPClassifier(1.0) (dense round only)": lambda s: IMPClassifier(1.0, random_state=s),
    }
    rows = []
    for name, make in makers.items():
        acc, fit_default, fit_one, nnz, rounds = [], [], [], [], []
        for seed in seeds:
            for threads in (None, 1):
                with warnings.catch_warnings(), threadpool_limits(limits=threads, user_api="blas"):
                    warnings.simplefilter("ignore")
                    cv = cross_validate(make_pipeline(StandardScaler(), make(seed)), X, y, cv=5,
                                        return_estimator=True)
                if threads is None:
                    acc.append(float(cv["test_score"].mean()))
                    fit_default.append(float(cv["fit_time"].mean()))
                    last = cv["estimator"][0][-1]
                    nnz.append(int(getattr(last, "n_nonzero_", sum(W.size for W in last.coefs_))))
                    rounds.append(int(getattr(last, "n_rounds_", 1)))
                else:
                    if not np.isclose(cv["test_score"].mean(), acc[-1], atol=1e-9):
                        print(f"  note: {name} seed {seed}: accuracy {cv['test_score'].mean():.4f} with one "
                              f"BLAS thread vs {acc[-1]:.4f} threaded (rounding)")
                    fit_one.append(float(cv["fit_time"].mean()))
        rows.append(dict(name=name, seeds=list(seeds), accuracy=acc, accuracy_mean=float(np.mean(acc)),
                         fit_s_default=float(np.mean(fit_default)), fit_s_one_thread=float(np.mean(fit_one)),
                         n_weights=nnz[0], n_rounds=rounds[0]))
        r = rows[-1]
        print(f"  {name:<38} accuracy {r['accuracy_mean']:.4f} {np.round(acc, 4)}  fit {r['fit_s_default']:.2f} s "
              f"(1 BLAS thread: {r['fit_s_one_thread']:.2f} s), {r['n_weights']} weights", flush=True)
    return rows


def write(results, quick):
    os.makedirs(RESULTS, exist_ok=True)
    name = "imp_quick" if quick else "imp_full"
    dig, mem = results["digits"], results["memory"]
    mlp = dig[0]
    load = results["loadavg"]
    lines = [f"# IMP baseline benchmark ({'quick' if quick else 'full'} mode)", "",
             f"Command: `python benchmarks/bench_imp.py{' --quick' if quick else ''}`  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}; load average at start {load[0]:.2f} "
             "(the machine may be shared: wall times are indicative)", "",
             "## (a) Digits, StandardScaler pipeline, 5-fold cross_val_score splits", "",
             f"Seeds {results['digits'][0]['seeds']}; fit seconds are the mean per fit (one fold). "
             "On a loaded machine, threaded BLAS on these tiny matrices swings by 10x or more from run to "
             "run: the one-thread column is the comparable one.", "",
             "| estimator | weights | rounds | accuracy (mean) | per seed | vs dense MLP (points) "
             "| fit s (BLAS default) | fit s (1 BLAS thread) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in dig:
        lines.append(f"| {r['name']} | {r['n_weights']} | {r['n_rounds']} | {r['accuracy_mean']:.4f} | "
                     f"{', '.join(f'{a:.4f}' for a in r['accuracy'])} | "
                     f"{100 * (r['accuracy_mean'] - mlp['accuracy_mean']):+.2f} | {r['fit_s_default']:.2f} | "
                     f"{r['fit_s_one_thread']:.2f} |")
    imp = dig[1]
    gap = 100 * (mlp["accuracy_mean"] - imp["accuracy_mean"])
    lines += ["", f"Target: IMPClassifier(0.1) within 2 accuracy points of the dense MLP: "
              f"{'met' if gap <= 2 else 'NOT met'} ({gap:.2f} points below).", "",
              "## (b) Peak RSS of one fit against the hidden width p (n=2000, d=100)", "",
              f"IMPRegressor(100, {', '.join(f'{k}={v}' for k, v in IMP_MEMORY_PARAMS.items())}) (the peak "
              "is the dense network's from the first step; a short schedule keeps the run short) and "
              "SparseMLPRegressor(100, max_iter=5). One process per point; RSS before the fit is "
              "after imports and a warm-up fit.", "",
              "| p | dense weights (MiB) | IMP peak RSS (MiB) | IMP growth over base (MiB) | IMP fit (s) "
              "| IHT peak RSS (MiB) | IHT growth over base (MiB) | IHT fit (s) |",
              "|---|---|---|---|---|---|---|---|"]
    by = {(r["kind"], r["p"]): r for r in mem}
    widths = sorted({r["p"] for r in mem})
    for p in widths:
        a, b = by["imp", p], by["iht", p]
        lines.append(f"| {p} | {a['dense_mib']:.1f} | {a['peak_mib']:.1f} | {a['peak_mib'] - a['base_mib']:.1f} | "
                     f"{a['fit_s']:.1f} | {b['peak_mib']:.1f} | {b['peak_mib'] - b['base_mib']:.1f} | "
                     f"{b['fit_s']:.1f} |")
    p0, p1 = widths[0], widths[-1]
    g_imp = by["imp", p1]["peak_mib"] - by["imp", p0]["peak_mib"]
    g_iht = by["iht", p1]["peak_mib"] - by["iht", p0]["peak_mib"]
    lines += ["", f"From p={p0} to p={p1}: IMP peak +{g_imp:.1f} MiB "
              f"({g_imp / max(by['imp', p1]['dense_mib'] - by['imp', p0]['dense_mib'], 1e-9):.1f}x the dense "
              f"weights' growth), IHT peak {g_iht:+.1f} MiB."]
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
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(dig))
    ax[0].bar(x, [100 * r["accuracy_mean"] for r in dig], 0.6, color=["0.5", "C0", "C1"])
    for i, r in enumerate(dig):
        ax[0].text(i, 100 * r["accuracy_mean"] + 0.2, f"{100 * r['accuracy_mean']:.1f}%\n"
                   f"{r['n_weights']} w, {r['fit_s_one_thread']:.1f} s", ha="center", va="bottom", fontsize=8)
    ax[0].axhline(100 * mlp["accuracy_mean"] - 2, color="k", ls="--", lw=1, label="dense MLP - 2 points")
    ax[0].set_xticks(x, [r["name"].replace(" (dense round only)", "\n(dense round)") for r in dig], fontsize=8)
    lo = min(100 * r["accuracy_mean"] for r in dig)
    ax[0].set_ylim(lo - 5, 100)
    ax[0].set_ylabel("5-fold CV accuracy (%)")
    ax[0].set_title("Digits: IMP at 10% of the weights vs dense MLP")
    ax[0].legend(loc="lower right", fontsize=8)
    for kind, style, label in (("imp", "o-", "IMPRegressor"), ("iht", "s-", "SparseMLPRegressor (IHT)")):
        ax[1].loglog(widths, [max(by[kind, p]["peak_mib"] - by[kind, p]["base_mib"], 0.05) for p in widths], style,
                     label=f"{label}: peak RSS - RSS before fit")
    ax[1].loglog(widths, [by["imp", p]["dense_mib"] for p in widths], "k--", label="dense float64 weights alone")
    ax[1].set_xlabel("hidden width p")
    ax[1].set_ylabel("MiB")
    ax[1].set_title("Memory of a fit (n=2000, d=100, s=100)")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, name + ".png"), dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    loadavg = os.getloadavg()
    print("[1/2] digits", flush=True)
    dig = digits((0,) if args.quick else (0, 1, 2))
    print("[2/2] peak RSS against the hidden width", flush=True)
    mem = memory([100, 1000, 10000] if args.quick else [100, 1000, 10000, 100000])
    write(dict(digits=dig, memory=mem, loadavg=list(loadavg), imp_memory_params=IMP_MEMORY_PARAMS), args.quick)
    print(f"results in {RESULTS} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
