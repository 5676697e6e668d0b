"""Reductions and normalisations: sum mean max min amax argmax softmax log_softmax
logsumexp norm (all dims, one dim, negative dims, tuples of dims, keepdim, 0-d/1-d)."""

from __future__ import annotations

from opcases.common import OpCase, S


def _dim_samples(m, tuples=True, none=True):
    out = [
        S(m.t(3, 4)) if none else None,
        S(m.t(3, 4), 1),
        S(m.t(3, 4), -2, note="negative dim"),
        S(m.t(3, 4), 0, True, note="keepdim"),
        S(m.t(2, 3, 4), -1, True, note="keepdim, negative dim"),
        S(m.nc(3, 4), 1, note="noncontig"),
        S(m.t(5), 0, note="1-d"),
        S(m.t(), 0, note="0-d, dim 0"),
        S(m.t()) if none else None,
    ]
    if tuples:
        out += [
            S(m.t(2, 3, 4), (0, 2), note="tuple of dims"),
            S(m.t(2, 3, 4), (-1, 0), True, note="tuple of dims, keepdim"),
        ]
    return [s for s in out if s is not None]


def _softmax_samples(m):
    return [
        S(m.t(3, 4), 1),
        S(m.t(3, 4), 0),
        S(m.t(2, 3, 4), -1, note="negative dim"),
        S(m.t(2, 3, 4), 1),
        S(m.nc(3, 4), -1, note="noncontig"),
        S(m.t(5) * 10, 0, note="1-d, large values"),
        S(m.t(), 0, note="0-d"),
    ]


CASES = [
    OpCase("sum", lambda T, x, *a: T.sum(x, *a), _dim_samples),
    OpCase("Tensor.sum", lambda T, x, *a: x.sum(*a), lambda m: _dim_samples(m)[:4]),
    OpCase("sum_kw", lambda T, x, d, k: T.sum(x, dim=d, keepdim=k),
           lambda m: [S(m.t(3, 4), 1, True), S(m.t(3, 4), [0, 1], False, note="list of dims")]),
    OpCase("mean", lambda T, x, *a: T.mean(x, *a), _dim_samples),
    OpCase("Tensor.mean", lambda T, x, *a: x.mean(*a), lambda m: _dim_samples(m)[:4]),
    OpCase("amax", lambda T, x, *a: T.amax(x, *a), _dim_samples),
    OpCase("max", lambda T, x, *a: T.max(x, *a), lambda m: _dim_samples(m, tuples=False)),
    OpCase("min", lambda T, x, *a: T.min(x, *a), lambda m: _dim_samples(m, tuples=False)),
    OpCase("max_binary", lambda T, a, b: T.max(a, b),
           lambda m: [S(m.t(3, 4), m.t(3, 4)), S(m.t(3, 1), m.t(4))]),
    OpCase("min_binary", lambda T, a, b: T.min(a, b),
           lambda m: [S(m.t(3, 4), m.t(3, 4)), S(m.t(3, 1), m.t(4))]),
    OpCase("Tensor.max", lambda T, x, *a: x.max(*a), lambda m: _dim_samples(m, tuples=False)[:4]),
    OpCase("max_values", lambda T, x, d: T.max(x, d).values, lambda m: [S(m.t(3, 4), 1)]),
    OpCase("max_indices", lambda T, x, d: T.max(x, dim=d, keepdim=True).indices,
           lambda m: [S(m.t(3, 4), 0)], differentiable=False),
    OpCase("argmax", lambda T, x, *a: T.argmax(x, *a),
           lambda m: _dim_samples(m, tuples=False), differentiable=False),
    OpCase("Tensor.argmax", lambda T, x, *a: x.argmax(*a),
           lambda m: [S(m.t(3, 4)), S(m.t(3, 4), 1)], differentiable=False),
    OpCase("softmax", lambda T, x, d: T.softmax(x, d), _softmax_samples),
    OpCase("Tensor.softmax", lambda T, x, d: x.softmax(d), lambda m: _softmax_samples(m)[:2]),
    OpCase("log_softmax", lambda T, x, d: T.log_softmax(x, d), _softmax_samples),
    OpCase("Tensor.log_softmax", lambda T, x, d: x.log_softmax(dim=d),
           lambda m: _softmax_samples(m)[:2]),
    OpCase("logsumexp", lambda T, x, *a: T.logsumexp(x, *a),
           lambda m: [s for s in _dim_samples(m, none=False)]),
    OpCase("norm", lambda T, x, *a, **kw: T.norm(x, *a, **kw), lambda m: [
        S(m.t(3, 4)),
        S(m.t(5)),
        S(m.nc(3, 4), note="noncontig"),
        S(m.t(3, 4), dim=1),
        S(m.t(3, 4), dim=-2, keepdim=True),
        S(m.t(2, 3, 4), p=2, dim=(0, 2)),
        S(m.t(3, 4), p="fro"),
    ]),
    OpCase("Tensor.norm", lambda T, x, *a: x.norm(*a), lambda m: [S(m.t(3, 4)),
                                                                 S(m.t(3, 4), 2, 1)]),
]
