"""The table of primitives: the single source of truth for every op fusegrad runs.

Each primitive is one :class:`Primitive` record (``record.py``) holding everything any
phase needs: shape/dtype rule and errors, eager impl, VJP and what it saves, ATen
lowering, Python-number form, Triton template, reduction and view rules, algebraic
identities. The records live by family (``pointwise``, ``reduce``, ``movement``,
``linalg``, ``create``); their VJP rules, written in fusegrad ops, are attached by
``primitives.vjp`` once ``fusegrad.ops`` exists.

User-facing ops (``fusegrad.ops``) pick a primitive or compose several, and name the
autograd node the way PyTorch does.
"""

from fusegrad.primitives.record import (PRIMS, REQUIRED, Identity, Kind, Primitive, Reduce,
                                        View, missing_fields, prim)
from fusegrad.primitives.shape import (Aval, Scalar, aval_of, broadcast_shapes, check,
                                       device_of, float_result, fmt_operand, fmt_shape,
                                       is_float, normalize_dims, result_dtype)
from fusegrad.primitives.create import full, iota
from fusegrad.primitives.linalg import matmul
from fusegrad.primitives.movement import (cat, expand, permute, reshape, select, slice_,
                                          unslice)
from fusegrad.primitives.pointwise import (abs_, add, cast, clamp, copy, cos, div, eq, erf,
                                           exp, ge, gt, le, log, logical_and, lt, maximum,
                                           minimum, mul, ne, neg, pow_, relu, sigmoid, sign,
                                           sin, sqrt, sub, tanh, where)
from fusegrad.primitives.reduce import amax, amin, argmax, log_softmax, sum_

