"""The reference interpreter of the IR: each equation runs its primitive's eager ``impl``
on torch tensors, in graph order.

Values are freed after their last use, as a real program would, and a failing equation is
reported as ``while executing t5 = mul(t2, t1)  # f32[4]  train.py:12``.
"""

from __future__ import annotations

import torch

from fusegrad.compiler.ir.graph import Graph, Var
from fusegrad.compiler.ir.io import Const


class InterpreterError(RuntimeError):
    pass


def last_uses(graph: Graph) -> dict:
    """Equation index -> Vars whose last reader it is (outputs live to the end)."""
    last = {}
    for i, e in enumerate(graph.eqns):
        for x in e.vars():
            last[x] = i
    for o in graph.outputs:
        if isinstance(o, Var):
            last.pop(o, None)
    frees: dict[int, list] = {}
    for v, i in last.items():
        frees.setdefault(i, []).append(v)
    return frees


def eval_graph(graph: Graph, inputs) -> list:
    """Run ``graph`` on ``inputs`` (one torch tensor or number per graph input)."""
    env = dict(zip(graph.inputs, inputs))
    frees = last_uses(graph)
    for i, e in enumerate(graph.eqns):
        args = [env[x] if isinstance(x, Var) else x for x in e.inputs]
        try:
            if e.out.weak:  # arithmetic on lifted Python numbers gives a Python number
                out = e.prim.impl(*[torch.tensor(a) for a in args], **e.params).item()
            else:
                out = e.prim.impl(*args, **e.params)
        except Exception as err:
            raise InterpreterError(f"{type(err).__name__}: {err}\n  while executing "
                                   f"{e!r}") from err
        env[e.out] = out
        for v in frees.get(i, ()):
            if v not in graph.inputs:
                del env[v]
    return [env[o] if isinstance(o, Var) else o for o in graph.outputs]


def as_function(graph: Graph):
    """The graph as a function of its non-constant inputs, in order."""
    consts = [s.data if isinstance(s, Const) else None for s in graph.sources]

    def call(*args):
        it = iter(args)
        return eval_graph(graph, [next(it) if c is None else c for c in consts])

    return call
