"""Creation ops made by primitives (filled tensors, indices); tensors from Python data and
random draws are ``fusegrad.factories``."""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad.dispatch import apply, constant
from fusegrad.ops.movement import _shape_arg, expand, reshape

__all__ = ["full", "zeros", "ones", "full_like", "zeros_like", "ones_like", "iota"]


def _dtype(dtype):
    return dtype if dtype is not None else torch.get_default_dtype()


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    size = _shape_arg(size if isinstance(size, (tuple, list, torch.Size)) else (size,))
    if dtype is None:
        dtype = torch.get_default_dtype() if isinstance(fill_value, float) \
            else torch.tensor(fill_value).dtype
    out = apply(P.full, shape=tuple(size), value=fill_value, dtype=dtype,
                device=torch.device(device or "cpu"))
    return out._factory_requires_grad() if requires_grad else out


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return full(_shape_arg(size), 0, dtype=_dtype(dtype), device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return full(_shape_arg(size), 1, dtype=_dtype(dtype), device=device,
                requires_grad=requires_grad)


def full_like(x, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(tuple(x.shape), fill_value, dtype=dtype or x.dtype,
                device=device or x.device, requires_grad=requires_grad)


def zeros_like(x, *, dtype=None, device=None, requires_grad=False):
    return full_like(x, 0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(x, *, dtype=None, device=None, requires_grad=False):
    return full_like(x, 1, dtype=dtype, device=device, requires_grad=requires_grad)


def iota(shape, dim, *, dtype=torch.int64, device="cpu"):
    """Indices along ``dim`` broadcast to ``shape`` (for one-hot masks inside a graph)."""
    view = [1] * len(shape)
    view[dim] = shape[dim]
    # Triton kernels make only uniform fills: the indices are a constant of any trace
    r = constant(P.iota, n=shape[dim], dtype=dtype, device=torch.device(device))
    return expand(reshape(r, view), shape)
