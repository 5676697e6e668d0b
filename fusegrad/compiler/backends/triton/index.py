"""Index math and spelling for the Triton codegen: kernel coordinates that know their tile
axis, masks derived from the coordinates an index uses, views folded into load addresses,
contiguous store addresses, Python numbers and dtypes as Triton source text.

Coordinates and addresses are ``fusegrad._util.index`` expressions; they become text only
when a line is emitted. A coordinate is a ``Coord``: a symbol with the axis it varies along
and the mask that says where it is in range, so the mask of a load or store is the
conjunction of the masks of the coordinates its address depends on (as Inductor derives
masks from the free symbols of an index).
"""

from __future__ import annotations

import math

import torch

from fusegrad._util import dtypes, index
from fusegrad._util.index import ADD, Expr, Sym


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


# --------------------------------------------------------------------------- coordinates

# the order masks are written in: rows, columns, then a matmul's K
_AXIS_RANK = {0: 0, 1: 1, "k": 2}


class Coord(Sym):
    """A kernel coordinate: a symbol that varies along tile ``axis`` (0, 1, or ``"k"`` for
    a matmul's K) and is in range where ``mask`` holds (None: everywhere, as a batch
    index taken from the program id)."""

    __slots__ = ("axis", "mask")

    def __init__(self, name: str, axis, mask=None):
        super().__init__(name)
        self.axis, self.mask = axis, mask


class Arange(Expr):
    """``tl.arange(0, block)`` laid along tile ``axis`` of a 2-D block."""

    __slots__ = ("args", "axis")

    def __init__(self, block, axis: int):
        self.args, self.axis = (block,), axis

    def source(self) -> str:
        lay = "[:, None]" if self.axis == 0 else "[None, :]"
        return f"tl.arange(0, {index.render(self.args[0])}){lay}"

    def __eq__(self, other):
        return isinstance(other, Arange) and (other.args, other.axis) == (self.args, self.axis)

    def __hash__(self):
        return hash(("arange", self.args, self.axis))


def mask_of(*exprs):
    """Where every coordinate the expressions use is in range: the conjunction of their
    masks, rows before columns before K (True when no coordinate needs one)."""
    coords = {s for e in exprs for s in index.free_symbols(e)
              if isinstance(s, Coord) and s.mask is not None}
    ranked = sorted(coords, key=lambda c: (_AXIS_RANK[c.axis], c.name))
    return index.conj(*(c.mask for c in ranked))


def mask_arg(mask, other: str | None = None) -> str:
    """The ``mask=`` keyword of a load or store ('' when nothing is masked)."""
    if mask is True:
        return ""
    return f", mask={index.render(mask)}" + (f", other={other}" if other is not None else "")


def pointer(ptr: str, offset, zero: str) -> str:
    """``ptr + offset`` as one pointer block. A constant offset is added to ``zero`` (a
    [1, 1] int32 block) so that the pointer is a block even for a scalar."""
    if isinstance(offset, int):
        return f"{ptr} + {zero}" + (f" + {offset}" if offset else "")
    # one addptr: the offset sum is parenthesized rather than added to the pointer termwise
    return f"{ptr} + {index.render(offset, ADD + 1)}"


# --------------------------------------------------------------------------- addresses


def load_address(load, coords: list):
    """Offset into ``load.root`` of the element of ``load.var`` at ``coords``: each view of
    the chain maps the coordinates back through its record's rule."""
    for e in reversed(load.chain):
        coords = e.prim.view.back(tuple(e.inputs[0].shape), tuple(e.out.shape), e.params,
                                  coords)
    return index.linear(coords, load.root.shape)

