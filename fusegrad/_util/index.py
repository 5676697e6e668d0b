"""A small algebra of index expressions: symbols, integers, ``+``, ``*``, ``//``, ``%``.

View rules (how an element of a view maps back to its base) and kernel address math are
written with it instead of with strings: constants fold as terms are combined, and
``str()`` renders Python/Triton source with only the parentheses it needs.
"""

from __future__ import annotations

import math


class Expr:
    __slots__ = ()

    def __add__(self, other):
        return add(self, other)

    __radd__ = __add__

    def __mul__(self, k):
        return mul(self, k)

    __rmul__ = __mul__

    def __floordiv__(self, k):
        return floordiv(self, k)

    def __mod__(self, k):
        return mod(self, k)


class Sym(Expr):
    """A named value: a coordinate, a program id, an argument."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __str__(self):
        return self.name

    def atom(self) -> bool:
        return self.name.isidentifier()


class _Op(Expr):
    __slots__ = ("op", "args")

    def __init__(self, op, args):
        self.op, self.args = op, tuple(args)

    def atom(self) -> bool:
        return False

    def __str__(self):
        sep = {"add": " + ", "mul": " * ", "floordiv": " // ", "mod": " % "}[self.op]
        if self.op == "add":
            return sep.join(str(a) for a in self.args)
        return sep.join(_paren(a) for a in self.args)


def _paren(x) -> str:
    if isinstance(x, int):
        return f"({x})" if x < 0 else str(x)
    if isinstance(x, Sym) and not x.atom():
        return f"({x})"
    return str(x) if isinstance(x, Sym) else f"({x})"


def add(*terms):
    const, parts = 0, []
    for t in terms:
        if isinstance(t, int):
            const += t
        elif isinstance(t, _Op) and t.op == "add":
            for u in t.args:
                if isinstance(u, int):
                    const += u
                else:
                    parts.append(u)
        else:
            parts.append(t)
    if const:
        parts.append(const)
    if not parts:
        return 0
    return parts[0] if len(parts) == 1 else _Op("add", parts)


def mul(x, k: int):
    if isinstance(x, int):
        return x * k
    if k == 0:
        return 0
    return x if k == 1 else _Op("mul", (x, k))


def floordiv(x, k: int):
    if isinstance(x, int):
        return x // k
    return x if k == 1 else _Op("floordiv", (x, k))


def mod(x, k: int):
    if isinstance(x, int):
        return x % k
    return 0 if k == 1 else _Op("mod", (x, k))


def indexed(size: int) -> bool:
    """Does a dim of this extent get an index? A dim of size 1 does not: it broadcasts, at
    index 0. A dim of size 0 does: its empty extent masks off every element."""
    return size != 1


def contiguous_strides(shape) -> list[int]:
    """As torch's: a dim of size 0 counts as 1, so no stride is 0 (nothing divides by 0)."""
    strides, acc = [], 1
    for s in reversed(tuple(shape)):
        strides.append(acc)
        acc *= max(s, 1)
    return strides[::-1]


def linear(coords, shape):
    """The contiguous offset of ``coords`` in a buffer of ``shape``."""
    return add(*(mul(c, k) for c, k, s in zip(coords, contiguous_strides(shape), shape)
                 if indexed(s)))


def unflatten(flat, shape) -> list:
    """Coordinates in ``shape`` of the element at contiguous offset ``flat``."""
    out = [0] * len(shape)
    total = math.prod(shape)
    for j, (s, k) in enumerate(zip(shape, contiguous_strides(shape))):
        if indexed(s):
            t = floordiv(flat, k)
            out[j] = t if k * s >= total else mod(t, s)
    return out
