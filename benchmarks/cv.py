"""Choosing the budget: SparseMLP*CV (warm-started paths) against GridSearchCV.

On each data set (standardised once, so that both sides see the same
arrays), the same budget grid and the same folds are searched twice: by
``GridSearchCV(SparseMLP*(...), {"n_nonzero_coefs": grid}, cv=folds)``, which
fits every budget of every fold from an empty network, and by
``SparseMLP*CV(n_nonzero_coefs=grid, cv=folds)``, which runs one warm-started
path per fold.  Both refit the chosen budget on all the data.  Reported: the
wall time of each search, the speed-up, the chosen budgets, the mean fold
scores along the grid for both, and the BIC choice (one path on all data).

    python benchmarks/cv.py --quick    # diabetes, breast_cancer, friedman1; 6 budgets, 5 folds
    python benchmarks/cv.py            # adds digits and wine; 8 budgets
"""

import argparse
import time
import warnings

import numpy as np

if __package__:
    from ._common import header, pyplot, save_figure, write_results
else:
    from _common import header, pyplot, save_figure, write_results

WIDTH = 100


def load(name):
    from sklearn import datasets

    if name == "friedman1":
        return datasets.make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
    return getattr(datasets, f"load_{name}")(return_X_y=True)


def run_set(name, n_budgets, n_folds):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from sklearn_sparse_mlp import (SparseMLPClassifier, SparseMLPClassifierCV, SparseMLPRegressor,
                                    SparseMLPRegressorCV)
    from sklearn_sparse_mlp._path import budget_grid

    X, y = load(name)
    X = StandardScaler().fit_transform(X)
    classify = name not in ("diabetes", "friedman1")
    k = 1 if not classify or len(np.unique(y)) == 2 else len(np.unique(y))
    single = (SparseMLPClassifier if classify else SparseMLPRegressor)(random_state=0)
    # The CV estimators' default grid: fractions of the network's counted size
    # (the shared coupling's for several classes).
    grid = budget_grid(None, n_budgets, single._network_size(X.shape[1], k)).tolist()
    folds = (StratifiedKFold if classify else KFold)(n_folds, shuffle=True, random_state=0)
    splits = list(folds.split(X, y))
    cv_cls = SparseMLPClassifierCV if classify else SparseMLPRegressorCV
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        search = GridSearchCV(single, {"n_nonzero_coefs": grid}, cv=splits).fit(X, y)
        t_grid = time.perf_counter() - t
        t = time.perf_counter()
        cv = cv_cls(n_nonzero_coefs=grid, cv=splits, random_state=0).fit(X, y)
        t_cv = time.perf_counter() - t
        t = time.perf_counter()
        bic = cv_cls(n_nonzero_coefs=grid, criterion="bic", random_state=0).fit(X, y)
        t_bic = time.perf_counter() - t
    grid_scores = search.cv_results_["mean_test_score"]
    return dict(
        name=name, n=X.shape[0], d=X.shape[1], grid=grid, t_grid=t_grid, t_cv=t_cv, t_bic=t_bic,
        speedup=t_grid / t_cv, choice_grid=int(search.best_params_["n_nonzero_coefs"]),
        choice_cv=int(cv.n_nonzero_coefs_), choice_bic=int(bic.n_nonzero_coefs_),
        scores_grid=grid_scores.tolist(), scores_cv=cv.mean_scores_.tolist(),
        best_grid=float(grid_scores.max()), best_cv=float(cv.mean_scores_.max()),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sets = ("diabetes", "breast_cancer", "friedman1") + (() if args.quick else ("wine", "digits"))
    n_budgets, n_folds = (6, 5) if args.quick else (8, 5)
    rows = []
    for name in sets:
        r = run_set(name, n_budgets, n_folds)
        rows.append(r)
        print(f"{name:14s} GridSearchCV {r['t_grid']:7.1f} s  CV {r['t_cv']:7.1f} s  (x{r['speedup']:.2f})  "
              f"choice {r['choice_grid']} / {r['choice_cv']} (BIC {r['choice_bic']}, {r['t_bic']:.1f} s)",
              flush=True)
    command = "python benchmarks/cv.py" + (" --quick" if args.quick else "")
    lines = header("Budget selection: SparseMLP*CV against GridSearchCV", command, mode)
    lines += [
        f"Same grid ({n_budgets} budgets from 0.5% to 20% of the network's counted size, width {WIDTH}), same "
        f"{n_folds} shuffled folds (stratified for classifiers), features standardised once; default "
        "parameters, random_state=0.  Times include the final refit on all data.", "",
        "| data | n x d | GridSearchCV (s) | SparseMLP*CV (s) | speed-up | chosen budget (grid / CV / BIC) "
        "| best mean score (grid / CV) | BIC time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} x {r['d']} | {r['t_grid']:.1f} | {r['t_cv']:.1f} | "
                     f"x{r['speedup']:.2f} | {r['choice_grid']} / {r['choice_cv']} / {r['choice_bic']} | "
                     f"{r['best_grid']:.4f} / {r['best_cv']:.4f} | {r['t_bic']:.1f} |")
    lines += ["", "Mean fold score along the grid:", ""]
    for r in rows:
        lines.append(f"- {r['name']} (budgets {r['grid']}): GridSearchCV "
                     f"{[round(v, 4) for v in r['scores_grid']]}, CV path {[round(v, 4) for v in r['scores_cv']]}")
    path = write_results(f"cv_{mode}", lines, rows)
    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4))
        for ax, r in zip(np.atleast_1d(axes), rows):
            ax.semilogx(r["grid"], r["scores_grid"], "o-", label="GridSearchCV (cold fits)")
            ax.semilogx(r["grid"], r["scores_cv"], "s--", label="CV path (warm starts)")
            ax.axvline(r["choice_cv"], color="gray", lw=0.8)
            ax.set_title(f"{r['name']}: x{r['speedup']:.1f} faster")
            ax.set_xlabel("budget (nonzero weights)")
        np.atleast_1d(axes)[0].set_ylabel("mean CV score")
        np.atleast_1d(axes)[0].legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, f"cv_{mode}")
    print("wrote", path)


if __name__ == "__main__":
    main()
