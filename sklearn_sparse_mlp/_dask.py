"""Fitting on dask collections: the row blocks held where the rows are.

A dask array (or dataframe) is a list of row partitions.  Each partition
becomes a ``RowBlocks`` object built *on the worker that holds it* (with a
``dask.distributed`` client) and kept there for the whole fit; the solver
runs on the client with a ``DaskRowBlocks`` in place of the in-memory row
blocks.  Every question the solver asks (a loss, a gradient for a chunk of
gates, the normal equations of a support...) is one map over the partitions
followed by the same ordered reduction the in-memory blocks use, so only
arrays that do not grow with ``n`` travel.  Per-row arrays (the outputs
``F``, residuals, curvature weights) stay on the workers as futures: the
solver holds them as opaque handles, as it does in memory.

A partition is cut into blocks of the size the whole data would be cut into
(``block_starts(n)``), with the sample weights normalised by the whole
data's total, so each partition's answer is a sum of the in-memory blocks'
terms.  When every partition is one in-memory block (chunks of
``dask_row_chunks(n)`` rows) the model is bit-identical to the in-memory
fit; otherwise sums are grouped differently and agree to rounding.  (On
more than 16383 rows the in-memory fit also uses fixed samples of its rows,
which a dask fit does not draw: the fits then differ; see the user guide.)

Without a distributed client the partitions are computed with dask's local
scheduler into this process and the same map-reduce runs on a thread pool.

Nothing here imports dask at module level: the estimators call in only for
dask input.
"""

import numbers
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._blocks import (CACHE_BYTES, RowBlocks, block_starts, combine_keys, merge_centred, merge_product,
                      sample_count)
from ._losses import newton_intercept, ordered_sum


def is_dask_collection(x):
    """Whether ``x`` is a dask array, dataframe or series (without importing dask)."""
    return callable(getattr(x, "__dask_graph__", None)) and type(x).__module__.startswith("dask")


def dask_row_chunks(n_samples):
    """Row chunks that make a dask fit bit-identical to the in-memory fit.

    The in-memory fit cuts ``n_samples`` rows into fixed row blocks; a dask
    array whose row partitions are those blocks (``chunks=(dask_row_chunks(n),
    -1)``) gives exactly the same sums, hence the same model.  Other chunks
    give the same model up to rounding.

    Parameters
    ----------
    n_samples : int
        Number of rows of the data.

    Returns
    -------
    chunks : tuple of int
        Rows per partition, in order.

    See Also
    --------
    SparseMLPRegressor.fit : Accepts dask arrays and dataframes.
    SparseMLPClassifier.fit : Accepts dask arrays and dataframes.

    Examples
    --------
    >>> from sklearn_sparse_mlp import dask_row_chunks
    >>> dask_row_chunks(5000)
    (2048, 2048, 904)
    """
    starts = block_starts(int(n_samples))
    return tuple(int(r) for r in np.diff(starts))


def _need_dask():
    try:
        import dask  # noqa: F401
        import dask.array  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the dask extra is installed in CI
        raise ImportError(
            "Fitting or predicting on a dask collection needs dask: "
            "pip install 'sklearn-sparse-mlp[dask]'."
        ) from exc


def _client():
    """The current dask.distributed client, or None."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


# --------------------------------------------------------------------------
# what runs on a worker
# --------------------------------------------------------------------------
@contextmanager
def _serial_numba():
    """One numba thread for the calling thread (the setting is thread-local):
    the parallelism of a dask fit is between partitions, one per worker
    thread, so the serial kernels run (they release the GIL)."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@dataclass
class _Part:
    """One row partition, validated: X (C-ordered float32/64), Y (r x k
    float64), sample weights (None: all equal)."""

    X: np.ndarray
    Y: np.ndarray
    sw: object

    def __sizeof__(self):
        X = self.X
        arrays = [X.data, X.indices, X.indptr] if sp.issparse(X) else [X]
        return object.__sizeof__(self) + sum(a.nbytes for a in arrays + [self.Y, self.sw] if a is not None)


def _make_part(x, y, sw, targets):
    """Validate one partition and encode its targets (``targets(y) -> (Y,
    per-row weight multipliers or None)``)."""
    if sp.issparse(x):  # sparse chunks stay sparse (CSR), as in memory
        x = sp.csr_matrix(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
    else:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array for X, got {x.ndim} dimensions.")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        x = np.ascontiguousarray(x)
    Y, mult = targets(np.asarray(y))
    if sw is not None:
        sw = np.asarray(sw, dtype=np.float64).ravel()
    if mult is not None:
        sw = mult if sw is None else sw * mult
    return _Part(x, Y, sw)


def _part_stats(part):
    """(rows, total weight, finite X, finite Y, max |X|, a negative weight,
    finite weights, samples counted as ``RowBlocks.row_count``)."""
    X, Y, sw = part.X, part.Y, part.sw
    values = X.data if sp.issparse(X) else X
    x_max = max(float(values.max()), -float(values.min())) if values.size else 0.0
    total = float(X.shape[0]) if sw is None else float(sw.sum())
    negative = sw is not None and bool(np.any(sw < 0))
    finite_w = sw is None or bool(np.all(np.isfinite(sw)))
    count = sample_count(sw, X.shape[0])
    return (X.shape[0], total, bool(np.isfinite(x_max)), bool(np.all(np.isfinite(Y))), x_max, negative,
            finite_w, count)


_FIRST = "first"  # a step's ``out`` (id, _FIRST): see BlockHost.run


class _Slot:
    """Marks the position of a handle (its id) in a call's arguments."""

    __slots__ = ("id",)

    def __init__(self, id):
        self.id = id

    def __reduce__(self):
        return (_Slot, (self.id,))


_OWN_WEIGHTS = "__own_sample_weights__"


class BlockHost:
    """The row blocks of the partitions one worker holds, and the per-row
    arrays (handles) computed on them.

    On a cluster it is a dask actor on that worker: calls go straight to it
    (no scheduler on the way, about a millisecond each), and its partitions
    never leave the worker.  Without a cluster one host holds every
    partition in this process.  ``run`` calls a ``RowBlocks`` method on each
    partition (a thread per partition up to ``n_threads``; the kernels run
    serially and release the GIL) and returns the partial answers, or keeps
    them under a handle id.
    """

    def __init__(self, parts, caches, has_bias, block_rows, weight_total, n_threads=None):
        self.blocks = [RowBlocks(p.X, has_bias, p.Y, p.sw, cache_bytes=c, block_rows=block_rows,
                                 weight_total=weight_total) for p, c in zip(parts, caches)]
        self.store = {}
        if n_threads is None:
            try:
                from distributed import get_worker

                n_threads = get_worker().state.nthreads
            except (ImportError, ValueError, AttributeError):
                n_threads = 1
        n_threads = min(int(n_threads), len(self.blocks))
        self._pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None

    def run(self, steps, free=()):
        """Run ``steps`` ((method, layout, out) each) on every partition in
        turn; the last step's answers, one per partition (None when it is
        kept under a handle id; with ``out = (id, _FIRST)`` the first item of
        a tuple answer is kept and the rest answered).  ``free``: handle ids
        the solver dropped."""

        def one(i):
            block = self.blocks[i]
            result = None
            for method, layout, out in steps:
                args = []
                for a in layout:
                    if isinstance(a, _Slot):
                        held = self.store.get(a.id)
                        if held is None or held[i] is None:
                            raise RuntimeError(
                                "A per-row array of the fit is missing on a dask worker: the worker "
                                "was restarted during the fit. No model was set; fit again."
                            )
                        args.append(held[i])
                    elif isinstance(a, str) and a == _OWN_WEIGHTS:
                        args.append(block.sw)
                    else:
                        args.append(a)
                with _serial_numba():
                    result = getattr(block, method)(*args)
                if isinstance(out, tuple):  # (id, _FIRST): keep the first item, answer the rest
                    self.store.setdefault(out[0], [None] * len(self.blocks))[i] = result[0]
                    result = result[1:]
                elif out is not None:
                    self.store.setdefault(out, [None] * len(self.blocks))[i] = result
                    result = None
            return result

        if self._pool is None:
            results = [one(i) for i in range(len(self.blocks))]
        else:
            results = list(self._pool.map(one, range(len(self.blocks))))
        for h in free:
            self.store.pop(h, None)
        return results

    def close(self):
        self.store.clear()
        if self._pool is not None:
            self._pool.shutdown()


class Handle:
    """A per-row array held in pieces next to the partitions (the outputs,
    residuals or curvature weights of the solver); freed on the hosts when
    the solver drops it."""

    __slots__ = ("id", "owner", "__weakref__")

    def __init__(self, id, owner):
        self.id, self.owner = id, owner

    def __del__(self):
        try:
            self.owner._free.append(self.id)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _prune(steps, dropped):
    """``steps`` without those whose handle was dropped before any later step
    read it."""
    needed = set()
    kept = []
    for method, layout, out in reversed(steps):
        if out is not None and out in dropped and out not in needed:
            continue
        kept.append((method, layout, out))
        needed.update(a.id for a in layout if isinstance(a, _Slot))
    return tuple(reversed(kept))


def _reduce(results):
    """Partitions' partial answers added in partition order, componentwise."""
    first = results[0]
    if isinstance(first, tuple):
        return tuple(_reduce([r[i] for r in results]) for i in range(len(first)))
    if isinstance(first, float):
        return float(ordered_sum(np.array(results, dtype=np.float64)))
    return ordered_sum(np.stack(results))


def _lost(exc):
    return RuntimeError(
        "A dask worker holding part of the data was lost during the fit "
        f"({type(exc).__name__}: {exc}). The fit stopped and no model was set. Check the "
        "workers' memory_limit and logs, then fit again."
    )


class DaskRowBlocks:
    """The row blocks of a fit, held by one ``BlockHost`` per worker.

    The same interface as ``RowBlocks``: the solver cannot tell them apart.
    ``hosts``: (host, global indices of its partitions, its actor's future or
    None); ``remote``: whether the hosts are dask actors.
    """

    is_sparse = False

    def __init__(self, hosts, remote, n, d, k, has_bias, dtype, weight_total, row_count):
        self.hosts = hosts
        self.remote = remote
        self.n_parts = sum(len(h[1]) for h in hosts)
        self.n, self.d, self.k = int(n), int(d), int(k)
        self.has_bias = bool(has_bias)
        self.q = self.d + int(self.has_bias)
        self.dtype = np.dtype(dtype)
        self.weight_total = float(weight_total)
        self.row_count = float(row_count)
        self.sw = _OWN_WEIGHTS
        self.n_calls = 0
        self._free = []
        self._pending = []
        self._next_id = 0
        self._prefetched = None  # (handle id, residual sums of those outputs)

    # ---- the map-reduce ---------------------------------------------------
    def _run(self, method, args, keep=None):
        """The partitions' answers to ``method(*args)`` (a list per host).

        Calls that make a per-row array (a handle) are not sent on their own:
        they wait in ``_pending`` and go with the next call that needs an
        answer, as one program (one round trip)."""
        self.n_calls += 1
        free, self._free = self._free, []
        last = (method, self._layout(args), None if keep is None else (keep, _FIRST))
        steps = _prune(self._pending + [last], set(free))
        self._pending = []
        if not self.remote:
            return [h[0].run(steps, free) for h in self.hosts]
        try:
            calls = [h[0].run(steps, free) for h in self.hosts]
            return [c.result() for c in calls]
        except Exception as exc:
            if _is_comm_error(exc):
                raise _lost(exc) from exc
            raise

    @staticmethod
    def _layout(args):
        return tuple(_Slot(a.id) if isinstance(a, Handle) else a for a in args)

    def _handle(self, method, *args):
        self._next_id += 1
        self._pending.append((method, self._layout(args), self._next_id))
        return Handle(self._next_id, self)

    def _sum(self, method, *args):
        return _reduce(self._parts(method, *args))

    def _parts(self, method, *args, keep=None):
        """Each partition's answer, in partition order."""
        ordered = [None] * self.n_parts
        for (_, idx, _), res in zip(self.hosts, self._run(method, args, keep)):
            for i, r in zip(idx, res):
                ordered[i] = r
        return ordered

    def _blocks_of(self, method, *args, keep=None):
        """Per-block answers (arrays, or tuples of arrays, with one row per
        block) of every partition, stacked in partition order: the blocks of
        the whole data when partitions are the in-memory row blocks.
        ``keep``: a handle id under which the first item of each answer (a
        per-row array) stays on the hosts, the rest being answered."""
        parts = self._parts(method, *args, keep=keep)
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
        return np.concatenate(parts)

    def sketch(self, n_rows):
        """No sketch: no row of X leaves its worker (the solver forms its
        matrices over all the rows)."""
        return None

    def sample(self, n_rows):
        """No sample of the rows either (see ``sketch``)."""
        return None

    # ---- outputs and the loss -----------------------------------------
    def zeros(self, k):
        return self._handle("zeros", k)

    def forward(self, spec):
        return self._handle("forward", spec)

    def forward_exact(self, units, gates, signs):
        # The residuals' sums come back with the pattern keys: the evaluation
        # of these outputs that usually follows (``squared_fit``) needs no
        # other round trip.
        self._next_id += 1
        F = Handle(self._next_id, self)
        KP, CP, *stats = self._blocks_of("forward_exact_summary", units, gates, signs, keep=F.id)
        self._prefetched = (F.id, tuple(stats))
        return (F,) + tuple(combine_keys(KP, CP))

    def loss(self, kind, F, b):
        return self._sum("loss", kind, F, np.asarray(b, dtype=np.float64))

    def intercept_stats(self, kind, F, b):
        return self._sum("intercept_stats", kind, F, np.asarray(b, dtype=np.float64))

    def intercept(self, kind, F, b0):
        # Outputs always have the problem's k columns (the network's outputs).
        return newton_intercept(kind, lambda b: self.intercept_stats(kind, F, b), self.k, b0)

    def working_moments(self, kind, F, b, shift):
        return self._sum("working_moments", kind, F, np.asarray(b, dtype=np.float64),
                         np.asarray(shift, dtype=np.float64))

    def residual(self, kind, F, b):
        return self._handle("residual", kind, F, np.asarray(b, dtype=np.float64))

    def hessian_weights(self, kind, F, b):
        return self._handle("hessian_weights", kind, F, np.asarray(b, dtype=np.float64))

    def combine(self, F1, F2, c):
        return self._handle("combine", F1, F2, c)

    def moments(self, F, shift, weights=None):
        return self._sum("moments", F, np.asarray(shift, dtype=np.float64), weights)

    def centered_moments(self, F, center):
        k = self.k
        mean = self.moments(F, np.zeros(k))[1] if center else np.zeros(k)
        return self.moments(F, mean)[0], mean

    def squared_fit(self, F):
        held = self._prefetched
        stats = held[1] if held is not None and held[0] == F.id else self._blocks_of("centred_stats", F, True, True)
        sq, mean, _ = merge_centred(*stats, True)
        return mean, 0.5 * sq

    def support_weight_parts(self, spec):
        return self._blocks_of("support_weight_parts", spec)

    def centred_product(self, spec, d, center, c_parts):
        return merge_product(self._blocks_of("product_parts", spec, d, center), c_parts, spec, center)

    def column(self, W, l):
        return self._handle("column", W, l)

    def columns(self, W, cols):
        return self._handle("columns", W, np.asarray(cols))

    def total(self, w):
        return self._sum("total", w)

    def target_mean(self):
        if not hasattr(self, "_target_mean"):
            self._target_mean = self._sum("target_mean")
        return self._target_mean

    def column_moments(self):
        if not hasattr(self, "_column_moments"):
            s1, s2 = self._sum("column_sums")
            self._column_moments = (s1, np.sqrt(np.maximum(s2 - s1 * s1, 0.0)))
        return self._column_moments

    def constant_columns(self):
        if not hasattr(self, "_constant_columns"):
            parts = self._parts("column_range")
            lo = np.min([p[0] for p in parts], axis=0)
            hi = np.max([p[1] for p in parts], axis=0)
            self._constant_columns = lo == hi
        return self._constant_columns

    # ---- gradients -------------------------------------------------------
    def gradient_chunk(self, H, R):
        return self._sum("gradient_chunk", np.asarray(H), R)

    def support_gradient(self, spec, R, with_v=False):
        return self._sum("support_gradient", spec, R, with_v)

    def pattern_gradient(self, units, gates, R, square=False):
        return self._sum("pattern_gradient", units, gates, R, square)

    def unit_gradient(self, units, gates, U, V, R):
        return self._sum("unit_gradient", units, gates, U, V, R)

    def normal_equations(self, spec, b_unit, b_feat, b_hcol, w, b_out, groups=None, first_col=0):
        return self._sum("normal_equations", spec, b_unit, b_feat, b_hcol, w, b_out, groups, first_col)

    def newton_matrix(self, spec, b_unit, b_feat, b_hcol, coef, kind, F, b):
        return self._sum("newton_matrix", spec, b_unit, b_feat, b_hcol, coef, kind, F,
                         np.asarray(b, dtype=np.float64))

    def alo_sums(self, spec, b_unit, b_feat, gstart, group_out, Qt, q_off, abar, WQ, invd, zbar, s0inv,
                 kind, F, b):
        return self._sum("alo_sums", spec, b_unit, b_feat, gstart, group_out, Qt, q_off, abar, WQ, invd, zbar,
                         s0inv, kind, F, np.asarray(b, dtype=np.float64))

    def intercept_hessian(self, kind, F, b):
        return self._sum("intercept_hessian", kind, F, np.asarray(b, dtype=np.float64))

    # ---- patterns: merging and signs -----------------------------------
    def pattern_keys(self, units, gates):
        parts = self._parts("pattern_key_parts", units, gates)
        return combine_keys(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def sign_scores(self, kind, units, gates, W, U, F, b):
        return self._sum("sign_scores", kind, units, gates, W, U, F, np.asarray(b, dtype=np.float64))

    def close(self):
        """Drop the hosts (and with them the partitions' blocks)."""
        self._pending = []
        if not self.remote:
            for host, _, _ in self.hosts:
                host.close()
        self.hosts = []


def _is_comm_error(exc):
    """Whether ``exc`` says a worker (or the connection to it) was lost."""
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover
        CommClosedError = OSError
    names = {"KilledWorker", "FutureCancelledError", "CancelledError"}
    return isinstance(exc, (OSError, CommClosedError, TimeoutError)) or type(exc).__name__ in names or (
        isinstance(exc, (ValueError, RuntimeError)) and "was lost" in str(exc))


# --------------------------------------------------------------------------
# from dask collections to row blocks
# --------------------------------------------------------------------------
class RegressionTargets:
    """Targets of a regressor: float64 (r x k), no weight multipliers."""

    def __init__(self, k):
        self.k = k

    def __call__(self, y):
        return np.asarray(y, dtype=np.float64).reshape(-1, self.k), None


class LabelTargets:
    """Targets of a classifier, as the in-memory encoder makes them (one 0/1
    column for two classes, one-hot for more), with plain NumPy so that a
    worker needs no scikit-learn; and the class weights of the rows
    (``class_weights`` aligned with ``classes``, or None)."""

    def __init__(self, classes, class_weights):
        self.classes, self.class_weights = np.asarray(classes), class_weights

    def __call__(self, y):
        y = y.ravel()
        pos = np.searchsorted(self.classes, y)
        if self.classes.size == 2:
            Y = (pos == 1).astype(np.float64).reshape(-1, 1)
        else:
            Y = np.zeros((y.shape[0], self.classes.size))
            Y[np.arange(y.shape[0]), pos] = 1.0
        if self.class_weights is None:
            return Y, None
        return Y, self.class_weights[pos]


def _column_names(X):
    names = np.asarray(list(X.columns), dtype=object)
    return names if all(isinstance(c, str) for c in names) else None


def as_dask_arrays(X, y=None, sample_weight=None):
    """(X, y, sample_weight) as dask arrays with aligned row chunks, X in one
    column chunk; and X's column names (a dataframe with string columns) or
    None."""
    _need_dask()
    import dask.array as da

    names = None
    if not hasattr(X, "chunks"):  # a dask dataframe
        names = _column_names(X)
        X = X.to_dask_array(lengths=True)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D dask array or a dask dataframe for X, got {X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold numbers; got dtype {X.dtype}.")

    def rows_like(a, what):
        if a is None:
            return None
        if is_dask_collection(a):
            if not hasattr(a, "chunks"):
                a = a.to_dask_array(lengths=True)
            elif any(np.isnan(c) for c in a.chunks[0]):
                a = a.compute_chunk_sizes()
        else:
            a = np.asarray(a)
        if a.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but {what} has {a.shape[0]}.")
        chunks = (X.chunks[0],) + tuple((s,) for s in a.shape[1:])
        return a.rechunk(chunks) if is_dask_collection(a) else da.from_array(a, chunks=chunks)

    y = rows_like(y, "y")
    if sample_weight is not None and not isinstance(sample_weight, numbers.Number):
        sample_weight = rows_like(sample_weight, "sample_weight")
        if sample_weight.ndim != 1:
            raise ValueError("sample_weight must be 1-D.")
    elif sample_weight is not None:
        sample_weight = da.full(X.shape[0], float(sample_weight), chunks=(X.chunks[0],))
    return X, y, sample_weight, names


def row_blocks(X, y, sample_weight, targets, k, has_bias, n_threads):
    """Validate the partitions, build their row blocks where they live (one
    ``BlockHost`` per worker holding some), and return the ``DaskRowBlocks``
    over them (``k`` outputs)."""
    import dask

    if X.shape[0] < 2:
        raise ValueError(f"Found {X.shape[0]} sample(s), while a minimum of 2 is required.")
    xs = X.to_delayed().ravel()
    ys = y.to_delayed().ravel()
    ws = [None] * len(xs) if sample_weight is None else sample_weight.to_delayed().ravel()
    make = dask.delayed(_make_part, pure=False)
    delayed_parts = [make(x, yy, w, targets) for x, yy, w in zip(xs, ys, ws)]
    client = _client()
    if client is not None:
        parts = client.compute(delayed_parts)
        stats = client.gather(client.map(_part_stats, parts, pure=False))
    else:
        parts = list(dask.compute(*delayed_parts, scheduler="threads"))
        stats = [_part_stats(p) for p in parts]
    rows = np.array([s[0] for s in stats], dtype=np.int64)
    if not all(s[2] for s in stats):
        raise ValueError("Input X contains NaN or infinity.")
    if not all(s[3] for s in stats):
        raise ValueError("Input y contains NaN or infinity.")
    if any(s[5] for s in stats) or not all(s[6] for s in stats):
        raise ValueError("sample_weight must be finite and nonnegative.")
    # The whole data's total weight (n for equal weights, as in memory):
    # each partition's sums are then terms of the whole data's.
    total = float(ordered_sum(np.array([s[1] for s in stats])))
    if not total > 0:
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    x_max = max(s[4] for s in stats)
    if x_max * (X.shape[1] + 1) > np.finfo(dtype).max ** 0.5:
        raise ValueError(
            f"X holds values too large for the network's arithmetic (max |X| = {x_max:.3g} "
            f"in {np.dtype(dtype)}). Scale the features, e.g. with StandardScaler."
        )
    # Empty partitions (a filtered dataframe) hold no rows: left out.
    keep = np.flatnonzero(rows > 0)
    parts, rows = [parts[i] for i in keep], rows[keep]
    n = int(rows.sum())
    block_rows = int(block_starts(n)[1])
    caches = [int(CACHE_BYTES * r // n) for r in rows]
    if client is None:
        host = BlockHost(parts, caches, has_bias, block_rows, total, n_threads)
        hosts = [(host, list(range(len(parts))), None)]
    else:
        # One actor per worker, on the partitions that worker holds.
        where = client.who_has(parts)
        by_worker = {}
        for i, f in enumerate(parts):
            holders = sorted(where.get(f.key, ()))
            by_worker.setdefault(holders[0] if holders else None, []).append(i)
        futures = [client.submit(BlockHost, [parts[i] for i in idx], [caches[i] for i in idx], has_bias,
                                 block_rows, total, actor=True, workers=None if worker is None else [worker],
                                 pure=False)
                   for worker, idx in by_worker.items()]
        # The actors live as long as their futures: the blocks keep them.
        hosts = [(fut.result(), idx, fut) for fut, idx in zip(futures, by_worker.values())]
    del parts
    count = float(ordered_sum(np.array([s[7] for s in stats])))
    return DaskRowBlocks(hosts, client is not None, n, X.shape[1], k, has_bias, dtype, total, count)


def _predict_chunk(x, est, method):
    import warnings

    with warnings.catch_warnings():
        # The column names were checked once for the whole dataframe.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return getattr(est, method)(x)


def predict_blockwise(est, method, X):
    """``est.method`` on each row partition of a dask collection: a dask array."""
    _need_dask()
    if not hasattr(X, "chunks"):
        names = _column_names(X)
        expected = getattr(est, "feature_names_in_", None)
        if expected is not None and (names is None or not np.array_equal(names, expected)):
            raise ValueError(
                "The feature names should match those that were passed during fit: "
                f"expected {list(expected)!r}, got {list(X.columns)!r}."
            )
        X = X.to_dask_array(lengths=True)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D dask array for X, got {X.ndim} dimensions.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    probe = np.asarray(_predict_chunk(np.zeros((1, X.shape[1]), dtype=dtype), est, method))
    meta = np.empty((0,) * probe.ndim, dtype=probe.dtype)
    if probe.ndim == 1:
        return X.map_blocks(_predict_chunk, est, method, drop_axis=1, dtype=probe.dtype, meta=meta)
    return X.map_blocks(_predict_chunk, est, method, chunks=(X.chunks[0], (probe.shape[1],)),
                        dtype=probe.dtype, meta=meta)
