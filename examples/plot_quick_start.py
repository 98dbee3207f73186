"""
=======================================
Quick start: a sparse MLP in a pipeline
=======================================

Fit :class:`~sklearn_sparse_mlp.SparseMLPRegressor` on scikit-learn's diabetes
data inside a :class:`~sklearn.pipeline.Pipeline` with a
:class:`~sklearn.preprocessing.StandardScaler`, and compare it with the dense
:class:`~sklearn.neural_network.MLPRegressor` of the same width.

The sparse network has a hidden layer of 100 ReLU units but at most 10 nonzero
first-layer weights (hidden biases included); the dense one has 1,200 weights
and biases.
"""

# %%
# Data and models
# ---------------
# Both models see standardised features: the random gates of the sparse
# network and its magnitude thresholding assume comparable feature scales.
# The data set is small (442 samples), so the sparse network runs on one
# thread (``n_jobs=1``): starting parallel regions would cost more than it
# saves.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPRegressor

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0
)

sparse = make_pipeline(
    StandardScaler(),
    SparseMLPRegressor(
        n_nonzero_coefs=10, hidden_layer_sizes=(100,), random_state=0, n_jobs=1
    ),
)
dense = make_pipeline(
    StandardScaler(),
    MLPRegressor(hidden_layer_sizes=(100,), max_iter=2000, random_state=0),
)
sparse.fit(X_train, y_train)
with warnings.catch_warnings():
    # The dense MLP is still improving slowly at max_iter: good enough here.
    warnings.simplefilter("ignore")
    dense.fit(X_train, y_train)

reg = sparse[-1]
mlp = dense[-1]
n_dense = sum(W.size for W in mlp.coefs_) + mlp.intercepts_[0].size
print(
    f"sparse: test R^2 = {sparse.score(X_test, y_test):.3f} with "
    f"{reg.n_nonzero_} nonzero weights on {reg.active_neurons_.size} active "
    f"units, {reg.n_iter_} iterations"
)
print(
    f"dense:  test R^2 = {dense.score(X_test, y_test):.3f} with "
    f"{n_dense} weights"
)

# %%
# The fitted network
# ------------------
# ``fused_coef_`` holds the fused weights as a :class:`scipy.sparse.csr_array`, one
# row per hidden unit and one column per input (the last column is the
# constant input of the hidden biases).  With the default sequential gates the
# model is an ordinary ReLU network, exported in MLPRegressor's layout in
# ``coefs_`` and ``intercepts_`` (active units only), so it can be evaluated
# with plain NumPy:
Z = sparse[0].transform(X_test)
W1, W2 = reg.coefs_
b1, b2 = reg.intercepts_
by_hand = np.maximum(Z @ W1 + b1, 0) @ W2 + b2
print("fused_coef_:", repr(reg.fused_coef_))
gap = np.abs(by_hand.ravel() - sparse.predict(X_test)).max()
print("max |predict - relu network by hand| =", gap)

# %%
# Predictions and training curve
# ------------------------------
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.2))
lims = [y.min(), y.max()]
ax0.plot(lims, lims, color="0.6", lw=1)
ax0.scatter(
    y_test, dense.predict(X_test), s=14, alpha=0.7,
    label=f"dense MLP ({n_dense} weights)",
)
ax0.scatter(
    y_test, sparse.predict(X_test), s=14, alpha=0.7,
    label=f"sparse MLP ({reg.n_nonzero_} weights)",
)
ax0.set(xlabel="true target", ylabel="prediction",
        title="Diabetes: held-out predictions")
ax0.legend()
ax1.semilogy(np.arange(1, len(reg.loss_curve_) + 1), reg.loss_curve_)
ax1.set(xlabel="IHT iteration", ylabel="training loss (half MSE)",
        title="SparseMLPRegressor: loss_curve_")
fig.tight_layout()
plt.show()
