"""
=====================================================
Choosing the budget with SparseMLPRegressorCV
=====================================================

:class:`~sklearn_sparse_mlp.SparseMLPRegressorCV` searches the budget
``n_nonzero_coefs`` by cross-validation, like
:class:`~sklearn.linear_model.LassoCV` searches its penalty: one
warm-started path over the budgets per fold, the best mean score, and a
final fit at the chosen budget on all the data.  The chosen network reads
only a few of the features: ``feature_importances_`` says which, and
:class:`~sklearn.feature_selection.SelectFromModel` keeps them.
"""

# %%
# The search
# ----------
# Diabetes data (442 patients, 10 features), standardised in a pipeline; a
# hidden layer of 100 units; the default grid of 8 budgets from 0.5% to 20%
# of the 1100 fused weights; 5 shuffled folds.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectFromModel
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_sparse_mlp import SparseMLPRegressorCV

data = load_diabetes()
X, y, names = data.data, data.target, np.array(data.feature_names)
cv = KFold(n_splits=5, shuffle=True, random_state=0)
model = make_pipeline(StandardScaler(), SparseMLPRegressorCV(cv=cv, random_state=0, n_jobs=1))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(X, y)
reg = model[-1]
print("budgets tried:", reg.budgets_)
print("mean R^2 over the folds:", reg.mean_scores_.round(3))
print(f"chosen budget: {reg.n_nonzero_coefs_} ({reg.n_nonzero_} nonzero weights on "
      f"{reg.active_neurons_.size} units)")

# %%
# Score against budget
# --------------------
# Each thin line is one fold along its path; the thick line is their mean.
# Too few weights underfit, too many overfit these 442 samples.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
ax0.semilogx(reg.budgets_, reg.scores_path_, color="0.75", lw=1)
ax0.semilogx(reg.budgets_, reg.mean_scores_, "o-", color="C0", lw=2, label="mean over folds")
ax0.axvline(reg.n_nonzero_coefs_, color="C3", ls="--", label=f"chosen: {reg.n_nonzero_coefs_}")
ax0.set(xlabel="budget (nonzero weights)", ylabel="held-out R^2", title="SparseMLPRegressorCV")
ax0.legend()

# %%
# The selected features
# ---------------------
# A feature no nonzero weight reads has importance 0.  ``SelectFromModel``
# keeps the features above the mean importance.
order = np.argsort(reg.feature_importances_)
ax1.barh(names[order], reg.feature_importances_[order], color="C2")
ax1.set(xlabel="importance (sum of |weight| products over paths)", title="feature_importances_")
fig.tight_layout()
support = SelectFromModel(reg, prefit=True).get_support()
print("features read by the network:", names[reg.feature_importances_ > 0].tolist())
print("kept by SelectFromModel:", names[support].tolist())
plt.show()
