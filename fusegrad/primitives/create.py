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
