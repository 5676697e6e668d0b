"""Movement primitives: views (reshape, permute, expand, slice, select) and the two that
copy (cat, unslice, the gradient of a slice).

A view's record says how its elements map back to its input (``View.back``) and which
dims move together (``View.dims``), so kernels fold views into their index math and
the scheduler unifies iteration spaces without knowing any view by name.
"""

from __future__ import annotations

import math

import torch

from fusegrad._util.index import add, indexed, linear, mul, unflatten
from fusegrad.primitives.record import Identity, Kind, View, prim
from fusegrad.primitives.shape import Aval, check, device_of, fmt_shape


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


# --------------------------------------------------------------------------- view rules
# back(x_shape, y_shape, params, coords) -> coordinates in x of the element at coords of y
# dims(x_shape, y_shape, params) -> [(x dim, y dim)] moving together, or why there are none


def _permute_back(xs, ys, p, c):
    inc = [0] * len(xs)
    for i, d in enumerate(p["dims"]):
        inc[d] = c[i]
    return inc


def _permute_dims(xs, ys, p):
    return [(d, i) for i, d in enumerate(p["dims"]) if indexed(ys[i])]


def _expand_back(xs, ys, p, c):
    lead = len(ys) - len(xs)
    return [c[j + lead] if xs[j] == ys[j + lead] else 0 for j in range(len(xs))]


def _expand_dims(xs, ys, p):
    lead = len(ys) - len(xs)
    return [(j, j + lead) for j, s in enumerate(xs) if indexed(s)]


def _reshape_pairs(xs, ys):
    """The indexed dims of x and y, paired one to one when the reshape only adds or drops
    dims of size 1; None when it regroups them."""
    jx = [j for j, s in enumerate(xs) if indexed(s)]
    jy = [j for j, s in enumerate(ys) if indexed(s)]
    if [xs[j] for j in jx] != [ys[j] for j in jy]:
        return None
    return list(zip(jx, jy))


def _reshape_back(xs, ys, p, c):
    pairs = _reshape_pairs(xs, ys)
    if pairs is None:  # through the flat offset
        return unflatten(linear(c, ys), xs)
    inc = [0] * len(xs)
    for jx, jy in pairs:
        inc[jx] = c[jy]
    return inc


def _reshape_dims(xs, ys, p):
    pairs = _reshape_pairs(xs, ys)
    if pairs is None:
        return f"reshape {list(xs)} -> {list(ys)} regroups the dims"
    return pairs


def _slice_back(xs, ys, p, c):
    inc = list(c)
    d = p["dim"]
    inc[d] = add(mul(c[d], p["step"]), p["start"])
    return inc


def _select_back(xs, ys, p, c):
    inc = list(c)
    inc.insert(p["dim"], p["index"] % xs[p["dim"]])
    return inc


def _gather_dims(name):
    return lambda xs, ys, p: f"{name} needs a gather"


def _slice_impl(x, dim, start, stop, step):
    return x[(slice(None),) * dim + (slice(start, stop, step),)]


def _unslice_impl(g, shape, dim, start, stop, step):
    out = g.new_zeros(shape)
    out[(slice(None),) * dim + (slice(start, stop, step),)] = g
    return out


def _unslice_places(p, shapes):
    return [(0, p["start"], p["stop"], p["step"])]


def _cat_places(p, shapes):
    out, off = [], 0
    for i, s in enumerate(shapes):
        out.append((i, off, off + s[p["dim"]], 1))
        off += s[p["dim"]]
    return out


def _same_type(x, out) -> bool:
    return tuple(x.shape) == tuple(out.shape) and x.dtype == out.dtype


reshape = prim(
    "reshape", Kind.MOVEMENT, _reshape_meta, lambda x, shape: x.reshape(shape),
    grad_name="ViewBackward0", aten="{0}.reshape({p[shape]!r})",
    view=View(_reshape_back, _reshape_dims, "{0}.reshape({p[shape]!r})"),
    identity=Identity(noop=lambda p, x, out: _same_type(x, out),
                      compose=lambda inner, outer: outer))
permute = prim(
    "permute", Kind.MOVEMENT, _permute_meta, lambda x, dims: x.permute(dims),
    grad_name="PermuteBackward0", aten="{0}.permute({p[dims]!r})",
    view=View(_permute_back, _permute_dims, "{0}.permute({p[dims]!r})"),
    identity=Identity(
        noop=lambda p, x, out: list(p["dims"]) == list(range(len(out.shape))),
        compose=lambda inner, outer: {"dims": tuple(inner["dims"][d] for d in outer["dims"])}))
expand = prim(
    "expand", Kind.MOVEMENT, _expand_meta, lambda x, shape: x.expand(shape),
    grad_name="ExpandBackward0", aten="{0}.expand({p[shape]!r})",
    view=View(_expand_back, _expand_dims, "{0}.expand({p[shape]!r})"),
    identity=Identity(noop=lambda p, x, out: _same_type(x, out)))
slice_ = prim(
    "slice", Kind.MOVEMENT, _slice_meta, _slice_impl, grad_name="SliceBackward0",
    aten="{0}[{sl}]", view=View(_slice_back, _gather_dims("slice"), "{0}[{sl}]"))
select = prim(
    "select", Kind.MOVEMENT, _select_meta, lambda x, dim, index: x.select(dim, index),
    grad_name="SelectBackward0", aten="{0}.select({p[dim]}, {p[index]})",
    view=View(_select_back, _gather_dims("select"), "{0}.select({p[dim]}, {p[index]})"))
unslice = prim(
    "unslice", Kind.MOVEMENT, _unslice_meta, _unslice_impl, grad_name="SliceBackwardBackward0",
    aten="torch.slice_scatter(torch.zeros({p[shape]!r}, dtype={dtype}, device={dev}), "
         "{0}, {p[dim]}, {p[start]}, {p[stop]}, {p[step]})", aten_name="slice_backward",
    places=_unslice_places)
cat = prim(
    "cat", Kind.MOVEMENT, _cat_meta, lambda *xs, dim: torch.cat(xs, dim),
    grad_name="CatBackward0", aten="torch.cat([{all}], {p[dim]}{out})", aten_out=True,
    places=_cat_places)
