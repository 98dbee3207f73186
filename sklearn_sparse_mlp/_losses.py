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
``is_quadratic``
    whether exact line searches and conjugate gradients apply.
"""

import numpy as np


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


LOSSES = {"squared_error": SquaredLoss}
