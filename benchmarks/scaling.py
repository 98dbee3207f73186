"""Scaling: seconds per IHT iteration against n and against p, GFLOP/s of the
full-gradient pass against NumPy's matrix products of the same shapes, and peak
RSS of a fit against p for IHT and IMP.

Per iteration: ``SparseMLPRegressor(200, max_iter=3, tol=0)`` on Gaussian data
(d=100), fit seconds / iterations, after a warm-up (numba compiled).  The pass:
``_operator.gradient_pass`` on row blocks (X H, the masked residual, X^T M, streaming
top-s) against NumPy's ``X @ H`` plus ``X.T @ Z`` (4 n (d+1) p flops).  Slopes
are least-squares fits of log(seconds) on log(n) or log(p).  Peak RSS: one
fresh process per point (n=2000, d=100, s=100), the high-water mark reset
after a warm-up fit.

    python benchmarks/scaling.py --quick
    python benchmarks/scaling.py
"""

import argparse
import json

import numpy as np

if __package__:
    from ._common import header, peak_rss, pyplot, save_figure, time_hot_loop, warm_up, write_results
else:
    from _common import header, peak_rss, pyplot, save_figure, time_hot_loop, warm_up, write_results

D = 100
IMP_MAKE = "IMPRegressor(100, hidden_layer_sizes=({width},), epochs_per_round=1, prune_fraction=0.9, random_state=0)"
IHT_MAKE = "SparseMLPRegressor(100, hidden_layer_sizes=({width},), max_iter=5, random_state=0)"


def point(n, p, repeats=2):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, D))
    y = np.maximum(X[:, :3], 0).sum(axis=1)
    t_np, t_pass, t_iter = time_hot_loop(X, y, p, repeats)
    flops = 4 * n * (D + 1) * p
    return dict(n=n, p=p, numpy_s=t_np, pass_s=t_pass, iter_s=t_iter, gflops_numpy=flops / t_np / 1e9,
                gflops_pass=flops / t_pass / 1e9)


def slope(x, t):
    return float(np.polyfit(np.log(x), np.log(t), 1)[0])


def run(quick=True, progress=print):
    warm_up()
    ns = (1000, 4000, 16000) if quick else (2000, 8000, 32000, 64000)
    ps = (100, 1000, 10000) if quick else (100, 1000, 10000, 100000)
    p_fixed, n_fixed = (500, 2000) if quick else (1000, 5000)
    by_n, by_p = [], []
    for n in ns:
        by_n.append(point(n, p_fixed))
        r = by_n[-1]
        progress(f"    n={n:<6} p={p_fixed}: iteration {r['iter_s']:.3f} s, pass {r['gflops_pass']:.1f} GFLOP/s, "
                 f"NumPy {r['gflops_numpy']:.1f} GFLOP/s")
    for p in ps:
        by_p.append(point(n_fixed, p))
        r = by_p[-1]
        progress(f"    p={p:<6} n={n_fixed}: iteration {r['iter_s']:.3f} s, pass {r['gflops_pass']:.1f} GFLOP/s, "
                 f"NumPy {r['gflops_numpy']:.1f} GFLOP/s")
    widths = (100, 1000, 10000) if quick else (100, 1000, 10000, 100000)
    mem = []
    for w in widths:
        for kind, make in (("IHT", IHT_MAKE), ("IMP", IMP_MAKE)):
            r = peak_rss(make, w)
            r.update(kind=kind, p=w, dense_mib=(D * w + w) * 8 / 2**20)
            mem.append(r)
            progress(f"    {kind} p={w:<7} peak RSS {r['peak_mib']:.1f} MiB (+{r['peak_mib'] - r['base_mib']:.1f} over "
                     f"{r['base_mib']:.0f} before the fit)")
    mode = "quick" if quick else "full"
    res = dict(by_n=by_n, by_p=by_p, memory=mem, slope_n=slope(ns, [r["iter_s"] for r in by_n]),
               slope_p=slope(ps, [r["iter_s"] for r in by_p]))
    report(res, mode, p_fixed, n_fixed)
    return res


def report(res, mode, p_fixed, n_fixed):
    lines = header("Scaling", f"python benchmarks/scaling.py{' --quick' if mode == 'quick' else ''}", mode)
    lines += [f"Gaussian data, d={D}, float64; budget 200; NumPy's products of the same shapes with its default "
              "BLAS threads.", "",
              f"Seconds per iteration grow as n^{res['slope_n']:.2f} (p={p_fixed}) and p^{res['slope_p']:.2f} "
              f"(n={n_fixed}); the pass costs 4 n d p flops, so the ideal slopes are 1.", "",
              "| n | p | NumPy matmuls (s) | gradient pass (s) | IHT iteration (s) | iteration / NumPy "
              "| GFLOP/s NumPy | GFLOP/s pass |", "|---|---|---|---|---|---|---|---|"]
    for r in res["by_n"] + res["by_p"]:
        lines.append(f"| {r['n']} | {r['p']} | {r['numpy_s']:.4f} | {r['pass_s']:.4f} | {r['iter_s']:.4f} | "
                     f"{r['iter_s'] / r['numpy_s']:.2f} | {r['gflops_numpy']:.1f} | {r['gflops_pass']:.1f} |")
    lines += ["", "## Peak RSS of one fit against the hidden width p (n=2000, d=100, s=100)", "",
              f"IHT: `{IHT_MAKE.format(width='p')}`; IMP: `{IMP_MAKE.format(width='p')}` (IMP's peak is its dense "
              "network's from the first step on, so a short schedule measures the same peak).", "",
              "| p | dense float64 weights (MiB) | IHT peak (MiB) | IHT growth (MiB) | IMP peak (MiB) "
              "| IMP growth (MiB) |", "|---|---|---|---|---|---|"]
    mem = res["memory"]
    widths = sorted({r["p"] for r in mem})
    by = {(r["kind"], r["p"]): r for r in mem}
    for w in widths:
        a, b = by["IHT", w], by["IMP", w]
        lines.append(f"| {w} | {a['dense_mib']:.1f} | {a['peak_mib']:.1f} | {a['peak_mib'] - a['base_mib']:.1f} | "
                     f"{b['peak_mib']:.1f} | {b['peak_mib'] - b['base_mib']:.1f} |")
    g = {k: by[k, widths[-1]]["peak_mib"] - by[k, widths[0]]["peak_mib"] for k in ("IHT", "IMP")}
    lines += ["", f"From p={widths[0]} to p={widths[-1]}: IHT peak {g['IHT']:+.1f} MiB, IMP peak {g['IMP']:+.1f} MiB "
              f"(dense weights alone: {by['IMP', widths[-1]]['dense_mib'] - by['IMP', widths[0]]['dense_mib']:+.1f} MiB)."]
    name = f"scaling_{mode}"
    write_results(name, lines, res)
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for a, rows, key, fixed in ((ax[0], res["by_n"], "n", f"p={p_fixed}"), (ax[0], res["by_p"], "p", f"n={n_fixed}")):
        x = [r[key] for r in rows]
        a.loglog(x, [r["iter_s"] for r in rows], "o-",
                 label=f"vs {key} ({fixed}): slope {res['slope_' + key]:.2f}")
        a.loglog(x, [r["numpy_s"] for r in rows], "k:", lw=1)
    ax[0].set_xlabel("n or p")
    ax[0].set_ylabel("seconds per IHT iteration (dotted: NumPy matmuls)")
    ax[0].legend(fontsize=8)
    rows = res["by_n"] + res["by_p"]
    lab = [f"n={r['n']}\np={r['p']}" for r in rows]
    x = np.arange(len(rows))
    ax[1].bar(x - 0.2, [r["gflops_numpy"] for r in rows], 0.4, label="NumPy X@H + X.T@Z")
    ax[1].bar(x + 0.2, [r["gflops_pass"] for r in rows], 0.4, label="gradient pass")
    ax[1].set_xticks(x, lab, fontsize=7)
    ax[1].set_ylabel("GFLOP/s")
    ax[1].legend(fontsize=8)
    for kind, style in (("IHT", "o-"), ("IMP", "s-")):
        ax[2].loglog(widths, [max(by[kind, w]["peak_mib"] - by[kind, w]["base_mib"], 0.05) for w in widths], style,
                     label=f"{kind}: peak RSS growth")
    ax[2].loglog(widths, [by["IMP", w]["dense_mib"] for w in widths], "k--", label="dense weights alone")
    ax[2].set_xlabel("hidden width p")
    ax[2].set_ylabel("MiB")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.quick)
    print(json.dumps(dict(slope_n=res["slope_n"], slope_p=res["slope_p"])))


if __name__ == "__main__":
    main()
