"""Matrix multiplication."""

from __future__ import annotations

import torch

from fusegrad._util import dtypes
from fusegrad.primitives.record import Kind, prim
from fusegrad.primitives.shape import Aval, broadcast_shapes, check, device_of, fmt_shape


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
        f"{dtypes.name(a.dtype)} != {dtypes.name(b.dtype)}",
    )
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return Aval(torch.Size((*batch, a.shape[-2], b.shape[-1])), a.dtype, device_of(a, b))


matmul = prim(
    "matmul", Kind.MATMUL, _matmul_meta, torch.matmul, grad_name="MmBackward0",
    aten="torch.matmul({0}, {1}{out})", aten_out=True, aten_name="mm")
