"""``nn.functional``: linear, mse_loss, cross_entropy, binary_cross_entropy_with_logits,
softmax, log_softmax, relu."""

from __future__ import annotations

import torch

from opcases.common import OpCase, S


def _targets(m, n, c, ignore=None):
    t = m.int(n, high=c)
    if ignore is not None:
        t[1] = ignore
    return t


def _ce_samples(m):
    return [
        S(m.t(4, 3), _targets(m, 4, 3)),
        S(m.t(4, 3), _targets(m, 4, 3), reduction="sum"),
        S(m.t(4, 3), _targets(m, 4, 3), reduction="none"),
        S(m.t(4, 3), _targets(m, 4, 3, ignore=-100), note="default ignore_index"),
        S(m.t(4, 3), _targets(m, 4, 3, ignore=1), ignore_index=1),
        S(m.t(4, 3), _targets(m, 4, 3, ignore=2), ignore_index=2, reduction="none"),
        S(m.t(4, 3), _targets(m, 4, 3, ignore=2), ignore_index=2, reduction="sum"),
        S(m.t(4, 3), _targets(m, 4, 3), weight=m.pos(3), grad_args=(0,), note="class weight"),
        S(m.t(4, 3), _targets(m, 4, 3, ignore=0), weight=m.pos(3), ignore_index=0,
          grad_args=(0,), note="class weight + ignore"),
        S(m.t(3), torch.tensor(1), note="unbatched"),
        S(m.nc(4, 3), _targets(m, 4, 3), note="noncontig"),
        S(m.t(4, 3), torch.softmax(m.t(4, 3), 1), note="probability target"),
        S(m.t(4, 3), torch.softmax(m.t(4, 3), 1), reduction="sum", note="probability target"),
        S(m.t(4, 3), _targets(m, 4, 3), label_smoothing=0.0),
    ]


def _bce_samples(m):
    return [
        S(m.t(4, 3), m.unit(4, 3)),
        S(m.t(4, 3), m.unit(4, 3), reduction="sum"),
        S(m.t(4, 3), m.unit(4, 3), reduction="none"),
        S(m.t(4, 3), m.unit(4, 3), pos_weight=m.pos(3), grad_args=(0, 1)),
        S(m.t(4, 3), m.unit(4, 3), weight=m.pos(4, 3), grad_args=(0, 1)),
        S(m.t(4, 3), m.unit(4, 3), weight=m.pos(3), pos_weight=m.pos(3), reduction="none",
          grad_args=(0, 1)),
        S(m.t(5) * 10, (m.unit(5) > 0.5).double(), note="large logits, hard targets"),
        S(m.t(), m.unit(), note="0-d"),
        S(m.nc(4, 3), m.unit(4, 3), note="noncontig"),
    ]


F = "nn.functional"


def _f(name):
    return lambda T, *a, **kw: getattr(T.nn.functional, name)(*a, **kw)


CASES = [
    OpCase("F.linear", _f("linear"), lambda m: [
        S(m.t(5, 4), m.t(3, 4), m.t(3)),
        S(m.t(5, 4), m.t(3, 4), note="no bias"),
        S(m.t(2, 5, 4), m.t(3, 4), m.t(3), note="3-D input"),
        S(m.t(2, 5, 4), m.t(3, 4), note="3-D input, no bias"),
        S(m.t(4), m.t(3, 4), m.t(3), note="1-D input"),
        S(m.t(4), m.t(3, 4), note="1-D input, no bias"),
        S(m.nc(5, 4), m.nc(3, 4), m.t(3), note="noncontig"),
        S(m.t(5, 4), m.t(3, 4), bias=m.t(3), note="bias kwarg"),
    ]),
    OpCase("F.mse_loss", _f("mse_loss"), lambda m: [
        S(m.t(4, 3), m.t(4, 3)),
        S(m.t(4, 3), m.t(4, 3), reduction="sum"),
        S(m.t(4, 3), m.t(4, 3), reduction="none"),
        S(m.t(), m.t(), note="0-d"),
        S(m.t(5), m.t(5)),
        S(m.nc(4, 3), m.t(4, 3), note="noncontig"),
    ]),
    OpCase("F.cross_entropy", _f("cross_entropy"), _ce_samples),
    OpCase("F.binary_cross_entropy_with_logits", _f("binary_cross_entropy_with_logits"),
           _bce_samples),
    OpCase("F.softmax", _f("softmax"), lambda m: [
        S(m.t(3, 4), 1), S(m.t(3, 4), dim=0), S(m.t(2, 3, 4), dim=-1)]),
    OpCase("F.log_softmax", _f("log_softmax"), lambda m: [
        S(m.t(3, 4), 1), S(m.t(3, 4), dim=0), S(m.t(2, 3, 4), dim=-1)]),
    OpCase("F.relu", _f("relu"), lambda m: [S(m.t(3, 4)), S(m.t()), S(m.nc(3, 4))]),
]
