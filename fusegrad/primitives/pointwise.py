"""Elementwise primitives: unary, binary, comparisons, where, clamp, cast, copy."""

from __future__ import annotations

import math

import torch

from fusegrad.primitives.record import Identity, Kind, prim
from fusegrad.primitives.shape import (Aval, Scalar, broadcast_shapes, check, device_of,
                                       float_result, fmt_operand, result_dtype)


def unary_meta(float_out=False):
    def meta(x):
        return Aval(x.shape, float_result(x.dtype) if float_out else x.dtype, x.device)

    return meta


def binary_meta(name, out_dtype=None):
    def meta(a, b):
        check(
            not (isinstance(a, Scalar) and isinstance(b, Scalar)),
            lambda: f"{name}: expected at least one tensor operand, got two Python numbers",
            TypeError,
        )
        sa = () if isinstance(a, Scalar) else a.shape
        sb = () if isinstance(b, Scalar) else b.shape
        shape = broadcast_shapes(name, sa, sb)
        dtype = result_dtype(a, b)
        if out_dtype == "bool":
            dtype = torch.bool
        elif out_dtype == "float":
            dtype = float_result(dtype)
        return Aval(shape, dtype, device_of(a, b))

    return meta


def _where_meta(c, a, b):
    check(
        not isinstance(c, Scalar) and c.dtype == torch.bool,
        lambda: f"where: expected condition to be a bool tensor, got {fmt_operand(c)}",
    )
    sa = () if isinstance(a, Scalar) else a.shape
    sb = () if isinstance(b, Scalar) else b.shape
    shape = broadcast_shapes("where", c.shape, broadcast_shapes("where", sa, sb))
    return Aval(shape, result_dtype(a, b), device_of(c, a, b))


def _clamp_meta(x, lo=None, hi=None):
    check(
        lo is not None or hi is not None,
        lambda: "clamp: At least one of 'min' or 'max' must not be None",
    )
    dtype = x.dtype
    for bound in (lo, hi):  # clamp(int tensor, min=0.5) is float, as in PyTorch
        if bound is not None:
            dtype = torch.promote_types(dtype, result_dtype(x, bound))
    return Aval(x.shape, dtype, x.device)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _same_type(x, out) -> bool:
    return not isinstance(x, Scalar) and tuple(x.shape) == tuple(out.shape) \
        and x.dtype == out.dtype


def unary(name, impl, *, float_out=False, inplace=True, grad_name=None, foreach=False,
          host=None, aten=None, **fields):
    """A one-operand elementwise primitive whose ATen spelling is ``torch.<name>``."""
    tname = getattr(impl, "__name__", name)
    return prim(
        name, Kind.UNARY, unary_meta(float_out), impl,
        grad_name=grad_name or name.capitalize() + "Backward0",
        inplace=(tname + "_") if inplace else None,
        aten=aten or f"torch.{tname}({{0}}{{out}})", aten_out=aten is None,
        foreach=foreach, host=host, **fields)


def binary(name, impl, *, kind=Kind.BINARY, out=None, grad_name=None, host=None, **fields):
    """A two-operand elementwise primitive whose ATen spelling is ``torch.<name>``."""
    differentiable = kind is not Kind.COMPARE
    return prim(
        name, kind, binary_meta(name, out), impl, differentiable=differentiable,
        grad_name=(grad_name or name.capitalize() + "Backward0") if differentiable else "",
        aten=f"torch.{name}({{0}}, {{1}}{{out}})", aten_out=True, host=host, **fields)


neg = unary("neg", torch.neg, triton="-{0}", host="(-{0})", foreach=True,
            identity=Identity(involution=True))
exp = unary("exp", torch.exp, float_out=True, triton="tl.exp({0})", host="math.exp({0})",
            foreach=True)
log = unary("log", torch.log, float_out=True, triton="tl.log({0})", host="math.log({0})",
            foreach=True)
sqrt = unary("sqrt", torch.sqrt, float_out=True, triton="tl.sqrt({0})",
             host="math.sqrt({0})", foreach=True)
abs_ = unary("abs", torch.abs, triton="tl.abs({0})", foreach=True)
sin = unary("sin", torch.sin, float_out=True, triton="tl.sin({0})", foreach=True)
cos = unary("cos", torch.cos, float_out=True, triton="tl.cos({0})", foreach=True)
tanh = unary("tanh", torch.tanh, float_out=True, triton="_tanh({0})", triton_helper="_tanh",
             foreach=True)
sigmoid = unary("sigmoid", torch.sigmoid, float_out=True, triton="tl.sigmoid({0})",
                foreach=True)
# torch.relu has no out= overload
relu = unary("relu", torch.relu, triton="tl.maximum({0}, 0)", aten="torch.relu({0})")
sign = unary("sign", torch.sign, triton="(({0} > 0).to({dtype}) - ({0} < 0).to({dtype}))")
# erf, the building block of exact GELU: d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
erf = unary("erf", torch.erf, float_out=True, triton="tl.math.erf({0})", foreach=True,
            saves=(0,), vjp=lambda ctx, g: (
                g * (_TWO_OVER_SQRT_PI * (-(ctx.inputs[0] * ctx.inputs[0])).exp()),))

cast = prim(
    "cast", Kind.UNARY, lambda x, dtype: Aval(x.shape, dtype, x.device),
    lambda x, dtype: x.to(dtype), grad_name="ToCopyBackward0", aten="{0}.to({dtype})",
    aten_name="_to_copy", triton="{0}.to({dtype})", triton_raw=True,
    identity=Identity(noop=lambda p, x, out: _same_type(x, out)))
copy = prim(
    "copy", Kind.UNARY, unary_meta(), torch.clone, grad_name="CloneBackward0",
    aten="{0}.clone()", aten_name="clone", triton="{0}",
    identity=Identity(noop=lambda p, x, out: _same_type(x, out)))

# ATen has no add(number, tensor): ``aten_rev`` spells the ops whose first operand is one
add = binary("add", torch.add, inplace="add_", triton="{0} + {1}", host="({0} + {1})",
             identity=Identity(neutral=(0, 0)), commutative=True, foreach=True,
             aten_rev="torch.add({1}, {0})")
sub = binary("sub", torch.sub, inplace="sub_", triton="{0} - {1}", host="({0} - {1})",
             identity=Identity(neutral=(None, 0)), foreach=True, aten_rev="torch.rsub({1}, {0})")
mul = binary("mul", torch.mul, inplace="mul_", triton="{0} * {1}", host="({0} * {1})",
             identity=Identity(neutral=(1, 1)), commutative=True, foreach=True,
             aten_rev="torch.mul({1}, {0})")
div = binary("div", torch.div, inplace="div_", out="float", triton="{0} / {1}",
             host="({0} / {1})", identity=Identity(neutral=(None, 1)),
             foreach=True, aten_rev="torch.mul(torch.reciprocal({1}), {0})")
pow_ = binary("pow", torch.pow, inplace="pow_", triton="_pow({0}, {1})", triton_helper="_pow",
              triton_full=True, host="({0} ** {1})")
maximum = binary("maximum", torch.maximum, triton="tl.maximum({0}, {1})",
                 host="max({0}, {1})")
minimum = binary("minimum", torch.minimum, triton="tl.minimum({0}, {1})",
                 host="min({0}, {1})")
eq = binary("eq", torch.eq, kind=Kind.COMPARE, out="bool", triton="{0} == {1}")
ne = binary("ne", torch.ne, kind=Kind.COMPARE, out="bool", triton="{0} != {1}")
lt = binary("lt", torch.lt, kind=Kind.COMPARE, out="bool", triton="{0} < {1}")
le = binary("le", torch.le, kind=Kind.COMPARE, out="bool", triton="{0} <= {1}")
gt = binary("gt", torch.gt, kind=Kind.COMPARE, out="bool", triton="{0} > {1}")
ge = binary("ge", torch.ge, kind=Kind.COMPARE, out="bool", triton="{0} >= {1}")
logical_and = binary("logical_and", torch.logical_and, kind=Kind.COMPARE, out="bool",
                     triton="{0} & {1}", triton_bool_args=(0, 1))

# where's out= overload takes no Python numbers
where = prim(
    "where", Kind.TERNARY, _where_meta, torch.where, grad_name="WhereBackward0",
    nondiff_args=(0,), aten="torch.where({0}, {1}, {2})", triton="tl.where({0}, {1}, {2})",
    triton_bool_args=(0,))
clamp = prim(
    "clamp", Kind.UNARY, _clamp_meta, lambda x, lo=None, hi=None: torch.clamp(x, lo, hi),
    grad_name="ClampBackward1", aten="torch.clamp({0}, {p[lo]!r}, {p[hi]!r}{out})",
    aten_out=True, triton="_clamp({0}, {lo}, {hi})", triton_helper="_clamp")
