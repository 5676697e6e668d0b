"""The graph IR: a flat SSA list of typed equations that prints as Python.

    t7 = matmul(t3, t5)  # f32[64, 10]  train.py:31

Every value is a :class:`Var` defined once; every :class:`Eqn` applies one primitive of
the table to Vars and Python numbers and records the user source line it came from.
"""

from __future__ import annotations

import itertools

import torch

from fusegrad.primitives import PRIMS, Aval, Scalar

_DT = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16",
       torch.bfloat16: "bf16", torch.int64: "i64", torch.int32: "i32", torch.bool: "b8",
       torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16"}


def dtype_str(dtype) -> str:
    return _DT.get(dtype, str(dtype).replace("torch.", ""))


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
    __slots__ = ("prim", "inputs", "params", "out", "src")

    def __init__(self, prim, inputs, params, out, src=""):
        self.prim = prim
        self.inputs = list(inputs)
        self.params = dict(params)
        self.out = out
        self.src = src

    def vars(self):
        return [x for x in self.inputs if isinstance(x, Var)]

    def __repr__(self):
        args = [repr(x) for x in self.inputs]
        args += [f"{k}={_fmt_param(v)}" for k, v in self.params.items()]
        line = f"{self.out!r} = {self.prim.name}({', '.join(args)})"
        return f"{line:<56}# {self.out.type_str()}" + (f"  {self.src}" if self.src else "")


def _fmt_param(v):
    if isinstance(v, torch.dtype):
        return "torch." + str(v).replace("torch.", "")
    if isinstance(v, torch.device):
        return f"'{v}'"
    return repr(v)


class Graph:
    """Inputs (each with where its value comes from), equations, outputs (with where each
    goes), and the names of the passes that produced it."""

    def __init__(self, inputs=(), eqns=(), outputs=(), sources=(), sinks=(), history=()):
        self.inputs = list(inputs)
        self.sources = list(sources)  # one per input: runtime.io source objects
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

    def to_callable(self):
        """The printed IR executed as Python over the primitives' eager implementations:
        the reference interpreter of the IR (inputs and outputs are torch tensors)."""
        env = {name: p.impl for name, p in PRIMS.items()}
        env["torch"] = torch
        exec(compile(self.python(), "<fusegrad graph>", "exec"), env)
        fn = env["graph"]
        consts = [getattr(s, "data", None) if type(s).__name__ == "Const" else None
                  for s in self.sources]

        def call(*args):
            """Values for the inputs that are not constants, in order."""
            it = iter(args)
            return fn(*[next(it) if c is None else c for c in consts])

        return call

    def __repr__(self):
        return f"<Graph {len(self.inputs)} inputs, {len(self.eqns)} eqns, " \
               f"{len(self.outputs)} outputs>"


class VerifyError(RuntimeError):
    pass


def verify(graph: Graph, where: str = "") -> None:
    """Check SSA form and re-derive every shape and dtype from the primitive's meta rule."""
    at = f" after {where}" if where else ""
    defined = set()
    for v in graph.inputs:
        if v in defined:
            raise VerifyError(f"input {v!r} is bound twice{at}")
        defined.add(v)
    if len(graph.sources) != len(graph.inputs):
        raise VerifyError(f"{len(graph.inputs)} inputs but {len(graph.sources)} sources{at}")
    for e in graph.eqns:
        if e.prim is not PRIMS.get(e.prim.name):
            raise VerifyError(f"{e!r}: unknown primitive {e.prim.name}{at}")
        for x in e.inputs:
            if isinstance(x, Var):
                if x not in defined:
                    raise VerifyError(f"{e!r}: uses {x!r} before it is defined{at}")
            elif not isinstance(x, Scalar):
                raise VerifyError(f"{e!r}: operand {x!r} is neither a Var nor a number{at}")
        if e.out in defined:
            raise VerifyError(f"{e!r}: redefines {e.out!r}{at}")
        if not e.src:
            raise VerifyError(f"{e!r}: has no source line{at}")
        aval = e.prim.meta(*e.inputs, **e.params)
        if tuple(aval.shape) != tuple(e.out.shape) or aval.dtype != e.out.dtype:
            raise VerifyError(
                f"{e!r}: meta says {dtype_str(aval.dtype)}{list(aval.shape)} but the IR says "
                f"{e.out.type_str()}{at}")
        defined.add(e.out)
    for o in graph.outputs:
        if isinstance(o, Var) and o not in defined:
            raise VerifyError(f"output {o!r} is not defined{at}")
    if len(graph.sinks) != len(graph.outputs):
        raise VerifyError(f"{len(graph.outputs)} outputs but {len(graph.sinks)} sinks{at}")
