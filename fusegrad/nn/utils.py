"""``fusegrad.nn.utils``: gradient clipping, as ``torch.nn.utils`` does it.

Both functions are tensor code with no Python decisions on values, so a compiled training
step that clips its gradients stays one graph.
"""

from __future__ import annotations

import math

from fusegrad import ops
from fusegrad.autograd.grad_mode import no_grad
from fusegrad.tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


@no_grad()
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    Returns:
        The total norm of the gradients before clipping (a 0-d tensor).
    """
    grads = _grads(parameters)
    if not grads:
        return ops.zeros(())
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = ops.amax(ops.stack([ops.amax(ops.abs(g)) for g in grads]))
    else:
        total = ops.pow(ops.sum(ops.stack(
            [ops.sum(ops.pow(ops.abs(g), norm_type)) for g in grads])), 1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):  # a value check: eager only
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = ops.clamp(ops.div(max_norm, ops.add(total, 1e-6)), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total


@no_grad()
def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    for g in _grads(parameters):
        g.clamp_(min=-clip_value, max=clip_value)
