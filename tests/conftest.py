"""Shared test helpers."""

import numpy as np
import pytest


def _central_differences(objective, arrays, eps=1e-6):
    """Central differences of ``objective()`` with respect to every entry of
    each array of ``arrays`` (changed in place and restored)."""
    out = []
    for a in arrays:
        fd = np.empty_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = objective()
            a[i] = old - eps
            down = objective()
            a[i] = old
            fd[i] = (up - down) / (2 * eps)
        out.append(fd)
    return out


@pytest.fixture
def central_differences():
    """``central_differences(objective, arrays)``: the finite-difference gradients."""
    return _central_differences
