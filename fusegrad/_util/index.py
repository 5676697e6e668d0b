"""A small algebra of index expressions: symbols and integers under ``+ - * // %``, ceiling
division, comparisons and ``&``.

View rules (how an element of a view maps back to its base) and kernel address math are
written with it instead of with strings. Constants fold as terms are combined, an
expression knows its free symbols (a kernel derives a load's mask from them), ``evaluate``
gives its value for integer symbols, and ``str()`` renders Python/Triton source with only
the parentheses Python's precedence needs. Integers (and the booleans comparisons fold to)
are the constants; every other node is an ``Expr``. ``//`` and ``%`` mean Python's floor
division and modulo; Triton truncates instead, which agrees wherever kernels rely on the
value (nonnegative operands; a negative one only appears where a mask discards it).
"""

from __future__ import annotations

import math

# Python's binding strength, loosest first: an operand binding more loosely than its
# position needs is parenthesized
CMP, AND, ADD, MUL, NEG, ATOM = range(6)


class Expr:
    """An index expression. A node defined outside this module gives its operands as
    ``args`` (for ``free_symbols``), its binding strength as ``prec`` and its text as
    ``source()``."""

    __slots__ = ()
    prec = ATOM
    args: tuple = ()

    def source(self) -> str:
        raise NotImplementedError(type(self).__name__)

    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __neg__(self):
        return mul(self, -1)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __floordiv__(self, other):
        return floordiv(self, other)

    def __rfloordiv__(self, other):
        return floordiv(other, self)

    def __mod__(self, other):
        return mod(self, other)

    def __rmod__(self, other):
        return mod(other, self)

    def __and__(self, other):
        return conj(self, other)

    __rand__ = __and__

    def __str__(self):
        return render(self)

    def __repr__(self):
        return f"<{type(self).__name__} {render(self)}>"


class Sym(Expr):
    """A named value: a coordinate, a program id, a block size, an argument."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        assert name.isidentifier(), f"a symbol is named by an identifier, got {name!r}"
        self.name = name

    def source(self) -> str:
        return self.name

    def __eq__(self, other):
        return isinstance(other, Sym) and other.name == self.name

    def __hash__(self):
        return hash(("sym", self.name))


class Op(Expr):
    """An operator node: ``op`` names it (see ``_SPELL``), ``args`` are its operands."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, args):
        self.op, self.args = op, tuple(args)

    @property
    def prec(self):
        return _SPELL[self.op][1]

    def __eq__(self, other):
        return isinstance(other, Op) and (other.op, other.args) == (self.op, self.args)

    def __hash__(self):
        return hash((self.op, self.args))


# op -> (infix spelling, precedence)
_SPELL = {
    "add": (" + ", ADD), "mul": (" * ", MUL), "floordiv": (" // ", MUL), "mod": (" % ", MUL),
    "cdiv": (" // ", MUL), "lt": (" < ", CMP), "ge": (" >= ", CMP), "eq": (" == ", CMP),
    "and": (" & ", AND),
}


def _is_const(x) -> bool:
    return isinstance(x, int)  # bools included: comparisons fold to them


# --------------------------------------------------------------------------- arithmetic


def _coeff(t) -> tuple:
    """``t`` as (constant factor, the rest): ``x * 3`` is (3, x)."""
    if isinstance(t, Op) and t.op == "mul" and _is_const(t.args[-1]):
        rest = t.args[:-1]
        return t.args[-1], rest[0] if len(rest) == 1 else Op("mul", rest)
    return 1, t


def add(*terms):
    """A sum; nested sums flatten, the constants fold into one last term, and a split of
    a value into quotient and remainder adds back up to the value (see ``_rejoin``)."""
    const, parts = 0, []
    for t in terms:
        for u in (t.args if isinstance(t, Op) and t.op == "add" else (t,)):
            if _is_const(u):
                const += u
            else:
                parts.append(u)
    joined = _rejoin(parts)
    if joined is not None:
        return add(*joined, const)
    if const:
        parts.append(const)
    if not parts:
        return 0
    return parts[0] if len(parts) == 1 else Op("add", parts)


def _rejoin(parts):
    """``parts`` with one pair ``q % m * c`` and ``q // m * (m * c)`` replaced by ``q * c``
    (q == q // m * m + q % m, under floor and truncating division alike), or None. This
    undoes the split of a flat offset into coordinates when a reshape regroups dims and
    the address puts them back together: ``x // 12 * 12 + x // 4 % 3 * 4 + x % 4`` is x."""
    for i, t in enumerate(parts):
        c, r = _coeff(t)
        if not (isinstance(r, Op) and r.op == "mod" and _is_const(r.args[1]) and r.args[1] > 0):
            continue
        q, m = r.args
        div = floordiv(q, m)  # (x // a) // m folds to x // (a * m), as it is written
        for j, u in enumerate(parts):
            if j != i and _coeff(u) == (c * m, div):
                return [mul(q, c) if k == i else p for k, p in enumerate(parts) if k != j]
    return None


def sub(a, b):
    return add(a, mul(b, -1))


def mul(*factors):
    """A product; the constant factors fold into one last factor, and a sum times a constant
    distributes (``(x + 2) * 3`` is ``x * 3 + 6``), so address constants keep folding."""
    const, parts = 1, []
    for f in factors:
        for u in (f.args if isinstance(f, Op) and f.op == "mul" else (f,)):
            if _is_const(u):
                const *= u
            else:
                parts.append(u)
    if const == 0 or not parts:
        return const
    if len(parts) == 1 and isinstance(parts[0], Op) and parts[0].op == "add" and const != 1:
        return add(*(mul(t, const) for t in parts[0].args))
    if const != 1:
        parts.append(const)
    return parts[0] if len(parts) == 1 else Op("mul", parts)


def floordiv(x, k):
    if _is_const(x) and _is_const(k):
        return x // k
    if k == 1:
        return x
    if _is_const(k) and k > 0:
        c, rest = _coeff(x)
        if _is_const(c) and c % k == 0:  # (x * 6) // 3 == x * 2
            return mul(rest, c // k)
        if isinstance(x, Op) and x.op == "floordiv" and _is_const(x.args[1]) and x.args[1] > 0:
            return floordiv(x.args[0], x.args[1] * k)  # (x // a) // b == x // (a * b)
    return Op("floordiv", (x, k))


def mod(x, k):
    if _is_const(x) and _is_const(k):
        return x % k
    if k == 1:
        return 0
    if _is_const(k) and k > 0:
        c, _ = _coeff(x)
        if c % k == 0:  # (x * 6) % 3 == 0
            return 0
        if isinstance(x, Op) and x.op == "mod" and _is_const(x.args[1]) \
                and x.args[1] % k == 0:
            return mod(x.args[0], k)  # (x % 6) % 3 == x % 3
    return Op("mod", (x, k))


def cdiv(a, b):
    """Ceiling division as ``(a + b - 1) // b``: the number of blocks of ``b`` covering
    ``a`` (for b > 0)."""
    if _is_const(a) and _is_const(b):
        return (a + b - 1) // b
    if b == 1:
        return a
    return Op("cdiv", (a, b))


# --------------------------------------------------------------------------- predicates


def lt(a, b):
    return a < b if _is_const(a) and _is_const(b) else Op("lt", (a, b))


def ge(a, b):
    return a >= b if _is_const(a) and _is_const(b) else Op("ge", (a, b))


def eq(a, b):
    return a == b if _is_const(a) and _is_const(b) else Op("eq", (a, b))


def conj(*terms):
    """``a & b & ...``: True terms drop out, a False one decides, repeats count once; no
    terms is True."""
    parts = []
    for t in terms:
        for u in (t.args if isinstance(t, Op) and t.op == "and" else (t,)):
            if u is False:
                return False
            if u is not True and u not in parts:
                parts.append(u)
    if not parts:
        return True
    return parts[0] if len(parts) == 1 else Op("and", parts)


# --------------------------------------------------------------------------- reading


def free_symbols(x) -> frozenset:
    """The symbols ``x`` depends on."""
    if isinstance(x, Sym):
        return frozenset((x,))
    if isinstance(x, Expr):
        return frozenset().union(*(free_symbols(a) for a in x.args))
    return frozenset()


def evaluate(x, env):
    """The value of ``x`` with each symbol replaced by ``env[name]`` (a mapping of names to
    Python ints), with the meaning ``str(x)`` has as Python source."""
    if isinstance(x, Sym):
        return env[x.name]
    if not isinstance(x, Expr):
        return x
    if not isinstance(x, Op):
        raise TypeError(f"cannot evaluate {x!r}")
    v = [evaluate(a, env) for a in x.args]
    op = x.op
    if op == "add":
        return sum(v)
    if op == "mul":
        return math.prod(v)
    if op == "and":
        out = v[0]
        for b in v[1:]:
            out = out & b
        return out
    a, b = v
    return {"floordiv": lambda: a // b, "mod": lambda: a % b,
            "cdiv": lambda: (a + b - 1) // b, "lt": lambda: a < b,
            "ge": lambda: a >= b, "eq": lambda: a == b}[op]()


def render(x, prec: int = CMP) -> str:
    """Source text of ``x`` as an operand that needs precedence ``prec`` (the loosest
    binding allowed without parentheses)."""
    text, own = _render(x)
    return f"({text})" if own < prec else text


def _render(x) -> tuple[str, int]:
    if isinstance(x, bool):
        return ("True" if x else "False"), ATOM
    if isinstance(x, int):
        return str(x), (NEG if x < 0 else ATOM)
    if not isinstance(x, Op):  # a symbol, or a node defined elsewhere
        return x.source(), x.prec
    op, args = x.op, x.args
    spell, prec = _SPELL[op]
    if op == "add":
        out = render(args[0], ADD)
        for t in args[1:]:
            c, rest = (t, 1) if _is_const(t) else _coeff(t)
            if c < 0:  # x + y * -2 reads x - y * 2
                out += " - " + render(mul(rest, -c), ADD + 1)
            else:
                out += " + " + render(t, ADD + 1)
        return out, ADD
    if op == "mul" and args[-1] == -1:
        rest = args[0] if len(args) == 2 else Op("mul", args[:-1])
        return "-" + render(rest, NEG), NEG
    if op == "cdiv":
        a, b = args
        return f"({render(a, ADD)} + {render(b, ADD + 1)} - 1) // {render(b, MUL + 1)}", MUL
    # left-associative: the first operand may bind as loosely as the operator itself;
    # comparisons would chain (a < b < c), so neither of theirs may
    first, *more = args
    head = render(first, prec + 1 if prec == CMP else prec)
    return spell.join([head] + [render(a, prec + 1) for a in more]), prec


# --------------------------------------------------------------------------- layouts


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
