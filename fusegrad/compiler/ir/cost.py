"""What one equation costs: floating-point work and bytes, defined once."""

from __future__ import annotations

import math

from fusegrad._util import dtypes
from fusegrad.compiler.ir.graph import Eqn, Var
from fusegrad.primitives import Kind


def nbytes(v: Var) -> int:
    return v.numel() * dtypes.itemsize(v.dtype)


def eqn_flops(e: Eqn) -> int:
    """2mnk per matmul, one per element for pointwise ops, one per input element for
    reductions, none for movement and creation."""
    kind = e.prim.kind
    if kind is Kind.MATMUL:
        a, b = e.inputs
        batch = math.prod(e.out.shape[:-2]) if len(e.out.shape) > 2 else 1
        return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]
    if kind.pointwise:
        return e.out.numel()
    if kind is Kind.REDUCE:
        return e.inputs[0].numel()
    return 0
