"""Conversions and comparisons of whole tensors: dtype and device moves, ``contiguous``,
``allclose``/``equal``."""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad.autograd.grad_mode import _mode
from fusegrad.dispatch import apply, is_symbolic
from fusegrad.ops.pointwise import cast
from fusegrad.primitives import check
from fusegrad.tensor import Tensor

__all__ = ["to", "type_as", "contiguous", "detach", "numel", "allclose", "equal"]


def to(x, *args, **kwargs):
    dtype = kwargs.get("dtype")
    device = kwargs.get("device")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, (str, torch.device)):
            device = torch.device(a)
        elif isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
    out = x
    if device is not None and torch.device(device) != x.device:
        check(not (x.requires_grad and _mode.enabled),
              lambda: "to(device): moving a tensor that requires grad across devices is not "
              "differentiable in fusegrad; move leaves before building the graph")
        out = Tensor._make(x._data.to(device))
    if dtype is not None and dtype != out.dtype:
        out = cast(out, dtype)
    return out


def _caster(dtype):
    def op(x, memory_format=None):
        return cast(x, dtype)

    return op


def type_as(x, other):
    return cast(x, other.dtype)


def contiguous(x, memory_format=None):
    d = x._data
    if is_symbolic(d) or d.is_contiguous():
        return x  # a traced value has no layout: that is the compiler's business
    out = apply(P.copy, x)  # CloneBackward0, as PyTorch's contiguous()
    if not is_symbolic(out._data):  # clone keeps a transposed layout; this copy does not
        out._data = out._data.contiguous()
    return out


def detach(x):
    return x.detach()


def numel(x):
    return x.numel()


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return torch.allclose(_data(a), _data(b), rtol, atol, equal_nan)


def equal(a, b):
    return torch.equal(_data(a), _data(b))


def _data(x):
    return x._data if isinstance(x, Tensor) else torch.as_tensor(x)
