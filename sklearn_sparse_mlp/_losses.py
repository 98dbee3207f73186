"""Losses of the network's raw outputs.

Every loss works on raw predictions ``F`` (n x k, float64, the output
intercept included), targets ``Y`` (n x k) and normalised sample weights
``sw`` (n,, summing to one).  The solver only needs:

``value(F, Y, sw)``
    the loss, a float;
``gradient(F, Y, sw)``
    ``R = dL/dF`` (n x k), so that the gradient with respect to the fused
    weights is ``A^T R``;
``intercept(F0, Y, sw, b0)``
    the output intercept for predictions ``F0`` without it (optimal for the
    squared loss, a few safeguarded Newton steps otherwise);
``curvature``
    an upper bound of the second derivative of the loss with respect to one
    prediction (times the sample weight), used for the first trial step;
``hessian_weights(F, Y, sw)``
    the diagonal (per sample and output) of the loss's Hessian with respect
    to ``F``, times the sample weights: the weights of a Newton step;
``link(F)``
    the model's mean (probabilities for the classification losses);
``is_quadratic``
    whether exact line searches and conjugate gradients apply.

The classification losses never exponentiate a large positive number
(``logaddexp``, ``expit`` and a max-shifted log-sum-exp), so raw outputs of
any size give finite values and gradients.
"""

import numpy as np
from scipy.special import expit, log_expit

# Bound of the output intercept of the classification losses: a target
# column with a single class pushes it to infinity; this keeps it finite
# (a probability within 1e-21 of 0 or 1) without changing any decision.
_B_MAX = 48.0


class Loss:
    """Interface of a smooth convex loss of the raw network outputs."""

    is_quadratic = False
    curvature = 1.0

    def value(self, F, Y, sw):  # pragma: no cover - interface
        raise NotImplementedError

    def gradient(self, F, Y, sw):  # pragma: no cover - interface
        raise NotImplementedError

    def value_and_gradient(self, F, Y, sw):
        return self.value(F, Y, sw), self.gradient(F, Y, sw)

    def initial_intercept(self, Y, sw):
        return self.intercept(np.zeros_like(Y, dtype=np.float64), Y, sw, None)

    def intercept(self, F0, Y, sw, b0):  # pragma: no cover - interface
        raise NotImplementedError

    def hessian_weights(self, F, Y, sw):  # pragma: no cover - interface
        raise NotImplementedError

    def intercept_hessian(self, F, sw):  # pragma: no cover - interface
        """Hessian (k x k) of the loss with respect to the output intercept."""
        raise NotImplementedError

    def link(self, F):
        return F


class SquaredLoss(Loss):
    """``L = sum_i sw_i ||F_i - Y_i||^2 / 2`` (half the weighted mean squared error)."""

    is_quadratic = True
    curvature = 1.0

    def value(self, F, Y, sw):
        D = F - Y
        return 0.5 * float(sw @ np.einsum("ij,ij->i", D, D))

    def gradient(self, F, Y, sw):
        return sw[:, None] * (F - Y)

    def intercept(self, F0, Y, sw, b0):
        return sw @ (Y - F0)

    def hessian_weights(self, F, Y, sw):
        return np.repeat(sw[:, None], F.shape[1], axis=1)


def _newton_intercept(loss, F0, Y, sw, b0, n_steps=30, gtol=1e-10):
    """Output intercept by safeguarded Newton steps.

    Each step solves with the k x k Hessian of the loss in the intercept
    (pseudo-inverse: the softmax Hessian is singular along the all-ones
    direction, along which the gradient vanishes), is halved until the loss
    does not increase, and keeps the intercept in ``[-_B_MAX, _B_MAX]``.
    Stops when the largest gradient entry is below ``gtol`` (the weights sum
    to one, so that is a mean residual).
    """
    k = F0.shape[1]
    b = np.zeros(k) if b0 is None else np.clip(np.asarray(b0, dtype=np.float64), -_B_MAX, _B_MAX)
    F = F0 + b
    L = loss.value(F, Y, sw)
    for _ in range(n_steps):
        g = loss.gradient(F, Y, sw).sum(axis=0)
        if np.abs(g).max() <= gtol:
            break
        H = loss.intercept_hessian(F, sw)
        step = np.linalg.lstsq(H, g, rcond=1e-12)[0] if k > 1 else g / max(H[0, 0], 1e-300)
        step = np.clip(step, -8.0, 8.0)
        for _ in range(8):
            b_new = np.clip(b - step, -_B_MAX, _B_MAX)
            F_new = F0 + b_new
            L_new = loss.value(F_new, Y, sw)
            if L_new <= L:
                break
            step *= 0.25
        else:
            break  # no decrease along the Newton direction: at rounding level
        if np.array_equal(b_new, b):
            break
        b, F, L = b_new, F_new, L_new
    return b


class LogisticLoss(Loss):
    """Binary cross-entropy of logits, one independent output per column.

    ``L = sum_i sw_i sum_l [log(1 + exp(F_il)) - Y_il F_il]`` with targets
    in {0, 1} (two classes: one column; multilabel: one column per label).
    """

    curvature = 0.25

    def value(self, F, Y, sw):
        return float(sw @ (np.logaddexp(0.0, F) - Y * F).sum(axis=1))

    def gradient(self, F, Y, sw):
        return sw[:, None] * (expit(F) - Y)

    def hessian_weights(self, F, Y, sw):
        P = expit(F)
        return sw[:, None] * P * (1.0 - P)

    def link(self, F):
        return expit(F)

    def intercept_hessian(self, F, sw):
        P = expit(F)
        return np.diag(sw @ (P * (1.0 - P)))

    def initial_intercept(self, Y, sw):
        pbar = np.clip(sw @ Y, 1e-12, 1.0 - 1e-12)
        b0 = np.clip(np.log(pbar) - np.log1p(-pbar), -_B_MAX, _B_MAX)
        return self.intercept(np.zeros_like(Y, dtype=np.float64), Y, sw, b0)

    def intercept(self, F0, Y, sw, b0):
        return _newton_intercept(self, F0, Y, sw, b0)


def _log_softmax(F):
    Fm = F - F.max(axis=1, keepdims=True)
    return Fm - np.log(np.exp(Fm).sum(axis=1, keepdims=True))


class SoftmaxLoss(Loss):
    """Multinomial cross-entropy: ``L = -sum_i sw_i sum_l Y_il log softmax(F_i)_l``.

    Targets are one-hot rows.  The outputs are defined up to a common shift;
    the intercept is kept centred.
    """

    curvature = 0.5  # largest eigenvalue of diag(p) - p p^T

    def value(self, F, Y, sw):
        return float(-(sw @ (Y * _log_softmax(F)).sum(axis=1)))

    def gradient(self, F, Y, sw):
        return sw[:, None] * (np.exp(_log_softmax(F)) - Y)

    def hessian_weights(self, F, Y, sw):
        P = np.exp(_log_softmax(F))
        return sw[:, None] * P * (1.0 - P)

    def link(self, F):
        return np.exp(_log_softmax(F))

    def intercept_hessian(self, F, sw):
        P = np.exp(_log_softmax(F))
        return np.diag(sw @ P) - (P * sw[:, None]).T @ P

    def initial_intercept(self, Y, sw):
        logp = np.log(np.clip(sw @ Y, 1e-12, None))
        b0 = np.clip(logp - logp.mean(), -_B_MAX, _B_MAX)
        return self.intercept(np.zeros_like(Y, dtype=np.float64), Y, sw, b0)

    def intercept(self, F0, Y, sw, b0):
        b = _newton_intercept(self, F0, Y, sw, b0)
        return b - b.mean()


def sigmoid_log(F):
    """``log expit(F)`` without overflow (log-probabilities of logits)."""
    return log_expit(F)


def log_softmax(F):
    """Row-wise log-softmax without overflow."""
    return _log_softmax(F)


LOSSES = {"squared_error": SquaredLoss, "logistic": LogisticLoss, "softmax": SoftmaxLoss}
