"""In-place ops: they write into a tensor's storage, bump its version counter and continue
its autograd history from the new node. The write goes through the current interpreter, so
under a trace the same code records a functional update."""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad.autograd.grad_mode import _mode
from fusegrad.dispatch import apply, apply_inplace, assign, check_inplace, current
from fusegrad.ops.creation import full_like, zeros_like
from fusegrad.ops.movement import expand
from fusegrad.ops.pointwise import _t, cast, clone, mul
from fusegrad.primitives import Scalar
from fusegrad.tensor import Tensor


def _inplace_binary(prim):
    def op(self, other, *, alpha=1):
        other = _t(other)
        if alpha != 1:
            other = mul(other, alpha)
        return apply_inplace(prim, self, other)

    op.__name__ = prim.name + "_"
    return op


add_ = _inplace_binary(P.add)
sub_ = _inplace_binary(P.sub)
mul_ = _inplace_binary(P.mul)
div_ = _inplace_binary(P.div)


def pow_(self, exponent):
    return apply_inplace(P.pow_, self, exponent)


def clamp_(self, min=None, max=None):
    return apply_inplace(P.clamp, self, lo=min, hi=max)


def _inplace_unary(prim):
    def op(self):
        return apply_inplace(prim, self)

    op.__name__ = prim.name + "_"
    return op


# the in-place form of every unary primitive whose record names one (exp_, relu_, erf_...)
UNARY_INPLACE = {p.inplace: _inplace_unary(p) for p in P.PRIMS.values()
                 if p.kind is P.Kind.UNARY and p.inplace}


def fill_(self, value):
    return _fill(self, value, "fill_.Scalar")


def zero_(self):
    return _fill(self, 0, "zero_")


def _fill(self, value, overload):
    check_inplace(self)
    tracked = _mode.enabled and (self.requires_grad or (
        isinstance(value, Tensor) and value.requires_grad))
    if not tracked and current().mutate(
            self, "fill_", [value._data if isinstance(value, Tensor) else value]):
        return self
    if isinstance(value, Scalar):
        return _write(self, full_like(self, value), overload)
    return _write(self, expand(cast(value, self.dtype), self.shape), "fill_.Tensor")


def copy_(self, src, non_blocking=False):
    check_inplace(self)
    src = _t(src)
    tracked = _mode.enabled and (self.requires_grad or (
        isinstance(src, Tensor) and src.requires_grad))
    if not tracked and current().mutate(
            self, "copy_", [src._data if isinstance(src, Tensor) else src]):
        return self
    value = expand(cast(src, self.dtype), self.shape)
    if tuple(value.shape) == tuple(self.shape) and value is src:
        value = clone(value)
    return _write(self, value, "copy_")


def _write(self, value, overload):
    """Make ``value`` the new content of ``self`` (functional form of an in-place write)."""
    if _mode.enabled and (self.requires_grad or value.requires_grad):
        if self._base is not None:
            # the base would not see the new history (PyTorch's CopySlices is not built)
            raise RuntimeError(
                "copy_/fill_/zero_: in-place operations on a view are not supported when "
                "autograd records them; use the out-of-place op instead")
        # one node, named as PyTorch's, that sends the old content a zero gradient
        value = apply(P.where, zeros_like(self, dtype=torch.bool), self, value,
                        overload=overload)
    return assign(self, value)
