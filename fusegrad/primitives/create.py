"""Tensors made from nothing but parameters."""

from __future__ import annotations

import torch

from fusegrad.primitives.record import Kind, prim
from fusegrad.primitives.shape import Aval


def _full_meta(shape, value, dtype, device):
    return Aval(torch.Size(shape), dtype, torch.device(device))


full = prim(
    "full", Kind.CREATE, _full_meta,
    lambda shape, value, dtype, device: torch.full(shape, value, dtype=dtype, device=device),
    differentiable=False,
    aten="torch.full({p[shape]!r}, {p[value]!r}, dtype={dtype}, device={dev})")


def _iota_meta(n, dtype, device):
    return Aval(torch.Size((n,)), dtype, torch.device(device))


# 0, 1, ..., n - 1 (one-hot masks, index picks). Backends emit creation prims as uniform
# fills, so fusegrad.ops.iota makes it a constant of a trace rather than an equation.
iota = prim(
    "iota", Kind.CREATE, _iota_meta,
    lambda n, dtype, device: torch.arange(n, dtype=dtype, device=device),
    differentiable=False, aten="torch.arange({p[n]!r}, dtype={dtype}, device={dev})")
