"""Graph -> Graph passes. Each is pure: it returns a new Graph stamped with its name."""

from __future__ import annotations

import math
import time

import torch

from fusegrad.compiler.ir import Eqn, Graph, Var, verify
from fusegrad.compiler.tracer import Const, Random
from fusegrad.primitives import PRIMS, Scalar

# folding materialises values at compile time: keep constants small
FOLD_LIMIT = 1 << 16


def _subst(x, mapping):
    while isinstance(x, Var) and x in mapping:
        x = mapping[x]
    return x


def _rewrite(graph, eqns, mapping, name):
    outputs = [_subst(o, mapping) for o in graph.outputs]
    return graph.replace(eqns=eqns, outputs=outputs, history=graph.history + [name])


def dce(graph: Graph) -> Graph:
    """Drop equations whose results nothing uses, and inputs nothing reads."""
    live = {o for o in graph.outputs if isinstance(o, Var)}
    kept = []
    for e in reversed(graph.eqns):
        if e.out in live:
            kept.append(e)
            live.update(e.vars())
    kept.reverse()
    # random draws stay even when unused: the generator must advance as it does eagerly
    pairs = [(v, s) for v, s in zip(graph.inputs, graph.sources)
             if v in live or isinstance(s, Random)]
    return graph.replace(eqns=kept, inputs=[v for v, _ in pairs], sources=[s for _, s in pairs],
                         history=graph.history + ["dce"])


def _key(x):
    if isinstance(x, Var):
        return ("v", x.id)
    return ("n", type(x).__name__, x)


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(i) for i in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(i)) for k, i in v.items()))
    return v


def cse(graph: Graph) -> Graph:
    """Merge equations that apply the same primitive to the same operands."""
    seen, mapping, kept = {}, {}, []
    for e in graph.eqns:
        ins = [_subst(x, mapping) for x in e.inputs]
        key = (e.prim.name, tuple(_key(x) for x in ins), _freeze(e.params))
        prev = seen.get(key)
        if prev is not None:
            mapping[e.out] = prev
            continue
        seen[key] = e.out
        kept.append(Eqn(e.prim, ins, e.params, e.out, e.src))
    return _rewrite(graph, kept, mapping, "cse")


def fold_constants(graph: Graph) -> Graph:
    """Evaluate at compile time the equations whose operands are all constants."""
    values = {v: s.data for v, s in zip(graph.inputs, graph.sources) if isinstance(s, Const)}
    inputs, sources = list(graph.inputs), list(graph.sources)
    kept = []
    for e in graph.eqns:
        vs = e.vars()
        if all(v in values for v in vs) and e.out.numel() <= FOLD_LIMIT:
            args = [values[x] if isinstance(x, Var) else x for x in e.inputs]
            out = e.prim.impl(*args, **e.params)
            values[e.out] = out
            inputs.append(e.out)
            sources.append(Const(out))
            continue
        kept.append(e)
    g = graph.replace(eqns=kept, inputs=inputs, sources=sources,
                      history=graph.history + ["fold_constants"])
    return dce(g).replace(history=g.history)


def _scalar_value(x, consts):
    """The single number ``x`` stands for, if it is one (a number or a constant filled tensor)."""
    if isinstance(x, Scalar):
        return x
    c = consts.get(x)
    if c is not None and c.numel() >= 1:
        flat = c.reshape(-1)
        first = flat[0]
        if c.numel() == 1 or bool((flat == first).all()):
            return first.item()
    return None


def simplify(graph: Graph) -> Graph:
    """Algebraic identities: x*1, x+0, x/1, double negation, no-op casts, copies and
    reshapes/permutes/expands that change nothing, chains of reshapes and of permutes."""
    consts = {v: s.data for v, s in zip(graph.inputs, graph.sources) if isinstance(s, Const)}
    prod = {}
    mapping, kept = {}, []
    for e in graph.eqns:
        ins = [_subst(x, mapping) for x in e.inputs]
        e = Eqn(e.prim, ins, e.params, e.out, e.src)
        e = _merge_chain(e, prod)
        same = _identity_of(e, consts, prod)
        if same is not None:
            mapping[e.out] = same
            continue
        prod[e.out] = e
        kept.append(e)
    return _rewrite(graph, kept, mapping, "simplify")


def _same_type(x, out):
    return isinstance(x, Var) and tuple(x.shape) == tuple(out.shape) and x.dtype == out.dtype


def _identity_of(e, consts, prod):
    name, ins, out = e.prim.name, e.inputs, e.out
    if name in ("copy",) or (name in ("reshape", "expand") and _same_type(ins[0], out)):
        return ins[0] if _same_type(ins[0], out) else None
    if name == "cast" and _same_type(ins[0], out):
        return ins[0]
    if name == "permute" and list(e.params["dims"]) == list(range(len(out.shape))):
        return ins[0]
    if name in ("mul", "div", "add", "sub"):
        a, b = ins
        neutral = 1 if name in ("mul", "div") else 0
        if _scalar_value(b, consts) == neutral and _same_type(a, out):
            return a
        if name in ("mul", "add") and _scalar_value(a, consts) == neutral and _same_type(b, out):
            return b
    if name == "neg":
        p = prod.get(ins[0])
        if p is not None and p.prim.name == "neg" and _same_type(p.inputs[0], out):
            return p.inputs[0]
    return None


def _merge_chain(e, prod):
    name = e.prim.name
    src = prod.get(e.inputs[0]) if e.inputs and isinstance(e.inputs[0], Var) else None
    if src is None or src.prim.name != name:
        return e
    if name == "reshape":
        return Eqn(e.prim, [src.inputs[0]], e.params, e.out, e.src)
    if name == "permute":
        inner, outer = src.params["dims"], e.params["dims"]
        return Eqn(e.prim, [src.inputs[0]], {"dims": tuple(inner[d] for d in outer)}, e.out,
                   e.src)
    return e


PIPELINE = (simplify, fold_constants, cse, simplify, dce)


def optimize(graph: Graph, *, verify_each=False, log=None) -> Graph:
    """Run the pass pipeline; with ``verify_each`` the verifier checks the graph after
    every pass; ``log(name, graph, seconds)`` sees each result."""
    if verify_each:
        verify(graph, "trace")
    for p in PIPELINE:
        t0 = time.perf_counter()
        graph = p(graph)
        if log is not None:
            log(p.__name__, graph, time.perf_counter() - t0)
        if verify_each:
            verify(graph, p.__name__)
    return graph


def flops(graph: Graph) -> int:
    """Floating-point operations of one call: 2mnk per matmul, one per element otherwise."""
    total = 0
    for e in graph.eqns:
        if e.prim.kind == "matmul":
            a, b = e.inputs
            batch = math.prod(e.out.shape[:-2]) if len(e.out.shape) > 2 else 1
            total += 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]
        elif e.prim.kind in ("unary", "binary", "ternary", "compare"):
            total += e.out.numel()
        elif e.prim.kind == "reduce":
            total += e.inputs[0].numel()
    return total


del torch, PRIMS
