"""Matrix products: ``matmul`` with PyTorch's rules for 1-D and batched operands, and the
named variants (mm, bmm, mv, dot, addmm)."""

from __future__ import annotations

from fusegrad import primitives as P
from fusegrad.autograd.names import composite
from fusegrad.dispatch import apply
from fusegrad.ops.movement import reshape, unsqueeze
from fusegrad.ops.pointwise import add, mul
from fusegrad.primitives import check
from fusegrad.tensor import Tensor

__all__ = ["matmul", "mm", "bmm", "dot", "mv", "addmm"]


def _mm(a, b):
    return apply(P.matmul, a, b)


@composite("MvBackward0")
def _mv(a, v):
    return reshape(_mm(a, unsqueeze(v, 1)), (a.shape[0],))


@composite("DotBackward0")
def _dot(a, b):
    return reshape(_mm(unsqueeze(a, 0), unsqueeze(b, 1)), ())


def matmul(a, b):
    """``a @ b`` with PyTorch's rules for 1-D and batched operands."""
    check(isinstance(a, Tensor) and isinstance(b, Tensor),
          lambda: "matmul: expected both operands to be Tensors")
    da, db = a.dim(), b.dim()
    check(da > 0 and db > 0, lambda: f"both arguments to matmul need to be at least 1D, but "
          f"they are {da}D and {db}D")
    if da == 1 and db == 1:
        check(a.shape[0] == b.shape[0], lambda: f"inconsistent tensor size, expected tensor "
              f"[{a.shape[0]}] and src [{b.shape[0]}] to have the same number of elements, but "
              f"got {a.shape[0]} and {b.shape[0]} elements respectively")
        return _dot(a, b)
    if da == 2 and db == 1:
        check(a.shape[1] == b.shape[0], lambda: f"size mismatch, got input ({a.shape[0]}), "
              f"mat ({a.shape[0]}x{a.shape[1]}), vec ({b.shape[0]})")
        return _mv(a, b)
    if da == 1:
        out = _mm(unsqueeze(a, 0), b) if db == 2 else matmul(unsqueeze(a, 0), b)
        if db > 2:  # PyTorch folds this into one mv and ends in _unsafe_view
            return apply(P.reshape, out, overload="_unsafe_view",
                         shape=(*out.shape[:-2], out.shape[-1]))
        return apply(P.reshape, out, overload="squeeze_.dim", shape=tuple(out.shape[1:]))
    if db == 1:
        out = matmul(a, unsqueeze(b, -1))
        return apply(P.reshape, out, overload="_unsafe_view", shape=tuple(out.shape[:-1]))
    if da == 2 and db == 2:
        return _mm(a, b)
    if db == 2:  # fold the batch into rows: one large mm, as PyTorch does
        flat = reshape(a, (-1, a.shape[-1]))
        out = _mm(flat, b)
        return apply(P.reshape, out, overload="_unsafe_view", shape=(*a.shape[:-1], b.shape[-1]))
    out = apply(P.matmul, a, b)  # BmmBackward0
    # PyTorch's last step (and so its grad_fn name): a contiguous() of a transposed result
    # for 2-D @ batched, an _unsafe_view of the bmm result otherwise
    return apply(P.reshape, out, overload="clone" if da == 2 else "_unsafe_view",
                 shape=tuple(out.shape))


def mm(a, b):
    check(a.dim() == 2, lambda: "mm: self must be a matrix")
    check(b.dim() == 2, lambda: "mm: mat2 must be a matrix")
    return _mm(a, b)


def bmm(a, b):
    check(a.dim() == 3 and b.dim() == 3, lambda: f"bmm: batch1 and batch2 must be 3D tensors, "
          f"got {a.dim()}D and {b.dim()}D")
    return apply(P.matmul, a, b)


def dot(a, b):
    return _dot(a, b)


def mv(a, v):
    return _mv(a, v)


@composite("AddmmBackward0")
def addmm(bias, a, b, *, beta=1, alpha=1):
    out = _mm(a, b)
    if alpha != 1:
        out = mul(out, alpha)
    return add(out, bias if beta == 1 else mul(bias, beta))
