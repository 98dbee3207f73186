"""Label handling shared by the classifiers (IHT and IMP).

Targets are turned into the float matrix ``Y`` a loss works on, the way
:class:`~sklearn.neural_network.MLPClassifier` does: two classes give one
column of 0/1, more classes a one-hot matrix, a multilabel indicator matrix
stays as it is.  The raw outputs ``F`` (n x k) map back to probabilities and
labels here too, so that every classifier of the package reads the same.
"""

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from ._losses import LogisticLoss, SoftmaxLoss, SquaredLoss, log_softmax, sigmoid_log


class TargetEncoder:
    """Encode classification targets; decode outputs to labels and probabilities.

    Attributes
    ----------
    classes_ : ndarray
        Class labels (multilabel: ``arange(n_labels)``).
    target_type_ : {"binary", "multiclass", "multilabel-indicator"}
    n_outputs_ : int
        Columns of the encoded targets (1 for two classes).
    """

    def fit(self, y):
        check_classification_targets(y)
        target_type = type_of_target(y, input_name="y")
        if target_type not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(
                f"Unsupported target type {target_type!r}: expected binary, multiclass "
                "or multilabel-indicator targets."
            )
        self._binarizer = LabelBinarizer().fit(y)
        self.classes_ = self._binarizer.classes_
        if target_type != "multilabel-indicator" and self.classes_.size < 2:
            label = self.classes_[0]
            label = label.item() if isinstance(label, np.generic) else label
            raise ValueError(
                f"The target holds only one class ({label!r}): a classifier "
                "needs samples of at least 2 classes."
            )
        self.target_type_ = target_type
        self.n_outputs_ = 1 if target_type == "binary" else int(self.classes_.size)
        return self

    def transform(self, y):
        """Targets as the float64 matrix ``Y`` (n x n_outputs_)."""
        return np.asarray(self._binarizer.transform(y), dtype=np.float64).reshape(-1, self.n_outputs_)

    def loss(self, name):
        """The loss object for ``name`` in {"log_loss", "squared_error"}."""
        if name == "squared_error":
            return SquaredLoss()
        if self.target_type_ == "multiclass":
            return SoftmaxLoss()
        return LogisticLoss()

    def sample_weight(self, class_weight, y):
        """Per-sample multipliers of ``class_weight`` (None, "balanced" or dict)."""
        if class_weight is None:
            return None
        if self.target_type_ == "multilabel-indicator":
            if class_weight != "balanced":
                raise ValueError(
                    "class_weight for multilabel targets must be None or 'balanced' "
                    "(a dict would need one entry per label and per value)."
                )
            Y = np.asarray(self._binarizer.transform(y))
            return compute_sample_weight("balanced", Y)
        if isinstance(class_weight, dict):
            unknown = set(class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight names labels that are not in the data: {sorted(unknown, key=str)!r}; "
                    f"the classes are {self.classes_.tolist()!r}."
                )
        return compute_sample_weight(class_weight, y)

    def proba(self, F, loss_name):
        """Probabilities from raw outputs F (n x n_outputs_).

        Binary targets give two columns, multiclass rows sum to one, and
        multilabel gives one probability per label.  For the squared loss the
        outputs are clipped to [0, 1] (and rows normalised for multiclass).
        """
        F = np.asarray(F, dtype=np.float64)
        if loss_name == "squared_error":
            P = np.clip(F, 0.0, 1.0)
        elif self.target_type_ == "multiclass":
            P = SoftmaxLoss().link(F)
        else:
            P = LogisticLoss().link(F)
            if self.target_type_ == "binary":
                # expit(-F) rather than 1 - expit(F): no cancellation.
                return np.hstack([LogisticLoss().link(-F), P])
        if self.target_type_ == "binary":
            return np.hstack([1.0 - P, P])
        if self.target_type_ == "multiclass" and loss_name == "squared_error":
            total = P.sum(axis=1, keepdims=True)
            empty = total[:, 0] <= 0
            P[empty] = 1.0
            total[empty] = P.shape[1]
            P = P / total
        return P

    def log_proba(self, F, loss_name):
        """Log-probabilities from raw outputs, computed without overflow."""
        F = np.asarray(F, dtype=np.float64)
        if loss_name == "squared_error":
            with np.errstate(divide="ignore"):
                return np.log(self.proba(F, loss_name))
        if self.target_type_ == "multiclass":
            return log_softmax(F)
        if self.target_type_ == "binary":
            return np.hstack([sigmoid_log(-F), sigmoid_log(F)])
        return sigmoid_log(F)

    def decision(self, F, loss_name):
        """Decision function: positive means the class (or label) is predicted."""
        F = np.asarray(F, dtype=np.float64)
        if loss_name == "squared_error" and self.target_type_ != "multiclass":
            F = F - 0.5
        return F[:, 0] if self.target_type_ == "binary" else F

    def predict(self, F, loss_name):
        """Labels from raw outputs F."""
        F = np.asarray(F, dtype=np.float64)
        if self.target_type_ == "multiclass":
            return self.classes_[np.argmax(F, axis=1)]
        threshold = 0.5 if loss_name == "squared_error" else 0.0
        if self.target_type_ == "binary":
            return self.classes_[(F[:, 0] > threshold).astype(int)]
        return (F > threshold).astype(int)
