"""Emitters: the Triton code of one equation (or one loop) on a kernel skeleton.

``codegen.Segment`` is the skeleton: program ids, tile axes and their coordinates,
values, loads and stores. The functions here write what each kind of primitive computes,
reading the primitive's record, never its name: pointwise kinds spell the record's
``triton`` template, reductions its ``reduce`` (block reduction, looped combine, neutral
element, index results, shape-keeping normalisation), the gathering movement ops place
their operands along one dim, and a matmul accumulates its tile over K before its
epilogue reads the accumulator in registers. Each emitter returns the name of the value it
wrote. ``EMITTERS`` dispatches on ``prim.kind``.
"""

from __future__ import annotations

import torch

from fusegrad._util import index
from fusegrad._util.index import Sym, add, floordiv, ge, lt, mod, mul, render, sub
from fusegrad.compiler.backends.triton import index as ix
from fusegrad.primitives import Kind, result_dtype

# --------------------------------------------------------------------------- pointwise


def pointwise(seg, e) -> str:
    """One elementwise op from its record's template, in its compute dtype: halves compute
    in float32, logical ops on booleans, comparisons in their operands' common type."""
    p = e.prim
    out = e.out
    if not p.triton:
        raise NotImplementedError(f"fusegrad triton codegen: {p.name} has no pointwise "
                                  "template in fusegrad.primitives")
    D = out.dtype
    compare = p.kind is Kind.COMPARE
    if len(p.triton_bool_args) == len(e.inputs):  # a logical op: computes on booleans
        C = torch.bool
    elif compare:
        a, b = e.inputs
        C = ix.compute_dtype(result_dtype(a, b))
    else:
        C = ix.compute_dtype(D)
    ops = []
    for i, x in enumerate(e.inputs):
        if p.triton_raw:
            ops.append(seg.val(x))
        elif i in p.triton_bool_args:
            ops.append(seg.operand(x, torch.bool))
        else:
            ops.append(seg.operand(x, C, materialize=p.triton_full))
    params = {k: (ix.literal(v, C) if isinstance(v, (int, float, bool)) or v is None
                  else v) for k, v in e.params.items() if k != "dtype"}
    tdt = ix.tl_dtype(D if p.triton_raw else C)
    expr = p.triton.format(*ops, dtype=tdt, **params)
    if not compare and not p.triton_raw and C != D:
        expr = f"({expr}).to({ix.tl_dtype(D)})"
    return seg.let(expr)


def full(seg, e) -> str:
    """A constant block (Kind.CREATE): broadcast against the values it meets."""
    out = e.out
    lit = ix.literal(e.params["value"], out.dtype)
    return seg.let(f"tl.full([1, 1], {lit}, {ix.tl_dtype(out.dtype)})")


# --------------------------------------------------------------------------- reductions


def acc_dtype(e):
    """The dtype a reduction accumulates in: its input's for an index result, else the
    compute dtype of its result (integers sum as themselves)."""
    return e.inputs[0].dtype if e.prim.reduce.index else ix.compute_dtype(e.out.dtype)


def reduction(seg, e) -> str:
    """A reduction over tile axes the block holds whole (``seg.lay.reduce_axes``); masked
    lanes hold the neutral element so they never win or add."""
    red = e.prim.reduce
    if red.keeps_shape:
        return normalise(seg, e)
    D = e.out.dtype
    C = acc_dtype(e)
    axes = seg.lay.reduce_axes[e]
    if not axes:
        return _unit_dims(seg, e, C)
    xv = seg.operand(e.inputs[0], C)
    masked = f"tl.where({render(seg.mask(axes))}, {xv}, {red.neutral_value(C)})"
    if red.index:
        return _index_of(seg, e, masked, axes)
    expr = masked
    for a in sorted(axes, reverse=True):
        expr = f"{red.tl}({expr}, axis={a}, keep_dims=True)"
    if C != D:
        expr = f"({expr}).to({ix.tl_dtype(D)})"
    return seg.let(expr)


def _unit_dims(seg, e, C) -> str:
    """A reduction over dims of size 1 only: the value itself, or index 0 for argmax."""
    D = e.out.dtype
    if e.prim.reduce.index:
        return seg.let(f"tl.zeros([1, 1], {ix.tl_dtype(D)})")
    return seg.let(seg.cast(seg.operand(e.inputs[0], C), C, D))


def _index_of(seg, e, masked, axes) -> str:
    """An argmax-like reduction: the position of the winner, counted in the reduction's
    input (row-major over the reduced dims)."""
    fn, D = e.prim.reduce.tl, ix.tl_dtype(e.out.dtype)
    if len(axes) == 1:
        return seg.let(f"{fn}({masked}, axis={axes[0]}, keep_dims=True).to({D})")
    # both axes: reduce the flattened block, then turn its block position into the
    # position in the input, whose rows are s1 (not BLOCK_1) long
    b0, b1 = seg.grid.blocks
    flat = seg.let(f"{fn}(tl.reshape({masked}, [{render(mul(b0, b1))}]), axis=0)")
    f = Sym(flat)
    pos = add(mul(floordiv(f, b1), seg.lay.axis_size(1)), mod(f, b1))
    return seg.let(f"({render(pos)}).to({D}) + tl.zeros([1, 1], {D})")


def normalise(seg, e) -> str:
    """A normalisation over one dim that keeps its input's shape (``reduce.keeps_shape``):
    x - max - log(sum(exp(x - max))), with the max taken first so exp cannot overflow."""
    red = e.prim.reduce
    D = e.out.dtype
    C = ix.compute_dtype(D)
    axes = seg.lay.reduce_axes[e]
    xv = seg.operand(e.inputs[0], C)
    if not axes:  # over a dim of size 1: every element is its row's max
        return seg.let(f"({xv} - {xv}).to({ix.tl_dtype(D)})")
    (a,) = axes
    m = render(seg.mask(axes))
    mx = seg.let(f"tl.max(tl.where({m}, {xv}, {red.neutral_value(C)}), axis={a}, "
                 "keep_dims=True)")
    sh = seg.let(f"{xv} - {mx}")
    lse = seg.let(f"tl.log(tl.sum(tl.where({m}, tl.exp({sh}), 0.0), axis={a}, "
                  "keep_dims=True))")
    return seg.let(seg.cast(f"{sh} - {lse}", C, D, paren=True))


def looped_reduction(seg):
    """Rows too long for one block: walk tile axis 1 ``BLOCK_1`` at a time, combining each
    block into a [BLOCK_0, BLOCK_1] accumulator (one read of the input, no writes), and
    reduce the accumulator once after the loop. Values along axis 1 are stored inside the
    loop; the reductions' results and what depends on them only, after it."""
    lay = seg.lay
    b0, b1 = seg.grid.blocks
    reds = [e for e, axes in lay.reduce_axes.items() if axes]
    accs = {}
    for e in reds:
        C = acc_dtype(e)
        acc = seg.n(f"acc{len(accs)}")
        accs[e] = (acc, C)
        seg.emit(f"{acc} = tl.full([{b0}, {b1}], {e.prim.reduce.neutral_value(C)}, "
                 f"{ix.tl_dtype(C)})")
    start = seg.sym("start1")
    with seg.loop(f"for {start} in range(0, {lay.axis_size(1)}, {b1}):"):
        seg.open_axis(1, start)
        for e in reds:
            acc, C = accs[e]
            red = e.prim.reduce
            xv = seg.operand(e.inputs[0], C)
            masked = f"tl.where({render(seg.mask((0, 1)))}, {xv}, {red.neutral_value(C)})"
            seg.emit(f"{acc} = " + red.combine.format(acc, masked))
        for v in lay.stores:
            if seg.on_axis1(v):
                seg.store(v)
    for e in reds:
        acc, C = accs[e]
        expr = f"{e.prim.reduce.tl}({acc}, axis=1, keep_dims=True)"
        seg.remember(e.out, seg.let(seg.cast(expr, C, e.out.dtype, paren=True)))
    for v in lay.stores:
        if not seg.on_axis1(v):
            seg.store(v)


# --------------------------------------------------------------------------- gathers


def _placements(e) -> list:
    """Where each operand of a gathering movement op lands along ``params["dim"]``:
    (operand, first index, end, step), from the record's ``places`` rule (a cat stacks its
    operands one after the other; an unslice puts its one operand at start:stop:step)."""
    shapes = [tuple(x.shape) for x in e.inputs]
    return [(e.inputs[i], a, b, c) for i, a, b, c in e.prim.places(e.params, shapes)]


def gather(seg, e) -> str:
    """A movement op that copies (Kind.MOVEMENT without a view rule): each operand is
    loaded where its range along the dim covers the coordinate, through the coordinate
    shifted into the operand; elsewhere the value is 0."""
    d = e.params["dim"]
    out = e.out
    c = seg.lay.dims[out][d]
    j = 0 if c is None else seg.ix[c]
    D = ix.tl_dtype(out.dtype)
    pieces = []
    for x, lo, hi, step in _placements(e):
        rel = sub(j, lo)
        # a coordinate is never negative: the first piece of a cat needs no lower bound
        cond = index.conj(ge(j, lo) if lo else True, lt(j, hi), index.eq(mod(rel, step), 0))
        name = seg.let(render(cond))
        coords = seg.coords(out)
        coords[d] = floordiv(rel, step)
        xv = seg.load(x, coords=coords, extra_mask=Sym(name))
        pieces.append((name, seg.cast(xv, x.dtype, out.dtype)))
    result = "0"
    for cond, xv in reversed(pieces):
        result = f"tl.where({cond}, {xv}, {result})"
    return seg.let(f"{result}.to({D})")


# --------------------------------------------------------------------------- matmul


def mm_form(lay) -> str:
    """How a matmul tile is computed: ``dot`` (``tl.dot``), or in registers when an extent
    is 1, where ``tl.dot`` (16 or more per dim) would pad the operands with broadcast
    copies and sum them: ``outer`` (K == 1: one product), ``sum1`` (N == 1: each row of A
    times the vector B, summed along tile axis 1, where K is laid out) or ``sum0`` (M == 1:
    K runs along tile axis 0)."""
    if lay.k_class is None:
        return "outer"
    if not lay.axes[1]:
        return "sum1"
    if not lay.axes[0]:
        return "sum0"
    return "dot"


def matmul(seg):
    """The matmul's [BLOCK_M, BLOCK_N] tile of ``lay.matmul``, accumulated in PyTorch's
    type (float32 for halves), then handed to the epilogue as a value in registers."""
    lay = seg.lay
    mm = lay.matmul
    a, b = mm.inputs
    acc = seg.n("acc")
    C = ix.compute_dtype(mm.out.dtype)
    form = mm_form(lay)
    if form == "outer":  # K == 1: one product, no loop
        seg.emit(f"{acc} = {_product(seg, seg.load(a), seg.load(b), C)}")
    else:
        _k_loop(seg, acc, C, form)
    seg.remember(mm.out, seg.let(seg.cast(acc, C, mm.out.dtype)))


def _k_loop(seg, acc, C, form):
    """Accumulate the tile over K, ``BLOCK_K`` at a time: per step, read BLOCK_M x BLOCK_K
    of A and BLOCK_K x BLOCK_N of B."""
    lay = seg.lay
    a, b = lay.matmul.inputs
    K = a.shape[-1]
    bm, bn = seg.grid.blocks
    bk, k0 = seg.sym("BLOCK_K"), seg.sym("k0")
    seg.emit(f"{acc} = tl.zeros([{bm}, {bn}], dtype={ix.tl_dtype(C)})")
    with seg.loop(f"for {k0} in range(0, {K}, {bk}):"):
        # K along tile axis 1 (as A's columns) and axis 0 (as B's rows)
        ks = []
        for axis, name in ((1, "ka"), (0, "kb")):
            k = ix.Coord(seg.n(name), "k", lt(Sym(seg.n(name)), K))
            seg.emit(f"{k} = {render(add(k0, ix.Arange(bk, axis)))}")
            ks.append(k)
        ka, kb = ks
        k_of = {"dot": (ka, kb), "sum0": (kb, kb), "sum1": (ka, ka)}[form]  # K in A, in B
        av, bv = (seg.load(x, override={lay.k_class: kx}) for x, kx in zip((a, b), k_of))
        if form == "dot":
            # IEEE fp32 as PyTorch's default float32 matmul (tl.dot's default is tf32)
            prec = ', input_precision="ieee"' if a.dtype in (torch.float32, torch.float64) \
                else ""
            seg.emit(f"{acc} = tl.dot(tl.broadcast_to({av}, [{bm}, {bk}]), "
                     f"tl.broadcast_to({bv}, [{bk}, {bn}]), {acc}{prec})")
        else:
            seg.emit(f"{acc} += tl.sum({_product(seg, av, bv, C)}, axis={form[-1]}, "
                     "keep_dims=True)")


def _product(seg, av, bv, C) -> str:
    """Elementwise product of the matmul's operand blocks, in the accumulation type."""
    a, b = seg.lay.matmul.inputs
    return f"{seg.cast(av, a.dtype, C)} * {seg.cast(bv, b.dtype, C)}"


# --------------------------------------------------------------------------- dispatch

EMITTERS = {kind: pointwise for kind in Kind if kind.pointwise}
EMITTERS.update({Kind.REDUCE: reduction, Kind.CREATE: full, Kind.MOVEMENT: gather})
