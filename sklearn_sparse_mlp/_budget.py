"""One definition of the budget for every estimator of the package.

A budget of ``s`` means a ReLU network with at most ``s`` nonzero
parameters among those that are counted:

- every hidden layer's weights **and biases**;
- the output layer's weights when the network has **several outputs**;
- never the output intercepts.

With one output, the output weights are not counted because they carry no
capacity of their own: ReLU is positively homogeneous, so a unit's output
weight ``a`` can be folded into its incoming weights and bias
(``a relu(z) = sign(a) relu(|a| z)``), leaving only a sign.  The IHT
estimators train exactly that folded form (the fused weights); IMP prunes
and counts the same parameters, so that one budget is one network size for
both.  The IHT estimators' ``output_coupling="fused"`` with several outputs
is not a plain ReLU network: there every entry of every unit's fused block
counts.
"""

import numbers

import numpy as np


def counts_output_weights(n_outputs):
    """Whether the output weights count (and IMP prunes them): several outputs only."""
    return int(n_outputs) > 1


def counted_nonzeros(coefs, intercepts):
    """Nonzero counted parameters of a network (``coefs_``, ``intercepts_``
    as MLPRegressor's): hidden weights and biases, and the output weights
    for several outputs (``counted_size``'s parameters)."""
    hidden = sum(np.count_nonzero(W) for W in coefs[:-1]) + sum(np.count_nonzero(b) for b in intercepts[:-1])
    return int(hidden + (np.count_nonzero(coefs[-1]) if counts_output_weights(coefs[-1].shape[1]) else 0))


def counted_size(layer_sizes, hidden_biases=True):
    """Number of counted parameters of the dense network of ``layer_sizes``.

    ``layer_sizes`` is ``[n_inputs, hidden..., n_outputs]``; ``hidden_biases``
    says whether the hidden layers have biases.  This is what a fractional
    budget is a fraction of.
    """
    sizes = [int(m) for m in layer_sizes]
    extra = 1 if hidden_biases else 0
    size = sum((a + extra) * b for a, b in zip(sizes[:-2], sizes[1:-1]))
    if counts_output_weights(sizes[-1]):
        size += sizes[-2] * sizes[-1]
    return size


def counted_name(n_outputs):
    """What ``counted_size`` counts, in words (for error messages)."""
    return ("counted parameters (hidden weights and biases"
            + (", output weights)" if counts_output_weights(n_outputs) else ")"))


def resolve_budget(n_nonzero_coefs, size, what="counted parameters"):
    """Integer budget from an int (a count, at most ``size``) or a float in
    (0, 1] (a fraction of ``size``, rounded up, at least 1)."""
    if isinstance(n_nonzero_coefs, numbers.Integral):
        s = int(n_nonzero_coefs)
        if s > size:
            raise ValueError(
                f"n_nonzero_coefs={s} is larger than the network, which has {size} {what}. "
                "Lower n_nonzero_coefs or widen hidden_layer_sizes."
            )
        return s
    return max(1, int(np.ceil(float(n_nonzero_coefs) * size)))
