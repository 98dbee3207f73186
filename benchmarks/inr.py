"""Implicit neural representation (the paper's Figures 4-5): fit an image.

A grayscale crop of scikit-learn's sample image "china.jpg", downscaled to
side x side pixels; each pixel's (row, column) coordinates in [0, 1]^2 go
through random Fourier features (scikit-learn's RBFSampler, 256 components),
and a width-256 network maps them to the pixel's intensity.  IHT
(SparseMLPRegressor, with fixed random gates and with its default sequential
gates) and IMP (IMPRegressor) at the same budgets of nonzero weights; PSNR over
all pixels (data range 1), fit seconds, and the reconstructions side by side.

    python benchmarks/inr.py --quick    # 40 x 40, two budgets
    python benchmarks/inr.py            # 64 x 64, five budgets
    python benchmarks/inr.py --quick --layers 2   # two hidden layers (Figures 4-5, right)

With ``--layers 2`` both networks have two hidden layers of width 256 under
the same budget: IHT as trained by default (layer by layer, then the joint
phase), IHT layer by layer only (``joint_max_iter=0``), and IMP.
"""

import argparse
import json

import numpy as np

if __package__:
    from ._common import MINIBATCH_BLAS_THREADS, header, pyplot, save_figure, timed_fit, write_results
else:
    from _common import MINIBATCH_BLAS_THREADS, header, pyplot, save_figure, timed_fit, write_results

WIDTH = 256
FEATURES = 256
GAMMA = 300.0  # RBF bandwidth on [0, 1]^2 coordinates: frequencies up to a few cycles per 10 pixels at 48 x 48


def image(side):
    from sklearn.datasets import load_sample_image

    img = load_sample_image("china.jpg").mean(axis=2) / 255.0
    h, w = img.shape
    c = min(h, w)
    img = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
    f = c // side
    return img[:f * side, :f * side].reshape(side, f, side, f).mean(axis=(1, 3))


def features(side):
    from sklearn.kernel_approximation import RBFSampler

    r, c = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    coords = np.c_[r.ravel(), c.ravel()]
    return RBFSampler(gamma=GAMMA, n_components=FEATURES, random_state=0).fit_transform(coords)


def methods(s, layers):
    """The estimators compared at budget ``s`` (name -> estimator)."""
    from sklearn_sparse_mlp import IMPRegressor, SparseMLPRegressor

    # Fitting an image is interpolation: no L2 penalty on either side
    # (alpha=1e-4, IMPRegressor's default, instead of the regressor's 1.0).
    sizes = (WIDTH,) * layers
    if layers == 1:
        return {"IHT fixed": SparseMLPRegressor(s, hidden_layer_sizes=sizes, gate_update="fixed", alpha=1e-4,
                                                random_state=0),
                "IHT sequential": SparseMLPRegressor(s, hidden_layer_sizes=sizes, alpha=1e-4, random_state=0),
                "IMP": IMPRegressor(s, hidden_layer_sizes=sizes, random_state=0)}
    return {"IHT": SparseMLPRegressor(s, hidden_layer_sizes=sizes, alpha=1e-4, random_state=0),
            "IHT layer by layer": SparseMLPRegressor(s, hidden_layer_sizes=sizes, alpha=1e-4, joint_max_iter=0,
                                                     random_state=0),
            "IMP": IMPRegressor(s, hidden_layer_sizes=sizes, random_state=0)}


def run(quick=True, progress=print, layers=1):
    from sklearn_sparse_mlp.metrics import psnr_score

    side = 40 if quick else 64
    budgets = (250, 1000) if quick else (250, 500, 1000, 2000, 4000)
    img = image(side)
    F, y = features(side), img.ravel()
    rows, recon = [], {}
    for s in budgets:
        for name, est in methods(s, layers).items():
            t = timed_fit(est, F, y, MINIBATCH_BLAS_THREADS if name == "IMP" else None)
            pred = est.predict(F)
            rows.append(dict(method=name, budget=s, psnr=psnr_score(y, pred, data_range=1.0), fit_s=t,
                             nnz=int(est.n_nonzero_)))
            recon[name, s] = np.clip(pred.reshape(side, side), 0, 1)
            progress(f"    {name:<18} s={s:<5} PSNR {rows[-1]['psnr']:.2f} dB  fit {t:.1f} s  {rows[-1]['nnz']} weights")
    mode = "quick" if quick else "full"
    command = f"python benchmarks/inr.py{' --quick' if quick else ''}{f' --layers {layers}' if layers > 1 else ''}"
    lines = header("Implicit neural representation" + (f", {layers} hidden layers" if layers > 1 else ""), command,
                   mode)
    lines += [f"Grayscale `china.jpg` (scikit-learn's `load_sample_image`), centre crop downscaled to {side} x {side}; "
              f"coordinates through `RBFSampler(gamma={GAMMA:g}, n_components={FEATURES})`; "
              f"{layers} hidden layer{'s' if layers > 1 else ''} of width {WIDTH}; alpha=1e-4 for all; "
              "PSNR over all pixels with data range 1. IMP runs with one BLAS thread.", "",
              "| budget | method | PSNR (dB) | fit (s) | nonzero weights | vs IMP (dB) |", "|---|---|---|---|---|---|"]
    for s in budgets:
        b = next(r for r in rows if r["method"] == "IMP" and r["budget"] == s)
        for a in (r for r in rows if r["budget"] == s):
            lines.append(f"| {s} | {a['method']} | {a['psnr']:.2f} | {a['fit_s']:.1f} | {a['nnz']} | "
                         f"{'' if a is b else format(a['psnr'] - b['psnr'], '+.2f')} |")
    name = f"inr{layers if layers > 1 else ''}_{mode}"
    write_results(name, lines, dict(side=side, budgets=list(budgets), rows=rows))
    plt = pyplot()
    if plt is not None:
        names = list(methods(budgets[0], layers))
        fig, axes = plt.subplots(3, len(budgets) + 1, figsize=(2.6 * (len(budgets) + 1), 8.2))
        axes[0, 0].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[0, 0].set_title(f"image ({side}x{side})", fontsize=9)
        ax = axes[1, 0]
        for method, style in zip(names, ("o-", "^-", "s-")):
            pts = [r for r in rows if r["method"] == method]
            ax.semilogx([r["budget"] for r in pts], [r["psnr"] for r in pts], style, label=method)
        ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("budget (nonzero weights)", fontsize=8)
        ax.set_ylabel("PSNR (dB)", fontsize=8)
        ax.legend(fontsize=8)
        for j, s in enumerate(budgets):
            for i, method in enumerate(names):
                r = next(r for r in rows if r["method"] == method and r["budget"] == s)
                axes[i, j + 1].imshow(recon[method, s], cmap="gray", vmin=0, vmax=1)
                axes[i, j + 1].set_title(f"{method} s={s}\n{r['psnr']:.1f} dB", fontsize=8)
        for ax in axes.ravel():
            if ax is not axes[1, 0]:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[2, 0].axis("off")
        fig.tight_layout()
        save_figure(fig, name)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--layers", type=int, default=1, help="hidden layers of width 256 (1 or 2)")
    args = ap.parse_args(argv)
    rows = run(args.quick, layers=args.layers)
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
