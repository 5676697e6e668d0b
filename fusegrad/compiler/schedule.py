"""Fusion and scheduling: the optimized Graph as a list of kernels (Groups).

A Group is the set of equations one kernel computes. Views (reshape, permute, expand,
slice, select) never make kernels of their own: a kernel that reads a view of a value in
memory folds the view into its index math, and a view of a value the kernel computes
itself is a relabelling of registers. Equations whose result is a Python number (``lr *
2``) run on the host and reach kernels as scalar arguments.

Every group has a :class:`Layout`: the kernel's iteration space as *classes* (the dims of
all its values, unified through the equations: ``add(a, b)`` puts dim 0 of a, b and the
result in one class), laid out on a 2-D tile (axis 0 = rows, axis 1 = columns) where each
axis is split across programs (``grid``), held by one block (``whole``), or walked in a
loop (``loop``). Reductions reduce whole or looped axes; a matmul's M and N are the tile
and its epilogue works on the accumulator in registers.

Fusion is greedy, as in Inductor: start with one group per equation, then repeatedly merge
the pair of groups (producer and consumer, or two readers of one input) that saves the
most memory traffic, if the merged set still has a layout and no cycle appears. Each
refusal is logged at ``FUSEGRAD_DEBUG>=3`` with its reason. Last, the optimizer updates
left in separate pointwise groups are put side by side in one multi-tensor kernel.

Nothing here knows Triton: the cpu backend reports the same schedule.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field


from fusegrad._util import debug, dtypes
from fusegrad._util.index import indexed
from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.ir.cost import eqn_flops, nbytes
from fusegrad.compiler.ir.io import (Captured, GradOf, SetState, WriteGradInPlace,
                                     WriteInPlace)
from fusegrad import primitives as P
from fusegrad.primitives import Kind, normalize_dims


# one block may hold a whole reduced axis of up to this many elements (next power of 2)
WHOLE_AXIS_LIMIT = 4096
# a kernel whose whole 2-D domain fits one program may reduce along any axis
WHOLE_TILE_LIMIT = 4096
# a matmul epilogue may reduce over M (or N) when the tile covers it
WHOLE_M_LIMIT = 128
WHOLE_N_LIMIT = 256
WHOLE_MN_LIMIT = 4096


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# --------------------------------------------------------------------------- records


@dataclass(eq=False)
class Load:
    """A value a kernel reads from memory: ``var`` is ``root`` seen through ``chain`` (the
    view equations from root to var, folded into the load's index math)."""

    var: Var
    root: Var
    chain: list


@dataclass(eq=False)
class Layout:
    """How one kernel iterates: see the module docstring."""

    kind: str  # pointwise | reduction | matmul
    sizes: dict  # class id -> extent
    dims: dict  # Var -> tuple (class id per dim, None for a dim of size 1)
    axes: tuple  # (class ids on tile axis 0, class ids on tile axis 1), outer to inner
    modes: tuple  # ("grid" | "whole" | "loop") per tile axis
    outer: tuple = ()  # classes indexed once per program (a matmul's batch dims)
    reduce_axes: dict = field(default_factory=dict)  # reduce Eqn -> tile axes it reduces
    matmul: Eqn | None = None
    k_class: int | None = None
    loads: dict = field(default_factory=dict)  # Var -> Load
    views: list = field(default_factory=list)  # view Eqns evaluated on registers
    stores: list = field(default_factory=list)  # Vars written to memory

    def axis_size(self, a: int) -> int:
        return math.prod(self.sizes[c] for c in self.axes[a])

    def domain(self) -> int:
        """Elements the kernel iterates over (a matmul's K excluded)."""
        return math.prod(s for c, s in self.sizes.items() if c != self.k_class)

    def axes_of(self, v) -> set:
        """Tile axes a value varies along."""
        cls = {c for c in self.dims.get(v, ()) if c is not None}
        return {a for a in (0, 1) if cls & set(self.axes[a])}

    def grid_classes(self) -> set:
        out = set(self.outer)
        for a in (0, 1):
            if self.modes[a] == "grid":
                out |= set(self.axes[a])
        return out


@dataclass(eq=False)
class Group:
    """One kernel: its equations (graph order), what it reads and writes, its cost."""

    eqns: list
    layout: Layout | None
    inputs: list  # Vars read from memory (graph inputs or other groups' outputs)
    scalars: list  # host numbers (weak Vars) it takes as arguments
    outputs: list  # Vars it writes to memory
    bytes_moved: int
    flops: int
    segments: list = field(default_factory=list)  # the parts of a multi-tensor kernel
    name: str = ""
    index: int = 0
    update: str | None = None  # "sgd" / "adam": the optimizer step it applies, if any
    dests: dict = field(default_factory=dict)  # stored Var -> storages it is written to

    @property
    def kind(self) -> str:
        return "multi" if self.segments else self.layout.kind

    @property
    def ops(self) -> list:
        return [e.prim.name for e in self.eqns]

    @property
    def provenance(self) -> list:
        seen = []
        for e in self.eqns:
            if e.src and e.src not in seen:
                seen.append(e.src)
        return seen

    def listing(self) -> str:
        return "\n".join(repr(e) for e in self.eqns)

    def __repr__(self):
        return f"<Group {self.name or self.kind}: {len(self.eqns)} eqns, " \
               f"{self.bytes_moved} B, {self.flops} flop>"


class NoFuse(Exception):
    """A set of equations has no single-kernel layout; the message says why."""


# --------------------------------------------------------------------------- analysis


class _UF:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        p = self.parent.setdefault(x, x)
        while p != x:
            self.parent[x] = self.parent.setdefault(p, p)
            x, p = p, self.parent[p]
        return p

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


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


# --------------------------------------------------------------------------- layouts


def _view_unions(uf, e: Eqn, x: Var, y: Var):
    """Unify the dims of ``y = view(x)`` computed on registers, or raise NoFuse."""
    pairs = e.prim.view.dims(tuple(x.shape), tuple(y.shape), e.params)
    if isinstance(pairs, str):
        raise NoFuse(f"{pairs} of {x!r}, a value computed in the kernel")
    for jx, jy in pairs:
        uf.union((x, jx), (y, jy))


def _pointwise_unions(uf, e: Eqn):
    out = e.out
    for x in e.inputs:
        if isinstance(x, Var) and not x.weak:
            lead = len(out.shape) - len(x.shape)
            for j, s in enumerate(x.shape):
                if indexed(s):
                    uf.union((x, j), (out, j + lead))


def plan(an: Analysis, eqns) -> Layout:
    """The layout of one kernel computing ``eqns`` (graph order), or raise NoFuse."""
    members = set(eqns)
    defined = {e.out for e in eqns}
    uf = _UF()
    values: list[Var] = []  # every Var living in registers
    seen = set()
    loads: dict[Var, Load] = {}
    views: list[Eqn] = []
    reduces: dict[Eqn, list] = {}  # reduce eqn -> reduced dims of its input
    matmuls = [e for e in eqns if e.prim.kind is Kind.MATMUL]
    if len(matmuls) > 1:
        raise NoFuse("two matmuls in one kernel")
    mm = matmuls[0] if matmuls else None

    def value(v):
        if v not in seen:
            seen.add(v)
            values.append(v)
        return v

    def operand(x, e, must_load=False):
        """Bring operand ``x`` of ``e`` into the kernel: a load or a chain of register views."""
        root, chain = an.resolve(x)
        if root not in defined:
            if x not in loads:
                loads[x] = Load(x, root, chain)
            return value(x)
        if must_load:
            raise NoFuse(f"{e.prim.name} reads {x!r} from memory, but {root!r} is computed "
                         "in the same kernel")
        value(root)
        prev = root
        for ve in chain:
            value(ve.out)
            _view_unions(uf, ve, prev, ve.out)
            if ve not in views:
                views.append(ve)
            prev = ve.out
        return value(x)

    for e in eqns:
        name, kind = e.prim.name, e.prim.kind
        value(e.out)
        if e.prim.is_view:  # a materialized view: a copy through index math
            x = e.inputs[0]
            root, chain = an.resolve(x)
            if root not in defined:
                loads[e.out] = Load(e.out, root, chain + [e])
            else:
                operand(x, e)
                _view_unions(uf, e, x, e.out)
            continue
        if kind is Kind.MATMUL:
            a, b = (operand(x, e, must_load=True) for x in e.inputs)
            out = e.out
            uf.union((a, len(a.shape) - 1), (b, len(b.shape) - 2))
            if indexed(a.shape[-2]):
                uf.union((a, len(a.shape) - 2), (out, len(out.shape) - 2))
            if indexed(b.shape[-1]):
                uf.union((b, len(b.shape) - 1), (out, len(out.shape) - 1))
            for x in (a, b):
                lead = len(out.shape) - len(x.shape)
                for j in range(len(x.shape) - 2):
                    if indexed(x.shape[j]):
                        uf.union((x, j), (out, j + lead))
            continue
        if e.prim.reduce is not None and e.prim.reduce.keeps_shape:
            # a row reduction whose result keeps the row's shape
            x = operand(e.inputs[0], e)
            for j, s in enumerate(x.shape):
                if indexed(s):
                    uf.union((x, j), (e.out, j))
            d = e.params["dim"] % max(1, len(x.shape))
            reduces[e] = [d] if x.shape and indexed(x.shape[d]) else []
            continue
        if kind is Kind.REDUCE:
            x = operand(e.inputs[0], e)
            dims = normalize_dims(name, e.params.get("dims"), len(x.shape))
            keep = e.params.get("keepdim", False)
            j2 = 0
            for j, s in enumerate(x.shape):
                if j in dims:
                    if keep:
                        j2 += 1
                    continue
                if indexed(s):
                    uf.union((x, j), (e.out, j2))
                j2 += 1
            reduces[e] = [j for j in dims if indexed(x.shape[j])] if x.shape else []
            continue
        if kind is Kind.MOVEMENT:  # cat, unslice: gathers from memory
            for x in e.inputs:
                if isinstance(x, Var):
                    root, chain = an.resolve(x)
                    if root in defined:
                        raise NoFuse(f"{name} reads {x!r} from memory, but it is computed "
                                     "in the same kernel")
                    loads[x] = Load(x, root, chain)
            continue
        if kind.pointwise or kind is Kind.CREATE:
            for x in e.inputs:
                if isinstance(x, Var) and not x.weak:
                    operand(x, e)
            _pointwise_unions(uf, e)
            continue
        raise NoFuse(f"no kernel template for {name}")

    # classes: one per set of unified dims
    for v in values:
        for j, s in enumerate(v.shape):
            if indexed(s):
                uf.find((v, j))
    sizes: dict[int, int] = {}
    cid: dict = {}
    dims: dict[Var, tuple] = {}
    for v in values:
        ds = []
        for j, s in enumerate(v.shape):
            if not indexed(s):
                ds.append(None)
                continue
            r = uf.find((v, j))
            if r not in cid:
                cid[r] = len(cid)
                sizes[cid[r]] = s
            ds.append(cid[r])
        real = [d for d in ds if d is not None]
        if len(set(real)) != len(real):
            raise NoFuse(f"two dims of {v!r} {list(v.shape)} fall on one axis of the kernel "
                         "(a value read both directly and transposed)")
        dims[v] = tuple(ds)
    stores = [e.out for e in eqns if an.escapes(e.out, members)]
    lay = Layout("pointwise", sizes, dims, ((), ()), ("whole", "whole"), loads=loads,
                 views=views, stores=stores)
    red_sets = {e: frozenset(dims[e.inputs[0]][j] for j in rd) for e, rd in reduces.items()}
    if mm is not None:
        lay = _matmul_layout(lay, mm, eqns, red_sets)
    elif not red_sets or not any(red_sets.values()):
        lay = _pointwise_layout(lay, eqns, red_sets)
    else:
        lay = _reduction_layout(lay, eqns, red_sets)
    _check_empty(lay)
    return lay


def _check_empty(lay: Layout):
    """A kernel spread over programs along an empty extent launches no program at all, so
    it may only write empty values. (An empty extent the kernel reduces is fine when no
    program is spread along it: a sum over nothing is 0.)"""
    spread = lay.grid_classes()
    if lay.kind == "matmul":  # a program per tile of M and N, even when one tile holds them
        spread |= set(lay.axes[0]) | set(lay.axes[1])
    if any(lay.sizes[c] == 0 for c in spread):
        full = [v for v in lay.stores if v.numel()]
        if full:
            raise NoFuse(f"{full[0]!r} {list(full[0].shape)} would have no program to write "
                         "it: the kernel runs over an empty extent")


def _anchor_order(lay: Layout, candidates) -> list:
    """Classes ordered outer to inner by the dims of the largest value (coalesced access)."""
    order = []
    for v in sorted(lay.dims, key=lambda v: -v.numel()):
        for c in lay.dims[v]:
            if c is not None and c not in order:
                order.append(c)
    rank = {c: i for i, c in enumerate(order)}
    return sorted(candidates, key=lambda c: rank.get(c, -1))


def _pointwise_layout(lay, eqns, red_sets):
    lay.kind = "pointwise"
    lay.axes = ((), tuple(_anchor_order(lay, lay.sizes)))
    lay.modes = ("whole", "grid")
    lay.reduce_axes = {e: () for e in red_sets}
    return lay


def _depends(eqns, lay, sources) -> set:
    """Values of the kernel that depend on the results of the equations ``sources``."""
    dep = {e.out for e in sources}
    steps = [(e.out, e.inputs) for e in eqns] + [(ve.out, ve.inputs) for ve in lay.views]
    size = -1
    while size != len(dep):  # to a fixpoint: register views come after their users
        size = len(dep)
        dep |= {out for out, ins in steps if any(isinstance(x, Var) and x in dep for x in ins)}
    return dep


def _reduction_layout(lay, eqns, red_sets):
    lay.kind = "reduction"
    all_classes = set(lay.sizes)
    sets = {s for s in red_sets.values() if s}
    reds = [e for e, s in red_sets.items() if s]
    if len(sets) == 1:
        (S,) = sets
        kept = all_classes - S
        red_in = [e.inputs[0] for e in reds]
        lay.axes = (tuple(_anchor_order(lay, kept)), tuple(_red_order(lay, S, red_in)))
        n_red = math.prod(lay.sizes[c] for c in S)
        dep = _depends(eqns, lay, reds)
        feedback = [v for v in dep if set(lay.dims.get(v, ())) & S]
        if next_pow2(n_red) <= WHOLE_AXIS_LIMIT:
            lay.modes = ("grid", "whole")
        elif feedback:
            raise NoFuse(f"reduction over {n_red} elements feeds broadcast ({feedback[0]!r}) "
                         f"and is too large for one block")
        elif any(e.prim.reduce.index for e in reds):
            raise NoFuse(f"argmax over {n_red} elements needs the whole row in one block")
        else:
            lay.modes = ("grid", "loop")
        if next_pow2(lay.axis_size(0)) * next_pow2(n_red) <= WHOLE_TILE_LIMIT:
            lay.modes = ("whole", lay.modes[1])
        lay.reduce_axes = {e: ((1,) if red_sets[e] else ()) for e in red_sets}
        return lay
    # reductions along different axes: the whole domain must sit in one program
    for A1 in sorted(sets, key=len):
        A0 = frozenset(all_classes - A1)
        if all(s in (A0, A1, A0 | A1) for s in sets):
            break
    else:
        raise NoFuse("reductions over crossing sets of axes ("
                     + ", ".join(str(sorted(s)) for s in sets) + ")")
    tile = next_pow2(math.prod(lay.sizes[c] for c in A0)) * \
        next_pow2(math.prod(lay.sizes[c] for c in A1))
    if tile > WHOLE_TILE_LIMIT:
        raise NoFuse(f"reductions along different axes need the whole {tile}-element domain "
                     "in one program")
    lay.axes = (tuple(_anchor_order(lay, A0)), tuple(_red_order(lay, A1, [])))
    lay.modes = ("whole", "whole")
    lay.reduce_axes = {}
    for e, s in red_sets.items():
        lay.reduce_axes[e] = () if not s else (0,) if s == A0 else (1,) if s == A1 else (0, 1)
    return lay


def _red_order(lay, S, red_inputs):
    """Reduced classes in the dim order of the reduction's input (argmax counts in it)."""
    for x in red_inputs:
        order = [c for c in lay.dims[x] if c in S]
        if set(order) == set(S):
            return order
    return _anchor_order(lay, S)


def _matmul_layout(lay, mm, eqns, red_sets):
    lay.kind = "matmul"
    lay.matmul = mm
    a, b = mm.inputs
    out = mm.out
    da, dout = lay.dims[a], lay.dims[out]
    lay.k_class = da[-1]
    m_cls, n_cls = dout[-2], dout[-1]
    outer = tuple(c for c in dout[:-2] if c is not None)
    lay.outer = outer
    lay.axes = ((m_cls,) if m_cls is not None else (), (n_cls,) if n_cls is not None else ())
    allowed = set(outer) | set(lay.axes[0]) | set(lay.axes[1])
    epilogue = set(lay.stores)  # values the epilogue computes, reads or writes
    for e in eqns:
        if e is not mm:
            epilogue.add(e.out)
            epilogue.update(x for x in e.inputs if isinstance(x, Var) and not x.weak)
    for ve in lay.views:
        epilogue.add(ve.out)
    for v in epilogue:
        extra = {c for c in lay.dims.get(v, ()) if c is not None} - allowed
        if extra:
            raise NoFuse(f"{v!r} {list(v.shape)} does not live on the [M, N] tile of "
                         f"{mm.out!r} = matmul")
    need = set()
    lay.reduce_axes = {}
    for e, s in red_sets.items():
        if s & set(outer):
            raise NoFuse(f"{e.out!r} reduces over the batch of matmul {mm.out!r}")
        ax = tuple(i for i in (0, 1) if s & set(lay.axes[i]))
        lay.reduce_axes[e] = ax
        need |= set(ax)
    M = lay.axis_size(0)
    N = lay.axis_size(1)
    if 0 in need and next_pow2(M) > WHOLE_M_LIMIT:
        raise NoFuse(f"epilogue reduces over M={M} rows of matmul {mm.out!r}: too many for one "
                     "tile")
    if 1 in need and next_pow2(N) > WHOLE_N_LIMIT:
        raise NoFuse(f"epilogue reduces over N={N} columns of matmul {mm.out!r}: too many for "
                     "one tile")
    if need == {0, 1} and next_pow2(M) * next_pow2(N) > WHOLE_MN_LIMIT:
        raise NoFuse(f"epilogue reduces over the whole {M}x{N} output of matmul {mm.out!r}")
    lay.modes = ("whole" if 0 in need else "grid", "whole" if 1 in need else "grid")
    return lay


# --------------------------------------------------------------------------- scheduling


def _label(an, eqns) -> str:
    """The name a log message uses for a group: its last result."""
    return repr(max(eqns, key=lambda e: an.index[e]).out)


class _Scheduler:
    def __init__(self, graph, log):
        self.an = Analysis(graph)
        self.log = log
        self.plans: dict[frozenset, Layout | str] = {}

    def layout(self, eqns) -> Layout | str:
        key = frozenset(eqns)
        hit = self.plans.get(key)
        if hit is None:
            ordered = sorted(eqns, key=self.an.index.get)
            try:
                hit = plan(self.an, ordered)
            except NoFuse as e:
                hit = str(e)
            self.plans[key] = hit
        return hit

    # -- the group graph -----------------------------------------------------------------

    def build_edges(self, groups):
        """Data edges plus write-after-read edges: an in-place update of a captured tensor
        runs after every kernel that reads its old value."""
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
        for old, new in self.inplace_pairs():
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
                da, db = (self.layout(groups[x]).domain() for x in (a, b))
                if lay.domain() > da + db:
                    why = f"unrelated iteration spaces ({da} and {db} elements would " \
                          f"become {lay.domain()})"
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
            if isinstance(lay, str) or lay.kind == "matmul":
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


def schedule(graph: Graph, log=None) -> list[Group]:
    """Group the equations of an optimized graph into kernels, in launch order.

    Args:
        graph: the optimized graph.
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

    s = _Scheduler(graph, once)
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
        s.inplace_pairs = lambda: []
        _, succ = s.build_edges(groups)
        order = s.toposort(groups, succ, first=first.get)
    result = []
    for gi in order:
        if gi in parts:
            multi = Group([], None, [], [], [], 0, 0,
                          segments=[_make_group(s, p) for p in parts[gi]])
            _finish_multi(multi)
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
    if isinstance(lay, str):  # a single equation no template covers
        raise NotImplementedError(f"fusegrad triton codegen: cannot emit {eqns[0]!r}: {lay}")
    loads, scalars, stores = group_io(an, eqns)
    return Group(eqns, lay, list(loads), scalars, stores, io_bytes(an, eqns),
                 sum(eqn_flops(e) for e in eqns), update=_update_kind(eqns),
                 dests={v: an.n_dests(v) for v in stores})


def _finish_multi(m: Group):
    for seg in m.segments:
        m.eqns.extend(seg.eqns)
        for v in seg.inputs:
            if v not in m.inputs:
                m.inputs.append(v)
        for v in seg.scalars:
            if v not in m.scalars:
                m.scalars.append(v)
        m.outputs.extend(seg.outputs)
        m.dests.update(seg.dests)
        m.bytes_moved += seg.bytes_moved
        m.flops += seg.flops


# --------------------------------------------------------------------------- naming
# Kernel names say what a kernel computes: known patterns, the prims that are not mere
# plumbing, and the library scope (the optimizer) whose update it applies.

_SOFTMAX = (P.amax, P.exp, P.sum_)
_SOFTMAX_KINDS = (Kind.REDUCE, Kind.BINARY, Kind.COMPARE)
_SOFTMAX_UNARY = (P.exp, P.log, P.neg)


def _pattern_names(eqns) -> list[str]:
    prims = {e.prim for e in eqns}
    parts = []
    mm = [e for e in eqns if e.prim.kind is Kind.MATMUL]
    if mm:
        out = mm[0].out
        bias = any(e.prim is P.add and out in e.inputs for e in eqns)
        parts.append("addmm" if bias else "mm")
    log_softmax = P.log_softmax in prims or {*_SOFTMAX, P.log} <= prims
    if log_softmax:
        parts.append("log_softmax")
    elif {*_SOFTMAX, P.div} <= prims:
        parts.append("softmax")
    if log_softmax and {P.eq, P.cast, P.sum_, P.mul} <= prims:  # picking the target's class
        parts.append("nll")
    return parts


def _plumbing(p) -> bool:
    """Prims a kernel name leaves out: data movement, creation, casts and copies."""
    return p.kind in (Kind.MOVEMENT, Kind.CREATE, Kind.MATMUL) or p.identity.noop is not None


def kernel_name(g: Group, i: int) -> str:
    """``fused_<what it fuses>_<i>``: matmul/softmax patterns, then op names, then the
    optimizer it applies; ``multi_tensor_<optimizer>_<i>`` for a multi-tensor kernel."""
    if g.segments:
        kinds = []
        for seg in g.segments:
            if seg.update and seg.update not in kinds:
                kinds.append(seg.update)
        return f"multi_tensor_{'_'.join(kinds) or 'update'}_{i}"
    parts = _pattern_names(g.eqns)
    softmax = any(p in parts for p in ("softmax", "log_softmax"))
    names = []
    for e in g.eqns:
        p = e.prim
        if _plumbing(p) or e.tag is not None:  # an optimizer's arithmetic is named by it
            continue
        if softmax and (p.kind in _SOFTMAX_KINDS or p in _SOFTMAX_UNARY):
            continue  # the arithmetic of a named softmax / log-softmax / nll
        if parts and parts[0] == "addmm" and p is P.add:
            continue
        n = p.name
        if n not in names and n not in parts and len(names) < 2 \
                and len(parts) + len(names) < 3:
            names.append(n)
    parts += names
    if g.update:
        parts.append(g.update)
    if not parts:
        parts = [g.eqns[0].prim.name if g.eqns else "copy"]
    return f"fused_{'_'.join(parts)}_{i}"


def _update_kind(eqns):
    """The optimizer whose update the group applies (from the ops' provenance tags)."""
    for e in eqns:
        if e.tag is not None and e.tag.startswith("optimizer="):
            return e.tag.split("=", 1)[1].lower()
    return None


# --------------------------------------------------------------------------- reporting


def stats(groups) -> dict:
    """``n_kernels``, ``bytes_moved`` and ``flops`` of a schedule."""
    return {
        "n_kernels": len(groups),
        "bytes_moved": sum(g.bytes_moved for g in groups),
        "flops": sum(g.flops for g in groups),
    }


