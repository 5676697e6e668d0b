"""The OpInfo-style table of every user-facing op, split by family.

``ALL_CASES`` drives tests/test_ops.py: one :class:`~opcases.common.OpCase` per op (or op
form: function, Tensor method, Python operator), each with its sample inputs.
"""

from opcases import movement, nn, pointwise, reductions
from opcases.common import Maker, OpCase, S, Sample

ALL_CASES: list[OpCase] = [*pointwise.CASES, *reductions.CASES, *movement.CASES, *nn.CASES]
BY_NAME = {c.name: c for c in ALL_CASES}
assert len(BY_NAME) == len(ALL_CASES), "duplicate OpCase names"

__all__ = ["ALL_CASES", "BY_NAME", "Maker", "OpCase", "S", "Sample"]
