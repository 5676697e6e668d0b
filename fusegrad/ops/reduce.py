"""Reductions: sums, means, max/min with their indices, softmax and norms, and ``all``/``any``
(which need the values in Python)."""

from __future__ import annotations

import math
from collections import namedtuple

from fusegrad import primitives as P
from fusegrad._util import dtypes
from fusegrad.autograd.grad_mode import _mode
from fusegrad.autograd.names import composite
from fusegrad.dispatch import apply
from fusegrad.ops.creation import iota
from fusegrad.ops.movement import _dims_arg, reshape, squeeze, unsqueeze
from fusegrad.ops.pointwise import (add, cast, div, eq, exp, log, maximum, minimum, mul, neg,
                                    sqrt, sub, where)
from fusegrad.primitives import check, normalize_dims
from fusegrad.tensor import Tensor

__all__ = ["sum", "mean", "amax", "amin", "return_types", "argmax", "argmin", "max", "min",
           "softmax", "log_softmax", "logsumexp", "norm", "all", "any"]


def sum(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return apply(P.sum_, x, dims=None, keepdim=False)
    return apply(P.sum_, x, dims=_dims_arg(dim), keepdim=keepdim)


def _mean(x, dim=None, keepdim=False):
    dims = normalize_dims("mean", _dims_arg(dim), x.dim())
    n = math.prod(x.shape[d] for d in dims) if x.dim() else 1
    s = apply(P.sum_, x, dims=None if dim is None else dims, keepdim=keepdim)
    return apply(P.div, s, n)


_mean_all = composite("MeanBackward0", saves=False)(_mean)
_mean_dim = composite("MeanBackward1", saves=False)(_mean)


def mean(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    check(x.dtype.is_floating_point or x.dtype.is_complex,
          lambda: f"mean(): could not infer output dtype. Input dtype must be either a floating "
          f"point or complex dtype. Got: {dtypes.scalar_type(x.dtype)}")
    if dim is None:
        return _mean_all(x)
    return _mean_dim(x, dim, keepdim)


def amax(x, dim=(), keepdim=False):
    dims = None if dim == () or dim is None else _dims_arg(dim)
    return apply(P.amax, x, dims=dims, keepdim=keepdim)


def amin(x, dim=(), keepdim=False):
    dims = None if dim == () or dim is None else _dims_arg(dim)
    return apply(P.amin, x, dims=dims, keepdim=keepdim)


def _return_type(name):
    """A (values, indices) named tuple that prints as PyTorch's ``torch.return_types.<name>``."""

    def __repr__(self):
        return f"torch.return_types.{name}(\nvalues={self.values!r},\nindices={self.indices!r})"

    return type(name, (namedtuple(name, ["values", "indices"]),),
                {"__slots__": (), "__repr__": __repr__, "__str__": __repr__})


class return_types:
    max = _return_type("max")
    min = _return_type("min")


def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return apply(P.argmax, reshape(x, (-1,)), dims=0, keepdim=False)
    return apply(P.argmax, x, dims=dim, keepdim=keepdim)


def argmin(x, dim=None, keepdim=False):
    return argmax(neg(x), dim, keepdim)


def _max_min(x, dim, keepdim, which):
    """``max``/``min``: the full reduction, or (values, indices) along ``dim``."""
    prim, pairwise, arg = {"max": (P.amax, maximum, argmax),
                           "min": (P.amin, minimum, argmin)}[which]
    if isinstance(dim, Tensor):
        return pairwise(x, dim)
    if dim is None:
        return apply(prim, x, overload=which, dims=None, keepdim=False)
    indices = arg(x, dim, keepdim)
    result = getattr(return_types, which)
    if _picks_by_index(x):
        return result(_picked[which](x, dim, keepdim, indices=indices), indices)
    values = apply(prim, x, overload=f"{which}.dim", dims=(dim,), keepdim=keepdim)
    return result(values, indices)


def max(x, dim=None, keepdim=False):
    return _max_min(x, dim, keepdim, "max")


def min(x, dim=None, keepdim=False):
    return _max_min(x, dim, keepdim, "min")


def _picks_by_index(x):
    """Whether max/min(x, dim) must route its gradient through the returned indices (only
    needed when it is differentiated; amax is cheaper but splits ties)."""
    return x.dtype.is_floating_point and x.dim() > 0 and _mode.enabled and x.requires_grad


def _pick(x, dim, keepdim, indices):
    # the gradient goes to the element at ``indices`` alone, as PyTorch's max(dim) does
    idx = indices if keepdim else unsqueeze(indices, dim)
    mask = eq(iota(tuple(x.shape), dim % x.dim(), device=x.device), idx)
    return sum(where(mask, x, 0.0), dim, keepdim)


_picked = {"max": composite("MaxBackward0")(_pick), "min": composite("MinBackward0")(_pick)}


@composite("SoftmaxBackward0", saves_out=True)
def softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    # subtracting the row max keeps exp in range; softmax is shift-invariant, so the
    # max is a constant for the derivative
    e = exp(sub(x, amax(x, dim, keepdim=True).detach()))
    return div(e, sum(e, dim, keepdim=True))


def log_softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    (dim,) = normalize_dims("log_softmax", dim, x.dim()) if x.dim() else (0,)
    return apply(P.log_softmax, x, dim=dim)


@composite("LogsumexpBackward0", saves_out=True)
def logsumexp(x, dim, keepdim=False):
    m = amax(x, dim, keepdim=True).detach()
    r = add(log(sum(exp(sub(x, m)), dim, keepdim=True)), m)
    return r if keepdim else squeeze(r, dim)


def _norm(x, p=2, dim=None, keepdim=False):
    check(p == 2 or p == "fro", lambda: f"norm: only p=2 is supported, got p={p!r}")
    return sqrt(sum(mul(x, x), dim, keepdim))


_norm_node = composite("LinalgVectorNormBackward0", saves_out=True)(_norm)


def norm(x, p=2, dim=None, keepdim=False):
    return _norm_node(x, p, dim, keepdim)


def all(x, dim=None):
    return Tensor._make(x._concrete("Tensor.all()").all() if dim is None else x._data.all(dim))


def any(x, dim=None):
    return Tensor._make(x._concrete("Tensor.any()").any() if dim is None else x._data.any(dim))
