"""The vector-Jacobian products of the primitives, written in fusegrad ops.

One rule serves eager backward, ``create_graph=True`` higher-order gradients and the
compiler's autodiff. Rules see ``ctx.inputs`` (saved operands: fusegrad Tensors or Python
numbers), ``ctx.out``, ``ctx.params``, ``ctx.avals`` (input shapes and dtypes, never freed)
and ``ctx.needs_input_grad``. This module sits above ``fusegrad.ops`` (the rules call it)
and attaches each rule to its record when the package is imported; a record may also carry
its rule inline when Tensor methods suffice to write it (``pointwise.erf``).
"""

from __future__ import annotations

import math

from fusegrad import ops as F
from fusegrad.primitives.record import PRIMS
from fusegrad.primitives.shape import Scalar, normalize_dims


def sum_to(g, shape):
    """Reduce a broadcast gradient back to ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1
    )
    r = F.sum(g, dims, keepdim=True) if dims else g
    return F.reshape(r, shape) if tuple(r.shape) != shape else r


def _unbroadcast(ctx, grads):
    return tuple(
        None if g is None or av is None else sum_to(g, av.shape)
        for g, av in zip(grads, ctx.avals)
    )


def _needs(ctx, i):
    return ctx.needs_input_grad[i]


def _vjp_add(ctx, g):
    return _unbroadcast(ctx, (g, g))


def _vjp_sub(ctx, g):
    return _unbroadcast(ctx, (g, -g if _needs(ctx, 1) else None))


def _vjp_mul(ctx, g):
    # read an operand only for the other's gradient: PyTorch saves no more than that, so an
    # in-place change of an operand whose partner needs no gradient is no error
    x = ctx.inputs
    return _unbroadcast(ctx, (g * x[1] if _needs(ctx, 0) else None,
                              g * x[0] if _needs(ctx, 1) else None))


def _vjp_div(ctx, g):
    x = ctx.inputs  # a is read only for b's gradient, as in _vjp_mul
    ga = g / x[1] if _needs(ctx, 0) else None
    gb = -g * x[0] / (x[1] * x[1]) if _needs(ctx, 1) else None
    return _unbroadcast(ctx, (ga, gb))


def _vjp_pow(ctx, g):
    a, b = ctx.inputs
    ga = gb = None
    if _needs(ctx, 0):
        if isinstance(b, Scalar):
            ga = F.zeros_like(g) if b == 0 else g * (b * F.pow(a, b - 1))
        else:
            ga = F.where(b == 0, 0.0, g * (b * F.pow(a, b - 1)))
    if _needs(ctx, 1):
        out = ctx.out
        # d/db a**b = a**b * log(a); defined as 0 where a == 0 and b >= 0, as in PyTorch
        if isinstance(a, Scalar):  # 2.5 ** x
            log_a = math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
            gb = g * (out * log_a)
            gb = F.where(b >= 0, 0.0, gb) if a == 0 else gb
        else:
            gb = F.where((a == 0) & (b >= 0), 0.0, g * (out * F.log(a)))
    return _unbroadcast(ctx, (ga, gb))


def _vjp_maximum(ctx, g):
    a, b = ctx.inputs
    half = g / 2
    ga = F.where(a == b, half, F.where(a > b, g, 0.0)) if _needs(ctx, 0) else None
    gb = F.where(a == b, half, F.where(b > a, g, 0.0)) if _needs(ctx, 1) else None
    return _unbroadcast(ctx, (ga, gb))


def _vjp_minimum(ctx, g):
    a, b = ctx.inputs
    half = g / 2
    ga = F.where(a == b, half, F.where(a < b, g, 0.0)) if _needs(ctx, 0) else None
    gb = F.where(a == b, half, F.where(b < a, g, 0.0)) if _needs(ctx, 1) else None
    return _unbroadcast(ctx, (ga, gb))


def _vjp_where(ctx, g):
    c, _, _ = ctx.inputs
    ga = F.where(c, g, 0.0) if _needs(ctx, 1) else None
    gb = F.where(c, 0.0, g) if _needs(ctx, 2) else None
    return _unbroadcast(ctx, (None, ga, gb))


def _vjp_clamp(ctx, g):
    (x,) = ctx.inputs
    lo, hi = ctx.params.get("lo"), ctx.params.get("hi")
    mask = None
    if lo is not None:
        mask = x >= lo
    if hi is not None:
        m = x <= hi
        mask = m if mask is None else F.logical_and(mask, m)
    return (F.where(mask, g, 0.0),)


def _vjp_sum(ctx, g):
    (av,) = ctx.avals
    dims = normalize_dims("sum", ctx.params.get("dims"), len(av.shape))
    if not ctx.params.get("keepdim", False):
        g = F.reshape(g, [1 if i in dims else s for i, s in enumerate(av.shape)])
    return (F.expand(g, av.shape),)


def _vjp_amax(ctx, g):
    (x,) = ctx.inputs
    dims = normalize_dims("amax", ctx.params.get("dims"), x.dim())
    keep = [1 if i in dims else s for i, s in enumerate(x.shape)]
    out, gk = ctx.out, g
    if not ctx.params.get("keepdim", False):
        out, gk = F.reshape(out, keep), F.reshape(g, keep)
    # ties share the gradient evenly, as PyTorch's amax/amin/max() do
    mask = F.cast(x == out, g.dtype)
    return (mask * (gk / F.sum(mask, dims, keepdim=True)),)


def _vjp_reshape(ctx, g):
    return (F.reshape(g, ctx.avals[0].shape),)


def _vjp_permute(ctx, g):
    dims = ctx.params["dims"]
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return (F.permute(g, inv),)


def _vjp_expand(ctx, g):
    return (sum_to(g, ctx.avals[0].shape),)


def _vjp_slice(ctx, g):
    p = ctx.params
    return (F.unslice(g, tuple(ctx.avals[0].shape), p["dim"], p["start"], p["stop"], p["step"]),)


def _vjp_select(ctx, g):
    p = ctx.params
    g = F.unsqueeze(g, p["dim"])
    i = p["index"]
    return (F.unslice(g, tuple(ctx.avals[0].shape), p["dim"], i, i + 1, 1),)


def _vjp_unslice(ctx, g):
    p = ctx.params
    return (F.slice(g, p["dim"], p["start"], p["stop"], p["step"]),)


def _vjp_cat(ctx, g):
    dim = ctx.params["dim"]
    grads, start = [], 0
    for av in ctx.avals:
        n = av.shape[dim]
        grads.append(F.slice(g, dim, start, start + n, 1))
        start += n
    return tuple(grads)


def _vjp_matmul(ctx, g):
    x, (sa, sb) = ctx.inputs, (av.shape for av in ctx.avals)  # as in _vjp_mul
    ga = sum_to(F.matmul(g, F.transpose(x[1], -1, -2)), sa) if _needs(ctx, 0) else None
    gb = sum_to(F.matmul(F.transpose(x[0], -1, -2), g), sb) if _needs(ctx, 1) else None
    return ga, gb


def _vjp_cast(ctx, g):
    return (F.cast(g, ctx.avals[0].dtype),)


def _vjp_log_softmax(ctx, g):
    # d log_softmax: g - softmax * sum(g); softmax = exp(out)
    return (g - F.exp(ctx.out) * F.sum(g, ctx.params["dim"], keepdim=True),)




RULES = {
    "neg": (lambda ctx, g: (-g,), ()),
    "exp": (lambda ctx, g: (g * ctx.out,), ("out",)),
    "log": (lambda ctx, g: (g / ctx.inputs[0],), (0,)),
    "sqrt": (lambda ctx, g: (g / (2 * ctx.out),), ("out",)),
    "abs": (lambda ctx, g: (g * F.sign(ctx.inputs[0]),), (0,)),
    "sin": (lambda ctx, g: (g * F.cos(ctx.inputs[0]),), (0,)),
    "cos": (lambda ctx, g: (g * -F.sin(ctx.inputs[0]),), (0,)),
    "tanh": (lambda ctx, g: (g * (1 - ctx.out * ctx.out),), ("out",)),
    "sigmoid": (lambda ctx, g: (g * ((1 - ctx.out) * ctx.out),), ("out",)),
    "relu": (lambda ctx, g: (F.where(ctx.out > 0, g, 0.0),), ("out",)),
    "sign": (lambda ctx, g: (F.zeros_like(g),), ()),
    "cast": (_vjp_cast, ()),
    "copy": (lambda ctx, g: (g,), ()),
    "add": (_vjp_add, ()),
    "sub": (_vjp_sub, ()),
    "mul": (_vjp_mul, (0, 1)),
    "div": (_vjp_div, (0, 1)),
    "pow": (_vjp_pow, (0, 1, "out")),
    "maximum": (_vjp_maximum, (0, 1)),
    "minimum": (_vjp_minimum, (0, 1)),
    "where": (_vjp_where, (0,)),
    "clamp": (_vjp_clamp, (0,)),
    "sum": (_vjp_sum, ()),
    "amax": (_vjp_amax, (0, "out")),
    "amin": (_vjp_amax, (0, "out")),
    "reshape": (_vjp_reshape, ()),
    "permute": (_vjp_permute, ()),
    "expand": (_vjp_expand, ()),
    "slice": (_vjp_slice, ()),
    "select": (_vjp_select, ()),
    "unslice": (_vjp_unslice, ()),
    "cat": (_vjp_cat, ()),
    "log_softmax": (_vjp_log_softmax, ("out",)),
    "matmul": (_vjp_matmul, (0, 1)),
}


def _attach():
    for name, (rule, saves) in RULES.items():
        p = PRIMS[name]
        assert p.vjp is None and not p.saves, f"{name}: two vjp rules"
        p.vjp, p.saves = rule, saves  # what a rule reads is part of the rule


_attach()
