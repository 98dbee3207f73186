"""scikit-learn's estimator checks on every estimator of the package."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_sparse_mlp import SparseMLPRegressor

ESTIMATORS = [SparseMLPRegressor(hidden_layer_sizes=(20,), max_iter=20, random_state=0)]

# Every expected failure must say why.
EXPECTED_FAILED = {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
