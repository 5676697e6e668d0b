"""Greedy fusion, as in Inductor: start with one group per equation, then repeatedly merge
the pair of groups (producer and consumer, or two readers of one input) that saves the
most memory traffic, when the backend's rules have a plan for the merged set and no cycle
appears. Each refusal is logged at ``FUSEGRAD_DEBUG>=3`` with its reason. Last, the
optimizer updates left in separate groups are put side by side in one multi-tensor
kernel. Nothing here knows a backend: legality comes from the ``rules`` it is given.
"""

from __future__ import annotations

import heapq

from fusegrad._util import debug
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.ir.cost import eqn_flops
from fusegrad.compiler.ir.io import Captured, GradOf, SetState, WriteGradInPlace, WriteInPlace
from fusegrad.compiler.schedule.deps import Analysis, NoFuse, group_io, io_bytes
from fusegrad.compiler.schedule.group import Group, finish_multi, kernel_name, update_kind


def _label(an, eqns) -> str:
    """The name a log message uses for a group: its last result."""
    return repr(max(eqns, key=lambda e: an.index[e]).out)


class _Scheduler:
    def __init__(self, graph, rules, log):
        self.an = Analysis(graph)
        self.rules = rules
        self.log = log
        self.plans: dict[frozenset, object] = {}

    def layout(self, eqns):
        """The backend's plan for one kernel computing ``eqns``, or why there is none."""
        key = frozenset(eqns)
        hit = self.plans.get(key)
        if hit is None:
            ordered = sorted(eqns, key=self.an.index.get)
            try:
                hit = self.rules.plan(self.an, ordered)
            except NoFuse as e:
                hit = str(e)
            self.plans[key] = hit
        return hit

    # -- the group graph -----------------------------------------------------------------

    def build_edges(self, groups, order_inplace=True):
        """Data edges plus (with ``order_inplace``) write-after-read edges: an in-place
        update of a captured tensor runs after every kernel that reads its old value."""
        an = self.an
        owner = {}
        for gi, g in groups.items():
            for e in g:
                owner[e.out] = gi
        succ = {gi: set() for gi in groups}
        for gi, g in groups.items():
            for e in g:
                for x in an.operands(e):
                    root, _ = an.resolve(x)
                    src = owner.get(root)
                    if src is not None and src != gi:
                        succ[src].add(gi)
        for old, new in self.inplace_pairs() if order_inplace else ():
            w = owner.get(new)
            if w is None:
                continue
            for reader in an.consumers.get(old, ()):
                r = owner[reader.out]
                if r != w:
                    succ[r].add(w)
        return owner, succ

    def inplace_pairs(self):
        """(old value, new value) of each tensor (or .grad) updated in place."""
        an = self.an
        by_tensor = {(type(s), id(s.tensor)): v for v, s in zip(an.graph.inputs,
                                                                 an.graph.sources)
                     if isinstance(s, (Captured, GradOf))}
        pairs = []
        for o, s in zip(an.graph.outputs, an.graph.sinks):
            if isinstance(s, (WriteInPlace, WriteGradInPlace)) and isinstance(o, Var):
                kind = Captured if isinstance(s, WriteInPlace) else GradOf
                old = by_tensor.get((kind, id(s.tensor)))
                if old is not None and old is not o:
                    pairs.append((old, o))
        return pairs

    @staticmethod
    def reaches(succ, src, dst, skip) -> bool:
        """Is there a path src -> ... -> dst through groups other than ``skip``?"""
        stack = [x for x in succ[src] if x not in skip]
        seen = set(stack)
        while stack:
            x = stack.pop()
            if x == dst:
                return True
            for y in succ[x]:
                if y not in seen and y not in skip:
                    seen.add(y)
                    stack.append(y)
        return False

    def creates_cycle(self, succ, a, b) -> bool:
        skip = {a, b}
        for x, y in ((a, b), (b, a)):
            for s in succ[x]:
                if s not in skip and (s == y or self.reaches(succ, s, y, set())):
                    return True
        return False

    # -- greedy merging -------------------------------------------------------------------

    def fuse(self):
        an = self.an
        groups = {i: [e] for i, e in enumerate(an.members)}
        cost = {i: io_bytes(an, g) for i, g in groups.items()}
        next_id = len(groups)
        heap = []
        edges = [None]  # (owner, succ, pred) of the current groups, rebuilt after a merge

        def graph_edges():
            if edges[0] is None:
                owner, succ = self.build_edges(groups)
                pred = {x: set() for x in groups}
                for x, ys in succ.items():
                    for y in ys:
                        pred[y].add(x)
                edges[0] = owner, succ, pred
            return edges[0]

        def candidates(gi):
            owner, succ, pred = graph_edges()
            near = set(succ[gi]) | pred[gi]
            loads, _, _ = group_io(an, groups[gi])
            for root in loads:  # siblings: groups reading the same input
                for c in an.consumers.get(root, ()):
                    if owner[c.out] != gi:
                        near.add(owner[c.out])
            for gj in near:
                merged = groups[gi] + groups[gj]
                saved = cost[gi] + cost[gj] - io_bytes(an, merged)
                if saved > 0:
                    first = min(an.index[e] for e in merged)
                    heapq.heappush(heap, (-saved, first, min(gi, gj), max(gi, gj)))

        for gi in list(groups):
            candidates(gi)
        while heap:
            _, _, a, b = heapq.heappop(heap)
            if a not in groups or b not in groups:
                continue
            merged = sorted(groups[a] + groups[b], key=an.index.get)
            lay = self.layout(merged)
            why = lay if isinstance(lay, str) else None
            if why is None:
                why = self.rules.can_merge(lay, self.layout(groups[a]), self.layout(groups[b]))
            if why is None and self.creates_cycle(graph_edges()[1], a, b):
                why = "fusing would create a cycle through another kernel"
            if why is not None:
                self.log(f"cannot fuse {_label(an, groups[a])} with {_label(an, groups[b])}: "
                         f"{why}")
                continue
            del groups[a], groups[b]
            groups[next_id] = merged
            cost[next_id] = io_bytes(an, merged)
            edges[0] = None
            candidates(next_id)
            next_id += 1
        return groups

    # -- horizontal fusion of optimizer updates -------------------------------------------

    def horizontal(self, groups):
        """Independent pointwise/reduction groups that update parameters or optimizer state
        become the segments of one multi-tensor kernel."""
        an = self.an
        _, succ = self.build_edges(groups)
        order = self.toposort(groups, succ)

        def updates(gi):
            lay = self.layout(groups[gi])
            if isinstance(lay, str) or not self.rules.bundles(lay):
                return False
            return any(isinstance(s, (WriteInPlace, WriteGradInPlace, SetState))
                       for e in groups[gi] for s in an.sinks.get(e.out, ()))

        cands = [gi for gi in order if updates(gi)]
        bundle = []
        for gi in cands:
            ok = True
            for gj in bundle:
                if self.reaches(succ, gi, gj, set()) or self.reaches(succ, gj, gi, set()):
                    ok = False
                    self.log(f"cannot fuse {_label(an, groups[gi])} with "
                             f"{_label(an, groups[gj])} into one multi-tensor kernel: one "
                             "depends on the other")
                    break
            if ok:
                bundle.append(gi)
        return bundle if len(bundle) > 1 else []

    @staticmethod
    def toposort(groups, succ, first=None):
        indeg = {g: 0 for g in groups}
        for x, ys in succ.items():
            for y in ys:
                indeg[y] += 1
        key = first or (lambda g: g)
        ready = [(key(g), g) for g, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            _, g = heapq.heappop(ready)
            out.append(g)
            for y in succ[g]:
                indeg[y] -= 1
                if indeg[y] == 0:
                    heapq.heappush(ready, (key(y), y))
        if len(out) != len(groups):
            return None
        return out


def schedule(graph: Graph, rules, log=None) -> list[Group]:
    """Group the equations of an optimized graph into kernels, in launch order.

    Args:
        graph: the optimized graph.
        rules: the backend's fusion rules: ``plan(analysis, eqns)`` returns its plan for one
            kernel computing ``eqns`` or raises :class:`NoFuse` with the reason,
            ``can_merge(merged, a, b)`` may refuse a merge of two plannable groups (a
            reason, or None), ``bundles(plan)`` says whether a group may join the
            multi-tensor update kernel.
        log: called with each fusion refusal (``cannot fuse t4 with t7: <reason>``); by
            default they are printed to stderr when ``FUSEGRAD_DEBUG>=3``.

    Returns:
        The groups, each with its equations, layout, inputs, outputs, bytes and flops.
    """
    if log is None:
        log = debug.logger(3)
    said = set()

    def once(msg):
        if msg not in said:
            said.add(msg)
            log(msg)

    s = _Scheduler(graph, rules, once)
    an = s.an
    groups = s.fuse()
    parts = {}
    bundle = s.horizontal(groups)
    if bundle:  # one node in the group graph: no member reaches another, so no cycle
        mid = max(groups) + 1
        parts[mid] = [groups.pop(gi) for gi in bundle]
        groups[mid] = [e for part in parts[mid] for e in part]
    _, succ = s.build_edges(groups)
    first = {gi: min(an.index[e] for e in g) for gi, g in groups.items()}
    order = s.toposort(groups, succ, first=first.get)
    if order is None:  # in-place ordering is impossible: data edges only
        log("in-place updates cannot all run after their readers; results are copied back")
        _, succ = s.build_edges(groups, order_inplace=False)
        order = s.toposort(groups, succ, first=first.get)
    result = []
    for gi in order:
        if gi in parts:
            multi = Group([], None, [], [], [], 0, 0,
                          segments=[_make_group(s, p) for p in parts[gi]])
            finish_multi(multi)
            result.append(multi)
        else:
            result.append(_make_group(s, groups[gi]))
    for i, g in enumerate(result):
        g.index = i
        g.name = kernel_name(g, i)
    return result


def _make_group(s: _Scheduler, eqns) -> Group:
    an = s.an
    eqns = sorted(eqns, key=an.index.get)
    lay = s.layout(eqns)
    if isinstance(lay, str):  # a single equation the backend has no kernel for
        raise NotImplementedError(f"fusegrad {s.rules.name} backend: cannot emit {eqns[0]!r}: "
                                  f"{lay}")
    loads, scalars, stores = group_io(an, eqns)
    return Group(eqns, lay, list(loads), scalars, stores, io_bytes(an, eqns),
                 sum(eqn_flops(e) for e in eqns), update=update_kind(eqns),
                 dests={v: an.n_dests(v) for v in stores})


