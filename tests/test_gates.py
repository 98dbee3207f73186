"""Counter-based gates: any unit's gate, in any order, bit for bit."""

import numpy as np

from sklearn_sparse_mlp._gates import Gates, random_gates


def test_gates_are_counter_based():
    # Any unit's gate is the same whatever the order or batch it is drawn in.
    all_g = random_gates(7, np.arange(50), 11, True)
    some = random_gates(7, np.array([42, 3, 17]), 11, True)
    np.testing.assert_array_equal(all_g[:, [42, 3, 17]], some)
    assert not np.array_equal(random_gates(8, np.arange(3), 11, True), all_g[:, :3])
    # Roughly standard normal entries.
    big = random_gates(0, np.arange(20000), 10, False)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01


def test_sparse_gates_have_few_features():
    H = random_gates(0, np.arange(100), 21, True, 3)
    nnz_features = (H[:-1] != 0).sum(axis=0)
    assert np.all(nnz_features == 3)
    assert np.all(H[-1] != 0)  # the bias coordinate is always drawn


def test_sequential_gates_override_random_ones():
    gates = Gates(5, 4, True)
    own = np.arange(8.0).reshape(4, 2)
    gates.set(np.array([3, 9]), own)
    H = gates(np.array([1, 3, 9]))
    np.testing.assert_array_equal(H[:, 1:], own)
    np.testing.assert_array_equal(H[:, 0], random_gates(5, np.array([1]), 4, True)[:, 0])
    # The chunk filler (serial and parallel) gives the same gates.
    for parallel in (False, True):
        C = np.empty((4, 12))
        gates.fill_chunk(0, C, parallel)
        np.testing.assert_array_equal(C, gates(np.arange(12)))
    # A copy does not share the overrides.
    other = gates.copy()
    other.set(np.zeros(0, np.int64), np.zeros((4, 0)))
    np.testing.assert_array_equal(gates(np.array([3]))[:, 0], own[:, 0])
