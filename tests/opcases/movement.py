"""Shape and layout ops, matmul in all its 1-D/2-D/batched forms, basic indexing,
clone/detach and dtype conversions."""

from __future__ import annotations

import torch

from opcases.common import OpCase, S


def _matmul_samples(m):
    return [
        S(m.t(4), m.t(4), note="1-D @ 1-D"),
        S(m.t(3, 4), m.t(4), note="2-D @ 1-D"),
        S(m.t(3), m.t(3, 4), note="1-D @ 2-D"),
        S(m.t(3, 4), m.t(4, 2), note="2-D @ 2-D"),
        S(m.t(2, 3, 4), m.t(2, 4, 2), note="3-D @ 3-D"),
        S(m.t(2, 3, 4), m.t(4, 2), note="3-D @ 2-D"),
        S(m.t(3, 4), m.t(2, 4, 2), note="2-D @ 3-D"),
        S(m.t(4), m.t(2, 4, 3), note="1-D @ 3-D"),
        S(m.t(2, 3, 4), m.t(4), note="3-D @ 1-D"),
        S(m.t(2, 1, 3, 4), m.t(3, 4, 2), note="batch broadcast"),
        S(m.nc(3, 4), m.nc(4, 2), note="noncontig 2-D"),
        S(m.nc(2, 3, 4), m.t(2, 4, 2), note="noncontig 3-D"),
        S(m.t(1, 4), m.t(4, 1), note="degenerate 2-D"),
    ]


def _index_samples(m):
    x = m.t(3, 4, 5)
    idx = [
        1, -1, (0, 2), (slice(None), 1), slice(1, 3), slice(None, None, 2), (slice(None), -2),
        (slice(0, 3, 2), slice(None), slice(1, None, 3)), None, (None, 1), (Ellipsis, 0),
        (1, Ellipsis, slice(None, 2)), (slice(None), None, Ellipsis, -1), (-1, -2, -3),
        slice(-2, None), Ellipsis, (slice(5, 10),), (slice(None), slice(-100, 100)),
    ]
    out = [S(x, i, note=f"x[{i!r}]") for i in idx]
    out.append(S(m.nc(3, 4), (slice(None), 1), note="noncontig"))
    out.append(S(m.t(4), 2, note="1-D -> 0-d"))
    out.append(S(m.t(), None, note="0-d[None]"))
    out.append(S(m.t(), Ellipsis, note="0-d[...]"))
    return out


CASES = [
    OpCase("matmul", lambda T, a, b: T.matmul(a, b), _matmul_samples),
    OpCase("op:a@b", lambda T, a, b: a @ b, lambda m: _matmul_samples(m)[:6]),
    OpCase("Tensor.matmul", lambda T, a, b: a.matmul(b), lambda m: _matmul_samples(m)[3:5]),
    OpCase("mm", lambda T, a, b: T.mm(a, b), lambda m: [
        S(m.t(3, 4), m.t(4, 2)), S(m.nc(3, 4), m.t(4, 5), note="noncontig"),
        S(m.t(1, 1), m.t(1, 3))]),
    OpCase("Tensor.mm", lambda T, a, b: a.mm(b), lambda m: [S(m.t(3, 4), m.t(4, 2))]),
    OpCase("t", lambda T, x: T.t(x), lambda m: [
        S(m.t(3, 4)), S(m.t(5), note="1-D"), S(m.t(), note="0-d"), S(m.nc(3, 4))]),
    OpCase("Tensor.t", lambda T, x: x.t(), lambda m: [S(m.t(3, 4))]),
    OpCase("Tensor.T", lambda T, x: x.T, lambda m: [S(m.t(3, 4)), S(m.t(2, 3, 4))]),
    OpCase("transpose", lambda T, x, a, b: T.transpose(x, a, b), lambda m: [
        S(m.t(3, 4), 0, 1), S(m.t(2, 3, 4), -1, 0, note="negative dim"),
        S(m.t(2, 3, 4), 1, 1, note="same dim"), S(m.nc(3, 4), 1, 0), S(m.t(5), 0, -1)]),
    OpCase("permute", lambda T, x, *d: x.permute(*d), lambda m: [
        S(m.t(2, 3, 4), 2, 0, 1), S(m.t(2, 3, 4), -1, -3, 1), S(m.nc(3, 4), 1, 0)]),
    OpCase("reshape", lambda T, x, s: T.reshape(x, s), lambda m: [
        S(m.t(3, 4), (4, 3)), S(m.t(3, 4), (-1,)), S(m.t(2, 3, 4), (6, -1)),
        S(m.t(), (1, 1)), S(m.t(1), ()), S(m.nc(3, 4), (12,), note="noncontig: copies"),
        S(m.t(3, 4), (3, 4), note="same shape")]),
    OpCase("Tensor.reshape", lambda T, x, *s: x.reshape(*s), lambda m: [
        S(m.t(3, 4), 2, 6), S(m.t(3, 4), (6, 2)), S(m.t(3, 4), -1)]),
    OpCase("view", lambda T, x, *s: x.view(*s), lambda m: [
        S(m.t(3, 4), 4, 3), S(m.t(3, 4), (-1,)), S(m.t(2, 3, 4), 6, -1),
        S(m.t(), 1), S(m.t(3, 4), 3, 4, note="same shape")]),
    OpCase("flatten", lambda T, x, *a: T.flatten(x, *a), lambda m: [
        S(m.t(2, 3, 4)), S(m.t(2, 3, 4), 1), S(m.t(2, 3, 4), 0, 1),
        S(m.t(2, 3, 4), -2, -1), S(m.t(), note="0-d"), S(m.t(5), note="1-d"),
        S(m.nc(3, 4), note="noncontig"), S(m.t(2, 3), 1, 1, note="no-op range")]),
    OpCase("squeeze", lambda T, x, *a: T.squeeze(x, *a), lambda m: [
        S(m.t(3, 1, 4, 1)), S(m.t(3, 1, 4), 1), S(m.t(3, 1, 4), -2, note="negative dim"),
        S(m.t(3, 4), 0, note="non-1 dim: no-op"), S(m.t(1, 3, 1), (0, 2), note="tuple"),
        S(m.t(), note="0-d"), S(m.t(1), note="1 -> 0-d"), S(m.t(3, 4))]),
    OpCase("Tensor.squeeze", lambda T, x, *a: x.squeeze(*a), lambda m: [
        S(m.t(1, 3)), S(m.t(1, 3), 0)]),
    OpCase("unsqueeze", lambda T, x, d: T.unsqueeze(x, d), lambda m: [
        S(m.t(3, 4), 0), S(m.t(3, 4), 2), S(m.t(3, 4), -1), S(m.t(3, 4), -3),
        S(m.t(), 0, note="0-d"), S(m.nc(3, 4), 1, note="noncontig")]),
    OpCase("expand", lambda T, x, *s: x.expand(*s), lambda m: [
        S(m.t(1, 4), 3, 4), S(m.t(3, 1), (3, 5)), S(m.t(4), 2, 3, 4, note="new lead dims"),
        S(m.t(1, 4), -1, 4, note="-1 keeps"), S(m.t(), 2, 3, note="0-d"),
        S(m.t(3, 4), 3, 4, note="same shape"), S(m.t(3, 1), 2, -1, 4)]),
    OpCase("expand_as", lambda T, x, y: x.expand_as(y), lambda m: [S(m.t(1, 4), m.t(3, 4))]),
    OpCase("cat", lambda T, xs, *a: T.cat(xs, *a), lambda m: [
        S([m.t(2, 3), m.t(4, 3)]), S([m.t(2, 3), m.t(2, 1), m.t(2, 2)], 1),
        S([m.t(2, 3), m.t(2, 3)], -1, note="negative dim"), S([m.t(3), m.t(2)], note="1-d"),
        S([m.nc(3, 2), m.t(3, 4)], 1, note="noncontig"), S([m.t(2, 3)], note="one tensor"),
        S([m.t(2, 3, 2), m.t(2, 1, 2)], 1)]),
    OpCase("stack", lambda T, xs, *a: T.stack(xs, *a), lambda m: [
        S([m.t(2, 3), m.t(2, 3)]), S([m.t(2, 3), m.t(2, 3), m.t(2, 3)], 1),
        S([m.t(2, 3), m.t(2, 3)], -1, note="negative dim"), S([m.t(), m.t()], note="0-d"),
        S([m.nc(3, 2), m.t(3, 2)], 2, note="noncontig")]),
    OpCase("getitem", lambda T, x, i: x[i], _index_samples),
    OpCase("clone", lambda T, x: T.clone(x), lambda m: [
        S(m.t(3, 4)), S(m.t()), S(m.nc(3, 4))]),
    OpCase("Tensor.clone", lambda T, x: x.clone(), lambda m: [S(m.t(3, 4))]),
    OpCase("contiguous", lambda T, x: x.contiguous(), lambda m: [
        S(m.nc(3, 4)), S(m.t(3, 4), note="already contiguous: the same tensor")]),
    OpCase("contiguous_view", lambda T, x: x.t().contiguous().view(-1) * 2,
           lambda m: [S(m.t(3, 4)), S(m.t(2, 5))]),
    OpCase("detach", lambda T, x: x.detach(), lambda m: [S(m.t(3, 4)), S(m.t())],
           differentiable=False),
    OpCase("to_float32", lambda T, x: x.to(T.float32), lambda m: [S(m.t(3, 4)), S(m.t())],
           gradcheck=False),
    OpCase("to_dtype_kw", lambda T, x: x.to(dtype=T.float32), lambda m: [S(m.t(3, 4))],
           gradcheck=False),
    OpCase("to_same", lambda T, x: x.to(T.float64), lambda m: [S(m.t(3, 4))]),
    OpCase("to_device", lambda T, x: x.to("cpu"), lambda m: [S(m.t(3, 4))]),
    OpCase("float", lambda T, x: x.float(), lambda m: [S(m.t(3, 4))], gradcheck=False),
    OpCase("double", lambda T, x: x.double(), lambda m: [S(m.t(3, 4)),
                                                         S(m.t(3, 4, dtype=torch.float32))],
           gradcheck=False),
    OpCase("float_double", lambda T, x: x.float().double() * 2, lambda m: [S(m.t(3, 4))],
           gradcheck=False),
]
