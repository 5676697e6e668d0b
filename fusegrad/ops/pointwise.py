"""Pointwise ops: unary and binary arithmetic, comparisons, ``where`` and ``clamp``, with
PyTorch's broadcasting and Python-number operands."""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad.autograd.names import composite
from fusegrad.dispatch import apply
from fusegrad.primitives import Scalar, check
from fusegrad.tensor import Tensor

__all__ = ["neg", "negative", "exp", "log", "sqrt", "abs", "absolute", "sin", "cos", "tanh",
           "sigmoid", "relu", "sign", "cast", "clone", "add", "sub", "subtract", "rsub", "mul",
           "multiply", "div", "divide", "true_divide", "pow", "square", "maximum", "minimum",
           "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "greater", "greater_equal", "less",
           "less_equal", "not_equal", "where", "clamp", "clip", "clamp_min", "clamp_max",
           "logical_not", "logical_or", "TABLE_UNARY"]


def _t(x):
    """Accept fusegrad Tensors and Python numbers as op operands."""
    if isinstance(x, (Tensor, *Scalar)):
        return x
    if isinstance(x, torch.Tensor):
        return Tensor._make(x.detach())
    raise TypeError(f"expected a fusegrad Tensor or a number, got {type(x).__name__}")


def _unary(prim):
    def op(x):
        return apply(prim, x)

    op.__name__ = prim.name
    return op


neg = negative = _unary(P.neg)
exp = _unary(P.exp)
log = _unary(P.log)
sqrt = _unary(P.sqrt)
abs = absolute = _unary(P.abs_)
sin = _unary(P.sin)
cos = _unary(P.cos)
tanh = _unary(P.tanh)
sigmoid = _unary(P.sigmoid)
relu = _unary(P.relu)
sign = _unary(P.sign)

# every other public unary prim of the table (one with an in-place form) is an op of the
# same name: a new record is all it takes to get fusegrad.<name> and Tensor.<name>(_)
TABLE_UNARY = [p for p in P.PRIMS.values()
               if p.kind is P.Kind.UNARY and p.inplace and p.name not in globals()]
for _p in TABLE_UNARY:
    globals()[_p.name] = _unary(_p)
__all__ += [p.name for p in TABLE_UNARY]


def cast(x, dtype):
    if x.dtype == dtype:
        return x
    return apply(P.cast, x, dtype=dtype)


def clone(x, *, memory_format=None):
    return apply(P.copy, x)


def add(a, b, *, alpha=1):
    a, b = _t(a), _t(b)
    if alpha != 1:
        b = b * alpha if isinstance(b, Scalar) else mul(b, alpha)
    if isinstance(a, Scalar):
        a, b = b, a
    return apply(P.add, a, b)


def sub(a, b, *, alpha=1):
    a, b = _t(a), _t(b)
    if alpha != 1:
        b = b * alpha if isinstance(b, Scalar) else mul(b, alpha)
    if isinstance(a, Scalar):
        return apply(P.sub, a, b)  # RsubBackward1
    return apply(P.sub, a, b)


subtract = sub


def rsub(a, b):
    return sub(b, a)


def mul(a, b):
    a, b = _t(a), _t(b)
    if isinstance(a, Scalar):
        a, b = b, a
    return apply(P.mul, a, b)


multiply = mul


def div(a, b, *, rounding_mode=None):
    a, b = _t(a), _t(b)
    if rounding_mode is not None:
        check(not (isinstance(a, Tensor) and a.requires_grad)
              and not (isinstance(b, Tensor) and b.requires_grad),
              lambda: "div: rounding_mode is not differentiable")
        da = a._data if isinstance(a, Tensor) else a
        db = b._data if isinstance(b, Tensor) else b
        return Tensor._make(torch.div(da, db, rounding_mode=rounding_mode))
    if isinstance(a, Scalar):
        return apply(P.div, a, b)
    return apply(P.div, a, b)


divide = true_divide = div


def pow(a, b):
    a, b = _t(a), _t(b)
    return apply(P.pow_, a, b)


def square(x):
    return pow(x, 2)


def maximum(a, b):
    return apply(P.maximum, _t(a), _t(b))


def minimum(a, b):
    return apply(P.minimum, _t(a), _t(b))


def _compare(prim):
    def op(a, b):
        return apply(prim, _t(a), _t(b))

    op.__name__ = prim.name
    return op


eq = _compare(P.PRIMS["eq"])
ne = _compare(P.PRIMS["ne"])
lt = _compare(P.PRIMS["lt"])
le = _compare(P.PRIMS["le"])
gt = _compare(P.PRIMS["gt"])
ge = _compare(P.PRIMS["ge"])
logical_and = _compare(P.logical_and)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def where(condition, x, y):
    return apply(P.where, _t(condition), _t(x), _t(y))


def clamp(x, min=None, max=None):
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        return _clamp_tensor(x, min, max)
    return apply(P.clamp, x, lo=min, hi=max)


@composite("ClampBackward0")
def _clamp_tensor(x, lo, hi):
    # tensor bounds: min(max(x, lo), hi) as two selects, so x gets the gradient where
    # lo <= x <= hi and each bound where it is the result, as in PyTorch
    check(lo is not None or hi is not None,
          lambda: "clamp: At least one of 'min' or 'max' must not be None")
    out = x if lo is None else where(lt(x, lo), lo, x)
    return out if hi is None else where(gt(out, hi), hi, out)


clip = clamp


def clamp_min(x, min):
    return clamp(x, min=min)


def clamp_max(x, max):
    return clamp(x, max=max)


def logical_not(x):
    return eq(x, False) if x.dtype == torch.bool else eq(x, 0)


def logical_or(a, b):
    return ne(add(cast(a, torch.int64), cast(b, torch.int64)), 0)
