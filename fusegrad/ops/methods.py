"""Every op bound as a ``Tensor`` method and Python operator (``import fusegrad`` imports
this module)."""

from __future__ import annotations

import torch

from fusegrad import ops as O
from fusegrad import primitives as P
from fusegrad.dispatch import apply
from fusegrad.ops.conversion import _caster
from fusegrad.ops.inplace import (UNARY_INPLACE, add_, clamp_, copy_, div_, fill_, mul_, pow_,
                                  sub_, zero_)
from fusegrad.primitives import Scalar
from fusegrad.tensor import Tensor

# Tensor methods that are the op of the same name in fusegrad.ops
_SAME_NAME = """neg exp log sqrt abs sin cos tanh sigmoid relu sign clone add sub mul div pow
    square maximum minimum eq ne lt le gt ge logical_and logical_or logical_not clamp
    clamp_min clamp_max sum mean amax amin max min argmax argmin softmax log_softmax
    logsumexp norm reshape view view_as reshape_as flatten squeeze unsqueeze permute
    transpose t expand expand_as broadcast_to matmul mm bmm dot mv to type_as contiguous
    all any""".split()

_ALIASES = {"negative": O.neg, "subtract": O.sub, "multiply": O.mul, "divide": O.div,
            "true_divide": O.div, "clip": O.clamp, "swapaxes": O.transpose,
            "__getitem__": O.getitem, "__setitem__": O.setitem}

_CASTS = {"float": torch.float32, "double": torch.float64, "half": torch.float16,
          "bfloat16": torch.bfloat16, "long": torch.int64, "int": torch.int32,
          "bool": torch.bool}

_INPLACE = dict(add_=add_, sub_=sub_, mul_=mul_, div_=div_, pow_=pow_, clamp_=clamp_,
                fill_=fill_, zero_=zero_, copy_=copy_, **UNARY_INPLACE)
_SAME_NAME += [p.name for p in O.TABLE_UNARY]


def _where_method(self, condition, y):
    return O.where(condition, self, y)


def _new_factory(fn):
    def method(self, *size, dtype=None, device=None, requires_grad=False):
        return fn(*size, dtype=dtype or self.dtype, device=device or self.device,
                  requires_grad=requires_grad)

    return method


def _rtruediv(self, other):
    # PyTorch computes ``2 / x`` as ``x.reciprocal() * 2``, hence its MulBackward0
    if isinstance(other, Scalar):
        return apply(P.div, other, self, overload="__rtruediv__")
    return O.div(other, self)


_OPERATORS = {
    "__add__": O.add, "__radd__": lambda s, o: O.add(s, o), "__sub__": O.sub,
    "__rsub__": lambda s, o: O.sub(o, s), "__mul__": O.mul,
    "__rmul__": lambda s, o: O.mul(s, o), "__truediv__": O.div, "__rtruediv__": _rtruediv,
    "__pow__": O.pow, "__rpow__": lambda s, o: O.pow(o, s), "__matmul__": O.matmul,
    "__rmatmul__": lambda s, o: O.matmul(o, s), "__neg__": O.neg, "__abs__": O.abs,
    "__eq__": O.eq, "__ne__": O.ne, "__lt__": O.lt, "__le__": O.le, "__gt__": O.gt,
    "__ge__": O.ge, "__and__": O.logical_and, "__or__": O.logical_or,
    "__invert__": O.logical_not, "__iadd__": add_, "__isub__": sub_, "__imul__": mul_,
    "__itruediv__": div_,
}


def _bind_methods():
    for name in _SAME_NAME:
        setattr(Tensor, name, getattr(O, name))
    for table in (_ALIASES, _INPLACE, _OPERATORS):
        for name, fn in table.items():
            setattr(Tensor, name, fn)
    for name, dtype in _CASTS.items():
        setattr(Tensor, name, _caster(dtype))
    Tensor.where = _where_method
    Tensor.cpu = lambda self: O.to(self, "cpu")
    Tensor.cuda = lambda self, device=None: O.to(self, device or "cuda")
    Tensor.new_zeros = _new_factory(O.zeros)
    Tensor.new_ones = _new_factory(O.ones)
    Tensor.T = property(lambda self: O.permute(self, *reversed(range(self.dim()))))
    Tensor.mT = property(lambda self: O.transpose(self, -2, -1))
    Tensor.__hash__ = lambda self: id(self)  # __eq__ is elementwise, as in PyTorch


_bind_methods()
