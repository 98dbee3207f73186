"""The fit on a dask cluster against the in-memory fit, on the same data.

A planted regression problem (float32 X, n x 50, a sparse ReLU network plus
noise) is scattered to a ``LocalCluster`` of 2 worker processes (one thread
each) in partitions that are the in-memory row blocks
(``dask_row_chunks(n)``), so that both fits compute the same sums: the
same model is expected bit for bit.  Each worker holds its half of the
rows and the blocks built on them, never the whole data; its
``memory_limit`` is 520 MiB over its half of the rows.  Dask's spill and
pause thresholds are off (the rows are held by the fit's actors, which
spilling could not free), its terminate threshold is kept: a worker that
outgrew the limit would be killed and the fit would fail.

A worker of this package holds about 220 MiB before any row (Python,
distributed, numba and its loaded kernels), so with 2 workers a limit below
the data size (381 MiB at n = 2e6) cannot hold their halves of the rows.
Full mode therefore also fits on 6 worker processes (``--small-workers``),
each under a ``memory_limit`` 6 MiB below the data size, and checks that the
model is the same.

Reported: seconds per IHT iteration of both fits (the solver's own timer,
set-up and polish apart), the dask overhead per iteration, the number of
round trips, the RSS of each worker (started, kernels loaded, with its
rows, peak before and during the fit), the growth of the client's peak
RSS during the dask fit, and whether the models are equal.

    python benchmarks/dask_fit.py --quick   # n = 2e5, 8 iterations (about 3 minutes)
    python benchmarks/dask_fit.py           # n = 2e6, d = 50 float32: 400 MB, 3 iterations (about 25 minutes)
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


def worker_peak_mib(reset=False):
    """The worker's peak RSS (MiB) since it started or since the last reset.

    Read from Linux's VmHWM: ``getrusage``'s ru_maxrss is not the worker's
    own, it keeps the peak of the process the nanny forked it from (here the
    benchmark's, with all the rows) across the exec.  Elsewhere ru_maxrss.
    Not ``_common.reset_peak``: this runs on the workers, which cannot import
    the benchmarks' modules (a function of this script travels by value)."""
    try:
        with open("/proc/self/status") as f:
            peak = next(float(line.split()[1]) / 1024.0 for line in f if line.startswith("VmHWM:"))
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        return peak
    except (OSError, StopIteration, ValueError):
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


def same_model(a, b):
    """Support, weights, intercept and iteration count equal bit for bit."""
    return (np.array_equal(a.fused_coef_.toarray(), b.fused_coef_.toarray())
            and np.array_equal(a.intercept_, b.intercept_) and a.n_iter_ == b.n_iter_)


def mib(values):
    return ", ".join(f"{v:.0f}" for v in values.values())


def cluster_fit(X, y, params, chunks, n_workers, limit_mib, warm, predict=True, incremental=False):
    """The fit on a LocalCluster of ``n_workers`` processes (one thread
    each, ``memory_limit=limit_mib`` MiB), the rows scattered in partitions
    of ``chunks`` rows; its timings, round trips and the workers' RSS.
    ``predict``: also predict all rows blockwise (the estimator travels to
    the workers, which then import scikit-learn: about 130 MiB each)."""
    import dask
    import dask.array as da
    import distributed

    from sklearn_sparse_mlp import SparseMLPRegressor
    from sklearn_sparse_mlp import _dask

    def from_futures(futures, sizes):
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return da.concatenate([da.from_delayed(f, (b - a, D), np.float32)
                               for f, a, b in zip(futures, starts[:-1], starts[1:])])

    out = {}
    config = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    with dask.config.set(config), distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, memory_limit=f"{limit_mib}MiB",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        out["idle"] = client.run(worker_rss_mib)
        if warm:
            # numba loads its cached kernels once per process: a small fit
            # with a partition on each worker, before the rows arrive.
            pieces = [client.scatter(X[1000 * i:1000 * (i + 1)], workers=[w])
                      for i, w in enumerate(client.scheduler_info()["workers"])]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                SparseMLPRegressor(**{**params, "max_iter": 2}).fit(
                    from_futures(pieces, [1000] * len(pieces)), y[:1000 * len(pieces)])
            del pieces
            out["loaded"] = client.run(worker_rss_mib)
        t0 = time.perf_counter()
        futures = client.scatter([X[a:a + c] for a, c in zip(np.cumsum([0] + chunks[:-1]), chunks)])
        Xd = from_futures(futures, chunks)
        yd = da.from_array(y, chunks=(tuple(chunks),))
        out["scatter_s"] = time.perf_counter() - t0
        out["with_rows"] = client.run(worker_rss_mib)
        out["peak_before"] = client.run(worker_peak_mib, reset=True)
        calls = []
        run = _dask.DaskRowBlocks._run

        def counted(self, method, args, keep=None):
            calls.append(method)
            return run(self, method, args, keep)

        _dask.DaskRowBlocks._run = counted
        base = reset_peak()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est = SparseMLPRegressor(**params).fit(Xd, yd)
                out["fit_s"] = time.perf_counter() - t0
        finally:
            _dask.DaskRowBlocks._run = run
        out["client_growth"] = peak_since_reset() - base
        out["peak_fit"] = client.run(worker_peak_mib)
        out.update(est=est, calls=len(calls), iter_s=est._fit_seconds["iterations"] / est.n_iter_)
        if predict:
            pred = est.predict(Xd)
            t0 = time.perf_counter()
            out["pred"] = pred.compute()
            out["predict_s"] = time.perf_counter() - t0
        if incremental:
            out["incremental"] = incremental_row(Xd, yd, y, params)
        del futures, Xd
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=None, help="IHT iterations (default 8 quick, 3 full)")
    ap.add_argument("--small-workers", type=int, default=None,
                    help="also fit on this many worker processes, each under a memory_limit below the data "
                         "size (default 6 in full mode, none in quick mode)")
    args = ap.parse_args(argv)
    if args.small_workers is None and not args.quick:
        args.small_workers = 6
    mode = "quick" if args.quick else "full"
    n = args.n or (200_000 if args.quick else 2_000_000)
    args.max_iter = args.max_iter or (8 if args.quick else 3)

    from sklearn_sparse_mlp import SparseMLPRegressor, dask_row_chunks

    X, y = make_data(n)
    data_mib = X.nbytes / 2**20
    # A worker holds about 220 MiB before any row (Python, distributed, numba
    # and the kernels it loaded) and at n = 2e6 peaked near 510 MiB in the
    # fit; the blockwise predict then imports scikit-learn on it (about 130
    # MiB): the limit is 520 MiB over the worker's half of the rows (450 MiB
    # over it held the fit, not the predict).
    limit_mib = int(520 + data_mib / 2)
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
    chunks = [int(c) for c in dask_row_chunks(n)]
    two = cluster_fit(X, y, params, chunks, 2, limit_mib, warm=True, incremental=args.quick)
    est = two["est"]
    dask_iter = two["iter_s"]
    print(f"dask fit {two['fit_s']:.1f} s, {dask_iter:.3f} s per iteration; worker peaks {two['peak_fit']}",
          flush=True)
    if args.quick:
        incremental = two["incremental"]
    else:
        # At n = 2e6 dask-ml's Incremental copied partitions past the
        # workers' memory_limit (a worker was restarted): quick mode only.
        incremental = dict(status="not run at this size (quick mode only: at n = 2e6 it pushed a worker "
                                  "past its memory_limit)")
    pred = two["pred"]
    small = None
    if args.small_workers and data_mib - 6 < 300:
        print("no fit under a memory_limit below the data size: at this n it would be below a worker's "
              "size before any row (about 220 MiB)", flush=True)
    elif args.small_workers:
        # The same fit on more, smaller workers, each under a memory_limit
        # below the data size (a worker of this package holds about 220 MiB
        # before any row: with 2 workers their halves of the rows cannot fit).
        small_limit = int(data_mib) - 6
        small = cluster_fit(X, y, params, chunks, args.small_workers, small_limit, warm=False, predict=False)
        small["limit"] = small_limit
        small["same"] = same_model(small["est"], est)
        print(f"{args.small_workers} workers under memory_limit {small_limit} MiB: fit {small['fit_s']:.1f} s, "
              f"peaks {small['peak_fit']}, same model as 2 workers: {small['same']}", flush=True)

    same = same_model(est, ref)
    diff = float(np.abs(pred - ref.predict(X)).max())
    overhead = dask_iter / mem_iter - 1.0
    calls = two["calls"]
    print(f"dask: {est.n_iter_} iterations, {dask_iter:.3f} s each (overhead {100 * overhead:+.0f}%), "
          f"fit {two['fit_s']:.1f} s, {calls} round trips ({calls / est.n_iter_:.0f} per iteration)")
    print(f"worker peak RSS during the fit: {mib(two['peak_fit'])} MiB (limit {limit_mib}); client peak "
          f"growth {two['client_growth']:.0f} MiB; same model: {same}, max |prediction difference| {diff:.2g}")
    print("Incremental:", incremental["status"])

    command = "python benchmarks/dask_fit.py" + (" --quick" if args.quick else "")
    lines = header("The fit on a dask cluster against the in-memory fit", command, mode)
    lines += [
        f"Planted regression data, n={n}, d={D}, float32 ({data_mib:.0f} MiB), "
        f"`SparseMLPRegressor(n_nonzero_coefs=0.1, hidden_layer_sizes=({WIDTH},), max_iter={args.max_iter}, "
        "tol=0, random_state=0)`. The dask fit runs on a `LocalCluster` of 2 worker processes with one "
        f"thread each and `memory_limit={limit_mib}MiB` (spill and pause off, terminate at 95%), the "
        f"data scattered in the in-memory row blocks ({len(chunks)} partitions of {chunks[0]} rows) in "
        f"{two['scatter_s']:.1f} s; the in-memory fit uses 2 numba threads in one process. Worker RSS "
        "is read on each worker (peaks: Linux's VmHWM, reset before the fit).", "",
        "| | in memory | dask (2 worker processes) |",
        "|---|---|---|",
        f"| seconds per iteration | {mem_iter:.3f} | {dask_iter:.3f} ({100 * overhead:+.0f}%) |",
        f"| iterations | {ref.n_iter_} | {est.n_iter_} |",
        f"| whole fit (s) | {mem_total:.1f} | {two['fit_s']:.1f} |",
        f"| round trips to the workers | | {calls} ({calls / est.n_iter_:.0f} per iteration) |",
        f"| RSS per worker: started (MiB) | | {mib(two['idle'])} |",
        f"| RSS per worker: kernels loaded, no rows (MiB) | | {mib(two['loaded'])} |",
        f"| RSS per worker: with its rows (MiB) | | {mib(two['with_rows'])} (its half of the rows: "
        f"{data_mib / 2:.0f}) |",
        f"| peak RSS per worker before the fit, scatter included (MiB) | | {mib(two['peak_before'])} |",
        f"| peak RSS per worker during the fit (MiB) | | {mib(two['peak_fit'])} (limit {limit_mib}) |",
        f"| client peak RSS growth during the fit (MiB) | | {two['client_growth']:.0f} |",
        f"| predict, all rows (s) | | {two['predict_s']:.2f} |",
        "",
        f"Same model (support, weights, intercept, iterations bit for bit): **{same}**; largest "
        f"prediction difference {diff:.2g}.", "",
    ]
    if small is not None:
        lines += [
            f"Under a `memory_limit` below the data size: {args.small_workers} worker processes (one thread "
            f"each, on the same 2 cores), `memory_limit={small['limit']}MiB` each (data {data_mib:.0f} MiB; "
            f"each worker holds about {data_mib / args.small_workers:.0f} MiB of rows), no warm-up: "
            f"fit {small['fit_s']:.1f} s ({small['iter_s']:.3f} s per iteration), peak RSS per worker during "
            f"the fit {mib(small['peak_fit'])} MiB (before it, scatter included: {mib(small['peak_before'])}), "
            f"same model as the 2-worker fit: **{small['same']}**. No predict there: the estimator travels to "
            "the workers for a blockwise predict, and unpickling it imports scikit-learn (about 130 MiB per "
            "worker). With 2 workers the limit cannot be below the data size: a worker with the kernels "
            "loaded and no rows is the figure above, and its half of the rows comes on top.", "",
        ]
    lines += [f"Streaming instead: {incremental['status']}."]
    rows = dict(n=n, d=D, data_mib=data_mib, limit_mib=limit_mib, mem_iter_s=mem_iter, dask_iter_s=dask_iter,
                overhead=overhead, n_iter=est.n_iter_, round_trips=calls,
                worker_peak_fit_mib=list(two["peak_fit"].values()),
                worker_peak_before_mib=list(two["peak_before"].values()),
                worker_idle_mib=list(two["idle"].values()), worker_loaded_mib=list(two["loaded"].values()),
                worker_with_rows_mib=list(two["with_rows"].values()),
                client_growth_mib=two["client_growth"], same_model=same, max_pred_diff=diff, mem_fit_s=mem_total,
                dask_fit_s=two["fit_s"], predict_s=two["predict_s"], scatter_s=two["scatter_s"],
                incremental=incremental,
                small_workers=None if small is None else dict(
                    n_workers=args.small_workers, limit_mib=small["limit"], fit_s=small["fit_s"],
                    iter_s=small["iter_s"], peak_fit_mib=list(small["peak_fit"].values()),
                    peak_before_mib=list(small["peak_before"].values()), same_model=small["same"]))
    print("wrote", write_results(f"dask_{mode}", lines, rows))


if __name__ == "__main__":
    main()
