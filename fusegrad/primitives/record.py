"""The primitive record: every fact any phase needs about one op, in one place.

Phases read fields, never names: the eager core reads ``meta``/``impl``/``vjp``, the
tracer ``host``, the passes ``identity``, the cpu backend ``aten``, the Triton backend
``triton``/``reduce``/``view``, the profiler ``aten_name``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

import torch


class Kind(enum.Enum):
    UNARY = "unary"
    BINARY = "binary"
    COMPARE = "compare"
    TERNARY = "ternary"
    REDUCE = "reduce"
    MOVEMENT = "movement"
    MATMUL = "matmul"
    CREATE = "create"

    @property
    def pointwise(self) -> bool:
        return self in _POINTWISE


_POINTWISE = frozenset({Kind.UNARY, Kind.BINARY, Kind.COMPARE, Kind.TERNARY})


@dataclass(frozen=True)
class Reduce:
    """How a reduction combines elements.

    ``tl`` is Triton's block reduction, ``combine`` the two-operand form a looped
    accumulator uses, ``neutral`` the element that leaves a combine unchanged. ``index``
    marks argmax-like results; ``keeps_shape`` a normalisation over one dim whose result
    has its input's shape (log_softmax)."""

    tl: str | None
    combine: str | None
    neutral: str  # "zero" | "lowest" | "highest"
    index: bool = False
    keeps_shape: bool = False

    def neutral_value(self, dtype) -> str:
        """The neutral element as source text for a tensor of ``dtype``."""
        if self.neutral == "zero":
            return "0"
        high = self.neutral == "highest"
        if dtype.is_floating_point:
            return 'float("inf")' if high else '-float("inf")'
        if dtype == torch.bool:
            return "True" if high else "False"
        info = torch.iinfo(dtype)
        return str(info.max if high else info.min)


@dataclass(frozen=True)
class View:
    """A movement op that relabels elements without computing (its result may alias).

    ``back(x_shape, y_shape, params, coords)`` gives the coordinates in the input that hold
    the output element at ``coords`` (index expressions, see ``fusegrad._util.index``).
    ``dims(x_shape, y_shape, params)`` pairs the input and output dims that move together,
    or returns a string saying why the view needs a gather (no elementwise pairing).
    ``aten`` spells it on ``torch.Tensor``."""

    back: Callable
    dims: Callable
    aten: str


@dataclass(frozen=True)
class Identity:
    """Algebraic facts the simplifier uses.

    ``neutral``: (left, right) operands that leave a binary op's other operand unchanged;
    ``involution``: f(f(x)) == x; ``noop(params, x, out)``: the op returns its input;
    ``compose(inner, outer)``: params of one op equal to two applied in a row."""

    neutral: tuple = (None, None)
    involution: bool = False
    noop: Callable | None = None
    compose: Callable | None = None


@dataclass(eq=False)
class Primitive:
    name: str
    kind: Kind
    meta: Callable  # (*operands, **params) -> Aval; raises the op's error for bad input
    impl: Callable  # eager implementation on torch.Tensor storage
    differentiable: bool = True
    vjp: Callable | None = None  # (ctx, g) -> one gradient per input; set by primitives.vjp
    saves: tuple = ()  # input indices and/or "out" the vjp reads: freed after backward
    grad_name: str = ""  # PyTorch's grad_fn name for the plain op
    nondiff_args: tuple = ()  # operands that get no autograd edge (where's condition)
    inplace: str | None = None  # torch's in-place method, the eager fast path
    aten: str | None = None  # cpu backend: ATen call template, {0}.. operands, {p[..]} params
    aten_out: bool = False  # the template's call accepts out=
    aten_name: str = ""  # the profiler's event name (aten::<name>)
    aten_rev: str | None = None  # the call when the first operand is a Python number
    commutative: bool = False
    host: str | None = None  # the op on Python numbers (lifted hyperparameters)
    foreach: bool = False  # torch._foreach_<name>_ exists (multi-tensor updates)
    triton: str | None = None  # pointwise Triton expression template
    triton_helper: str | None = None  # a device function the template calls
    triton_bool_args: tuple = ()  # operands read as booleans
    triton_raw: bool = False  # operands keep their dtype (cast): no compute-dtype rounding
    triton_full: bool = False  # operands must be full blocks (no scalar broadcast)
    reduce: Reduce | None = None
    view: View | None = None
    # a movement op that copies (no view): where each operand lands along params["dim"],
    # (params, operand shapes) -> [(operand index, start, stop, step)]; zeros elsewhere
    places: Callable | None = None
    identity: Identity = field(default_factory=Identity)

    def __post_init__(self):
        if not self.aten_name:
            self.aten_name = self.name

    @property
    def is_view(self) -> bool:
        return self.view is not None

    def __repr__(self):
        return f"<prim {self.name}>"


PRIMS: dict[str, Primitive] = {}


def prim(name: str, kind: Kind, meta, impl, **fields) -> Primitive:
    """Define and register one primitive."""
    assert name not in PRIMS, name
    p = Primitive(name, kind, meta, impl, **fields)
    PRIMS[name] = p
    return p


# fields each kind must fill for every phase to handle it
REQUIRED = {
    Kind.UNARY: ("aten", "triton"),
    Kind.BINARY: ("aten", "triton"),
    Kind.COMPARE: ("aten", "triton"),
    Kind.TERNARY: ("aten", "triton"),
    Kind.REDUCE: ("aten", "reduce"),
    Kind.MOVEMENT: ("aten",),
    Kind.MATMUL: ("aten",),
    Kind.CREATE: ("aten",),
}


def missing_fields(p: Primitive) -> list[str]:
    """The fields ``p`` lacks for its kind (empty when the record is complete)."""
    missing = [f for f in REQUIRED[p.kind] if getattr(p, f) in (None, "")]
    if p.kind is Kind.MOVEMENT and p.view is not None and not p.view.aten:
        missing.append("view.aten")
    if p.kind is Kind.MOVEMENT and p.view is None and p.places is None:
        missing.append("places")
    if p.differentiable and p.vjp is None:
        missing.append("vjp")
    if not p.differentiable and p.vjp is not None:
        missing.append("differentiable")
    if p.differentiable and not p.grad_name:
        missing.append("grad_name")
    return missing
