"""Movement ops: reshapes, permutes, expands, slices and concatenation (views where PyTorch's
are views)."""

from __future__ import annotations

import math

import torch

from fusegrad import primitives as P
from fusegrad.autograd.grad_mode import _mode
from fusegrad.autograd.names import composite
from fusegrad.dispatch import apply, is_symbolic
from fusegrad.ops.pointwise import _t
from fusegrad.primitives import check, normalize_dims

__all__ = ["reshape", "view", "view_as", "reshape_as", "flatten", "squeeze", "unsqueeze",
           "permute", "transpose", "swapaxes", "t", "expand", "expand_as", "broadcast_to",
           "slice", "unslice", "select", "cat", "concat", "concatenate", "stack"]


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        return tuple(shape[0])
    return tuple(shape)


def _dims_arg(dim):
    if dim is None:
        return None
    if isinstance(dim, int):
        return (dim,)
    return tuple(dim)


def _infer_shape(x, shape):
    shape = [int(s) for s in shape]
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        check(shape.count(-1) == 1, lambda: "reshape: only one dimension can be inferred")
        n = x.numel()
        check(known != 0 and n % known == 0,
              lambda: f"reshape: shape '{list(shape)}' is invalid for input of size {n}")
        shape[shape.index(-1)] = n // known
    return tuple(shape)


def _copies(x, shape):
    """Whether ``x.reshape(shape)`` must copy (known in eager only: a trace has no strides)."""
    d = x._data
    if is_symbolic(d) or d.is_contiguous():
        return False
    try:
        d.view(shape)
    except RuntimeError:
        return math.prod(shape) == d.numel()
    return False


def reshape(x, *shape):
    shape = _infer_shape(x, _shape_arg(shape))
    overload = None
    if _copies(x, shape):
        # PyTorch's reshape copies as clone + _unsafe_view: two nodes
        if x.requires_grad and _mode.enabled:
            x = apply(P.copy, x)
        overload = "_unsafe_view"
    return apply(P.reshape, x, overload=overload, shape=shape)


def view(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise TypeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(x, _shape_arg(shape))
    check(not _copies(x, shape), lambda: "view size is not compatible with input tensor's size "
          "and stride (at least one dimension spans across two contiguous subspaces). Use "
          ".reshape(...) instead.")
    return reshape(x, shape)


def view_as(x, other):
    return reshape(x, other.shape)


def reshape_as(x, other):
    return reshape(x, other.shape)


def flatten(x, start_dim=0, end_dim=-1):
    if x.dim() == 0:
        return reshape(x, 1)
    s, e = start_dim % x.dim(), end_dim % x.dim()
    if s == e:
        return x
    shape = (*x.shape[:s], math.prod(x.shape[s:e + 1]), *x.shape[e + 1:])
    return reshape(x, shape)


def squeeze(x, dim=None):
    if dim is None:
        shape = [s for s in x.shape if s != 1]
        return apply(P.reshape, x, overload="squeeze", shape=tuple(shape))
    dims = normalize_dims("squeeze", _dims_arg(dim), x.dim())
    shape = [s for i, s in enumerate(x.shape) if not (i in dims and s == 1)]
    overload = "squeeze.dim" if isinstance(dim, int) else "squeeze.dims"
    return apply(P.reshape, x, overload=overload, shape=tuple(shape))


def unsqueeze(x, dim):
    nd = x.dim() + 1
    check(-nd <= dim < nd, lambda: f"unsqueeze: Dimension out of range (expected to be in "
          f"range of [{-nd}, {nd - 1}], but got {dim})", IndexError)
    dim %= nd
    shape = (*x.shape[:dim], 1, *x.shape[dim:])
    return apply(P.reshape, x, overload="unsqueeze", shape=shape)


def permute(x, *dims):
    dims = tuple(d % x.dim() if x.dim() else d for d in _shape_arg(dims))
    return apply(P.permute, x, dims=dims)


def transpose(x, dim0, dim1):
    return _transpose(x, dim0, dim1, "transpose.int")


def _transpose(x, dim0, dim1, overload):
    nd = x.dim()
    if nd < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return apply(P.reshape, x, overload=overload, shape=tuple(x.shape))
    d0, d1 = normalize_dims("transpose", dim0, nd)[0], normalize_dims("transpose", dim1, nd)[0]
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return apply(P.permute, x, overload=overload, dims=tuple(dims))


swapaxes = transpose


def t(x):
    check(x.dim() <= 2, lambda: f"t() expects a tensor with <= 2 dimensions, but self is "
          f"{x.dim()}D")
    return _transpose(x, 0, -1, "t")


def expand(x, *sizes):
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.dim()
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return apply(P.expand, x, shape=shape)


def expand_as(x, other):
    return expand(x, other.shape)


def broadcast_to(x, shape):
    return expand(x, shape)


def slice(x, dim, start, stop, step=1):
    return apply(P.slice_, x, dim=dim, start=start, stop=stop, step=step)


def unslice(g, shape, dim, start, stop, step=1):
    return apply(P.unslice, g, shape=tuple(shape), dim=dim, start=start, stop=stop, step=step)


def select(x, dim, index):
    n = x.dim()
    check(n > 0, lambda: "select() cannot be applied to a 0-dim tensor.", IndexError)
    dim %= n
    size = x.shape[dim]
    check(-size <= index < size, lambda: f"index {index} is out of bounds for dimension "
          f"{dim} with size {size}", IndexError)
    return apply(P.select, x, dim=dim, index=index % size)


def cat(tensors, dim=0):
    tensors = [_t(x) for x in tensors]
    check(len(tensors) > 0, lambda: "cat(): expected a non-empty list of Tensors", ValueError)
    nd = tensors[0].dim()
    dim = dim % nd if nd else 0
    return apply(P.cat, *tensors, dim=dim)


concat = concatenate = cat


@composite("StackBackward0", saves=False)
def _stack(*tensors, dim=0):
    return cat([unsqueeze(x, dim) for x in tensors], dim)


def stack(tensors, dim=0):
    tensors = list(tensors)
    check(len(tensors) > 0, lambda: "stack expects a non-empty TensorList")
    shapes = {tuple(x.shape) for x in tensors}
    check(len(shapes) == 1, lambda: f"stack expects each tensor to be equal size, but got "
          f"{list(tensors[0].shape)} at entry 0 and {list(tensors[1].shape)} at entry 1")
    return _stack(*tensors, dim=dim % (tensors[0].dim() + 1))
