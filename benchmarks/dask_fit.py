"""The fit on a dask cluster against the in-memory fit, on the same data.

A planted regression problem (float32 X, n x 50, a sparse ReLU network plus
noise) is scattered to a ``LocalCluster`` of 2 worker processes (one thread
each) in partitions that are the in-memory row blocks
(``dask_row_chunks(n)``), so that both fits compute the same sums: the
same model is expected bit for bit.  Each worker holds its half of the
rows and the blocks built on them, never the whole data; its
``memory_limit`` is its idle size plus the data size plus a margin (an idle dask
worker here is already about 270 MiB, so a limit below the data size, 381
MiB at n = 2e6, cannot hold any rows).  Dask's spill and pause thresholds are off (the
rows are held by the fit's actors, which spilling could not free), its
terminate threshold is kept: a worker that outgrew the limit would be
killed and the fit would fail.

Reported: seconds per IHT iteration of both fits (the solver's own timer,
set-up and polish apart), the dask overhead per iteration, the number of
round trips, the peak RSS of each worker, the growth of the client's peak
RSS during the dask fit, and whether the models are equal.

    python benchmarks/dask_fit.py --quick   # n = 2e5, 8 iterations (about 3 minutes)
    python benchmarks/dask_fit.py           # n = 2e6, d = 50 float32: 400 MB, 3 iterations (about 20 minutes)
"""

import argparse
import time
import warnings

import numpy as np

if __package__:
    from ._common import header, peak_since_reset, reset_peak, write_results
else:
    from _common import header, peak_since_reset, reset_peak, write_results

D = 50
WIDTH = 100


def make_data(n, seed=0):
    """Float32 X (n x D) and a planted sparse ReLU target, by row chunks."""
    rng = np.random.default_rng(seed)
    U = np.zeros((D, 8))
    for j in range(8):
        U[rng.choice(D, 4, replace=False), j] = rng.standard_normal(4)
    c = 0.3 * rng.standard_normal(8)
    v = rng.standard_normal(8)
    X = np.empty((n, D), dtype=np.float32)
    y = np.empty(n)
    step = 1 << 18
    for a in range(0, n, step):
        b = min(n, a + step)
        X[a:b] = rng.standard_normal((b - a, D), dtype=np.float32)
        y[a:b] = np.maximum(X[a:b] @ U + c, 0.0) @ v + 0.05 * rng.standard_normal(b - a)
    return X, y


def worker_rss_mib():
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def worker_peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def incremental_row(Xd, yd, y, params):
    """dask-ml's Incremental: partial_fit on one partition after another
    (one epoch), or why not."""
    try:
        from dask_ml.wrappers import Incremental
    except ImportError as exc:
        return dict(status=f"dask-ml not installed ({exc})")
    from sklearn.metrics import r2_score

    from sklearn_sparse_mlp import SparseMLPRegressor

    est = SparseMLPRegressor(**{k: v for k, v in params.items() if k not in ("max_iter", "tol")})
    inc = Incremental(est)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inc.partial_fit(Xd, yd)
        seconds = time.perf_counter() - t0
        r2 = r2_score(y, inc.predict(Xd).compute())
    except Exception as exc:  # reported, not hidden
        return dict(status=f"Incremental failed: {type(exc).__name__}: {exc}")
    import dask_ml

    return dict(status=f"dask-ml {dask_ml.__version__}: partial_fit over the {Xd.numblocks[0]} partitions "
                       f"(one epoch) {seconds:.1f} s, training R^2 {r2:.4f}", seconds=seconds, r2=r2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=None, help="IHT iterations (default 8 quick, 3 full)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    n = args.n or (200_000 if args.quick else 2_000_000)
    args.max_iter = args.max_iter or (8 if args.quick else 3)

    import dask
    import dask.array as da
    import distributed

    from sklearn_sparse_mlp import SparseMLPRegressor, dask_row_chunks
    from sklearn_sparse_mlp import _dask

    X, y = make_data(n)
    data_mib = X.nbytes / 2**20
    # An idle dask worker already holds about 270 MiB here (Python, distributed,
    # pandas) and about 340 MiB once the kernels are loaded: the limit is 600
    # MiB plus all the rows (a margin of 400 MiB over the worker's half failed
    # at n = 2e6: both workers crossed 95% of it; 500 MiB over its half held
    # once, with RSS peaks above it that the nanny's sampling missed, and
    # failed once, a worker restarted while the data were scattered).
    limit_mib = int(600 + data_mib)
    # No progressive stages: a fit on dask collections runs every iteration
    # on all the rows, and the in-memory reference must be the same fit.
    params = dict(n_nonzero_coefs=0.1, hidden_layer_sizes=(WIDTH,), max_iter=args.max_iter, tol=0.0,
                  progressive=False, random_state=0)
    print(f"n={n} d={D} float32: {data_mib:.0f} MiB; 2 workers, memory_limit {limit_mib} MiB each", flush=True)

    # The in-memory fit (the reference), after a warm-up of the kernels.  A
    # fit on dask collections keeps every row on its worker: it forms its
    # Gauss-Newton matrices and tries its step fractions on all the rows,
    # where an in-memory fit on this many rows uses fixed samples of them;
    # the reference is run without those samples, the dask fit's algorithm.
    from sklearn_sparse_mlp import _iht, _layers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SparseMLPRegressor(**{**params, "max_iter": 2}).fit(X[:5000], y[:5000])
        saved = _iht.SAMPLE_ROWS, _layers.SKETCH_MIN_ROWS
        _iht.SAMPLE_ROWS = _layers.SKETCH_MIN_ROWS = 1 << 40
        try:
            t0 = time.perf_counter()
            ref = SparseMLPRegressor(**params).fit(X, y)
            mem_total = time.perf_counter() - t0
        finally:
            _iht.SAMPLE_ROWS, _layers.SKETCH_MIN_ROWS = saved
    mem_iter = ref._fit_seconds["iterations"] / ref.n_iter_
    print(f"in memory: {ref.n_iter_} iterations, {mem_iter:.3f} s each, fit {mem_total:.1f} s", flush=True)

    config = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    with dask.config.set(config), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit=f"{limit_mib}MiB",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        idle = client.run(worker_rss_mib)
        chunks = dask_row_chunks(n)
        starts = np.concatenate([[0], np.cumsum(chunks)])
        t0 = time.perf_counter()
        futures = client.scatter([X[a:b] for a, b in zip(starts[:-1], starts[1:])])
        Xd = da.concatenate([da.from_delayed(f, (b - a, D), np.float32)
                             for f, a, b in zip(futures, starts[:-1], starts[1:])])
        yd = da.from_array(y, chunks=(chunks,))
        scatter_s = time.perf_counter() - t0
        # Warm-up on the workers: numba loads its cached kernels once per process.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SparseMLPRegressor(**{**params, "max_iter": 2}).fit(Xd[:5000], yd[:5000])
        client.run(lambda: None)
        calls = []
        run = _dask.DaskRowBlocks._run

        def counted(self, method, args, keep=None):
            calls.append(method)
            return run(self, method, args, keep)

        _dask.DaskRowBlocks._run = counted
        base = reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est = SparseMLPRegressor(**params).fit(Xd, yd)
            dask_total = time.perf_counter() - t0
        client_growth = peak_since_reset() - base
        _dask.DaskRowBlocks._run = run
        dask_iter = est._fit_seconds["iterations"] / est.n_iter_
        peaks = client.run(worker_peak_mib)
        pred = est.predict(Xd)
        t0 = time.perf_counter()
        pred = pred.compute()
        predict_s = time.perf_counter() - t0
        print(f"dask fit {dask_total:.1f} s, {dask_iter:.3f} s per iteration; worker peaks {peaks}", flush=True)
        if args.quick:
            incremental = incremental_row(Xd, yd, y, params)
        else:
            # At n = 2e6 dask-ml's Incremental copied partitions past the
            # workers' memory_limit (a worker was restarted): quick mode only.
            incremental = dict(status="not run at this size (quick mode only: at n = 2e6 it pushed a worker "
                                      "past its memory_limit)")
        del futures, Xd

    same = (np.array_equal(est.fused_coef_.toarray(), ref.fused_coef_.toarray())
            and np.array_equal(est.intercept_, ref.intercept_) and est.n_iter_ == ref.n_iter_)
    diff = float(np.abs(pred - ref.predict(X)).max())
    overhead = dask_iter / mem_iter - 1.0
    print(f"dask: {est.n_iter_} iterations, {dask_iter:.3f} s each (overhead {100 * overhead:+.0f}%), "
          f"fit {dask_total:.1f} s, {len(calls)} round trips ({len(calls) / est.n_iter_:.0f} per iteration)")
    print(f"worker peak RSS: {', '.join(f'{v:.0f}' for v in peaks.values())} MiB (limit {limit_mib}); client peak "
          f"growth {client_growth:.0f} MiB; same model: {same}, max |prediction difference| {diff:.2g}")
    print("Incremental:", incremental["status"])

    command = "python benchmarks/dask_fit.py" + (" --quick" if args.quick else "")
    lines = header("The fit on a dask cluster against the in-memory fit", command, mode)
    lines += [
        f"Planted regression data, n={n}, d={D}, float32 ({data_mib:.0f} MiB), "
        f"`SparseMLPRegressor(n_nonzero_coefs=0.1, hidden_layer_sizes=({WIDTH},), max_iter={args.max_iter}, "
        "tol=0, random_state=0)`. The dask fit runs on a `LocalCluster` of 2 worker processes with one "
        f"thread each and `memory_limit={limit_mib}MiB` (spill and pause off, terminate at 95%), the "
        f"data scattered in the in-memory row blocks ({len(chunks)} partitions of {chunks[0]} rows) in "
        f"{scatter_s:.1f} s; the in-memory fit uses 2 numba threads in one process.", "",
        "| | in memory | dask (2 worker processes) |",
        "|---|---|---|",
        f"| seconds per iteration | {mem_iter:.3f} | {dask_iter:.3f} ({100 * overhead:+.0f}%) |",
        f"| iterations | {ref.n_iter_} | {est.n_iter_} |",
        f"| whole fit (s) | {mem_total:.1f} | {dask_total:.1f} |",
        f"| round trips to the workers | | {len(calls)} ({len(calls) / est.n_iter_:.0f} per iteration) |",
        f"| RSS of an idle worker, before the data (MiB) | | {', '.join(f'{v:.0f}' for v in idle.values())} |",
        f"| peak RSS per worker (MiB) | | {', '.join(f'{v:.0f}' for v in peaks.values())} "
        f"(limit {limit_mib}; its half of the rows: {data_mib / 2:.0f}) |",
        f"| client peak RSS growth during the fit (MiB) | | {client_growth:.0f} |",
        f"| predict, all rows (s) | | {predict_s:.2f} |",
        "",
        f"Same model (support, weights, intercept, iterations bit for bit): **{same}**; largest "
        f"prediction difference {diff:.2g}.", "",
        f"Streaming instead: {incremental['status']}.",
    ]
    rows = dict(n=n, d=D, data_mib=data_mib, limit_mib=limit_mib, mem_iter_s=mem_iter, dask_iter_s=dask_iter,
                overhead=overhead, n_iter=est.n_iter_, round_trips=len(calls), worker_peak_mib=list(peaks.values()),
                worker_idle_mib=list(idle.values()),
                client_growth_mib=client_growth, same_model=same, max_pred_diff=diff, mem_fit_s=mem_total,
                dask_fit_s=dask_total, predict_s=predict_s, scatter_s=scatter_s, incremental=incremental)
    print("wrote", write_results(f"dask_{mode}", lines, rows))


if __name__ == "__main__":
    main()
