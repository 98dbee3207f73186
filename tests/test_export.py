"""Reading a fitted network: feature importances, export to MLP and to ONNX."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import RFE, SelectFromModel
from sklearn.inspection import permutation_importance
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import IMPClassifier, IMPRegressor, SparseMLPClassifier, SparseMLPRegressor
from sklearn_sparse_mlp._export import mlp_regressor, path_importances


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _multi_output():
    X, Y = make_regression(300, 8, n_targets=3, n_informative=4, random_state=0)
    return StandardScaler().fit_transform(X), Y / Y.std()


def test_feature_importances_are_the_path_norm_of_the_network():
    X, y = _diabetes()
    reg = SparseMLPRegressor(15, random_state=0).fit(X, y)
    imp = reg.feature_importances_
    assert imp.shape == (10,) and np.isclose(imp.sum(), 1.0) and np.all(imp >= 0)
    np.testing.assert_allclose(imp, path_importances(reg.coefs_))
    # Exactly the features some nonzero first-layer weight reads.
    np.testing.assert_array_equal(imp > 0, np.any(reg.coefs_[0] != 0, axis=1))
    assert 0 < np.count_nonzero(imp) < 10
    # Fused blocks (several outputs): the absolute fused weights of each input.
    X, Y = _multi_output()
    reg = SparseMLPRegressor(40, hidden_layer_sizes=(10,), output_coupling="fused", random_state=0).fit(X, Y)
    W = abs(reg.fused_coef_.toarray()).reshape(10, 9, 3)[:, :8].sum(axis=(0, 2))
    np.testing.assert_allclose(reg.feature_importances_, W / W.sum())
    # IMP: the same definition through every layer.
    imp_reg = IMPRegressor(60, hidden_layer_sizes=(10, 5), random_state=0).fit(X, Y)
    M = abs(imp_reg.coefs_[0]) @ abs(imp_reg.coefs_[1]) @ abs(imp_reg.coefs_[2])
    np.testing.assert_allclose(imp_reg.feature_importances_, M.sum(1) / M.sum())


def test_select_from_model_rfe_and_permutation_importance():
    X, y = load_diabetes(return_X_y=True)
    # The case of the issue: coef_ was read as one weight per feature.
    sel = make_pipeline(StandardScaler(), SelectFromModel(SparseMLPRegressor(20, random_state=0))).fit(X, y)
    used = sel[-1].estimator_.feature_importances_ > 0
    kept = sel.transform(X)
    assert kept.shape[0] == X.shape[0] and 1 <= kept.shape[1] <= used.sum()
    assert not hasattr(sel[-1].estimator_, "coef_")
    Xs = StandardScaler().fit_transform(X)
    rfe = RFE(SparseMLPRegressor(20, hidden_layer_sizes=(20,), random_state=0), n_features_to_select=4,
              step=3).fit(Xs, y)
    assert rfe.support_.sum() == 4 and rfe.transform(Xs).shape == (442, 4)
    pipe = make_pipeline(StandardScaler(), SparseMLPRegressor(20, random_state=0)).fit(X, y)
    perm = permutation_importance(pipe, X, y, n_repeats=3, random_state=0)
    reg = pipe[-1]
    # A feature the network does not read cannot matter.
    assert np.all(perm.importances[reg.feature_importances_ == 0] == 0)
    assert perm.importances_mean[np.argmax(reg.feature_importances_)] > 0.01


@pytest.mark.parametrize("coupling", ["fused", "shared"])
def test_to_mlp_regressor(coupling):
    X, y = _diabetes()
    reg = SparseMLPRegressor(20, output_coupling=coupling, random_state=0).fit(X, y)
    mlp = reg.to_mlp()
    assert isinstance(mlp, MLPRegressor) and mlp.n_features_in_ == 10
    np.testing.assert_allclose(mlp.predict(X), reg.predict(X), rtol=1e-10, atol=1e-10 * abs(y).max())
    assert mlp.coefs_[0].shape[1] == reg.active_neurons_.size
    # Several outputs: the shared coupling (the default there) is a ReLU MLP,
    # the fused one is not.
    X, Y = _multi_output()
    reg = SparseMLPRegressor(40, hidden_layer_sizes=(10,), random_state=0).fit(X, Y)
    np.testing.assert_allclose(reg.to_mlp().predict(X), reg.predict(X), atol=1e-10)
    with pytest.raises(ValueError, match="output_coupling='shared'"):
        SparseMLPRegressor(40, hidden_layer_sizes=(10,), output_coupling="fused", random_state=0).fit(X, Y).to_mlp()
    with pytest.raises(ValueError, match="gate_update='fixed'"):
        SparseMLPRegressor(40, gate_update="fixed", random_state=0).fit(*_diabetes()).to_mlp()


def test_to_mlp_without_active_units():
    X, y = _diabetes()
    reg = SparseMLPRegressor(5, random_state=0).fit(X, y)
    # A network with no active unit (e.g. fitted to a constant) becomes one
    # unit of zero weights: MLPs need a width of at least one.
    mlp = mlp_regressor(reg, [np.zeros((10, 0)), np.zeros((0, 1))], [np.zeros(0), np.array([3.0])])
    assert mlp.coefs_[0].shape == (10, 1)
    np.testing.assert_array_equal(mlp.predict(X), 3.0)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "multilabel"])
def test_to_mlp_classifier(kind):
    if kind == "binary":
        X, y = load_breast_cancer(return_X_y=True)
    else:
        X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if kind == "strings":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    if kind == "multilabel":
        y = np.c_[y == 0, y == 1, X[:, 0] > 0].astype(int)
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(20,), random_state=0).fit(X, y)
    mlp = clf.to_mlp()
    assert isinstance(mlp, MLPClassifier)
    np.testing.assert_array_equal(mlp.classes_, clf.classes_)
    np.testing.assert_array_equal(mlp.predict(X), clf.predict(X))
    np.testing.assert_allclose(mlp.predict_proba(X), clf.predict_proba(X), atol=1e-12)
    with pytest.raises(ValueError, match="loss='log_loss'"):
        SparseMLPClassifier(40, hidden_layer_sizes=(20,), loss="squared_error", random_state=0).fit(X, y).to_mlp()


def test_imp_to_mlp():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = IMPClassifier(40, hidden_layer_sizes=(10, 6), random_state=0).fit(X, y)
    mlp = clf.to_mlp()
    np.testing.assert_allclose(mlp.predict_proba(X), clf.predict_proba(X), atol=1e-12)
    X, Y = _multi_output()
    reg = IMPRegressor(60, hidden_layer_sizes=(10,), random_state=0).fit(X, Y)
    np.testing.assert_allclose(reg.to_mlp().predict(X), reg.predict(X), atol=1e-12)


def _onnx_outputs(model, X):
    skl2onnx = pytest.importorskip("skl2onnx")
    rt = pytest.importorskip("onnxruntime")
    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    onx = skl2onnx.to_onnx(model, X[:1].astype(np.float32), options=options)
    sess = rt.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})


def test_onnx_export_matches_predict():
    X, y = _diabetes()
    reg = SparseMLPRegressor(20, random_state=0).fit(X, y)
    (out,) = _onnx_outputs(reg.to_mlp(), X)
    np.testing.assert_allclose(out.ravel(), reg.predict(X), rtol=1e-4, atol=1e-4 * abs(y).max())
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = SparseMLPClassifier(40, hidden_layer_sizes=(20,), random_state=0).fit(X, y)
    labels, proba = _onnx_outputs(clf.to_mlp(), X)
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(labels, clf.predict(X))
