"""Triton codegen: one readable module with one ``@triton.jit`` kernel per scheduled Group.

The skeleton (``Segment``) is the Triton tutorials' ``pid / offsets / mask``, on a 2-D
tile: ``offs0`` (rows, shape [BLOCK_0, 1]) and ``offs1`` (columns, [1, BLOCK_1]); every
value of the kernel is a 2-D block that varies along the axes its dims live on (see
``schedule.Layout``), so Triton's broadcasting lines them up. Values are SSA ``tmpN``
variables, written by the emitter of each equation's kind (``emit``) from its
primitive's record (the one rule table).

Program ids, offsets, coordinates, addresses and masks are ``fusegrad._util.index``
expressions, rendered only when a line is written. Loads fold views into their address;
the mask of a load or store is derived from the coordinates its address uses
(``index.mask_of``). The number of programs is one expression (``Grid``): the
launcher evaluates it, a multi-tensor kernel's dispatch renders it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from fusegrad._util import index
from fusegrad._util.index import Sym, add, cdiv, floordiv, lt, mod, mul, render, sub
from fusegrad.compiler.backends.triton import emit
from fusegrad.compiler.backends.triton import index as ix
from fusegrad.compiler.ir import Var
from fusegrad.compiler.backends.triton.layout import Layout, next_pow2
from fusegrad.compiler.schedule import Group
from fusegrad.primitives import Kind
from fusegrad.runtime.kernels import Kernel

NUM_WARPS = 4
TILE_BUDGET = 2048  # elements per program for row-wise kernels
POINTWISE_BLOCK = 1024
LOOP_BLOCK = 512

HELPERS = {
    "_tanh": '''
@triton.jit
def _tanh(x):
    # tanh(|x|) = (1 - e^-2|x|) / (1 + e^-2|x|): no overflow for large |x|
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)
''',
    "_pow": '''
@triton.jit
def _pow(a, b):
    # a ** b as torch.pow: |a| ** b, negative for a < 0 and odd integer b, nan for a < 0
    # and fractional b, 1 for b == 0
    mag = tl.exp2(b * tl.log2(tl.abs(a)))
    whole = b == tl.floor(b)
    odd = whole & (tl.abs(b - 2.0 * tl.floor(b * 0.5)) == 1.0)
    neg = tl.where(whole, tl.where(odd, -mag, mag), float("nan"))
    return tl.where(b == 0, 1.0, tl.where(a < 0, neg, mag))
''',
    "_clamp": '''
@triton.jit
def _clamp(x, lo, hi):
    if lo is not None:
        x = tl.maximum(x, lo)
    if hi is not None:
        x = tl.minimum(x, hi)
    return x
''',
}


@dataclass(eq=False)
class GeneratedKernel(Kernel):
    """A Kernel plus what launching it needs: the argument list (``("in", var)``,
    ``("scalar", var)``, ``("out", var, destination)``), the number of programs as an
    index expression over the block sizes (the one the kernel's own dispatch renders), the
    warps, and alternative block sizes for autotuning on CUDA."""

    group: Group | None = None
    args: list = field(default_factory=list)
    grid_expr: object = 1
    num_warps: int = NUM_WARPS
    configs: list = field(default_factory=list)
    bytes_moved: int = 0
    flops: int = 0

    def grid(self, constexprs=None) -> int:
        """The number of programs for block sizes ``constexprs`` (default: the kernel's)."""
        return index.evaluate(self.grid_expr, constexprs or self.constexprs)


# --------------------------------------------------------------------------- block sizes


def _blocks(lay: Layout, pre: str) -> tuple[dict, list]:
    """Heuristic block sizes for a non-matmul layout, and alternatives for autotuning."""
    s0, s1 = lay.axis_size(0), lay.axis_size(1)
    m0, m1 = lay.modes
    if m1 == "grid":  # pointwise: one flat axis
        b1 = min(POINTWISE_BLOCK, max(16, next_pow2(s1)))
        b0 = next_pow2(s0) if m0 == "whole" else 1
        alts = [b for b in (256, 512, 2048) if b < next_pow2(s1) * 2 and b != b1]
        return {f"{pre}BLOCK_0": b0, f"{pre}BLOCK_1": b1}, \
            [{f"{pre}BLOCK_0": b0, f"{pre}BLOCK_1": b} for b in alts]
    b1 = next_pow2(s1) if m1 == "whole" else min(LOOP_BLOCK, next_pow2(s1))
    if m0 == "whole":
        b0 = next_pow2(s0)
        return {f"{pre}BLOCK_0": b0, f"{pre}BLOCK_1": b1}, []
    b0 = max(1, min(next_pow2(s0), TILE_BUDGET // b1))
    alts = [b for b in (b0 // 2, b0 * 2) if 1 <= b <= next_pow2(s0) and b * b1 <= 8192]
    return {f"{pre}BLOCK_0": b0, f"{pre}BLOCK_1": b1}, \
        [{f"{pre}BLOCK_0": b, f"{pre}BLOCK_1": b1} for b in alts]


def _mm_blocks(lay: Layout) -> tuple[dict, list]:
    M, N = lay.axis_size(0), lay.axis_size(1)
    K = lay.matmul.inputs[0].shape[-1]
    least = 16 if emit.mm_form(lay) == "dot" else 1  # tl.dot's smallest operand
    bk = min(32, max(least, next_pow2(K)))
    whole_m, whole_n = (m == "whole" for m in lay.modes)

    def pick(size, whole, cap):
        return max(least, next_pow2(size)) if whole else min(cap, max(least, next_pow2(size)))

    bm, bn = pick(M, whole_m, 64), pick(N, whole_n, 64)
    # keep the accumulator at <= 4096 elements (32 registers a thread at 4 warps)
    if whole_n and not whole_m:
        bm = max(least, min(bm, 4096 // bn))
    if whole_m and not whole_n:
        bn = max(least, min(bn, 4096 // bm))
    base = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}
    alts = []
    for am, an in ((128, 64), (64, 128), (32, 64), (64, 32)):
        cm = bm if whole_m else min(am, max(least, next_pow2(M)))
        cn = bn if whole_n else min(an, max(least, next_pow2(N)))
        cfg = {"BLOCK_M": cm, "BLOCK_N": cn, "BLOCK_K": bk}
        if cfg != base and cfg not in alts and cm * cn <= 8192:
            alts.append(cfg)
    return base, alts


# --------------------------------------------------------------------------- programs


class Grid:
    """The programs of one layout as index expressions over its block-size constexprs, so
    the launcher's number and the kernel's own use of it are one formula.

    ``count`` is the number of programs: summed over a kernel's segments it is the launch
    grid (``GeneratedKernel.grid`` evaluates it) and, rendered, the pid ranges of a
    multi-tensor kernel's dispatch. A program id splits row-major over (batch, tile axis
    0, tile axis 1), ``per_axis`` programs along each tile axis."""

    def __init__(self, lay: Layout, pre: str):
        sizes = (lay.axis_size(0), lay.axis_size(1))
        if lay.kind == "matmul":  # one program per [BLOCK_M, BLOCK_N] tile and batch index
            self.blocks = (Sym(pre + "BLOCK_M"), Sym(pre + "BLOCK_N"))
            self.per_axis = tuple(cdiv(s, b) for s, b in zip(sizes, self.blocks))
            self.batch = math.prod(lay.sizes[c] for c in lay.outer)
        else:
            self.blocks = (Sym(pre + "BLOCK_0"), Sym(pre + "BLOCK_1"))
            self.per_axis = tuple(cdiv(s, b) if m == "grid" else 1
                                  for s, b, m in zip(sizes, self.blocks, lay.modes))
            self.batch = 1
        self.count = mul(self.batch, *self.per_axis)


# --------------------------------------------------------------------------- the skeleton


class Segment:
    """The skeleton of one layout's code (a whole kernel, or one part of a multi-tensor
    one): program ids, tile axes and the coordinates of the classes laid on them, values,
    loads and stores. What each equation computes is written by the emitter of its kind
    (``emit.EMITTERS``)."""

    def __init__(self, kw, group: Group, grid: Grid, pre: str, indent: str):
        self.kw = kw
        self.lay = group.layout
        self.grid = grid
        self.pre = pre
        self.ind = indent
        self.zero = self.n("zero")
        self.memo: dict[Var, str] = {}
        self.scopes: list[list] = []  # memo entries made inside each open loop
        self.ix: dict[int, ix.Coord] = {}  # class -> its coordinate
        self.masks: dict[int, Sym] = {}  # tile axis -> where its offsets are in range
        self.producer = {e.out: e for e in group.eqns}
        self.view_of = {e.out: e for e in self.lay.views}

    # -- lines and names -----------------------------------------------------------------

    def emit(self, line=""):
        self.kw.lines.append(self.ind + line if line else "")

    def tmp(self) -> str:
        self.kw.ntmp += 1
        return f"tmp{self.kw.ntmp}"

    def let(self, expr: str) -> str:
        """A new SSA value ``tmpN = expr``."""
        t = self.tmp()
        self.emit(f"{t} = {expr}")
        return t

    def n(self, name: str) -> str:
        return f"{self.pre}{name}"

    def sym(self, name: str) -> Sym:
        return Sym(self.n(name))

    def remember(self, v, name):
        self.memo[v] = name
        if self.scopes:
            self.scopes[-1].append(v)

    @contextmanager
    def loop(self, header: str):
        """An indented block under ``header``; values first computed inside it are
        forgotten after it (they hold the last iteration's block only)."""
        self.emit(header)
        outer = self.ind
        self.ind += "    "
        self.scopes.append([])
        try:
            yield
        finally:
            self.ind = outer
            for v in self.scopes.pop():
                self.memo.pop(v, None)

    @staticmethod
    def cast(expr: str, have, want, paren=False) -> str:
        if have == want:
            return expr
        return f"({expr}).to({ix.tl_dtype(want)})" if paren else \
            f"{expr}.to({ix.tl_dtype(want)})"

    # -- programs, axes, coordinates -----------------------------------------------------

    def extent(self, c) -> int:
        """The size of class ``c`` for splitting a flat index; an empty class counts as 1:
        its axis is masked off everywhere, and nothing may divide by 0."""
        return max(1, self.lay.sizes[c])

    def split(self, classes, flat, axis, mask, wrap_outer=False):
        """Coordinates of ``classes`` (outer to inner) from one flat position: the inner
        class varies fastest. The outermost needs no ``%`` unless ``wrap_outer``."""
        stride, exprs = 1, []
        for c in reversed(classes):
            e = floordiv(flat, stride)
            if wrap_outer or c != classes[0]:
                e = mod(e, self.extent(c))
            exprs.append((c, e))
            stride *= self.extent(c)
        for c, e in reversed(exprs):
            coord = ix.Coord(self.n(f"ix{c}"), axis, mask)
            self.emit(f"{coord} = {render(e)}")
            self.ix[c] = coord

    def program_ids(self, pid) -> list:
        """This program's position along each tile axis (row-major over batch, axis 0,
        axis 1, as ``Grid`` counts them), and the batch coordinates; returns the first
        offset of each tile axis."""
        n0, n1 = self.grid.per_axis
        rest = floordiv(pid, n1)
        # a matmul's row position keeps its ``%``, needed only under a batch: the bound it
        # states narrows the tile's address math (fewer registers in the MLP's kernels)
        at = {1: mod(pid, n1), 0: mod(rest, n0) if self.lay.kind == "matmul" else rest}
        starts = [0, 0]
        for a in (1, 0):
            if self.grid.per_axis[a] != 1:
                p = self.sym(f"pid{a}")
                self.emit(f"{p} = {render(at[a])}")
                starts[a] = mul(p, self.grid.blocks[a])
        if self.lay.outer:
            b = self.sym("pid_b")
            self.emit(f"{b} = {render(floordiv(rest, n0))}")
            self.split(self.lay.outer, b, None, None, wrap_outer=True)
        return starts

    def open_axis(self, a: int, start):
        """``offs{a}``: the positions along tile axis ``a`` from ``start``, ``mask{a}``:
        those in range, and the coordinates of the classes laid on the axis."""
        offs, mask = self.sym(f"offs{a}"), self.sym(f"mask{a}")
        self.emit(f"{offs} = {render(add(start, ix.Arange(self.grid.blocks[a], a)))}")
        self.emit(f"{mask} = {render(lt(offs, self.lay.axis_size(a)))}")
        self.masks[a] = mask
        self.split(self.lay.axes[a], offs, a, mask)

    def mask(self, axes):
        """Where the tile is in range along ``axes``."""
        return index.conj(*(self.masks[a] for a in axes))

    def coords(self, v, override=None) -> list:
        override = override or {}
        return [0 if c is None else override[c] if c in override else self.ix[c]
                for c in self.lay.dims[v]]

    def on_axis1(self, v) -> bool:
        return 1 in self.lay.axes_of(v)

    # -- values --------------------------------------------------------------------------

    def val(self, x) -> str:
        """Triton source for operand ``x`` (a Var or a Python number), emitting what it
        needs."""
        if not isinstance(x, Var):
            return ix.literal(x)
        if x.weak:
            return self.kw.scalar_name(x)
        hit = self.memo.get(x)
        if hit is not None:
            return hit
        if x in self.lay.loads:
            name = self.load(x)
        elif x in self.producer:
            name = self.eqn(self.producer[x])
        elif x in self.view_of:  # a view of a value in registers: the same block
            name = self.val(self.view_of[x].inputs[0])
        else:
            raise RuntimeError(f"fusegrad triton codegen: {x!r} has no value in kernel "
                               f"{self.kw.name}")
        self.remember(x, name)
        return name

    def eqn(self, e) -> str:
        p = e.prim
        if p.is_view:  # a materialized view: the load already went through its index math
            return self.val(e.inputs[0])
        if p.kind is Kind.MATMUL:
            raise RuntimeError("matmul value is set by the matmul loop")
        fn = emit.EMITTERS.get(p.kind)
        if fn is None:
            raise NotImplementedError(f"fusegrad triton codegen: no kernel template for {e!r}")
        return fn(self, e)

    def operand(self, x, C, materialize=False) -> str:
        """``x`` converted to the compute dtype ``C`` of the op that reads it."""
        if not isinstance(x, Var):
            lit = ix.literal(x, C)
            if materialize:
                return self.let(f"tl.full([1, 1], {lit}, {ix.tl_dtype(C)})")
            return lit
        name = self.val(x)
        have = x.dtype
        if x.weak:  # host numbers arrive as fp32 (floats) or int32/int64
            if not x.dtype.is_floating_point:
                return f"{name}.to({ix.tl_dtype(C)})" if C.is_floating_point else name
            have = torch.float32
        return self.cast(name, have, C)

    # -- memory --------------------------------------------------------------------------

    def load(self, v, override=None, extra_mask=True, coords=None) -> str:
        """Read ``v`` at ``coords`` (its own by default) through its views; lanes whose
        coordinates are out of range, or outside ``extra_mask``, read 0."""
        ld = self.lay.loads[v]
        if coords is None:
            coords = self.coords(v, override)
        off = ix.load_address(ld, coords)
        mask = index.conj(ix.mask_of(off), extra_mask)
        ptr = ix.pointer(self.kw.in_name(ld.root), off, self.zero)
        return self.let(f"tl.load({ptr}{ix.mask_arg(mask, other='0')})")

    def store(self, v):
        name = self.val(v)
        off = index.linear(self.coords(v), v.shape)
        m = ix.mask_arg(ix.mask_of(off))
        for ptr in self.kw.out_names(v):
            self.emit(f"tl.store({ix.pointer(ptr, off, self.zero)}, {name}{m})")

    # -- the body ------------------------------------------------------------------------

    def body(self, pid):
        lay = self.lay
        self.emit(f"{self.zero} = tl.full([1, 1], 0, tl.int32)")
        starts = self.program_ids(pid)
        self.open_axis(0, starts[0])
        if lay.modes[1] == "loop":
            emit.looped_reduction(self)
            return
        self.open_axis(1, starts[1])
        if lay.kind == "matmul":
            emit.matmul(self)
        for v in lay.stores:
            self.store(v)


# --------------------------------------------------------------------------- kernels


class _KernelWriter:
    def __init__(self, group: Group, name: str):
        self.group = group
        self.name = name
        self.lines: list[str] = []
        self.ntmp = 0
        self.inputs: list[Var] = []
        self.scalars: list[Var] = []
        self.outputs: list[tuple] = []  # (var, destination)

    def in_name(self, root) -> str:
        if root not in self.inputs:
            self.inputs.append(root)
        return f"{root!r}_ptr"

    def scalar_name(self, v) -> str:
        if v not in self.scalars:
            self.scalars.append(v)
        return f"{v!r}_num"

    def out_names(self, v) -> list[str]:
        names = []
        for d in range(self.group.dests.get(v, 1)):
            if (v, d) not in self.outputs:
                self.outputs.append((v, d))
            names.append(f"{v!r}_out" + (f"_{d}" if d else ""))
        return names


def generate(group: Group) -> GeneratedKernel:
    """The Triton kernel of one scheduled group (a multi-tensor group included)."""
    kw = _KernelWriter(group, group.name)
    multi = bool(group.segments)
    segments = group.segments or [group]
    pres = [f"S{si}_" if multi else "" for si in range(len(segments))]
    constexprs: dict = {}
    alts = []  # per segment: other block sizes to try, the rest kept
    for seg, pre in zip(segments, pres):
        base, more = _block_sizes(seg.layout, pre)
        constexprs.update(base)
        alts.append(more)
    grids = [Grid(seg.layout, pre) for seg, pre in zip(segments, pres)]
    pid = Sym("pid")
    kw.lines.append(f"    {pid} = tl.program_id(0)")
    if not multi:
        Segment(kw, group, grids[0], "", "    ").body(pid)
    else:  # segment i takes the programs after those of segments 0..i-1
        done = 0
        for si, (seg, grid, pre) in enumerate(zip(segments, grids, pres)):
            upto = add(done, grid.count)
            kw.lines.append(f"    {'if' if si == 0 else 'elif'} {render(lt(pid, upto))}:")
            kw.lines.append(f"        # part {si}: {_seg_summary(seg)}")
            seg_pid = Sym(f"{pre}pid")
            kw.lines.append(f"        {seg_pid} = {render(sub(pid, done))}")
            Segment(kw, seg, grid, pre, "        ").body(seg_pid)
            done = upto
    args, signature = _arguments(kw)
    cargs = [f"{k}: tl.constexpr" for k in constexprs]
    helpers = sorted({e.prim.triton_helper for e in group.eqns if e.prim.triton_helper})
    src = [_header(group), "", "import triton", "import triton.language as tl", ""]
    for h in helpers:
        src.append(HELPERS[h].rstrip() + "\n")
    src += ["", "@triton.jit", f"def {group.name}({', '.join(list(signature) + cargs)}):"]
    src += kw.lines
    configs = [{**constexprs, **alt} for more in alts for alt in more]
    return GeneratedKernel(
        name=group.name, source="\n".join(src) + "\n", ops=group.ops, signature=signature,
        constexprs=dict(constexprs), provenance=group.provenance, group=group, args=args,
        grid_expr=add(*(g.count for g in grids)), configs=configs,
        bytes_moved=group.bytes_moved, flops=group.flops)


def _block_sizes(lay: Layout, pre: str) -> tuple[dict, list]:
    if lay.kind != "matmul":
        return _blocks(lay, pre)
    base, alts = _mm_blocks(lay)
    return {pre + k: v for k, v in base.items()}, \
        [{pre + k: v for k, v in a.items()} for a in alts]


def _arguments(kw) -> tuple[list, dict]:
    """The launcher's argument list and the kernel's signature: input pointers, host
    numbers, output pointers, in the order the body first used them."""
    args, signature = [], {}
    for root in kw.inputs:
        signature[f"{root!r}_ptr"] = ix.ptr_type(root.dtype)
        args.append(("in", root))
    for v in kw.scalars:
        signature[f"{v!r}_num"] = "fp32" if v.dtype.is_floating_point else "i64"
        args.append(("scalar", v))
    for v, d in kw.outputs:
        signature[f"{v!r}_out" + (f"_{d}" if d else "")] = ix.ptr_type(v.dtype)
        args.append(("out", v, d))
    return args, signature


def _seg_summary(g: Group) -> str:
    outs = ", ".join(f"{v!r}" for v in g.outputs)
    return f"{g.kind} -> {outs}"


def _header(group: Group) -> str:
    lines = [f"# {group.name}: generated by fusegrad ({group.kind} kernel)", "# fuses:"]
    for e in group.eqns:
        lines.append(f"#   {e!r}")
    src = ", ".join(group.provenance)
    lines.append(f"# from: {src}")
    reads = ", ".join(f"{v!r} {v.type_str()}" for v in group.inputs) or "-"
    writes = ", ".join(f"{v!r} {v.type_str()}" for v in group.outputs) or "-"
    lines.append(f"# reads {reads}")
    lines.append(f"# writes {writes}")
    lines.append(f"# moves ~{group.bytes_moved} bytes, {group.flops} flops")
    return "\n".join(lines)
