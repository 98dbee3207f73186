"""Longer checks, run by CI with ``-m slow`` (kept out of the default run)."""

import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import IMPClassifier, SparseMLPClassifier, SparseMLPRegressor
from sklearn_sparse_mlp.datasets import make_planted_mlp
from sklearn_sparse_mlp.metrics import psnr_score

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def test_digits_at_a_tenth_of_the_weights(digits):
    # 10% of a dense (100,) MLP's 7400 weights.
    X_tr, X_te, y_tr, y_te = digits
    clf = make_pipeline(StandardScaler(), SparseMLPClassifier(740, random_state=0)).fit(X_tr, y_tr)
    assert clf[-1].n_nonzero_ <= 740
    assert clf.score(X_te, y_te) >= 0.95


def test_imp_digits_at_a_tenth_of_the_weights(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = make_pipeline(StandardScaler(), IMPClassifier(n_nonzero_coefs=0.1, random_state=0)).fit(X_tr, y_tr)
    # A tenth of the dense network's 65 * 100 + 100 * 10 counted parameters
    # (hidden weights and biases, output weights: the package's one budget).
    assert clf[-1].n_nonzero_ == 750
    assert clf.score(X_te, y_te) >= 0.93


def test_planted_recovery_larger():
    X, y = make_planted_mlp(n_samples=12000, n_features=50, n_hidden=20, n_nonzero=40, random_state=1)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=2000, random_state=0)
    # A noiseless planted network is interpolation: no L2 penalty (with the
    # default alpha=1.0 this fit lands at 38 dB, see SparseMLPRegressor's alpha).
    reg = SparseMLPRegressor(40, hidden_layer_sizes=(20,), max_iter=200, alpha=1e-4, random_state=0).fit(X_tr, y_tr)
    assert reg.n_nonzero_ <= 40
    assert psnr_score(y_te, reg.predict(X_te)) >= 40
