"""``Dropout``: zero random elements while training."""

from __future__ import annotations

from fusegrad.nn import functional as F
from fusegrad.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """While ``self.training``, zero each element with probability ``p`` and scale the rest
    by ``1 / (1 - p)``; in eval mode, return the input unchanged."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
