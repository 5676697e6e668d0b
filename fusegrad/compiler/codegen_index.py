"""Index math and spelling for the Triton codegen: views folded into load addresses,
contiguous store addresses, Python numbers and dtypes as Triton source text.

A coordinate is an int (a constant) or a string (a Triton expression); addresses are
built from coordinates and the contiguous strides of the buffer in memory.
"""

from __future__ import annotations

import math

import torch

from fusegrad.compiler.schedule import indexed

TL_DTYPE = {
    torch.float32: "tl.float32", torch.float16: "tl.float16", torch.bfloat16: "tl.bfloat16",
    torch.float64: "tl.float64", torch.int64: "tl.int64", torch.int32: "tl.int32",
    torch.int16: "tl.int16", torch.int8: "tl.int8", torch.uint8: "tl.uint8",
    torch.bool: "tl.int1",
}
PTR_TYPE = {
    torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
    torch.float64: "*fp64", torch.int64: "*i64", torch.int32: "*i32", torch.int16: "*i16",
    torch.int8: "*i8", torch.uint8: "*u8", torch.bool: "*i1",
}


def tl_dtype(dtype) -> str:
    try:
        return TL_DTYPE[dtype]
    except KeyError:
        raise NotImplementedError(f"fusegrad triton codegen: no Triton type for {dtype}") from None


def ptr_type(dtype) -> str:
    try:
        return PTR_TYPE[dtype]
    except KeyError:
        raise NotImplementedError(f"fusegrad triton codegen: no Triton type for {dtype}") from None


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


def contiguous_strides(shape) -> list[int]:
    """As torch's: a dim of size 0 counts as 1, so no stride is 0 (nothing divides by 0)."""
    strides, acc = [], 1
    for s in reversed(tuple(shape)):
        strides.append(acc)
        acc *= max(s, 1)
    return strides[::-1]


def _mul(c, k: int):
    if c == 0 or k == 0:
        return 0
    if isinstance(c, int):
        return c * k
    return c if k == 1 else f"{_paren(c)} * {k}"


def _paren(c) -> str:
    s = str(c)
    if s.isidentifier() or s.lstrip("-").isdigit():
        return s
    depth = 0
    for ch in s:  # already one parenthesized group?
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in " +-*/%":
            return f"({s})"
    return s


def add_terms(terms) -> int | str:
    terms = list(terms)
    const = sum(t for t in terms if isinstance(t, int))
    parts = [t for t in terms if not isinstance(t, int)]
    if const:
        parts.append(str(const))
    if not parts:
        return 0
    return " + ".join(parts) if len(parts) > 1 else parts[0]


def linear(coords, shape) -> int | str:
    """The contiguous offset of ``coords`` in a buffer of ``shape``."""
    return add_terms(_mul(c, k) for c, k, s in zip(coords, contiguous_strides(shape), shape)
                     if indexed(s))


def view_back(e, out_coords: list) -> list:
    """Coordinates in the input of view ``e`` that hold the element at ``out_coords``."""
    x, y = e.inputs[0], e.out
    name, p = e.prim.name, e.params
    if name == "permute":
        inc = [0] * len(x.shape)
        for i, d in enumerate(p["dims"]):
            inc[d] = out_coords[i]
        return inc
    if name == "expand":
        lead = len(y.shape) - len(x.shape)
        return [out_coords[j + lead] if x.shape[j] == y.shape[j + lead] else 0
                for j in range(len(x.shape))]
    if name == "reshape":
        xs = [j for j, s in enumerate(x.shape) if indexed(s)]
        ys = [j for j, s in enumerate(y.shape) if indexed(s)]
        inc = [0] * len(x.shape)
        if [x.shape[j] for j in xs] == [y.shape[j] for j in ys]:
            for jx, jy in zip(xs, ys):
                inc[jx] = out_coords[jy]
            return inc
        flat = linear(out_coords, y.shape)
        for j, (s, k) in enumerate(zip(x.shape, contiguous_strides(x.shape))):
            if not indexed(s):
                continue
            t = flat if k == 1 else f"{_paren(flat)} // {k}"
            inc[j] = t if k * s >= math.prod(x.shape) else f"{_paren(t)} % {s}"
        return inc
    if name == "slice":
        inc = list(out_coords)
        d, start, step = p["dim"], p["start"], p["step"]
        c = _mul(out_coords[d], step)
        inc[d] = add_terms([c, start])
        return inc
    if name == "select":
        inc = list(out_coords)
        inc.insert(p["dim"], p["index"] % x.shape[p["dim"]])
        return inc
    raise NotImplementedError(f"fusegrad triton codegen: cannot fold {name} into an index")


def load_address(load, coords: list) -> int | str:
    """Offset into ``load.root`` of the element of ``load.var`` at ``coords``."""
    for e in reversed(load.chain):
        coords = view_back(e, coords)
    return linear(coords, load.root.shape)
