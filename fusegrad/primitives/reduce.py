"""Reductions: sum, amax, amin, argmax, and log_softmax (a normalisation over one dim)."""

from __future__ import annotations

import torch

from fusegrad.primitives.record import Kind, Reduce, prim
from fusegrad.primitives.shape import (Aval, check, float_result, fmt_shape, is_float,
                                       normalize_dims)


def reduce_meta(name, *, index=False, nonempty=False, widen_ints=False):
    def meta(x, dims=None, keepdim=False):
        nd = len(x.shape)
        dims = normalize_dims(name, dims, nd)
        if keepdim:
            shape = [1 if i in dims else s for i, s in enumerate(x.shape)]
        else:
            shape = [s for i, s in enumerate(x.shape) if i not in dims]
        if nonempty:
            for d in dims:
                check(
                    nd == 0 or x.shape[d] > 0,
                    lambda: f"{name}: Expected reduction dim {d} to have non-zero size, "
                    f"got input of shape {fmt_shape(x.shape)}",
                    IndexError,
                )
        dtype = x.dtype
        if index:
            dtype = torch.int64
        elif widen_ints and not is_float(dtype) and dtype != torch.int64:
            dtype = torch.int64  # torch sums integer and bool tensors as int64
        return Aval(torch.Size(shape), dtype, x.device)

    return meta


def _dims(dims):
    return dims if dims is not None else ()


_ATEN_REDUCE = "torch.{name}({{0}}, {{dims}}, keepdim={{p[keepdim]}}{{out}})"

sum_ = prim(
    "sum", Kind.REDUCE, reduce_meta("sum", widen_ints=True),
    lambda x, dims=None, keepdim=False: torch.sum(x, _dims(dims), keepdim=keepdim),
    grad_name="SumBackward1", aten=_ATEN_REDUCE.format(name="sum"), aten_out=True,
    reduce=Reduce("tl.sum", "{0} + {1}", "zero"))
amax = prim(
    "amax", Kind.REDUCE, reduce_meta("amax", nonempty=True),
    lambda x, dims=None, keepdim=False: torch.amax(x, _dims(dims), keepdim=keepdim),
    grad_name="AmaxBackward0", aten=_ATEN_REDUCE.format(name="amax"),
    aten_out=True, reduce=Reduce("tl.max", "tl.maximum({0}, {1})", "lowest"))
amin = prim(
    "amin", Kind.REDUCE, reduce_meta("amin", nonempty=True),
    lambda x, dims=None, keepdim=False: torch.amin(x, _dims(dims), keepdim=keepdim),
    grad_name="AminBackward0", aten=_ATEN_REDUCE.format(name="amin"),
    aten_out=True, reduce=Reduce("tl.min", "tl.minimum({0}, {1})", "highest"))
argmax = prim(
    "argmax", Kind.REDUCE, reduce_meta("argmax", index=True, nonempty=True),
    lambda x, dims=None, keepdim=False: torch.argmax(x, dims, keepdim=keepdim),
    differentiable=False, aten="torch.argmax({0}, {p[dims]!r}, keepdim={p[keepdim]})",
    reduce=Reduce("tl.argmax", None, "lowest", index=True))


def _log_softmax_meta(x, dim):
    normalize_dims("log_softmax", dim, len(x.shape))
    return Aval(x.shape, float_result(x.dtype), x.device)


# A primitive rather than a decomposition: one ATen call in eager and on the cpu backend,
# one row-reduction kernel on triton; its vjp keeps the derivative in fusegrad ops.
log_softmax = prim(
    "log_softmax", Kind.REDUCE, _log_softmax_meta, lambda x, dim: torch.log_softmax(x, dim),
    grad_name="LogSoftmaxBackward0", aten="torch.log_softmax({0}, {p[dim]})",
    reduce=Reduce(None, None, "lowest", keeps_shape=True))
