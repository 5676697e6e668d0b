"""The table of primitives: the single source of truth for every op fusegrad runs.

Each primitive is defined once, with
  * ``meta``: the shape/dtype rule, which also raises the error for bad input;
  * ``impl``: the eager implementation (an ATen call on ``torch.Tensor`` storage);
  * ``vjp``: the vector-Jacobian product written in fusegrad ops, so one rule serves
    eager backward, ``create_graph=True`` and the compiler's symbolic autodiff;
  * ``triton``: how codegen emits it (an expression template for pointwise prims,
    the name of a kernel template for the others).

User-facing ops (``fusegrad.ops``) are thin: they pick a primitive, or compose several
(softmax, linear, losses), and name the autograd node the way PyTorch does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

Scalar = (int, float, bool)


class Aval(NamedTuple):
    """What the compiler knows of a value: its shape, dtype and device, no data."""

    shape: torch.Size
    dtype: torch.dtype
    device: torch.device


@dataclass(eq=False)
class Primitive:
    name: str
    kind: str  # unary | binary | compare | ternary | reduce | movement | matmul | create
    meta: Callable[..., Aval]
    impl: Callable[..., torch.Tensor]
    vjp: Callable | None  # (ctx, g) -> one gradient (or None) per input
    saves: tuple = ()  # input indices and/or "out" the vjp reads: freed after backward
    grad_name: str = ""  # PyTorch's grad_fn name for the plain op
    inplace: str | None = None  # name of torch's in-place method, the eager fast path
    triton: str | None = None  # pointwise expression template, or "kernel:<template>"

    def __repr__(self):
        return f"<prim {self.name}>"


PRIMS: dict[str, Primitive] = {}


def _register(p: Primitive) -> Primitive:
    assert p.name not in PRIMS, p.name
    PRIMS[p.name] = p
    return p


def check(cond: bool, msg: Callable[[], str], exc=RuntimeError):
    """Raise ``exc(msg())`` when ``cond`` is false; the message is built only on failure."""
    if not cond:
        raise exc(msg())


# --------------------------------------------------------------------------- helpers


def aval_of(x) -> Aval | None:
    """The abstract value of a tensor-like operand, or None for a Python number."""
    if isinstance(x, Scalar):
        return None
    return Aval(x.shape, x.dtype, x.device)


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def fmt_operand(x) -> str:
    if isinstance(x, Scalar):
        return f"scalar {x!r}"
    return f"{str(x.dtype).replace('torch.', '')}{fmt_shape(x.shape)}"


def broadcast_shapes(op: str, a, b) -> torch.Size:
    a, b = tuple(a), tuple(b)
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        check(
            da == db or da == 1 or db == 1,
            lambda: f"{op}: The size of tensor a ({da}) must match the size of tensor b "
            f"({db}) at non-singleton dimension {max(len(a), len(b)) - i}; "
            f"got shapes {fmt_shape(a)} and {fmt_shape(b)}",
        )
        out.append(db if da == 1 else da)
    return torch.Size(reversed(out))


@functools.lru_cache(maxsize=4096)
def _result_type_cached(ka, kb):
    if ka[0] == kb[0] == "s":  # two Python numbers (lifted into a graph): Python's rules
        if float in (ka[1], kb[1]):
            return torch.float64
        return torch.bool if ka[1] is kb[1] is bool else torch.int64

    def dummy(k):
        if k[0] == "t":
            return torch.empty((0,) if k[2] else (), dtype=k[1])
        return k[1](1)

    return torch.result_type(dummy(ka), dummy(kb))


def _ptype_key(x):
    if isinstance(x, Scalar):
        return ("s", type(x))
    if getattr(x, "weak", False):  # a Python number lifted into a graph input
        return ("s", float if x.dtype.is_floating_point else int)
    return ("t", x.dtype, len(x.shape) > 0)


def result_dtype(a, b) -> torch.dtype:
    """PyTorch's type promotion for a binary op (0-d tensors and Python numbers rank lower)."""
    return _result_type_cached(_ptype_key(a), _ptype_key(b))


def device_of(*xs) -> torch.device:
    devs = {x.device for x in xs if not isinstance(x, Scalar) and not getattr(x, "weak", False)}
    return devs.pop() if len(devs) == 1 else _mixed_devices(devs)


def _mixed_devices(devs):
    if not devs:
        return torch.device("cpu")
    raise RuntimeError(
        f"Expected all tensors to be on the same device, but found at least two devices, "
        f"{', '.join(sorted(str(d) for d in devs))}!"
    )


def normalize_dims(op: str, dims, ndim: int) -> tuple[int, ...]:
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    out = []
    for d in dims:
        lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
        check(
            lo <= d <= hi,
            lambda: f"{op}: Dimension out of range (expected to be in range of [{lo}, {hi}], "
            f"but got {d})",
            IndexError,
        )
        out.append(d % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def is_float(dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _float_result(dtype):
    return dtype if is_float(dtype) else torch.get_default_dtype()


# --------------------------------------------------------------------------- meta rules


def _unary_meta(name, float_out=False):
    def meta(x):
        dtype = _float_result(x.dtype) if float_out else x.dtype
        return Aval(x.shape, dtype, x.device)

    return meta


def _binary_meta(name, out_dtype=None):
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
            dtype = _float_result(dtype)
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


def _cast_meta(x, dtype):
    return Aval(x.shape, dtype, x.device)


def _reduce_meta(name, out_dtype=None):
    def meta(x, dims=None, keepdim=False):
        nd = len(x.shape)
        dims = normalize_dims(name, dims, nd)
        if keepdim:
            shape = [1 if i in dims else s for i, s in enumerate(x.shape)]
        else:
            shape = [s for i, s in enumerate(x.shape) if i not in dims]
        if name in ("amax", "amin", "argmax"):
            for d in dims:
                check(
                    nd == 0 or x.shape[d] > 0,
                    lambda: f"{name}: Expected reduction dim {d} to have non-zero size, "
                    f"got input of shape {fmt_shape(x.shape)}",
                    IndexError,
                )
        dtype = x.dtype
        if out_dtype == "index":
            dtype = torch.int64
        elif name == "sum" and not is_float(dtype) and dtype != torch.int64:
            dtype = torch.int64  # torch sums integer and bool tensors as int64
        return Aval(torch.Size(shape), dtype, x.device)

    return meta


def _reshape_meta(x, shape):
    numel = math.prod(x.shape)
    check(
        math.prod(shape) == numel and all(s >= 0 for s in shape),
        lambda: f"reshape: shape '{list(shape)}' is invalid for input of size {numel}",
    )
    return Aval(torch.Size(shape), x.dtype, x.device)


def _permute_meta(x, dims):
    check(
        sorted(dims) == list(range(len(x.shape))),
        lambda: f"permute: dims {list(dims)} must be a permutation of the "
        f"{len(x.shape)} dims of input {fmt_shape(x.shape)}",
    )
    return Aval(torch.Size(x.shape[d] for d in dims), x.dtype, x.device)


def _expand_meta(x, shape):
    src = tuple(x.shape)
    check(
        len(shape) >= len(src),
        lambda: f"expand: the number of sizes provided ({len(shape)}) must be greater or "
        f"equal to the number of dimensions in the tensor ({len(src)})",
    )
    for i in range(1, len(src) + 1):
        check(
            src[-i] == shape[-i] or src[-i] == 1,
            lambda: f"expand: The expanded size of the tensor ({shape[-i]}) must match the "
            f"existing size ({src[-i]}) at non-singleton dimension {len(shape) - i}.  "
            f"Target sizes: {list(shape)}.  Tensor sizes: {list(src)}",
        )
    return Aval(torch.Size(shape), x.dtype, x.device)


def _slice_meta(x, dim, start, stop, step):
    size = x.shape[dim]
    n = max(0, (min(stop, size) - start + step - 1) // step) if start < size else 0
    shape = list(x.shape)
    shape[dim] = n
    return Aval(torch.Size(shape), x.dtype, x.device)


def _select_meta(x, dim, index):
    shape = list(x.shape)
    del shape[dim]
    return Aval(torch.Size(shape), x.dtype, x.device)


def _unslice_meta(g, shape, dim, start, stop, step):
    return Aval(torch.Size(shape), g.dtype, g.device)


def _cat_meta(*xs, dim):
    check(len(xs) > 0, lambda: "cat: expected a non-empty list of Tensors")
    ref = xs[0]
    nd = len(ref.shape)
    total = 0
    for i, x in enumerate(xs):
        check(
            len(x.shape) == nd
            and all(a == b for j, (a, b) in enumerate(zip(x.shape, ref.shape)) if j != dim),
            lambda: f"cat: Sizes of tensors must match except in dimension {dim}. "
            f"Expected size {fmt_shape(ref.shape)} but got size {fmt_shape(x.shape)} "
            f"for tensor number {i} in the list.",
        )
        total += x.shape[dim]
    shape = list(ref.shape)
    shape[dim] = total
    dtype = ref.dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return Aval(torch.Size(shape), dtype, device_of(*xs))


def _matmul_meta(a, b):
    check(
        len(a.shape) >= 2 and len(b.shape) >= 2,
        lambda: f"matmul: both operands must have at least 2 dims, got "
        f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}",
    )
    check(
        a.shape[-1] == b.shape[-2],
        lambda: f"matmul: mat1 and mat2 shapes cannot be multiplied "
        f"({'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))})",
    )
    check(
        a.dtype == b.dtype,
        lambda: f"matmul: expected m1 and m2 to have the same dtype, but got: "
        f"{str(a.dtype).replace('torch.', '')} != {str(b.dtype).replace('torch.', '')}",
    )
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return Aval(torch.Size((*batch, a.shape[-2], b.shape[-1])), a.dtype, device_of(a, b))


def _full_meta(shape, value, dtype, device):
    return Aval(torch.Size(shape), dtype, torch.device(device))


# --------------------------------------------------------------------------- vjp rules
# Rules see ``ctx.inputs`` (saved operands; fusegrad Tensors or Python numbers),
# ``ctx.out``, ``ctx.params`` and ``ctx.avals`` (input shapes/dtypes, never freed).
# ``F`` is fusegrad.ops, bound at the bottom of this module.


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


def _unary(name, impl, vjp, saves=(), grad_name=None, triton=None, float_out=False, inplace=True):
    tname = impl.__name__ if hasattr(impl, "__name__") else name
    return _register(Primitive(
        name, "unary", _unary_meta(name, float_out), impl, vjp, saves,
        grad_name or name.capitalize() + "Backward0",
        inplace=(tname + "_") if inplace else None, triton=triton,
    ))


def _binary(name, impl, vjp, saves=(), grad_name=None, triton=None, kind="binary", out=None,
            inplace=None):
    return _register(Primitive(
        name, kind, _binary_meta(name, out), impl, vjp, saves,
        grad_name or name.capitalize() + "Backward0", inplace=inplace, triton=triton,
    ))


# --------------------------------------------------------------------------- the table

neg = _unary("neg", torch.neg, lambda ctx, g: (-g,), triton="-{0}")
exp = _unary("exp", torch.exp, lambda ctx, g: (g * ctx.out,), ("out",), float_out=True,
             triton="tl.exp({0})")
log = _unary("log", torch.log, lambda ctx, g: (g / ctx.inputs[0],), (0,), float_out=True,
             triton="tl.log({0})")
sqrt = _unary("sqrt", torch.sqrt, lambda ctx, g: (g / (2 * ctx.out),), ("out",), float_out=True,
              triton="tl.sqrt({0})")
abs_ = _unary("abs", torch.abs, lambda ctx, g: (g * F.sign(ctx.inputs[0]),), (0,),
              triton="tl.abs({0})")
sin = _unary("sin", torch.sin, lambda ctx, g: (g * F.cos(ctx.inputs[0]),), (0,), float_out=True,
             triton="tl.sin({0})")
cos = _unary("cos", torch.cos, lambda ctx, g: (g * -F.sin(ctx.inputs[0]),), (0,), float_out=True,
             triton="tl.cos({0})")
tanh = _unary("tanh", torch.tanh, lambda ctx, g: (g * (1 - ctx.out * ctx.out),), ("out",),
              float_out=True, triton="_tanh({0})")
sigmoid = _unary("sigmoid", torch.sigmoid, lambda ctx, g: (g * ((1 - ctx.out) * ctx.out),),
                 ("out",), float_out=True, triton="tl.sigmoid({0})")
relu = _unary("relu", torch.relu, lambda ctx, g: (F.where(ctx.out > 0, g, 0.0),), ("out",),
              triton="tl.maximum({0}, 0)")
sign = _unary("sign", torch.sign, lambda ctx, g: (F.zeros_like(g),),
              triton="(({0} > 0).to({dtype}) - ({0} < 0).to({dtype}))")
cast = _register(Primitive(
    "cast", "unary", _cast_meta, lambda x, dtype: x.to(dtype), _vjp_cast,
    grad_name="ToCopyBackward0", triton="{0}.to({dtype})",
))
copy = _unary("copy", torch.clone, lambda ctx, g: (g,), grad_name="CloneBackward0",
              triton="{0}", inplace=False)

add = _binary("add", torch.add, _vjp_add, inplace="add_", triton="{0} + {1}")
sub = _binary("sub", torch.sub, _vjp_sub, inplace="sub_", triton="{0} - {1}")
mul = _binary("mul", torch.mul, _vjp_mul, (0, 1), inplace="mul_", triton="{0} * {1}")
div = _binary("div", torch.div, _vjp_div, (0, 1), inplace="div_", out="float",
              triton="{0} / {1}")
pow_ = _binary("pow", torch.pow, _vjp_pow, (0, 1, "out"), inplace="pow_",
               triton="_pow({0}, {1})")
maximum = _binary("maximum", torch.maximum, _vjp_maximum, (0, 1),
                  triton="tl.maximum({0}, {1})")
minimum = _binary("minimum", torch.minimum, _vjp_minimum, (0, 1),
                  triton="tl.minimum({0}, {1})")
for _name, _op in [("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                   ("ge", ">=")]:
    _binary(_name, getattr(torch, _name), None, kind="compare", out="bool",
            triton="{0} " + _op + " {1}")
logical_and = _binary("logical_and", torch.logical_and, None, kind="compare", out="bool",
                      triton="{0} & {1}")

where = _register(Primitive(
    "where", "ternary", _where_meta, torch.where, _vjp_where, (0,), "WhereBackward0",
    triton="tl.where({0}, {1}, {2})",
))
clamp = _register(Primitive(
    "clamp", "unary", _clamp_meta, lambda x, lo=None, hi=None: torch.clamp(x, lo, hi),
    _vjp_clamp, (0,), "ClampBackward1", triton="_clamp({0}, {lo}, {hi})",
))

sum_ = _register(Primitive(
    "sum", "reduce", _reduce_meta("sum"),
    lambda x, dims=None, keepdim=False: torch.sum(x, dims if dims is not None else (),
                                                  keepdim=keepdim),
    _vjp_sum, (), "SumBackward1", triton="kernel:reduce_sum",
))
amax = _register(Primitive(
    "amax", "reduce", _reduce_meta("amax"),
    lambda x, dims=None, keepdim=False: torch.amax(x, dims if dims is not None else (),
                                                   keepdim=keepdim),
    _vjp_amax, (0, "out"), "AmaxBackward0", triton="kernel:reduce_max",
))
amin = _register(Primitive(
    "amin", "reduce", _reduce_meta("amin"),
    lambda x, dims=None, keepdim=False: torch.amin(x, dims if dims is not None else (),
                                                   keepdim=keepdim),
    _vjp_amax, (0, "out"), "AminBackward0", triton="kernel:reduce_min",
))
argmax = _register(Primitive(
    "argmax", "reduce", _reduce_meta("argmax", "index"),
    lambda x, dims=None, keepdim=False: torch.argmax(x, dims, keepdim=keepdim),
    None, triton="kernel:reduce_argmax",
))

reshape = _register(Primitive(
    "reshape", "movement", _reshape_meta, lambda x, shape: x.reshape(shape), _vjp_reshape,
    (), "ViewBackward0", triton="kernel:view",
))
permute = _register(Primitive(
    "permute", "movement", _permute_meta, lambda x, dims: x.permute(dims), _vjp_permute,
    (), "PermuteBackward0", triton="kernel:view",
))
expand = _register(Primitive(
    "expand", "movement", _expand_meta, lambda x, shape: x.expand(shape), _vjp_expand,
    (), "ExpandBackward0", triton="kernel:view",
))
slice_ = _register(Primitive(
    "slice", "movement", _slice_meta,
    lambda x, dim, start, stop, step: x[(slice(None),) * dim + (slice(start, stop, step),)],
    _vjp_slice, (), "SliceBackward0", triton="kernel:view",
))

select = _register(Primitive(
    "select", "movement", _select_meta, lambda x, dim, index: x.select(dim, index), _vjp_select,
    (), "SelectBackward0", triton="kernel:view",
))


def _unslice_impl(g, shape, dim, start, stop, step):
    out = g.new_zeros(shape)
    out[(slice(None),) * dim + (slice(start, stop, step),)] = g
    return out


unslice = _register(Primitive(
    "unslice", "movement", _unslice_meta, _unslice_impl, _vjp_unslice, (), "SliceBackwardBackward0",
    triton="kernel:unslice",
))
cat = _register(Primitive(
    "cat", "movement", _cat_meta, lambda *xs, dim: torch.cat(xs, dim), _vjp_cat, (),
    "CatBackward0", triton="kernel:cat",
))


def _log_softmax_meta(x, dim):
    normalize_dims("log_softmax", dim, len(x.shape))
    return Aval(x.shape, _float_result(x.dtype), x.device)


def _vjp_log_softmax(ctx, g):
    # d log_softmax: g - softmax * sum(g); softmax = exp(out)
    return (g - F.exp(ctx.out) * F.sum(g, ctx.params["dim"], keepdim=True),)


# A primitive rather than a decomposition: one ATen call in eager and on the cpu backend,
# one row-reduction kernel on triton; the rule above keeps its derivative in fusegrad ops.
log_softmax = _register(Primitive(
    "log_softmax", "reduce", _log_softmax_meta, lambda x, dim: torch.log_softmax(x, dim),
    _vjp_log_softmax, ("out",), "LogSoftmaxBackward0", triton="kernel:log_softmax",
))
matmul = _register(Primitive(
    "matmul", "matmul", _matmul_meta, torch.matmul, _vjp_matmul, (0, 1), "MmBackward0",
    triton="kernel:matmul",
))
full = _register(Primitive(
    "full", "create", _full_meta,
    lambda shape, value, dtype, device: torch.full(shape, value, dtype=dtype, device=device),
    None, triton="kernel:full",
))

from fusegrad import ops as F  # noqa: E402  (vjp rules are written in fusegrad ops)
