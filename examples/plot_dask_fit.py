"""
=====================================
Fitting on a dask cluster
=====================================

:class:`~sklearn_sparse_mlp.SparseMLPRegressor` fits dask arrays where they
live: with a ``dask.distributed`` client, each worker builds the row blocks
of the partitions it holds and answers the solver's questions about them;
only arrays that do not grow with the number of rows travel (see
:ref:`larger_than_memory`).  This example starts a small ``LocalCluster``,
fits the same data in memory and on the cluster, and checks that the two
models are the same: the partitions are cut like the in-memory row blocks
(:func:`~sklearn_sparse_mlp.dask_row_chunks`), so every sum is the same.
It needs the ``dask`` extra (``pip install "sklearn-sparse-mlp[dask]"``).
"""

# %%
# Data, in memory and as a dask array
# -----------------------------------
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster

from sklearn_sparse_mlp import SparseMLPRegressor, dask_row_chunks
from sklearn_sparse_mlp.datasets import make_planted_mlp

X, y = make_planted_mlp(n_samples=12000, n_features=10, n_hidden=5, n_nonzero=12,
                        noise=0.05, random_state=0)
chunks = dask_row_chunks(X.shape[0])
print("partitions:", chunks)

# %%
# The two fits
# ------------
# Two workers with one thread each, in this process (``processes=True``, the
# default, starts worker processes: the same code, the data then lives in
# them).  The estimator is the same; ``fit`` sees a dask array and keeps the
# rows on the workers.
params = dict(n_nonzero_coefs=24, hidden_layer_sizes=(40,), random_state=0)
in_memory = SparseMLPRegressor(**params).fit(X, y)

with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                  dashboard_address=None) as cluster, Client(cluster):
    Xd = da.from_array(X, chunks=(chunks, -1)).persist()
    yd = da.from_array(y, chunks=(chunks,)).persist()
    on_cluster = SparseMLPRegressor(**params).fit(Xd, yd)
    y_hat = on_cluster.predict(Xd)  # a dask array, one chunk per partition
    print(type(y_hat).__name__, y_hat.chunks)
    y_hat = y_hat.compute()

same = np.array_equal(on_cluster.fused_coef_.toarray(), in_memory.fused_coef_.toarray())
print(f"same weights bit for bit: {same}; nonzeros {on_cluster.n_nonzero_}; "
      f"R^2 {on_cluster.score(X, y):.4f}")

# %%
# The training loss along the iterations is the same curve, and the
# predictions of the cluster's model match the targets.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.6))
ax0.semilogy(in_memory.loss_curve_, "o-", label="in memory")
ax0.semilogy(on_cluster.loss_curve_, "x--", label="dask cluster")
ax0.set_xlabel("iteration")
ax0.set_ylabel("training loss")
ax0.legend()
ax1.plot(y[:500], y_hat[:500], ".", ms=3)
ax1.set_xlabel("target")
ax1.set_ylabel("prediction (dask fit)")
fig.tight_layout()
plt.show()
