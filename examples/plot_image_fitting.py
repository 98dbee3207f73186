"""
======================================================
Image fitting: a sparse implicit neural representation
======================================================

An implicit neural representation stores an image as a network that maps
pixel coordinates to intensities, one of the experiments of the paper.  The
coordinates go through random Fourier features
(:class:`~sklearn.kernel_approximation.RBFSampler`), a sparse ReLU network
maps the features to the gray level, and the budget of nonzero weights sets
how much of the image the network can store.  Quality is measured by the PSNR
(:func:`~sklearn_sparse_mlp.metrics.psnr_score`) of the fitted image, against
iterative magnitude pruning (:class:`~sklearn_sparse_mlp.IMPRegressor`) at the
same budgets.
"""

# %%
# The image
# ---------
# A 384 x 384 crop of scikit-learn's sample photo, in gray levels, averaged
# down to 32 x 32 pixels: 1,024 samples with two coordinates each.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_sample_image
from sklearn.kernel_approximation import RBFSampler
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sklearn_sparse_mlp import IMPRegressor, SparseMLPRegressor
from sklearn_sparse_mlp.metrics import psnr_score

photo = load_sample_image("china.jpg")[20:404, 150:534].mean(axis=2) / 255
size = 32
block = 384 // size
image = photo.reshape(size, block, size, block).mean(axis=(1, 3))
grid = np.linspace(0, 1, size)
rows, cols = np.meshgrid(grid, grid, indexing="ij")
coords = np.column_stack([rows.ravel(), cols.ravel()])
y = image.ravel()

# %%
# Features and models
# -------------------
# 256 random Fourier features of the coordinates (``gamma=100`` sets their
# frequencies: finer details need higher ones), standardised, then a hidden
# layer of 200 units.  The sparse network uses fixed random gates
# (``gate_update="fixed"``): its inputs are random features rather than a
# planted ReLU network, and the fit is then a convex problem apart from the
# budget.  IMP prunes half of the remaining weights per round.  Both
# estimators count the budget the same way: the first-layer weights and the
# hidden biases (with one output, a unit's output weight folds into its
# first-layer weights, so it is not counted).
features = make_pipeline(
    RBFSampler(gamma=100, n_components=256, random_state=0), StandardScaler()
)
F = features.fit_transform(coords)
budgets = [64, 128, 256, 512]
fits = {}
for budget in budgets:
    iht = SparseMLPRegressor(budget, hidden_layer_sizes=(200,),
                             gate_update="fixed", random_state=0, n_jobs=1)
    imp = IMPRegressor(budget, hidden_layer_sizes=(200,), prune_fraction=0.5,
                       random_state=0)
    # The matrices are small: one BLAS thread is faster and steadier for
    # IMP's minibatch products, especially on a busy machine.
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        iht.fit(F, y)
        imp.fit(F, y)
    fits[budget] = {
        "IHT": psnr_score(y, iht.predict(F)),
        "IMP": psnr_score(y, imp.predict(F)),
        "images": [m.predict(F).reshape(size, size) for m in (iht, imp)],
    }
    print(f"budget {budget:>3}: PSNR IHT {fits[budget]['IHT']:5.1f} dB "
          f"({iht.n_nonzero_} weights), IMP {fits[budget]['IMP']:5.1f} dB "
          f"({imp.n_nonzero_} weights)")

# %%
# PSNR against budget
# -------------------
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(budgets, [fits[s]["IHT"] for s in budgets], "o-",
        label="SparseMLPRegressor (IHT)")
ax.plot(budgets, [fits[s]["IMP"] for s in budgets], "s-",
        label="IMPRegressor")
ax.set_xscale("log", base=2)
ax.set_xticks(budgets, [str(s) for s in budgets])
ax.set(xlabel="nonzero weights", ylabel="PSNR of the fitted image (dB)",
       title="32 x 32 image, 200 hidden units")
ax.legend()
fig.tight_layout()

# %%
# The fitted images
# -----------------
fig, axes = plt.subplots(2, len(budgets) + 1, figsize=(11, 5.4))
for ax in axes.ravel():
    ax.set_axis_off()
for row in range(2):
    axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[row, 0].set_title("original")
for i, budget in enumerate(budgets, start=1):
    for row, name in enumerate(("IHT", "IMP")):
        pred = np.clip(fits[budget]["images"][row], 0, 1)
        axes[row, i].imshow(pred, cmap="gray", vmin=0, vmax=1)
        axes[row, i].set_title(
            f"{name}, {budget} weights\n{fits[budget][name]:.1f} dB"
        )
fig.tight_layout()
plt.show()
