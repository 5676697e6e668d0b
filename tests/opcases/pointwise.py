"""Pointwise ops: unary, binary with broadcasting, pow, clamp, where, comparisons, and the
Python operators (including reflected forms with Python numbers)."""

from __future__ import annotations

from opcases.common import OpCase, S


def _unary_samples(positive=False):
    def samples(m):
        t = m.pos if positive else m.t
        return [
            S(t(3, 4)),
            S(t()),  # 0-d
            S(t(5)),
            S(t(3, 4, noncontig=True)),
            S(t(2, 3, 2)),
        ]

    return samples


def _binary_samples(positive_rhs=False):
    def samples(m):
        r = m.pos if positive_rhs else m.t
        return [
            S(m.t(3, 4), r(3, 4)),
            S(m.t(3, 1), r(1, 4), note="broadcast both"),
            S(m.t(2, 3, 4), r(4), note="broadcast rhs"),
            S(m.t(4), r(2, 3, 4), note="broadcast lhs"),
            S(m.t(), r(3, 4), note="0-d lhs"),
            S(m.t(3, 4), r(), note="0-d rhs"),
            S(m.t(), r(), note="0-d both"),
            S(m.nc(3, 4), r(3, 4, noncontig=True), note="noncontig"),
            S(m.t(3, 4), 1.5, note="python float"),
            S(m.t(3, 4), 2, note="python int"),
        ]

    return samples


def _compare_samples(m):
    iv = dict(integer_valued=True)
    return [
        S(m.t(3, 4, **iv), m.t(3, 4, **iv)),
        S(m.t(3, 1, **iv), m.t(1, 4, **iv), note="broadcast"),
        S(m.t(3, 4, **iv), 1, note="python int"),
        S(m.t(3, 4, **iv), 0.5, note="python float"),
        S(m.t(**iv), m.t(2, 3, **iv), note="0-d lhs"),
        S(m.nc(3, 4, **iv), m.t(3, 4, **iv), note="noncontig"),
    ]


UNARY = ["neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu"]
POSITIVE = {"log", "sqrt"}

CASES = []
for _n in UNARY:
    CASES.append(OpCase(_n, (lambda n: lambda T, x: getattr(T, n)(x))(_n),
                        _unary_samples(_n in POSITIVE)))
    CASES.append(OpCase(f"Tensor.{_n}", (lambda n: lambda T, x: getattr(x, n)())(_n),
                        lambda m, n=_n: _unary_samples(n in POSITIVE)(m)[:2]))

for _n in ["add", "sub", "mul", "div"]:
    CASES.append(OpCase(_n, (lambda n: lambda T, a, b: getattr(T, n)(a, b))(_n),
                        _binary_samples(positive_rhs=_n == "div")))
    CASES.append(OpCase(f"Tensor.{_n}", (lambda n: lambda T, a, b: getattr(a, n)(b))(_n),
                        lambda m, n=_n: _binary_samples(n == "div")(m)[:3]))

CASES += [
    OpCase("add_alpha", lambda T, a, b: T.add(a, b, alpha=2.5),
           lambda m: [S(m.t(3, 4), m.t(3, 4)), S(m.t(3, 1), m.t(4))]),
    OpCase("sub_alpha", lambda T, a, b: T.sub(a, b, alpha=-3),
           lambda m: [S(m.t(3, 4), m.t(3, 4)), S(m.t(2, 3), 2.0)]),
    OpCase("maximum", lambda T, a, b: T.maximum(a, b), lambda m: _binary_samples()(m)[:8]),
    OpCase("minimum", lambda T, a, b: T.minimum(a, b), lambda m: _binary_samples()(m)[:8]),
    OpCase("pow", lambda T, a, b: T.pow(a, b), lambda m: [
        S(m.pos(3, 4), 2, note="int exponent"),
        S(m.pos(3, 4), 0.5),
        S(m.pos(3, 4), -1.5),
        S(m.t(3, 4), 3, note="odd power of negatives"),
        S(m.t(3, 4), 0, note="zero exponent"),
        S(m.pos(), 2.0, note="0-d"),
        S(m.pos(3, 4), m.t(3, 4), note="tensor exponent"),
        S(m.pos(3, 1), m.t(1, 4), note="tensor exponent, broadcast"),
        S(m.pos(3, 4, noncontig=True), m.t(4), note="noncontig base"),
        S(2.5, m.t(3, 4), note="python base"),
    ]),
    OpCase("Tensor.pow", lambda T, a, b: a.pow(b), lambda m: [S(m.pos(3, 4), 2.0),
                                                             S(m.pos(3), m.t(3))]),
    OpCase("clamp", lambda T, x, **kw: T.clamp(x, **kw), lambda m: [
        S(m.t(3, 4), min=-0.5, max=0.7),
        S(m.t(3, 4), min=0.1),
        S(m.t(3, 4), max=-0.2),
        S(m.t(), min=-1.0, max=1.0, note="0-d"),
        S(m.nc(3, 4), min=-0.5, max=0.5, note="noncontig"),
        S(m.t(5), min=-1, max=1, note="int bounds"),
        S(m.t(3, 4), min=m.t(3, 4) * 0.3 - 0.5, max=m.t(4) * 0.3 + 0.5, note="tensor bounds"),
        S(m.t(3, 4), min=m.t(3, 1) * 0.5, note="tensor min, broadcast"),
        S(m.t(3, 4), max=m.t() * 0.5, note="0-d tensor max"),
    ]),
    OpCase("Tensor.clamp", lambda T, x, lo, hi: x.clamp(lo, hi),
           lambda m: [S(m.t(3, 4), -0.5, 0.5)]),
    OpCase("where", lambda T, c, a, b: T.where(c, a, b), lambda m: [
        S(m.bool(3, 4), m.t(3, 4), m.t(3, 4)),
        S(m.bool(3, 1), m.t(1, 4), m.t(3, 4), note="broadcast"),
        S(m.bool(3, 4), m.t(3, 4), 0.0, note="python other"),
        S(m.bool(3, 4), 1.5, m.t(4), note="python input"),
        S(m.bool(), m.t(2, 3), m.t(), note="0-d cond"),
        S(m.bool(4, 3).t(), m.nc(3, 4), m.t(3, 4), note="noncontig"),
    ]),
]

for _n in ["eq", "ne", "lt", "le", "gt", "ge"]:
    CASES.append(OpCase(_n, (lambda n: lambda T, a, b: getattr(T, n)(a, b))(_n),
                        _compare_samples, differentiable=False))

# Python operators: forward, reflected and comparison forms
_OPS = {
    "a+b": lambda T, a, b: a + b,
    "a-b": lambda T, a, b: a - b,
    "a*b": lambda T, a, b: a * b,
    "a/b": lambda T, a, b: a / b,
}
for _n, _f in _OPS.items():
    CASES.append(OpCase(f"op:{_n}", _f, lambda m: [
        S(m.t(3, 4), m.t(3, 4) + 3),
        S(m.t(3, 1), m.t(4) + 3, note="broadcast"),
        S(m.t(3, 4), 2.5, note="python rhs"),
    ]))
_REFLECTED = {
    "2+x": lambda T, x: 2 + x,
    "2.5-x": lambda T, x: 2.5 - x,
    "3*x": lambda T, x: 3 * x,
    "2/x": lambda T, x: 2 / x,
    "2**x": lambda T, x: 2 ** x,
    "x**2": lambda T, x: x ** 2,
    "x**0.5": lambda T, x: x ** 0.5,
    "x**x": lambda T, x: x ** x,
    "-x": lambda T, x: -x,
    "abs(x)": lambda T, x: abs(x),
    "x+x": lambda T, x: x + x,
    "x*x-x/2": lambda T, x: x * x - x / 2,
}
for _n, _f in _REFLECTED.items():
    CASES.append(OpCase(f"op:{_n}", _f, lambda m: [S(m.pos(3, 4)), S(m.pos()), S(m.pos(4))]))
_COMPARE_OPS = {
    "a==b": lambda T, a, b: a == b, "a!=b": lambda T, a, b: a != b,
    "a<b": lambda T, a, b: a < b, "a<=b": lambda T, a, b: a <= b,
    "a>b": lambda T, a, b: a > b, "a>=b": lambda T, a, b: a >= b,
    "1<a": lambda T, a, b: 1 < a, "0>=a": lambda T, a, b: 0 >= a,
    "0.5==a": lambda T, a, b: 0.5 == a,
}
for _n, _f in _COMPARE_OPS.items():
    CASES.append(OpCase(f"op:{_n}", _f, lambda m: _compare_samples(m)[:2] + [
        S(m.t(3, 4, integer_valued=True) / 2, 0.5, note="ties")], differentiable=False))
