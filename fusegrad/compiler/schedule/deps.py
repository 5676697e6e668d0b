"""Dependency facts about an optimized graph that every fusion decision needs: producers,
consumers, the views between a value and its root in memory, where outputs go, and what a
set of equations reads and writes."""

from __future__ import annotations

from fusegrad._util import dtypes
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.ir.cost import nbytes


class NoFuse(Exception):
    """A set of equations has no single-kernel plan; the message says why."""


class Analysis:
    """Facts about a graph that every fusion decision needs."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer = {e.out: e for e in graph.eqns}
        self.index = {e: i for i, e in enumerate(graph.eqns)}
        self.inputs = set(graph.inputs)
        self.sinks: dict[Var, list] = {}
        for o, s in zip(graph.outputs, graph.sinks):
            if isinstance(o, Var):
                self.sinks.setdefault(o, []).append(s)
        # views whose result leaves the graph are materialized: they are kernel members
        self.members = [e for e in graph.eqns if not e.out.weak and (
            not e.prim.is_view or e.out in self.sinks)]
        self.member_set = set(self.members)
        self._resolved = {}
        self.consumers: dict[Var, set] = {}  # root Var -> member eqns reading it
        for e in self.members:
            for x in self.operands(e):
                root, _ = self.resolve(x)
                self.consumers.setdefault(root, set()).add(e)

    def operands(self, e):
        """Tensor operands of a member equation (for a materialized view: its input)."""
        return [x for x in e.inputs if isinstance(x, Var) and not x.weak]

    def resolve(self, x: Var):
        """Follow views back to the value in memory or in registers: (root, view chain)."""
        hit = self._resolved.get(x)
        if hit is not None:
            return hit
        chain = []
        v = x
        while True:
            e = self.producer.get(v)
            if e is None or e in self.member_set or not e.prim.is_view:
                break
            chain.append(e)
            v = e.inputs[0]
        chain.reverse()
        self._resolved[x] = (v, chain)
        return v, chain

    def n_dests(self, v: Var) -> int:
        """How many separate storages a value is written to (each escaping sink owns one)."""
        return max(1, len(self.sinks.get(v, ())))

    def escapes(self, v: Var, members: set) -> bool:
        if v in self.sinks:
            return True
        return any(c not in members for c in self.consumers.get(v, ()))


def group_io(an: Analysis, eqns) -> tuple[dict, list, list]:
    """External loads (root -> [viewed vars]), scalar args and stored values of a set."""
    members = set(eqns)
    defined = {e.out for e in eqns}
    loads: dict[Var, list] = {}
    scalars = []
    for e in eqns:
        for x in e.inputs:
            if not isinstance(x, Var):
                continue
            if x.weak:
                if x not in scalars:
                    scalars.append(x)
                continue
            root, _ = an.resolve(x)
            if root not in defined:
                views = loads.setdefault(root, [])
                if x not in views:
                    views.append(x)
    stores = [e.out for e in eqns if an.escapes(e.out, members)]
    return loads, scalars, stores


def io_bytes(an: Analysis, eqns) -> int:
    loads, _, stores = group_io(an, eqns)
    total = 0
    for root, views in loads.items():
        touched = sum(min(v.numel(), root.numel()) for v in views)
        total += min(touched, root.numel()) * dtypes.itemsize(root.dtype)
    for v in stores:
        total += nbytes(v) * an.n_dests(v)
    return total
