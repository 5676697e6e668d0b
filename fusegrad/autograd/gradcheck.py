"""Finite-difference gradient check (float64), independent of any other autograd."""

from __future__ import annotations

import warnings

import torch

from fusegrad.autograd.api import grad
from fusegrad.dispatch import full
from fusegrad.tensor import Tensor


class GradcheckError(RuntimeError):
    pass


def _flat_outputs(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor)]


def _unravel(k, shape):
    """The index of flat (row-major) element ``k`` of a tensor of ``shape``."""
    at = []
    for s in reversed(shape):
        at.append(k % s)
        k //= s
    return tuple(reversed(at))


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, fast_mode=False, **_):
    """Compare ``func``'s analytical Jacobian (from backward) with central differences.

    Returns True, or raises :class:`GradcheckError` naming the output/input pair that differs.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of the them have requires_grad=True.")
    for i in diff:
        if inputs[i].dtype != torch.float64:
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating "
                          "point. This check will likely fail if all the inputs are not of "
                          "double precision floating point. ")
    outs = _flat_outputs(func(*inputs))
    for o_idx, out in enumerate(outs):
        n_out = out.numel()
        for i in diff:
            x = inputs[i]
            n_in = x.numel()
            numerical = torch.zeros(n_in, n_out, dtype=torch.float64)
            data = x._data  # perturbed in place, element by element (any strides)
            for k in range(n_in):
                at = _unravel(k, data.shape)
                orig = data[at].item()
                data[at] = orig + eps
                plus = _flat_outputs(func(*inputs))[o_idx]._data.reshape(-1).double().clone()
                data[at] = orig - eps
                minus = _flat_outputs(func(*inputs))[o_idx]._data.reshape(-1).double().clone()
                data[at] = orig
                numerical[k] = (plus - minus) / (2 * eps)
            analytical = torch.zeros(n_in, n_out, dtype=torch.float64)
            if out.requires_grad:
                for j in range(n_out):
                    g = torch.zeros(n_out, dtype=out.dtype)
                    g[j] = 1
                    res = grad(out, x, Tensor._make(g.reshape(out.shape)),
                                        retain_graph=True, allow_unused=True)[0]
                    if res is not None:
                        analytical[:, j] = res._data.reshape(-1).double()
            if not torch.allclose(analytical, numerical, rtol, atol):
                if not raise_exception:
                    return False
                raise GradcheckError(
                    f"Jacobian mismatch for output {o_idx} with respect to input {i},\n"
                    f"numerical:{numerical}\nanalytical:{analytical}\n")
    return True


def gradgradcheck(func, inputs, grad_outputs=None, **kwargs):
    """Second-order check: gradcheck of the function that returns first-order gradients."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)

    def first_order(*xs):
        outs = _flat_outputs(func(*xs))
        gs = [full(o.shape, 1, o.dtype, o.device) for o in outs] if grad_outputs is None \
            else grad_outputs
        d = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
        return grad(outs, d, gs, create_graph=True, allow_unused=True)

    return gradcheck(first_order, inputs, **kwargs)
