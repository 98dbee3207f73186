"""The fit on dask collections: the same model as in memory, rows kept where
they are, clear errors (needs the ``dask`` extra; skipped without it)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sklearn_sparse_mlp import SparseMLPClassifier, SparseMLPRegressor, dask_row_chunks  # noqa: E402
from sklearn_sparse_mlp import _dask  # noqa: E402
from sklearn_sparse_mlp.datasets import make_planted_mlp  # noqa: E402

KW = dict(n_nonzero_coefs=20, hidden_layer_sizes=(30,), random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y = make_planted_mlp(n_samples=5000, n_features=8, n_hidden=4, n_nonzero=10, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def aligned(a):
    """A dask array whose row partitions are the in-memory row blocks."""
    rows = dask_row_chunks(a.shape[0])
    return da.from_array(a, chunks=(rows,) + tuple((s,) for s in a.shape[1:]))


def same_network(a, b):
    return (np.array_equal(a.fused_coef_.toarray(), b.fused_coef_.toarray())
            and np.array_equal(a.intercept_, b.intercept_) and a.n_iter_ == b.n_iter_)


def test_row_chunks_are_the_blocks():
    for n in (1, 2047, 2048, 5000, 40000, 10 ** 6):
        rows = dask_row_chunks(n)
        assert sum(rows) == n
        assert len(rows) <= 16 and all(r % 256 == 0 for r in rows[:-1])


def test_local_scheduler_bit_identical(data):
    """Without a client: the partitions in this process, the same sums."""
    X, y = data
    assert _dask._client() is None
    ref = SparseMLPRegressor(**KW).fit(X, y)
    est = SparseMLPRegressor(**KW).fit(aligned(X), aligned(y))
    assert len(dask_row_chunks(X.shape[0])) == 3
    assert same_network(est, ref)
    np.testing.assert_array_equal(est.loss_curve_, ref.loss_curve_)


def test_cluster_bit_identical_and_predict(client, data):
    X, y = data
    ref = SparseMLPRegressor(**KW).fit(X, y)
    est = SparseMLPRegressor(**KW).fit(aligned(X), aligned(y))
    assert same_network(est, ref)
    pred = est.predict(aligned(X))
    assert isinstance(pred, da.Array) and pred.chunks == (dask_row_chunks(X.shape[0]),)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))


def test_cluster_float32_two_outputs(client, data):
    X, y = data
    X = X.astype(np.float32)
    Y = np.column_stack([y, np.sin(y)])
    for coupling in ("fused", "shared"):
        kw = dict(KW, output_coupling=coupling)
        ref = SparseMLPRegressor(**kw).fit(X, Y)
        est = SparseMLPRegressor(**kw).fit(aligned(X), aligned(Y))
        np.testing.assert_array_equal(est.predict(X), ref.predict(X))
        assert est.predict(aligned(X)).shape == (X.shape[0], 2)


def test_other_partitions_agree_to_rounding(client, data):
    """Partitions that are not the in-memory blocks group the sums otherwise:
    the same model up to rounding."""
    X, y = data
    ref = SparseMLPRegressor(**KW).fit(X, y)
    est = SparseMLPRegressor(**KW).fit(da.from_array(X, chunks=(700, 3)), da.from_array(y, chunks=900))
    np.testing.assert_array_equal(est.fused_coef_.indices, ref.fused_coef_.indices)
    np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=0, atol=1e-8 * np.abs(y).max())


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier(client, data, n_classes):
    X, y = data[0][:3000], data[1][:3000]
    labels = np.array(["a", "b", "c"])[np.digitize(y, np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1]))]
    kw = dict(KW, hidden_layer_sizes=(10,), n_nonzero_coefs=12)
    ref = SparseMLPClassifier(**kw).fit(X, labels)
    est = SparseMLPClassifier(**kw).fit(aligned(X), aligned(labels))
    assert same_network(est, ref)
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    np.testing.assert_array_equal(est.predict(aligned(X)).compute(), ref.predict(X))
    np.testing.assert_array_equal(est.predict_proba(aligned(X)).compute(), ref.predict_proba(X))
    # Class weights: the same weights, normalised by a total summed by partition.
    ref = SparseMLPClassifier(class_weight="balanced", **kw).fit(X, labels)
    est = SparseMLPClassifier(class_weight="balanced", **kw).fit(aligned(X), aligned(labels))
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-8)


def test_sample_weight_and_numpy_targets(client, data):
    X, y = data
    w = np.random.RandomState(0).uniform(0.5, 2.0, X.shape[0])
    ref = SparseMLPRegressor(**KW).fit(X, y, sample_weight=w)
    est = SparseMLPRegressor(**KW).fit(aligned(X), y, sample_weight=aligned(w))
    # The weights' total is summed by block in memory, by partition here: the
    # same number, so the same network bit for bit.
    assert same_network(est, ref)
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))


def test_dataframe(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = data
    cols = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols)
    ref = SparseMLPRegressor(**KW).fit(frame, y)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    est = SparseMLPRegressor(**KW).fit(ddf, dd.from_pandas(pd.Series(y), npartitions=3, sort=False))
    np.testing.assert_array_equal(est.feature_names_in_, cols)
    pred = est.predict(ddf)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(pred.compute(), ref.predict(frame), atol=1e-8 * np.abs(y).max())
    with pytest.raises(ValueError, match="feature names"):
        est.predict(ddf.rename(columns={"f0": "g0"}))


def test_bad_input_and_unsupported(client, data):
    X, y = data
    bad = X.copy()
    bad[4000, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SparseMLPRegressor(**KW).fit(aligned(bad), aligned(y))
    with pytest.raises(ValueError, match="too large"):
        SparseMLPRegressor(**KW).fit(aligned(X * 1e160), aligned(y))
    with pytest.raises(ValueError, match="samples"):
        SparseMLPRegressor(**KW).fit(aligned(X), aligned(y[:-1]))
    for params in (dict(early_stopping=True), dict(hidden_layer_sizes=(10, 10)), dict(batch_size=100)):
        with pytest.raises(NotImplementedError, match="dask"):
            SparseMLPRegressor(**{**KW, **params}).fit(aligned(X), aligned(y))


def test_no_row_travels(client, data, monkeypatch):
    """What comes back from the workers does not grow with n."""
    X, y = data
    sizes = []
    run = _dask.DaskRowBlocks._run

    def spy(self, method, args, keep=None):
        res = run(self, method, args, keep)
        for part in res:
            for r in part:
                for a in (r if isinstance(r, tuple) else (r,)):
                    sizes.append(np.asarray(a).size)
        return res

    monkeypatch.setattr(_dask.DaskRowBlocks, "_run", spy)
    big = np.repeat(X, 2, axis=0), np.repeat(y, 2)
    SparseMLPRegressor(**KW).fit(aligned(X), aligned(y))
    small_max = max(sizes)
    sizes.clear()
    SparseMLPRegressor(**KW).fit(aligned(big[0]), aligned(big[1]))
    assert max(sizes) == small_max < X.shape[0]


@pytest.mark.slow
def test_worker_processes_and_a_killed_worker(data, monkeypatch):
    """Two worker processes give the in-memory model; a worker killed during
    a fit makes it raise a clear error, never return a model."""
    X, y = data
    ref = SparseMLPRegressor(**KW).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        est = SparseMLPRegressor(**KW).fit(aligned(X), aligned(y))
        assert same_network(est, ref)
        run = _dask.DaskRowBlocks._run
        killed = threading.Event()

        def kill_on_tenth(self, method, args, keep=None):
            if self.n_calls == 10 and not killed.is_set():
                killed.set()
                # A worker that holds partitions (an actor of the fit).
                where = client.who_has([self.hosts[0][2]])
                addr = next(iter(where.values()))[0]
                nanny = next(w for w in cluster.workers.values() if w.worker_address == addr)
                os.kill(nanny.process.process.pid, signal.SIGKILL)
                time.sleep(0.5)
            return run(self, method, args, keep)

        monkeypatch.setattr(_dask.DaskRowBlocks, "_run", kill_on_tenth)
        fresh = SparseMLPRegressor(**KW)
        with pytest.raises(RuntimeError, match="worker"):
            fresh.fit(aligned(X), aligned(y))
        assert killed.is_set() and not hasattr(fresh, "fused_coef_")


def test_empty_partition_and_sparse_chunks(client, data):
    """A filtered collection can have empty partitions; chunks can be sparse
    matrices (kept as CSR, as in memory)."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = data
    ref = SparseMLPRegressor(**KW).fit(X, y)
    rows = dask_row_chunks(X.shape[0])
    with_empty = (rows[0], 0) + rows[1:]
    est = SparseMLPRegressor(**KW).fit(da.from_array(X, chunks=(with_empty, -1)), y)
    assert same_network(est, ref)
    Xs = X * (np.abs(X) > 0.5)
    ref = SparseMLPRegressor(**KW).fit(sp.csr_matrix(Xs), y)
    est = SparseMLPRegressor(**KW).fit(aligned(Xs).map_blocks(sp.csr_matrix), aligned(y))
    assert same_network(est, ref)
