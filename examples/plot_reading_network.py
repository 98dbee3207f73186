"""
===============================
Reading a fitted sparse network
===============================

A network with a few nonzero weights can be read: which inputs each hidden
unit uses, with which weights, and what each unit adds to the prediction.
This example fits :class:`~sklearn_sparse_mlp.SparseMLPRegressor` to the
diabetes data with a budget of 12 weights and reads it through its fitted
attributes: ``fused_coef_`` (the fused weights), ``active_neurons_``, and,
since the default sequential gates make the model an ordinary ReLU network,
``coefs_``, ``intercepts_`` and ``gate_signs_``.
"""

# %%
# The fit
# -------
# As in :ref:`sphx_glr_auto_examples_plot_grid_search_budget.py`, the
# sequential-gate path on this small data set runs to ``max_iter`` and the fit
# keeps the best exact ReLU network it met; the warning is silenced.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPRegressor

data = load_diabetes()
X, y, names = data.data, data.target, np.array(data.feature_names)
scaler = StandardScaler()
reg = SparseMLPRegressor(12, hidden_layer_sizes=(100,), random_state=0,
                         n_jobs=1)
pipe = make_pipeline(scaler, reg)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    pipe.fit(X, y)
print(f"R^2 on the training data: {pipe.score(X, y):.3f}")
print(f"{reg.n_nonzero_} nonzero weights on {reg.active_neurons_.size} "
      f"of 100 hidden units: {reg.active_neurons_}")

# %%
# The network as formulas
# -----------------------
# ``coefs_[0]`` has one column per active unit: its first-layer weights
# ``u_j`` on the standardised features; ``intercepts_[0]`` holds the hidden
# biases ``c_j``; ``coefs_[1]`` the output weights ``a_j`` (+1 or -1, equal to
# ``gate_signs_``); ``intercepts_[1]`` the output intercept.  The prediction is
# ``b + sum_j a_j relu(u_j . x + c_j)``.
U, a = reg.coefs_[0], reg.coefs_[1].ravel()
c, b = reg.intercepts_
print(f"y = {b[0]:.1f}")
for j in range(U.shape[1]):
    used = np.flatnonzero(U[:, j])
    terms = " ".join(f"{U[f, j]:+.1f}*{names[f]}" for f in used)
    bias = f" {c[j]:+.1f}" if c[j] != 0 else ""
    print(f"    {'+' if a[j] > 0 else '-'} relu({terms}{bias})")

# %%
# The same weights, fused
# -----------------------
# ``fused_coef_`` stores the fitted (fused) weights ``w_j = a_j u_j`` as a sparse
# matrix: one row per hidden unit (all 100 of them, most empty), one column
# per input, the last column for the constant input of the hidden biases.
W = reg.fused_coef_.toarray()[reg.active_neurons_]
assert np.allclose(W[:, :-1].T * a, U)
print("rows of fused_coef_ holding a weight:", np.unique(reg.fused_coef_.nonzero()[0]))

# %%
# Which inputs each unit uses
# ---------------------------
# The first-layer weights as a map (units in columns), and for each feature
# the number of units that read it.  A feature that no unit reads does not
# affect the prediction at all.
fig, (ax0, ax1) = plt.subplots(
    1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]}
)
lim = np.abs(U).max()
im = ax0.imshow(U, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
ax0.set_yticks(range(len(names)), names)
signs = ["+" if s > 0 else "-" for s in a]
ax0.set_xticks(range(U.shape[1]),
               [f"{j}\n({s})" for j, s in zip(reg.active_neurons_, signs)])
ax0.set(xlabel="hidden unit (output sign)",
        title="First-layer weights u_j (coefs_[0])")
for f, j in zip(*np.nonzero(U)):
    ax0.text(j, f, f"{U[f, j]:.0f}", ha="center", va="center", fontsize=8)
fig.colorbar(im, ax=ax0)
ax1.barh(names, np.count_nonzero(U, axis=1), color="C2")
ax1.invert_yaxis()
ax1.xaxis.get_major_locator().set_params(integer=True)
ax1.set(xlabel="hidden units reading the feature", title="Features in use")
fig.tight_layout()

# %%
# What the single-feature units add
# ---------------------------------
# Each unit adds ``a_j relu(u_j . x + c_j)`` to the prediction: zero on one
# side of its hyperplane, linear on the other.  A unit that reads a single
# feature is a hinge function of that feature, so the units reading one
# feature each form an additive model; the units reading two features are
# interactions.  Here is the contribution of the single-feature units to the
# prediction, summed per feature, against the feature in its original units.
single = [j for j in range(U.shape[1]) if np.count_nonzero(U[:, j]) == 1]
features = sorted({int(np.flatnonzero(U[:, j])[0]) for j in single})
fig, axes = plt.subplots(1, len(features), figsize=(3 * len(features), 3.2),
                         sharey=True, squeeze=False)
for ax, f in zip(axes[0], features):
    z = np.linspace(-3, 3, 200)  # standardised feature values
    total = sum(a[j] * np.maximum(U[f, j] * z + c[j], 0)
                for j in single if U[f, j] != 0)
    ax.plot(scaler.mean_[f] + scaler.scale_[f] * z, total, color="C3")
    ax.axhline(0, color="0.7", lw=1)
    ax.set(xlabel=f"{names[f]} (original units)")
axes[0, 0].set_ylabel("contribution to the prediction")
fig.suptitle("Single-feature units: hinge functions of one feature")
fig.tight_layout()
plt.show()
