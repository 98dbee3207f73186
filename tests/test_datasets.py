import numpy as np
import pytest

from sklearn_sparse_mlp.datasets import make_planted_mlp
from sklearn_sparse_mlp.metrics import psnr_score


def test_planted_model():
    X, y, (W1, W2) = make_planted_mlp(n_samples=500, n_features=7, n_hidden=5, n_nonzero=9,
                                      noise=0.0, random_state=0, return_coef=True)
    assert np.count_nonzero(W1) == 9 and W1.shape == (7, 5)
    np.testing.assert_allclose(y, np.maximum(X @ W1, 0).sum(axis=1))
    X2, Y2, (_, V2) = make_planted_mlp(n_samples=50, n_outputs=3, random_state=0, return_coef=True)
    assert Y2.shape == (50, 3) and V2.shape == (10, 3)
    with pytest.raises(ValueError, match="n_nonzero"):
        make_planted_mlp(n_features=2, n_hidden=2, n_nonzero=5)


def test_psnr():
    y = np.array([0.0, 1.0, 2.0])
    assert psnr_score(y, y) == np.inf
    np.testing.assert_allclose(psnr_score(y, y + 0.02), 10 * np.log10(4 / 0.0004))
