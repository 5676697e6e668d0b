"""The Triton backend's tile model: which equations can share one Triton kernel, and how
that kernel iterates.

Every group has a :class:`Layout`: the kernel's iteration space as *classes* (the dims of
all its values, unified through the equations: ``add(a, b)`` puts dim 0 of a, b and the
result in one class), laid out on a 2-D tile (axis 0 = rows, axis 1 = columns) where each
axis is split across programs (``grid``), held by one block (``whole``), or walked in a
loop (``loop``). Reductions reduce whole or looped axes; a matmul's M and N are the tile
and its epilogue works on the accumulator in registers. :data:`RULES` hands this model
to the backend-neutral scheduler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fusegrad._util.index import indexed
from fusegrad.compiler import schedule as S
from fusegrad.compiler.ir import Eqn, Var
from fusegrad.compiler.schedule.deps import Analysis, NoFuse
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


class TritonRules:
    """The tile model as the scheduler's fusion rules."""

    name = "triton"

    @staticmethod
    def plan(an: Analysis, eqns) -> Layout:
        return plan(an, eqns)

    @staticmethod
    def can_merge(merged: Layout, a: Layout, b: Layout):
        da, db = a.domain(), b.domain()
        if merged.domain() > da + db:
            return f"unrelated iteration spaces ({da} and {db} elements would become " \
                   f"{merged.domain()})"
        return None

    @staticmethod
    def bundles(lay: Layout) -> bool:
        return lay.kind != "matmul"  # a matmul's update rides in its own epilogue


RULES = TritonRules()


def schedule(graph, log=None):
    """The Triton backend's kernels for ``graph``."""
    return S.schedule(graph, RULES, log)
