"""Classifier benchmark: 5-fold CV on scikit-learn's bundled data sets.

    python benchmarks/bench_classifier.py            # full: every gate mode
    python benchmarks/bench_classifier.py --quick    # default gates ("auto") only

For breast_cancer, digits, wine and iris, in a StandardScaler pipeline:
MLPClassifier(hidden_layer_sizes=(100,)) against SparseMLPClassifier with
both output couplings ("fused", "shared") and the IMP baseline, at a budget
of 10% of the dense MLP's counted parameters (``0.1 * ((d + 1) * 100 + 100 *
k)``, the last term only for several classes: the package's one budget
definition).  Reports mean test accuracy, mean fit seconds and the
nonzero weights of the fitted models.  Writes
benchmarks/results/classifier_{quick,full}.{md,json,png}.
"""

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DATASETS = ("breast_cancer", "digits", "wine", "iris")


def load(name):
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(return_X_y=True)


def models(budget, quick):
    """(label, estimator, nonzero-count function) for one budget."""
    from sklearn.neural_network import MLPClassifier

    from sklearn_sparse_mlp import SparseMLPClassifier

    out = [("MLP (dense)", MLPClassifier(hidden_layer_sizes=(100,), random_state=0),
            lambda est: sum(int(np.count_nonzero(W)) for W in est.coefs_))]
    gates = ("auto",) if quick else ("auto", "sequential", "fixed")
    for coupling in ("fused", "shared"):
        for gate in gates:
            label = f"IHT {coupling}" + ("" if gate == "auto" else f", {gate} gates")
            out.append((label, SparseMLPClassifier(budget, output_coupling=coupling, gate_update=gate,
                                                   random_state=0), lambda est: est.n_nonzero_))
    try:
        from sklearn_sparse_mlp import IMPClassifier
    except ImportError:  # the IMP baseline is not there yet
        return out
    out.append(("IMP", IMPClassifier(n_nonzero_coefs=budget, random_state=0), lambda est: est.n_nonzero_))
    return out


def run(quick):
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    for name in DATASETS:
        X, y = load(name)
        d = X.shape[1]
        n_classes = np.unique(y).size
        k = 1 if n_classes == 2 else n_classes
        dense = (d + 1) * 100 + (100 * k if k > 1 else 0)
        budget = int(round(0.1 * dense))
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        for label, est, nnz in models(budget, quick):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                res = cross_validate(make_pipeline(StandardScaler(), est), X, y, cv=cv,
                                     return_estimator=True)
                wall = time.perf_counter() - t0
            row = dict(
                dataset=name, model=label, budget=budget, dense_weights=dense,
                accuracy=float(res["test_score"].mean()), accuracy_std=float(res["test_score"].std()),
                fit_seconds=float(res["fit_time"].mean()),
                nonzeros=float(np.mean([nnz(p[-1]) for p in res["estimator"]])),
                wall_seconds=wall,
            )
            rows.append(row)
            print(f"{name:14s} {label:32s} acc {row['accuracy']:.4f} +- {row['accuracy_std']:.3f}  "
                  f"fit {row['fit_seconds']:7.3f} s  nonzeros {row['nonzeros']:8.1f}", flush=True)
    return rows


def write(rows, quick):
    os.makedirs(RESULTS, exist_ok=True)
    tag = "classifier_quick" if quick else "classifier_full"
    cmd = "python benchmarks/bench_classifier.py" + (" --quick" if quick else "")
    lines = [
        f"# Classifier benchmark ({'quick' if quick else 'full'})",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "5-fold stratified CV (shuffled, seed 0), StandardScaler pipeline. Budget: 10% of the dense",
        "(100,) MLP's weight count (biases not counted). Accuracy gap: points against the dense MLP;",
        "time ratio: mean fit seconds over the dense MLP's.",
        "",
        "| data set | model | accuracy | gap (points) | fit s | time ratio | nonzeros | budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in DATASETS:
        sub = [r for r in rows if r["dataset"] == name]
        ref = next(r for r in sub if r["model"].startswith("MLP"))
        for r in sub:
            gap = 100 * (r["accuracy"] - ref["accuracy"])
            ratio = r["fit_seconds"] / ref["fit_seconds"]
            lines.append(
                f"| {name} | {r['model']} | {r['accuracy']:.4f} +- {r['accuracy_std']:.3f} | {gap:+.2f} | "
                f"{r['fit_seconds']:.3f} | {ratio:.2f} | {r['nonzeros']:.0f} | {r['budget']} |"
            )
    with open(os.path.join(RESULTS, tag + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, tag + ".json"), "w") as f:
        json.dump(rows, f, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    labels = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(labels)
    x = np.arange(len(DATASETS))
    for i, label in enumerate(labels):
        acc = [next((r["accuracy"] for r in rows if r["dataset"] == n and r["model"] == label), np.nan)
               for n in DATASETS]
        sec = [next((r["fit_seconds"] for r in rows if r["dataset"] == n and r["model"] == label), np.nan)
               for n in DATASETS]
        axes[0].bar(x + i * width, acc, width, label=label)
        axes[1].bar(x + i * width, sec, width, label=label)
    for ax, title in zip(axes, ("5-fold CV accuracy", "mean fit seconds")):
        ax.set_xticks(x + width * (len(labels) - 1) / 2)
        ax.set_xticklabels(DATASETS)
        ax.set_title(title)
    axes[0].set_ylim(0.85, 1.0)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Sparse classifiers at 10% of the dense MLP's weights")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, tag + ".png"), dpi=110)
    print("wrote", os.path.join(RESULTS, tag + ".md"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="default gate mode only")
    args = parser.parse_args()
    write(run(args.quick), args.quick)


if __name__ == "__main__":
    main()
