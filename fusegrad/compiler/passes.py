"""Graph -> Graph passes. Each is pure: it returns a new Graph stamped with its name."""

from __future__ import annotations

import time

from fusegrad.compiler.ir import Graph, Var, verify
from fusegrad.compiler.ir.cost import eqn_flops
from fusegrad.compiler.ir.io import Const, Random
from fusegrad.primitives import Scalar

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
        key = (e.prim, tuple(_key(x) for x in ins), _freeze(e.params))
        prev = seen.get(key)
        if prev is not None:
            mapping[e.out] = prev
            continue
        seen[key] = e.out
        kept.append(e.replace(inputs=ins))
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
        e = e.replace(inputs=ins)
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
    """The value ``e`` computes when an identity of its record makes it a no-op."""
    ident, ins, out = e.prim.identity, e.inputs, e.out
    if ident.noop is not None and isinstance(ins[0], Var) and ident.noop(e.params, ins[0], out):
        return ins[0]
    left, right = ident.neutral
    if right is not None and _scalar_value(ins[1], consts) == right and _same_type(ins[0], out):
        return ins[0]
    if left is not None and _scalar_value(ins[0], consts) == left and _same_type(ins[1], out):
        return ins[1]
    if ident.involution:
        p = prod.get(ins[0])
        if p is not None and p.prim is e.prim and _same_type(p.inputs[0], out):
            return p.inputs[0]
    return None


def _merge_chain(e, prod):
    """``f(f(x))`` as one ``f`` when the record says how the params compose."""
    compose = e.prim.identity.compose
    src = prod.get(e.inputs[0]) if e.inputs and isinstance(e.inputs[0], Var) else None
    if compose is None or src is None or src.prim is not e.prim:
        return e
    return e.replace(inputs=[src.inputs[0]], params=compose(src.params, e.params))


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
    """Floating-point operations of one call."""
    return sum(eqn_flops(e) for e in graph.eqns)
