"""Reading a fitted network: feature importances and export to scikit-learn's MLP.

Shared by the IHT and IMP estimators, which both describe a plain ReLU
network by ``coefs_`` and ``intercepts_`` in MLPRegressor's layout.
"""

import copy

import numpy as np


def _alpha(est):
    """The L2 strength of the fitted estimator (``alpha_`` when chosen)."""
    alpha = getattr(est, "alpha_", getattr(est, "alpha", 1e-4))
    return float(alpha) if alpha != "auto" else 1.0


def path_importances(coefs):
    """Feature importances of a network given by its weight matrices.

    The importance of input ``f`` is the sum over every path from ``f`` to
    an output of the product of the absolute weights along it (row ``f`` of
    ``|W_1| |W_2| ... |W_L|``, summed over the outputs), normalised to sum to
    one.  A feature no nonzero weight reads has importance 0; for a
    one-hidden-layer network it is ``sum_j |u_fj| ||v_j||_1``.
    """
    M = np.abs(np.asarray(coefs[0], dtype=np.float64))
    for W in coefs[1:]:
        M = M @ np.abs(np.asarray(W, dtype=np.float64))
    imp = M.sum(axis=1)
    total = imp.sum()
    return imp / total if total > 0 else imp


def _mlp_attributes(mlp, est, coefs, intercepts, out_activation):
    """Set the fitted attributes MLPRegressor/MLPClassifier's predict reads."""
    d = est.n_features_in_
    coefs = [np.array(W, dtype=np.float64) for W in coefs]
    intercepts = [np.array(b, dtype=np.float64) for b in intercepts]
    if coefs[0].shape[1] == 0:
        # No active unit: one unit with zero weights (MLPs need a width >= 1).
        coefs = [np.zeros((d, 1)), np.zeros((1, coefs[-1].shape[1]))]
        intercepts = [np.zeros(1), intercepts[-1]]
    mlp.set_params(hidden_layer_sizes=tuple(W.shape[1] for W in coefs[:-1]))
    mlp.coefs_ = coefs
    mlp.intercepts_ = intercepts
    mlp.n_layers_ = len(coefs) + 1
    mlp.n_outputs_ = coefs[-1].shape[1]
    mlp.out_activation_ = out_activation
    mlp.n_features_in_ = d
    if hasattr(est, "feature_names_in_"):
        mlp.feature_names_in_ = est.feature_names_in_.copy()
    mlp.n_iter_ = int(getattr(est, "n_iter_", 0))
    mlp.t_ = 0
    mlp.loss_ = float(getattr(est, "loss_", np.nan))
    mlp.loss_curve_ = list(getattr(est, "loss_curve_", []))
    mlp.best_loss_ = None if mlp.early_stopping else mlp.loss_
    return mlp


def mlp_regressor(est, coefs, intercepts):
    """A fitted MLPRegressor computing the network ``(coefs, intercepts)``."""
    from sklearn.neural_network import MLPRegressor

    mlp = MLPRegressor(activation="relu", alpha=_alpha(est),
                       random_state=getattr(est, "random_state", None))
    return _mlp_attributes(mlp, est, coefs, intercepts, "identity")


def mlp_classifier(est, coefs, intercepts, binarizer, out_activation):
    """A fitted MLPClassifier computing the network ``(coefs, intercepts)``
    with the labels of ``binarizer`` (a fitted LabelBinarizer)."""
    from sklearn.neural_network import MLPClassifier

    if out_activation not in ("logistic", "softmax"):
        raise ValueError(
            "to_mlp needs the log loss: MLPClassifier turns outputs into probabilities by a "
            "sigmoid or a softmax, while a network fitted with loss='squared_error' clips its "
            "outputs. Fit with loss='log_loss' to export."
        )
    mlp = MLPClassifier(activation="relu", alpha=_alpha(est),
                        random_state=getattr(est, "random_state", None))
    _mlp_attributes(mlp, est, coefs, intercepts, out_activation)
    mlp._label_binarizer = copy.deepcopy(binarizer)
    mlp.classes_ = mlp._label_binarizer.classes_
    return mlp
