"""Speed benchmark: SparseMLP* (IHT) against the dense scikit-learn MLPs, side by side.

One run prints and writes every row of the speed table (issue 13):

- large n: ``make_friedman1`` (d=20, fresh test rows), the default
  SparseMLPRegressor at s=210 (10% of a width-100 network's first layer)
  against ``MLPRegressor(hidden_layer_sizes=(100,), early_stopping=True)``:
  fit seconds and test R^2, at n=1e5 and (full mode) n=1e6;
- small data at a 10% budget, mean fit seconds per fold in a StandardScaler
  pipeline: digits and breast_cancer against MLPClassifier, the regression
  sets of ``tabular.py`` against MLPRegressor in a TransformedTargetRegressor;
- a 54000-row mixed-type pipeline (one-hot categories + scaled numbers,
  synthetic, binary target) against MLPClassifier;
- predict: 10 rows and 2e5 rows (diabetes-shaped inputs), best of repeats;
- the hot loop on bench_core's shape (n=20000, d=100, p=2000, s=200): the
  fit's set-up, its iterations and its final polish timed apart (every
  iteration on all the rows: ``progressive=False``); one iteration against
  NumPy's two products of the same shapes (X @ H, X.T @ Z) and against one
  gradient pass of the lazy operator; the same at n=1e6, d=20, p=100;
- the paper's cell (n=50000, d=100, m=s=100, seed 0): test PSNR on fresh
  points and fit seconds.

    python benchmarks/speed.py --quick     # n=1e5 only, 3 folds: a few minutes
    python benchmarks/speed.py             # n=1e5 and 1e6, 5 folds

The dense MLPs run with one BLAS thread (their faster setting on this
2-core machine, see README); SparseMLP* use their own numba threads.
Writes results/speed_<mode>.md, .json and .png.
"""

import argparse
import time
import warnings

import numpy as np

if __package__:
    from . import tabular
    from ._common import MINIBATCH_BLAS_THREADS, header, pyplot, save_figure, timed_fit, warm_up, write_results
else:
    import tabular
    from _common import MINIBATCH_BLAS_THREADS, header, pyplot, save_figure, timed_fit, warm_up, write_results

WIDTH = 100


def _r2(est, X, y):
    from sklearn.metrics import r2_score

    return float(r2_score(y, est.predict(X)))


def large_n(ns, progress):
    """make_friedman1, d=20: default IHT fit against the dense MLP with early stopping."""
    from sklearn.datasets import make_friedman1
    from sklearn.neural_network import MLPRegressor

    from sklearn_sparse_mlp import SparseMLPRegressor

    rows = []
    for n in ns:
        X, y = make_friedman1(n_samples=n + 20000, n_features=20, random_state=0)
        Xt, yt, X, y = X[n:], y[n:], X[:n], y[:n]
        iht = SparseMLPRegressor(210, random_state=0)
        t_iht = timed_fit(iht, X, y)
        mlp = MLPRegressor(hidden_layer_sizes=(WIDTH,), early_stopping=True, random_state=0)
        t_mlp = timed_fit(mlp, X, y, blas_threads=MINIBATCH_BLAS_THREADS)
        rows.append(dict(case=f"make_friedman1 n={n:.0e}, d=20, s=210", iht_s=t_iht, mlp_s=t_mlp,
                         iht_score=_r2(iht, Xt, yt), mlp_score=_r2(mlp, Xt, yt), metric="test R^2",
                         iht_iter=int(iht.n_iter_), mlp_iter=int(mlp.n_iter_),
                         iht_batch=str(getattr(iht, "batch_size_", iht.batch_size)), **_parts(iht)))
        progress(_line(rows[-1]))
    return rows


def _parts(est):
    t = getattr(est, "_fit_seconds", None)
    return {} if t is None else {f"iht_{k}_s": v for k, v in t.items()}


def _line(r):
    return (f"  {r['case']:<48} IHT {r['iht_s']:7.2f} s ({r['metric']} {r['iht_score']:.4f})  "
            f"dense {r['mlp_s']:7.2f} s ({r['mlp_score']:.4f})  ratio {r['iht_s'] / r['mlp_s']:.2f}")


def _cv_fit_seconds(make, X, y, cv, blas_threads=None):
    """Mean fit seconds and mean test score over the folds of ``cv``."""
    from sklearn.base import clone

    secs, scores = [], []
    for train, test in cv.split(X, y):
        est = clone(make)
        secs.append(timed_fit(est, X[train], y[train], blas_threads))
        scores.append(float(est.score(X[test], y[test])))
    return float(np.mean(secs)), float(np.mean(scores))


def small_data(folds, progress):
    """10% budget, StandardScaler pipelines: the classifiers on digits and
    breast_cancer, the regressors on tabular.py's regression sets."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    for name in ("digits", "breast_cancer", "diabetes", "friedman1", "friedman2", "friedman3"):
        X, y = tabular.load(name)
        budget = max(1, round(0.1 * tabular.dense_size(X, y, name)))
        ests = tabular.estimators(name, budget)
        cv = tabular.splitter(name, folds)
        t_iht, sc_iht = _cv_fit_seconds(make_pipeline(StandardScaler(), ests["IHT"]), X, y, cv)
        t_mlp, sc_mlp = _cv_fit_seconds(make_pipeline(StandardScaler(), ests["MLP (dense)"]), X, y, cv,
                                        MINIBATCH_BLAS_THREADS)
        cls = name in tabular.CLASSIFICATION
        rows.append(dict(case=f"{name} ({X.shape[0]} x {X.shape[1]}), s={budget}, {folds}-fold mean",
                         iht_s=t_iht, mlp_s=t_mlp, iht_score=sc_iht, mlp_score=sc_mlp,
                         metric="accuracy" if cls else "R^2", target=1.0 if cls else 2.0))
        progress(_line(rows[-1]))
    return rows


def make_mixed(n=54000, seed=0):
    """A synthetic mixed-type table: 6 numeric columns on different scales, 4
    categorical columns (3 to 24 levels, as strings), a binary target from a
    nonlinear rule with 10% label noise."""
    rng = np.random.default_rng(seed)
    num = rng.standard_normal((n, 6)) * np.array([1.0, 10.0, 100.0, 0.1, 5.0, 1000.0])
    levels = (3, 7, 12, 24)
    cats = [rng.integers(0, m, n) for m in levels]
    effect = [rng.standard_normal(m) for m in levels]
    z = (np.sin(num[:, 0]) + (num[:, 1] / 10) ** 2 - 1 + np.abs(num[:, 2] / 100) * effect[0][cats[0]]
         + effect[1][cats[1]] + 0.5 * effect[2][cats[2]] * (num[:, 3] > 0) + 0.3 * effect[3][cats[3]])
    y = (z > np.median(z)).astype(int)
    flip = rng.random(n) < 0.1
    y[flip] = 1 - y[flip]
    cols = {f"x{i}": num[:, i] for i in range(6)}
    cols.update({f"c{i}": np.array([f"L{v}" for v in c], dtype=object) for i, c in enumerate(cats)})
    return cols, y


def mixed(folds, progress):
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from sklearn_sparse_mlp import SparseMLPClassifier

    cols, y = make_mixed()
    X = np.empty((y.size, len(cols)), dtype=object)
    for j, v in enumerate(cols.values()):
        X[:, j] = v
    pre = ColumnTransformer([("num", StandardScaler(), list(range(6))),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), list(range(6, 10)))],
                            sparse_threshold=0)
    d = 6 + 3 + 7 + 12 + 24
    budget = round(0.1 * (d * WIDTH + WIDTH))
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    t_iht, sc_iht = _cv_fit_seconds(make_pipeline(pre, SparseMLPClassifier(budget, random_state=0)), X, y, cv)
    t_mlp, sc_mlp = _cv_fit_seconds(make_pipeline(pre, MLPClassifier(hidden_layer_sizes=(WIDTH,), random_state=0)),
                                    X, y, cv, MINIBATCH_BLAS_THREADS)
    row = dict(case=f"mixed-type pipeline ({y.size} x {d} after encoding), s={budget}, {folds}-fold mean",
               iht_s=t_iht, mlp_s=t_mlp, iht_score=sc_iht, mlp_score=sc_mlp, metric="accuracy", target=1.0)
    progress(_line(row))
    return [row]


def _best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def predict(progress):
    """Predict seconds (best of repeats) of models fitted on diabetes (10% budget)."""
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    from sklearn_sparse_mlp import SparseMLPRegressor

    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    iht = SparseMLPRegressor(110, random_state=0)
    timed_fit(iht, X, y)
    mlp = MLPRegressor(hidden_layer_sizes=(WIDTH,), random_state=0)
    timed_fit(mlp, X, y)
    rng = np.random.default_rng(0)
    big = X[rng.integers(0, X.shape[0], 200000)] + 0.1 * rng.standard_normal((200000, X.shape[1]))
    rows = []
    for label, Xp, repeats in (("10 rows", X[:10], 200), ("2e5 rows", big, 7)):
        t_iht = _best_of(lambda: iht.predict(Xp), repeats)
        t_mlp = _best_of(lambda: mlp.predict(Xp), repeats)
        rows.append(dict(case=f"predict {label} (diabetes, s=110, {iht.n_nonzero_} nonzeros)", iht_s=t_iht,
                         mlp_s=t_mlp, metric="", iht_score=float("nan"), mlp_score=float("nan"),
                         target=2.0 if label == "10 rows" else 1.0))
        progress(f"  {rows[-1]['case']:<48} IHT {1e3 * t_iht:8.3f} ms  dense {1e3 * t_mlp:8.3f} ms  "
                 f"ratio {t_iht / t_mlp:.2f}")
    return rows


def hot_loop(progress, shapes, n_iter=4, repeats=3):
    """Set-up, iterations and polish of a fit timed apart; one iteration
    against NumPy's two products and against one gradient pass."""
    from threadpoolctl import threadpool_limits

    from sklearn_sparse_mlp import SparseMLPRegressor
    from sklearn_sparse_mlp._base import thread_limits
    from sklearn_sparse_mlp._blocks import RowBlocks
    from sklearn_sparse_mlp._gates import Gates
    from sklearn_sparse_mlp._operator import gradient_pass

    rows = []
    for n, d, p, s in shapes:
        for dtype in (np.float64, np.float32):
            rng = np.random.default_rng(0)
            X = rng.standard_normal((n, d)).astype(dtype)
            y = np.tanh(X[:, : min(d, 5)]).sum(axis=1) + 0.1 * rng.standard_normal(n)
            Xa = np.asfortranarray(np.hstack([X, np.ones((n, 1), X.dtype)]))
            H = rng.standard_normal((d + 1, p)).astype(dtype)
            with threadpool_limits(limits=None):
                Xa.T @ (Xa @ H)
                numpy_s = _best_of(lambda: Xa.T @ (Xa @ H), repeats)
            blocks = RowBlocks(X, True, np.zeros((n, 1)))
            idx = np.sort(rng.choice(p * (d + 1), s, replace=False))
            R = rng.standard_normal((n, 1))
            with thread_limits(None):
                gradient_pass(blocks, Gates(0, d + 1, True), p, 1, idx, R, s)
                pass_s = _best_of(lambda: gradient_pass(blocks, Gates(0, d + 1, True), p, 1, idx, R, s), repeats)
            best = None
            for _ in range(2):
                # Every iteration on all the rows (no progressive stages):
                # the figure is the cost of one full-data iteration.
                reg = SparseMLPRegressor(s, hidden_layer_sizes=(p,), max_iter=n_iter, tol=0, n_iter_no_change=100,
                                         progressive=False, random_state=0)
                total = timed_fit(reg, X, y)
                parts = dict(reg._fit_seconds, total=total, n_iter=reg.n_iter_)
                if best is None or parts["iterations"] < best["iterations"]:
                    best = parts
            it_s = best["iterations"] / best["n_iter"]
            rows.append(dict(n=n, d=d, p=p, s=s, dtype=np.dtype(dtype).name, numpy_s=numpy_s, pass_s=pass_s,
                             setup_s=best["setup"], iter_s=it_s, alpha_s=best.get("alpha", 0.0),
                             polish_s=best["polish"], fit_s=best["total"],
                             n_iter=best["n_iter"], iter_numpy=it_s / numpy_s, iter_pass=it_s / pass_s))
            r = rows[-1]
            progress(f"  n={n:.0e} d={d} p={p} s={s} {r['dtype']}: NumPy {numpy_s:.3f} s, pass {pass_s:.3f} s, "
                     f"set-up {r['setup_s']:.3f} s, iteration {it_s:.3f} s (x{r['iter_numpy']:.2f} NumPy, "
                     f"x{r['iter_pass']:.2f} pass), alpha choice {r['alpha_s']:.3f} s, polish {r['polish_s']:.3f} s")
    return rows


def paper_cell(progress):
    from sklearn_sparse_mlp import SparseMLPRegressor
    from sklearn_sparse_mlp.datasets import make_planted_mlp
    from sklearn_sparse_mlp.metrics import psnr_score

    n = 50000
    X, y = make_planted_mlp(n_samples=n + 10000, n_features=100, n_hidden=100, n_nonzero=100, random_state=0)
    Xt, yt, X, y = X[n:], y[n:], X[:n], y[:n]
    reg = SparseMLPRegressor(100, hidden_layer_sizes=(100,), random_state=0)
    t = timed_fit(reg, X, y)
    row = dict(case="paper's cell n=50000, d=100, m=s=100", iht_s=t, psnr=float(psnr_score(yt, reg.predict(Xt))),
               n_iter=int(reg.n_iter_), **_parts(reg))
    progress(f"  {row['case']:<48} {row['psnr']:.1f} dB test PSNR in {t:.2f} s ({row['n_iter']} iterations)")
    return [row]


def report(res, quick):
    mode = "quick" if quick else "full"
    lines = header("Speed benchmark", f"python benchmarks/speed.py{' --quick' if quick else ''}", mode)
    lines += ["Dense MLPs with one BLAS thread (their faster setting here), SparseMLP* with their own numba "
              "threads; fit seconds include input validation. Ratio = IHT / dense.", "",
              "| case | IHT fit (s) | dense fit (s) | ratio | target | IHT score | dense score |",
              "|---|---|---|---|---|---|---|"]
    for r in res["large"]:
        lines.append(f"| {r['case']} (IHT {r['iht_iter']} iterations, batch_size {r['iht_batch']}; dense "
                     f"{r['mlp_iter']} epochs) | {r['iht_s']:.2f} | {r['mlp_s']:.2f} | {r['iht_s'] / r['mlp_s']:.2f} "
                     f"| <= 2 | {r['metric']} {r['iht_score']:.4f} | {r['mlp_score']:.4f} |")
    for r in res["small"] + res["mixed"]:
        lines.append(f"| {r['case']} | {r['iht_s']:.2f} | {r['mlp_s']:.2f} | {r['iht_s'] / r['mlp_s']:.2f} | "
                     f"<= {r['target']:g} | {r['metric']} {r['iht_score']:.4f} | {r['mlp_score']:.4f} |")
    for r in res["predict"]:
        lines.append(f"| {r['case']} | {1e3 * r['iht_s']:.3f} ms | {1e3 * r['mlp_s']:.3f} ms | "
                     f"{r['iht_s'] / r['mlp_s']:.2f} | <= {r['target']:g} | | |")
    lines += ["", "## Hot loop: set-up, iterations and polish apart", "",
              "One IHT iteration (the fit's iteration seconds / its iterations, best of 2 fits) against NumPy's "
              "`Xa @ H` plus `Xa.T @ Z` (Xa: X with a ones column, H: (d+1) x p) and against one gradient pass "
              "of the lazy operator with s entries.  The one-off choice of alpha=\"auto\" (leave-one-out scores on "
              "the support after the 10th iteration, or the last one if fewer) is timed apart from the iterations.", "",
              "| n | d | p | s | dtype | NumPy (s) | pass (s) | set-up (s) | iteration (s) | iteration / NumPy "
              "| iteration / pass | alpha choice (s) | polish (s) | iterations |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["hot"]:
        lines.append(f"| {r['n']:.0e} | {r['d']} | {r['p']} | {r['s']} | {r['dtype']} | {r['numpy_s']:.3f} | "
                     f"{r['pass_s']:.3f} | {r['setup_s']:.3f} | {r['iter_s']:.3f} | {r['iter_numpy']:.2f} | "
                     f"{r['iter_pass']:.2f} | {r.get('alpha_s', 0.0):.3f} | {r['polish_s']:.3f} | {r['n_iter']} |")
    lines += ["", "Targets: iteration / NumPy <= 1.3 at n=2e4, d=100, p=2000; iteration / pass <= 2 at n=1e6, d=20, "
              "p=100.", "", "## The paper's cell", "",
              "| case | test PSNR (dB) | fit (s) | iterations | target |", "|---|---|---|---|---|"]
    for r in res["paper"]:
        lines.append(f"| {r['case']} | {r['psnr']:.1f} | {r['iht_s']:.2f} | {r['n_iter']} | >= 40 dB in <= 2.5 s |")
    write_results(f"speed_{mode}", lines, res)
    plot(res, mode)


def plot(res, mode):
    plt = pyplot()
    if plt is None:
        return
    rows = res["large"] + res["small"] + res["mixed"] + res["predict"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(y, [r["iht_s"] / r["mlp_s"] for r in rows], color="C0")
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, [r["case"].split(",")[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds IHT / seconds dense MLP (log; left of 1: IHT faster)")
    ax.invert_yaxis()
    ax.set_title(f"Speed against the dense MLP ({mode} mode)")
    fig.tight_layout()
    save_figure(fig, f"speed_{mode}")


def run(quick=True, progress=print):
    progress("  hot loop")
    hot = hot_loop(progress, [(20000, 100, 2000, 200), (1000000, 20, 100, 210)])
    progress("  paper's cell")
    paper = paper_cell(progress)
    progress("  prediction")
    pred = predict(progress)
    progress("  small data")
    small = small_data(3 if quick else 5, progress)
    progress("  mixed-type pipeline")
    mix = mixed(3 if quick else 5, progress)
    progress("  large n")
    large = large_n([100000] if quick else [100000, 1000000], progress)
    res = dict(large=large, small=small, mixed=mix, predict=pred, hot=hot, paper=paper)
    report(res, quick)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    warm_up()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(args.quick)


if __name__ == "__main__":
    main()
