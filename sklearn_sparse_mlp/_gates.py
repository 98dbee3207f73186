"""Counter-based generator vectors (gates).

The gate vector ``h_j`` of neuron ``j`` is a pure function of ``(seed, j)``:
every entry is obtained by hashing ``(seed, j, i)`` with SplitMix64 and
turning two 53-bit uniforms into one Gaussian by the Box-Muller formula.
Any neuron's gate can therefore be rebuilt in any order, on any thread,
bit-for-bit, and no ``d x p`` array of gates ever needs to be stored.

Dense gates draw every input coordinate from N(0, 1).  Feature-sparse gates
(``n_gate_features = m > 0``) draw ``m`` distinct input features per neuron
(a partial Fisher-Yates shuffle driven by the same hash) and leave the other
coordinates at zero.  When the last input column is the constant column
(``has_bias``), its coordinate is always drawn, so gate hyperplanes do not
all pass through the origin.
"""

import types

import numpy as np
from numba import njit, prange

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2 ** -53
_TWO_PI = 2.0 * np.pi


def serial_kernel(kernel):
    """A single-threaded compilation of a parallel kernel.

    Small inputs (one row block) run it: a parallel region costs a thread
    launch and a barrier, which on a loaded machine (an outer process pool,
    another program) can take milliseconds for microseconds of work.  The
    copy has its own name, hence its own cache entry.
    """
    fn = kernel.py_func
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__doc__ = fn.__doc__
    return njit(cache=True, nogil=True)(copy)


@njit(cache=True, inline="always")
def _mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _neuron_key(seed, j):
    return _mix64(_mix64(np.uint64(seed) + _GOLDEN) ^ (np.uint64(j) * _M1 + _GOLDEN))


@njit(cache=True, inline="always")
def _uniform(key, counter):
    """Uniform in the open interval (0, 1) from (key, counter)."""
    z = _mix64(key + (np.uint64(counter) + np.uint64(1)) * _GOLDEN)
    return (np.float64(z >> _S11) + 0.5) * _TWO_M53


@njit(cache=True, inline="always")
def _normal(key, i):
    u1 = _uniform(key, 2 * i)
    u2 = _uniform(key, 2 * i + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


@njit(cache=True)
def _gate_into(seed, j, n_inputs, has_bias, n_gate_features, out):
    """Write the random gate of neuron ``j`` into the 1-D array ``out``."""
    key = _neuron_key(seed, j)
    n_feat = n_inputs - 1 if has_bias else n_inputs
    if n_gate_features <= 0 or n_gate_features >= n_feat:
        for i in range(n_feat):
            out[i] = _normal(key, i)
    else:
        for i in range(n_feat):
            out[i] = 0.0
        # Partial Fisher-Yates shuffle on a local permutation; the draws use
        # counters beyond those of the Gaussian values.
        perm = np.arange(n_feat)
        base = 2 * n_inputs + 2
        for t in range(n_gate_features):
            u = _uniform(key, base + t)
            r = t + int(u * (n_feat - t))
            if r >= n_feat:
                r = n_feat - 1
            tmp = perm[t]
            perm[t] = perm[r]
            perm[r] = tmp
            out[perm[t]] = _normal(key, perm[t])
    if has_bias:
        out[n_inputs - 1] = _normal(key, n_inputs - 1)


@njit(cache=True, parallel=True)
def fill_gate_block(seed, j0, n_inputs, has_bias, n_gate_features, ov_neurons, ov_gates, H):
    """Gates of neurons ``j0 .. j0 + H.shape[1] - 1`` into ``H`` (n_inputs x c).

    Neurons listed in the sorted array ``ov_neurons`` take their column of
    ``ov_gates`` (n_inputs x m) instead of their random gate: these are the
    sequential gates of active neurons.
    """
    c = H.shape[1]
    m = ov_neurons.shape[0]
    for jj in prange(c):
        j = j0 + jj
        pos = np.searchsorted(ov_neurons, j) if m > 0 else 0
        if pos < m and ov_neurons[pos] == j:
            for i in range(n_inputs):
                H[i, jj] = ov_gates[i, pos]
        else:
            col = np.empty(n_inputs, dtype=np.float64)
            _gate_into(seed, j, n_inputs, has_bias, n_gate_features, col)
            for i in range(n_inputs):
                H[i, jj] = col[i]


fill_gate_block_serial = serial_kernel(fill_gate_block)


@njit(cache=True)
def fill_gates(seed, neurons, n_inputs, has_bias, n_gate_features, H):
    """Random gates of an arbitrary list of neurons into ``H`` (n_inputs x m)."""
    col = np.empty(n_inputs, dtype=np.float64)
    for jj in range(neurons.shape[0]):
        _gate_into(seed, neurons[jj], n_inputs, has_bias, n_gate_features, col)
        for i in range(n_inputs):
            H[i, jj] = col[i]


def random_gates(seed, neurons, n_inputs, has_bias, n_gate_features=0, dtype=np.float64):
    """Random gate vectors of ``neurons`` as an (n_inputs, len(neurons)) array."""
    neurons = np.ascontiguousarray(neurons, dtype=np.int64)
    H = np.empty((n_inputs, neurons.shape[0]), dtype=np.float64, order="F")
    fill_gates(np.int64(seed), neurons, n_inputs, has_bias, n_gate_features, H)
    return H.astype(dtype, copy=False)


class Gates:
    """The gates in force: random ones, except for units given their own.

    Unit ``j`` uses its random gate ``h_j(seed)`` unless it appears in
    ``units`` (sorted), in which case it uses the matching column of
    ``vectors`` (q x m, a sequential gate).  Small driver-side state: nothing
    here grows with the number of samples or with the width.
    """

    def __init__(self, seed, n_inputs, has_bias, n_gate_features=0):
        self.seed = np.int64(seed)
        self.q = int(n_inputs)
        self.has_bias = bool(has_bias)
        self.n_gate_features = int(n_gate_features or 0)
        self.units = np.zeros(0, dtype=np.int64)
        self.vectors = np.zeros((self.q, 0), dtype=np.float64, order="F")

    def set(self, units, vectors):
        """Replace the sequential gates (units sorted, vectors q x m)."""
        self.units = np.ascontiguousarray(units, dtype=np.int64)
        self.vectors = np.asfortranarray(vectors, dtype=np.float64).reshape(self.q, self.units.shape[0])

    def copy(self):
        out = Gates(self.seed, self.q, self.has_bias, self.n_gate_features)
        out.set(self.units.copy(), self.vectors.copy())
        return out

    def __call__(self, units):
        """Gate vectors (q x m, float64) of ``units`` as currently in force."""
        units = np.asarray(units, dtype=np.int64)
        if not (self.units.size and units.size):
            return random_gates(self.seed, units, self.q, self.has_bias, self.n_gate_features)
        pos = np.minimum(np.searchsorted(self.units, units), self.units.size - 1)
        hit = self.units[pos] == units
        # Random gates only for the units without their own (with sequential
        # gates, most of the active ones: drawing theirs too took a third of
        # a fit on 5000 sparse features).
        H = np.empty((self.q, units.size), dtype=np.float64, order="F")
        H[:, hit] = self.vectors[:, pos[hit]]
        if not hit.all():
            H[:, ~hit] = random_gates(self.seed, units[~hit], self.q, self.has_bias, self.n_gate_features)
        return H

    def fill_chunk(self, j0, H, parallel):
        """Gates of units ``j0 .. j0 + H.shape[1] - 1`` into ``H`` (q x c)."""
        fill = fill_gate_block if parallel else fill_gate_block_serial
        fill(self.seed, j0, self.q, self.has_bias, self.n_gate_features, self.units, self.vectors, H)
