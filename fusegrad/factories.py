"""Tensor creation: the data comes from torch (same generator, so seeded draws match)."""

from __future__ import annotations

import torch

from fusegrad.autograd.grad_mode import _mode
from fusegrad.dispatch import current
from fusegrad.ops.creation import full, full_like, ones, ones_like, zeros, zeros_like
from fusegrad.ops.movement import _shape_arg
from fusegrad.tensor import Tensor

__all__ = ["tensor", "as_tensor", "from_numpy", "from_torch", "empty", "empty_like", "eye",
           "arange", "linspace", "rand", "randn", "randint", "rand_like", "randn_like",
           "randint_like", "randperm", "manual_seed", "full", "full_like", "zeros",
           "zeros_like", "ones", "ones_like", "seed", "initial_seed"]


def _wrap(data, requires_grad=False):
    t = Tensor._make(data)
    current().note_constant(t)  # made inside a compiled function: part of the program
    return _leaf(t, requires_grad)


def _leaf(t, requires_grad):
    if _mode.inference:
        t._inference = True
    if requires_grad:
        t._factory_requires_grad()
    return t


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return data._data
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(d) for d in data]
    return data


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new leaf tensor holding a copy of ``data`` (a number, nested list, array or tensor)."""
    if isinstance(data, Tensor):
        data = data._data.detach().clone()
        if dtype is not None or device is not None:
            data = data.to(device=device, dtype=dtype)
    elif isinstance(data, torch.Tensor):
        data = data.detach().clone().to(device=device, dtype=dtype)
    else:
        data = _unwrap_nested(data)
        if isinstance(data, list) and data and isinstance(data[0], torch.Tensor):
            data = torch.stack(data)
            data = data.to(device=device, dtype=dtype)
        else:
            data = torch.tensor(data, dtype=dtype, device=device)
    return _wrap(data, requires_grad)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and dtype in (None, data.dtype) and device is None:
        return data
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing memory with the numpy ``array``."""
    return _wrap(torch.from_numpy(array))


def from_torch(t: torch.Tensor):
    """A fusegrad tensor sharing storage with the ``torch.Tensor`` ``t`` (detached)."""
    return _wrap(t.detach())


def empty(*size, dtype=None, device=None, requires_grad=False, **_):
    return _wrap(torch.empty(_shape_arg(size), dtype=dtype, device=device), requires_grad)


def _random(make, shape, dtype, device, requires_grad=False):
    """A random tensor from torch's generator; inside a compiled function, a graph input
    drawn afresh on every call (in trace order), never a constant of the trace."""
    data = current().random_input(make, tuple(shape), dtype or torch.get_default_dtype(),
                                  torch.device(device or "cpu"))
    return _leaf(Tensor._make(data), requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    size = _shape_arg(size)
    return _random(lambda: torch.rand(size, dtype=dtype, device=device, generator=generator),
                   size, dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    size = _shape_arg(size)
    return _random(lambda: torch.randn(size, dtype=dtype, device=device, generator=generator),
                   size, dtype, device, requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, generator=None,
            requires_grad=False):
    if size is None and isinstance(high, (tuple, list, torch.Size)):
        low, high, size = 0, low, high  # randint(high, size)
    if high is None:
        low, high = 0, low
    size = tuple(size)
    return _random(lambda: torch.randint(low, high, size, dtype=dtype or torch.int64,
                                         device=device, generator=generator),
                   size, dtype or torch.int64, device, requires_grad)


def randperm(n, *, dtype=torch.int64, device=None, generator=None):
    return _random(lambda: torch.randperm(n, dtype=dtype, device=device, generator=generator),
                   (n,), dtype, device)


def empty_like(x, *, dtype=None, device=None, requires_grad=False):
    return _wrap(torch.empty(tuple(x.shape), dtype=dtype or x.dtype, device=device or x.device),
                 requires_grad)


def rand_like(x, *, dtype=None, device=None, requires_grad=False):
    return rand(tuple(x.shape), dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def randn_like(x, *, dtype=None, device=None, requires_grad=False):
    return randn(tuple(x.shape), dtype=dtype or x.dtype, device=device or x.device,
                 requires_grad=requires_grad)


def randint_like(x, low, high=None, *, dtype=None, device=None):
    return randint(low, high, tuple(x.shape), dtype=dtype or x.dtype,
                   device=device or x.device)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    data = torch.eye(n, m if m is not None else n, dtype=dtype, device=device)
    return _wrap(data, requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    return _wrap(torch.arange(start, end, step, dtype=dtype, device=device), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    return _wrap(torch.linspace(start, end, steps, dtype=dtype, device=device), requires_grad)


def manual_seed(seed):
    """Seed torch's generator: fusegrad's random tensors are torch's random tensors."""
    return torch.manual_seed(seed)


def seed():
    return torch.seed()


def initial_seed():
    return torch.initial_seed()
