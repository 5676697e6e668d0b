"""``fusegrad.nn.Parameter``: a leaf Tensor that a Module registers as one of its parameters."""

from __future__ import annotations

import torch

from fusegrad.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a module parameter: assigning it to a Module attribute registers it.

    It shares storage with ``data`` and requires grad unless told otherwise, like
    ``torch.nn.Parameter``. Ops on a Parameter return plain Tensors.

    Args:
        data: the initial value (a fusegrad Tensor or a ``torch.Tensor``); an empty float
            tensor when omitted.
        requires_grad: whether the parameter requires gradient. Default: ``True``.
    """

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = Tensor._make(torch.empty(0))
        elif isinstance(data, torch.Tensor):
            data = Tensor._make(data.detach())
        elif not isinstance(data, Tensor):
            raise TypeError(
                f"Parameter: expected data to be a Tensor, got {type(data).__name__}")
        # a new leaf on the same storage and version counter, as torch's _make_subclass does
        p = cls._make(data._data, vc=data._vc)
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__; Tensor.__init__ must not run again

    def __repr__(self, *, tensor_contents=None):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__
