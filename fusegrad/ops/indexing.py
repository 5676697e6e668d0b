"""Indexing: ``x[...]`` with ints, slices, None and Ellipsis (views, as in PyTorch), and the
data-dependent cases (index tensors, ``x[...] = v``), which run eagerly only."""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad.autograd.grad_mode import _mode
from fusegrad.dispatch import apply, check_inplace, current
from fusegrad.ops.movement import select, unsqueeze
from fusegrad.ops.movement import slice as slice_
from fusegrad.primitives import check
from fusegrad.tensor import Tensor

__all__ = ["getitem", "setitem"]


def getitem(x, idx):
    """Basic indexing: ints, slices, None and Ellipsis (views, as in PyTorch)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    if any(isinstance(i, (Tensor, torch.Tensor, list)) for i in idx):
        return _advanced_index(x, idx)
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    check(n_real <= x.dim(), lambda: f"too many indices for tensor of dimension {x.dim()}",
          IndexError)
    out, dim, seen_ellipsis = x, 0, False
    for i in idx:
        if i is Ellipsis:
            check(not seen_ellipsis, lambda: "an index can only have a single ellipsis ('...')",
                  IndexError)
            seen_ellipsis = True
            dim += x.dim() - n_real
        elif i is None:
            out = unsqueeze(out, dim)
            dim += 1
        elif isinstance(i, bool):
            raise IndexError("fusegrad: boolean scalar indices are not supported")
        elif isinstance(i, int):
            out = select(out, dim, i)
        elif isinstance(i, slice):
            size = out.shape[dim]
            start, stop, step = i.indices(size)
            check(step > 0, lambda: "step must be greater than zero", ValueError)
            # PyTorch skips a slice that keeps everything unless its start is given nonzero
            if not (i.start in (None, 0) and stop >= size and step == 1):
                out = slice_(out, dim, start, max(start, stop), step)
            dim += 1
        else:
            raise IndexError(f"fusegrad: unsupported index of type {type(i).__name__}; "
                             "only ints, slices, None, Ellipsis and index tensors are allowed")
    if out is x:
        out = apply(P.reshape, x, overload="alias", shape=tuple(x.shape))
    return out


def _advanced_index(x, idx):
    # gathers by index tensors are data-dependent: eager only, and not differentiable
    check(not x.requires_grad or not _mode.enabled, lambda: "indexing with tensors is not "
          "differentiable in fusegrad; index a detached tensor or use basic slicing")
    current().graph_break("indexing with a tensor")
    key = tuple(i._data if isinstance(i, Tensor) else i for i in idx)
    return Tensor._make(x._data[key])


def setitem(x, idx, value):
    if isinstance(value, Tensor) and value.requires_grad and _mode.enabled:
        raise RuntimeError("__setitem__ with a value that requires grad is not supported")
    check_inplace(x)
    if x.requires_grad and _mode.enabled:
        raise RuntimeError(
            "__setitem__ on a tensor that requires grad is not supported; use torch.where or "
            "do it under no_grad()")
    current().graph_break("Tensor.__setitem__")
    key = idx._data if isinstance(idx, Tensor) else idx
    if isinstance(key, tuple):
        key = tuple(k._data if isinstance(k, Tensor) else k for k in key)
    x._data[key] = value._data if isinstance(value, Tensor) else value
    x._vc[0] += 1
