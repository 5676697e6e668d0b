"""The IR verifier: SSA form, and every shape and dtype re-derived from the primitive's
meta rule. Tests run it after every pass."""

from __future__ import annotations

from fusegrad.compiler.ir.graph import Graph, Var, dtype_str
from fusegrad.primitives import PRIMS, Scalar


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
