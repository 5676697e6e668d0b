"""The graph IR: a flat SSA list of typed equations that prints as Python.

    t7 = matmul(t3, t5)  # f32[64, 10]  train.py:31

Every value is a :class:`Var` defined once; every :class:`Eqn` applies one primitive of
the table to Vars and Python numbers and records the user source line it came from.
"""

from __future__ import annotations

import itertools

import torch

from fusegrad._util import dtypes
from fusegrad.primitives import Aval

dtype_str = dtypes.short


class Var:
    """One SSA value: shape, dtype and device, no data.

    ``weak`` marks a Python number lifted to a graph input (an optimizer's lr): it
    takes part in type promotion as a Python number does, not as a tensor.
    """

    __slots__ = ("id", "shape", "dtype", "device", "weak")
    _ids = itertools.count()

    def __init__(self, shape, dtype, device, weak=False):
        self.id = next(Var._ids)
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self.device = device
        self.weak = weak

    @property
    def aval(self) -> Aval:
        return Aval(self.shape, self.dtype, self.device)

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def type_str(self) -> str:
        return f"{dtype_str(self.dtype)}[{', '.join(map(str, self.shape))}]"

    def __repr__(self):
        return f"t{self.id}"


class Eqn:
    """``out = prim(*inputs, **params)``, with the user line it came from (``src``) and
    the library scope that recorded it (``tag``, e.g. ``optimizer=SGD``)."""

    __slots__ = ("prim", "inputs", "params", "out", "src", "tag")

    def __init__(self, prim, inputs, params, out, src="", tag=None):
        self.prim = prim
        self.inputs = list(inputs)
        self.params = dict(params)
        self.out = out
        self.src = src
        self.tag = tag

    def replace(self, **changes) -> "Eqn":
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return Eqn(**fields)

    def vars(self):
        return [x for x in self.inputs if isinstance(x, Var)]

    def __repr__(self):
        args = [repr(x) for x in self.inputs]
        args += [f"{k}={_fmt_param(v)}" for k, v in self.params.items()]
        line = f"{self.out!r} = {self.prim.name}({', '.join(args)})"
        return f"{line:<56}# {self.out.type_str()}" + (f"  {self.src}" if self.src else "")


def _fmt_param(v):
    if isinstance(v, torch.dtype):
        return "torch." + dtypes.name(v)
    if isinstance(v, torch.device):
        return f"'{v}'"
    return repr(v)


class Graph:
    """Inputs (each with where its value comes from), equations, outputs (with where each
    goes), and the names of the passes that produced it."""

    def __init__(self, inputs=(), eqns=(), outputs=(), sources=(), sinks=(), history=()):
        self.inputs = list(inputs)
        self.sources = list(sources)  # one per input: an ir.io Source
        self.eqns = list(eqns)
        self.outputs = list(outputs)  # Vars or Python numbers
        self.sinks = list(sinks)  # one per output
        self.history = list(history)

    def replace(self, **changes) -> "Graph":
        g = Graph(self.inputs, self.eqns, self.outputs, self.sources, self.sinks, self.history)
        for k, v in changes.items():
            setattr(g, k, list(v))
        return g

    def producers(self) -> dict:
        return {e.out: e for e in self.eqns}

    def python(self) -> str:
        lines = [f"# constructed by {' -> '.join(self.history)}" if self.history else ""]
        params = ", ".join(repr(v) for v in self.inputs)
        lines.append(f"def graph({params}):")
        for v, s in zip(self.inputs, self.sources):
            lines.append(f"    # {v!r}: {v.type_str()}{' (number)' if v.weak else ''}  <- {s}")
        for e in self.eqns:
            lines.append("    " + repr(e))
        outs = ", ".join(repr(o) for o in self.outputs)
        lines.append(f"    return ({outs}{',' if len(self.outputs) == 1 else ''})")
        for o, s in zip(self.outputs, self.sinks):
            lines.append(f"    # {o!r} -> {s}")
        return "\n".join(x for x in lines if x != "")

    __str__ = python

    def __repr__(self):
        return f"<Graph {len(self.inputs)} inputs, {len(self.eqns)} eqns, " \
               f"{len(self.outputs)} outputs>"
