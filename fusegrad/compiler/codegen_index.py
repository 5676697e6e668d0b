"""Index math and spelling for the Triton codegen: views folded into load addresses,
contiguous store addresses, Python numbers and dtypes as Triton source text.

A coordinate is an int (a constant) or a string (a Triton expression); addresses are
built from coordinates and the contiguous strides of the buffer in memory.
"""

from __future__ import annotations

import math

import torch

from fusegrad._util import dtypes, index

def tl_dtype(dtype) -> str:
    t = dtypes.tl(dtype)
    if t is None:
        raise NotImplementedError(f"fusegrad triton codegen: no Triton type for {dtype}")
    return t


def ptr_type(dtype) -> str:
    t = dtypes.ptr(dtype)
    if t is None:
        raise NotImplementedError(f"fusegrad triton codegen: no Triton type for {dtype}")
    return t


def compute_dtype(dtype):
    """Half types compute in float32 (PyTorch's opmath) and round once per op."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def literal(x, dtype=None) -> str:
    """A Python number as Triton source, typed to ``dtype`` where that matters."""
    if x is None:
        return "None"
    if isinstance(x, bool):
        return "True" if x else "False"
    if dtype is not None and (dtype.is_floating_point) and isinstance(x, int):
        x = float(x)
    if isinstance(x, float):
        if math.isnan(x):
            return 'float("nan")'
        if math.isinf(x):
            return 'float("inf")' if x > 0 else '(-float("inf"))'
        s = repr(x)
        return f"({s})" if x < 0 else s
    return f"({x})" if x < 0 else repr(x)


def _expr(c):
    return c if isinstance(c, (int, index.Expr)) else index.Sym(str(c))


def _src(x):
    return x if isinstance(x, int) else str(x)


def linear(coords, shape) -> int | str:
    """The contiguous offset of ``coords`` (source text or ints) in a buffer of ``shape``."""
    return _src(index.linear([_expr(c) for c in coords], shape))


def load_address(load, coords: list) -> int | str:
    """Offset into ``load.root`` of the element of ``load.var`` at ``coords``: each view of
    the chain maps the coordinates back through its record's rule."""
    coords = [_expr(c) for c in coords]
    for e in reversed(load.chain):
        coords = e.prim.view.back(tuple(e.inputs[0].shape), tuple(e.out.shape), e.params,
                                  coords)
    return _src(index.linear(coords, load.root.shape))
