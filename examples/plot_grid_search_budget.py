"""
======================================================
Choosing the budget: GridSearchCV over n_nonzero_coefs
======================================================

The budget ``n_nonzero_coefs`` is the main hyperparameter of
:class:`~sklearn_sparse_mlp.SparseMLPRegressor`: too few weights underfit, too
many overfit a small data set.  Because the estimator follows the scikit-learn
API, :class:`~sklearn.model_selection.GridSearchCV` tunes it like any other
parameter, here inside a pipeline on the diabetes data, and its
``cv_results_`` give the score-against-budget curve.
"""

# %%
# The search
# ----------
# Five-fold cross-validation over budgets from 2 to 100 nonzero weights, for a
# hidden layer of 100 units (whose dense first layer would hold
# ``100 x (10 + 1) = 1100`` weights and biases).  ``return_train_score``
# keeps the training scores too.
#
# With the default sequential gates the optimisation path is not monotone
# (each gate update changes the activation patterns), and on this small data
# set the larger budgets run to ``max_iter`` and raise a
# :class:`~sklearn.exceptions.ConvergenceWarning`; the fit then returns the
# best exact ReLU network met along the path.  The warnings are silenced here.
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPRegressor

X, y = load_diabetes(return_X_y=True)
cv = KFold(n_splits=5, shuffle=True, random_state=0)
pipe = make_pipeline(
    StandardScaler(),
    SparseMLPRegressor(hidden_layer_sizes=(100,), random_state=0, n_jobs=1),
)
budgets = [2, 5, 10, 20, 50, 100]
search = GridSearchCV(
    pipe,
    {"sparsemlpregressor__n_nonzero_coefs": budgets},
    cv=cv,
    return_train_score=True,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X, y)
best = search.best_params_["sparsemlpregressor__n_nonzero_coefs"]
print(f"best budget: {best}, CV R^2 = {search.best_score_:.3f}")
reg = search.best_estimator_[-1]
print(
    f"refitted on all data: {reg.n_nonzero_} nonzero weights "
    f"on {reg.active_neurons_.size} units"
)

# %%
# A linear reference: ridge regression on the same folds.
ridge_pipe = make_pipeline(StandardScaler(), RidgeCV())
ridge = cross_val_score(ridge_pipe, X, y, cv=cv).mean()
print(f"RidgeCV: CV R^2 = {ridge:.3f}")

# %%
# Score against budget
# --------------------
# The cross-validated score rises up to a budget of ten to twenty weights,
# close to ridge regression (the diabetes target is nearly linear in the
# features), and falls beyond, with a growing spread across the folds: the
# larger networks overfit some of them.  The training score stays near 0.5
# (the target is noisy), so the budget is best chosen on the validation
# score, as the search does.
res = search.cv_results_
fig, ax = plt.subplots(figsize=(7, 4.2))
for kind, color in (("test", "C0"), ("train", "C1")):
    mean, std = res[f"mean_{kind}_score"], res[f"std_{kind}_score"]
    label = "cross-validated" if kind == "test" else "training"
    ax.plot(budgets, mean, "o-", color=color, label=f"{label} R$^2$")
    ax.fill_between(budgets, mean - std, mean + std, color=color, alpha=0.2)
ax.axhline(ridge, color="0.4", ls="--", label="RidgeCV (cross-validated)")
ax.axvline(best, color="C0", ls=":", lw=1)
ax.set_xscale("log")
ax.set_xticks(budgets, [str(b) for b in budgets])
ax.set(
    xlabel="n_nonzero_coefs (budget of nonzero weights)",
    ylabel="R$^2$",
    title="SparseMLPRegressor(hidden_layer_sizes=(100,)) on diabetes",
)
ax.legend(loc="lower left")
fig.tight_layout()
plt.show()
