"""The OpCase record and the sample-input maker shared by every op family.

An entry names one user-facing op and gives it as ONE expression over a library module
``T``: ``op(T, *args, **kwargs)``.  Run with ``T = fusegrad`` it is the fusegrad callable,
with ``T = torch`` it is the PyTorch reference, so the two can never drift apart.

Sample inputs are ``torch.Tensor`` objects (float64 unless a case says otherwise); the
test harness copies each into a fusegrad tensor and a fresh torch leaf.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import fusegrad


@dataclass
class Sample:
    """One call of an op: positional args, keyword args and a short description."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    note: str = ""
    # indices (into args) of the float tensors that get requires_grad; None: all of them
    grad_args: tuple | None = None

    def describe(self) -> str:
        def fmt(a):
            if isinstance(a, torch.Tensor):
                nc = "" if a.is_contiguous() or a.dim() < 2 else ",noncontig"
                return f"{str(a.dtype).replace('torch.', '')}{list(a.shape)}{nc}"
            return repr(a)

        parts = [fmt(a) for a in self.args] + [f"{k}={fmt(v)}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})" + (f"  # {self.note}" if self.note else "")


@dataclass
class OpCase:
    """One user-facing op.

    Attributes:
        name: unique id used in test ids and repro lines.
        op: ``op(T, *args, **kwargs)``, the same expression for fusegrad and torch.
        samples: ``samples(m) -> list[Sample]`` where ``m`` is a :class:`Maker`.
        differentiable: whether backward and gradcheck are checked.
        gradcheck: run ``fusegrad.autograd.gradcheck`` (off only where finite differences
            cannot work, e.g. a float32 result).
        grad_name: whether to compare ``type(out.grad_fn).__name__`` with torch's.
    """

    name: str
    op: Callable[..., Any]
    samples: Callable[["Maker"], list]
    differentiable: bool = True
    gradcheck: bool = True
    grad_name: bool = True

    @property
    def fusegrad_fn(self):
        return functools.partial(self.op, fusegrad)

    @property
    def torch_fn(self):
        return functools.partial(self.op, torch)

    def make_samples(self) -> list:
        # seeded by the op's name: the same inputs on every run and in every xdist worker
        return self.samples(Maker(zlib.crc32(self.name.encode())))


class Maker:
    """Deterministic random inputs: float64 by default, small so gradcheck stays fast."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def t(self, *shape, low=-2.0, high=2.0, positive=False, noncontig=False,
          dtype=torch.float64, integer_valued=False):
        """A random tensor of ``shape``.

        ``positive`` draws from [0.5, 2] (domain of log/sqrt/pow); ``noncontig`` returns a
        transposed view of a tensor with the last two dims swapped; ``integer_valued``
        draws small integers stored as floats so that comparisons see ties.
        """
        if positive:
            low, high = 0.5, 2.0
        real = list(shape)
        if noncontig:
            assert len(shape) >= 2, "noncontig needs at least 2 dims"
            real[-1], real[-2] = real[-2], real[-1]
        if integer_valued:
            x = torch.randint(-2, 3, real, generator=self.gen).to(dtype)
        else:
            x = torch.rand(real, generator=self.gen, dtype=torch.float64) * (high - low) + low
            x = x.to(dtype)
        if noncontig:
            x = x.transpose(-1, -2)
            assert not x.is_contiguous() or x.numel() <= 1
        return x

    def nc(self, *shape, **kw):
        return self.t(*shape, noncontig=True, **kw)

    def pos(self, *shape, **kw):
        return self.t(*shape, positive=True, **kw)

    def int(self, *shape, low=0, high=4, dtype=torch.int64):
        return torch.randint(low, high, shape, generator=self.gen, dtype=dtype)

    def bool(self, *shape):
        return torch.rand(shape, generator=self.gen) > 0.5

    def unit(self, *shape):
        """Values in (0, 1), e.g. probability targets."""
        return torch.rand(shape, generator=self.gen, dtype=torch.float64) * 0.9 + 0.05


def S(*args, note="", grad_args=None, **kwargs) -> Sample:
    return Sample(tuple(args), kwargs, note, grad_args)
