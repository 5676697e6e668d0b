"""Triton codegen: one readable module with one ``@triton.jit`` kernel per scheduled Group.

The skeleton is the Triton tutorials' ``pid / offsets / mask``, on a 2-D tile: ``offs0``
(rows, shape [BLOCK_0, 1]) and ``offs1`` (columns, [1, BLOCK_1]); every value of the kernel
is a 2-D block that varies along the axes its dims live on (see ``schedule.Layout``), so
Triton's broadcasting lines them up. Values are SSA ``tmpN`` variables; each pointwise
equation is spelled by its primitive's ``triton`` template from ``fusegrad.primitives``
(the one rule table). Loads fold views into their index math; masks cover ragged edges.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from fusegrad.compiler import codegen_index as ix
from fusegrad.compiler.ir import Var
from fusegrad.compiler.backends.triton_layout import Layout, next_pow2
from fusegrad.compiler.schedule import Group
from fusegrad import primitives as P
from fusegrad.primitives import Kind, result_dtype
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
    ``("scalar", var)``, ``("out", var, destination)``), the grid size for given block
    sizes, the warps, and alternative block sizes for autotuning on CUDA."""

    group: Group | None = None
    args: list = field(default_factory=list)
    grid_fn: object = None
    num_warps: int = NUM_WARPS
    configs: list = field(default_factory=list)
    bytes_moved: int = 0
    flops: int = 0

    def grid(self, constexprs=None) -> int:
        return self.grid_fn(constexprs or self.constexprs)


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


def _mm_form(lay: Layout) -> str:
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


def _mm_blocks(lay: Layout) -> tuple[dict, list]:
    M, N = lay.axis_size(0), lay.axis_size(1)
    K = lay.matmul.inputs[0].shape[-1]
    least = 16 if _mm_form(lay) == "dot" else 1  # tl.dot's smallest operand
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


def _cdiv(a, b):
    return -(-a // b)


# --------------------------------------------------------------------------- the writer


class _Segment:
    """Writes the body of one layout (a whole kernel, or one part of a multi-tensor one)."""

    def __init__(self, kw, group: Group, pre: str, indent: str):
        self.kw = kw
        self.g = group
        self.lay = group.layout
        self.pre = pre
        self.ind = indent
        self.memo: dict[Var, str] = {}
        self.scoped: list = []  # memo entries made inside a loop, dropped after it
        self.in_loop = False
        self.token_mask: dict[str, str] = {}  # index name -> mask of its axis
        self.producer = {e.out: e for e in group.eqns}
        self.view_of = {e.out: e for e in self.lay.views}

    # -- small helpers -----------------------------------------------------------------

    def emit(self, line=""):
        self.kw.lines.append(self.ind + line if line else "")

    def tmp(self) -> str:
        self.kw.ntmp += 1
        return f"tmp{self.kw.ntmp}"

    def n(self, name: str) -> str:
        return f"{self.pre}{name}"

    def remember(self, v, name):
        self.memo[v] = name
        if self.in_loop:
            self.scoped.append(v)

    def cls(self, c) -> str:
        return self.n(f"ix{c}")

    def extent(self, c) -> int:
        """The size of class ``c`` for splitting a flat index; an empty class counts as 1:
        its axis is masked off everywhere, and nothing may divide by 0."""
        return max(1, self.lay.sizes[c])

    def coords(self, v, override=None) -> list:
        override = override or {}
        return [0 if c is None else override.get(c, self.cls(c)) for c in self.lay.dims[v]]

    def mask_for(self, expr) -> str | None:
        if isinstance(expr, int):
            return None
        toks = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", expr))
        masks = []
        for t in sorted(toks):
            m = self.token_mask.get(t)
            if m and m not in masks:
                masks.append(m)
        return " & ".join(masks) if masks else None

    def addr(self, expr) -> str:
        zero = self.n("zero")
        if isinstance(expr, int):
            return zero if expr == 0 else f"{zero} + {expr}"
        return f"({expr})" if re.search(r"[+*/%-]", expr) else expr

    # -- setup ---------------------------------------------------------------------------

    def axis_indices(self, a: int, offs: str):
        """Index variables of the classes on tile axis ``a`` from the flat offsets."""
        classes = self.lay.axes[a]
        mask = self.n(f"mask{a}")
        self.token_mask[offs] = mask
        stride = 1
        exprs = []
        for c in reversed(classes):
            size = self.extent(c)
            e = offs if stride == 1 else f"{offs} // {stride}"
            if c != classes[0]:
                e = f"({e}) % {size}" if stride != 1 else f"{e} % {size}"
            exprs.append((c, e))
            stride *= size
        for c, e in reversed(exprs):
            self.emit(f"{self.cls(c)} = {e}")
            self.token_mask[self.cls(c)] = mask

    def setup(self, pid: str):
        lay, n = self.lay, self.n
        s0, s1 = lay.axis_size(0), lay.axis_size(1)
        b0, b1 = n("BLOCK_0"), n("BLOCK_1")
        self.emit(f"{n('zero')} = tl.full([1, 1], 0, tl.int32)")
        if lay.modes[1] == "grid":
            self.emit(f"{n('pid1')} = {pid} % (({s1} + {b1} - 1) // {b1})")
            self.emit(f"{n('pid0')} = {pid} // (({s1} + {b1} - 1) // {b1})")
        else:
            self.emit(f"{n('pid0')} = {pid}")
        start0 = f"{n('pid0')} * {b0} + " if lay.modes[0] == "grid" else ""
        self.emit(f"{n('offs0')} = {start0}tl.arange(0, {b0})[:, None]")
        self.emit(f"{n('mask0')} = {n('offs0')} < {s0}")
        self.axis_indices(0, n("offs0"))
        if lay.modes[1] != "loop":
            start1 = f"{n('pid1')} * {b1} + " if lay.modes[1] == "grid" else ""
            self.emit(f"{n('offs1')} = {start1}tl.arange(0, {b1})[None, :]")
            self.emit(f"{n('mask1')} = {n('offs1')} < {s1}")
            self.axis_indices(1, n("offs1"))

    # -- values ----------------------------------------------------------------------------

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

    def load(self, v, override=None, extra_mask=None, coords=None) -> str:
        ld = self.lay.loads[v]
        if coords is None:
            coords = self.coords(v, override)
        expr = ix.load_address(ld, coords)
        mask = self.mask_for(expr)
        if extra_mask:
            mask = f"{mask} & {extra_mask}" if mask else extra_mask
        t = self.tmp()
        ptr = self.kw.in_name(ld.root)
        m = f", mask={mask}, other=0" if mask else ""
        self.emit(f"{t} = tl.load({ptr} + {self.addr(expr)}{m})")
        return t

    def operand(self, x, C, materialize=False) -> str:
        """``x`` converted to the compute dtype ``C`` of the op that reads it."""
        if not isinstance(x, Var):
            lit = ix.literal(x, C)
            if materialize:
                t = self.tmp()
                self.emit(f"{t} = tl.full([1, 1], {lit}, {ix.tl_dtype(C)})")
                return t
            return lit
        name = self.val(x)
        have = x.dtype
        if x.weak:  # host numbers arrive as fp32 (floats) or int32/int64
            if not x.dtype.is_floating_point:
                return f"{name}.to({ix.tl_dtype(C)})" if C.is_floating_point else name
            have = torch.float32
        if have != C:
            return f"{name}.to({ix.tl_dtype(C)})"
        return name

    def eqn(self, e) -> str:
        p = e.prim
        kind, out = p.kind, e.out
        if p.is_view:  # a materialized view: the load already went through its index math
            return self.val(e.inputs[0])
        if kind is Kind.MATMUL:
            raise RuntimeError("matmul value is set by the matmul loop")
        if kind is Kind.REDUCE:
            return self.log_softmax(e) if p.reduce.keeps_shape else self.reduce(e)
        if kind is Kind.CREATE:
            t = self.tmp()
            lit = ix.literal(e.params["value"], out.dtype)
            self.emit(f"{t} = tl.full([1, 1], {lit}, {ix.tl_dtype(out.dtype)})")
            return t
        if kind is Kind.MOVEMENT:  # the two that gather: one operand, or several
            return self.cat(e) if p is P.cat else self.unslice(e)
        if kind.pointwise:
            return self.pointwise(e)
        raise NotImplementedError(f"fusegrad triton codegen: no kernel template for {e!r}")

    def pointwise(self, e) -> str:
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
                ops.append(self.val(x))
            elif i in p.triton_bool_args:
                ops.append(self.operand(x, torch.bool))
            else:
                ops.append(self.operand(x, C, materialize=p.triton_full))
        params = {k: (ix.literal(v, C) if isinstance(v, (int, float, bool)) or v is None
                      else v) for k, v in e.params.items() if k != "dtype"}
        tdt = ix.tl_dtype(D if p.triton_raw else C)
        expr = p.triton.format(*ops, dtype=tdt, **params)
        if not compare and not p.triton_raw and C != D:
            expr = f"({expr}).to({ix.tl_dtype(D)})"
        t = self.tmp()
        self.emit(f"{t} = {expr}")
        return t

    # -- reductions ------------------------------------------------------------------------

    def red_mask(self, axes) -> str:
        return " & ".join(self.n(f"mask{a}") for a in axes)

    @staticmethod
    def acc_dtype(e):
        """The dtype a reduction accumulates in: its input's for an index result, else the
        compute dtype of its result (integers sum as themselves)."""
        return e.inputs[0].dtype if e.prim.reduce.index else ix.compute_dtype(e.out.dtype)

    def reduce(self, e) -> str:
        red = e.prim.reduce
        x = e.inputs[0]
        D = e.out.dtype
        C = self.acc_dtype(e)
        axes = self.lay.reduce_axes[e]
        if not axes:
            return self.reduce_unit_dims(e, C)
        xv = self.operand(x, C)
        masked = f"tl.where({self.red_mask(axes)}, {xv}, {red.neutral_value(C)})"
        if red.index:
            return self.argmax(e, masked, axes)
        t = self.tmp()
        expr = masked
        for a in sorted(axes, reverse=True):
            expr = f"{red.tl}({expr}, axis={a}, keep_dims=True)"
        if C != D:
            expr = f"({expr}).to({ix.tl_dtype(D)})"
        self.emit(f"{t} = {expr}")
        return t

    def reduce_unit_dims(self, e, C) -> str:
        """A reduction over dims of size 1 only: the value itself, or index 0 for argmax."""
        D = e.out.dtype
        t = self.tmp()
        if e.prim.reduce.index:
            self.emit(f"{t} = tl.zeros([1, 1], {ix.tl_dtype(D)})")
            return t
        xv = self.operand(e.inputs[0], C)
        self.emit(f"{t} = {xv}" if C == D else f"{t} = {xv}.to({ix.tl_dtype(D)})")
        return t

    def argmax(self, e, masked, axes) -> str:
        if len(axes) == 1:
            t = self.tmp()
            self.emit(f"{t} = tl.argmax({masked}, axis={axes[0]}, keep_dims=True)"
                      ".to(tl.int64)")
            return t
        b0, b1 = self.n("BLOCK_0"), self.n("BLOCK_1")
        flat = self.tmp()
        self.emit(f"{flat} = tl.argmax(tl.reshape({masked}, [{b0} * {b1}]), axis=0)")
        s1 = self.lay.axis_size(1)
        t = self.tmp()
        self.emit(f"{t} = (({flat} // {b1}) * {s1} + {flat} % {b1}).to(tl.int64)"
                  f" + tl.zeros([1, 1], tl.int64)")
        return t

    def log_softmax(self, e) -> str:
        x = e.inputs[0]
        D = e.out.dtype
        C = ix.compute_dtype(D)
        axes = self.lay.reduce_axes[e]
        xv = self.operand(x, C)
        if not axes:
            t = self.tmp()
            self.emit(f"{t} = ({xv} - {xv}).to({ix.tl_dtype(D)})")
            return t
        (a,) = axes
        m = self.red_mask(axes)
        mx, sh, lse, t = self.tmp(), self.tmp(), self.tmp(), self.tmp()
        self.emit(f"{mx} = tl.max(tl.where({m}, {xv}, -float(\"inf\")), axis={a}, keep_dims=True)")
        self.emit(f"{sh} = {xv} - {mx}")
        self.emit(f"{lse} = tl.log(tl.sum(tl.where({m}, tl.exp({sh}), 0.0), axis={a}, "
                  "keep_dims=True))")
        expr = f"{sh} - {lse}"
        self.emit(f"{t} = " + (expr if C == D else f"({expr}).to({ix.tl_dtype(D)})"))
        return t

    # -- movement with data: unslice and cat -------------------------------------------------

    def _dim_coord(self, e):
        c = self.lay.dims[e.out][e.params["dim"]]
        return 0 if c is None else self.cls(c)

    def unslice(self, e) -> str:
        g = e.inputs[0]
        p = e.params
        d, start, stop, step = p["dim"], p["start"], p["stop"], p["step"]
        j = self._dim_coord(e)
        rel = f"({j} - {start})"
        cond = self.tmp()
        self.emit(f"{cond} = ({j} >= {start}) & ({j} < {stop}) & ({rel} % {step} == 0)")
        coords = self.coords(e.out)
        coords[d] = f"{rel} // {step}" if step != 1 else rel
        gv = self.load(g, coords=coords, extra_mask=cond)
        t = self.tmp()
        self.emit(f"{t} = tl.where({cond}, {gv}, 0).to({ix.tl_dtype(e.out.dtype)})")
        return t

    def cat(self, e) -> str:
        d = e.params["dim"]
        j = self._dim_coord(e)
        out = e.out
        result = "0"
        off = 0
        pieces = []
        for x in e.inputs:
            n = x.shape[d]
            cond = self.tmp()
            self.emit(f"{cond} = ({j} >= {off}) & ({j} < {off + n})")
            coords = self.coords(out)
            coords[d] = f"({j} - {off})" if off else j
            xv = self.load(x, coords=coords, extra_mask=cond)
            pieces.append((cond, f"{xv}.to({ix.tl_dtype(out.dtype)})"))
            off += n
        for cond, xv in reversed(pieces):
            result = f"tl.where({cond}, {xv}, {result})"
        t = self.tmp()
        self.emit(f"{t} = {result}")
        return t

    # -- stores ------------------------------------------------------------------------------

    def store(self, v):
        name = self.val(v)
        expr = ix.linear(self.coords(v), v.shape)
        mask = self.mask_for(expr)
        m = f", mask={mask}" if mask else ""
        for ptr in self.kw.out_names(v):
            self.emit(f"tl.store({ptr} + {self.addr(expr)}, {name}{m})")

    def on_axis1(self, v) -> bool:
        return 1 in self.lay.axes_of(v)

    # -- bodies ------------------------------------------------------------------------------

    def body(self, pid: str):
        lay = self.lay
        if lay.kind == "matmul":
            self.matmul(pid)
            for v in lay.stores:
                self.store(v)
            return
        self.setup(pid)
        if lay.modes[1] != "loop":
            for v in lay.stores:
                self.store(v)
            return
        self.loop_body()

    def loop_body(self):
        lay, n = self.lay, self.n
        reds = [e for e, axes in lay.reduce_axes.items() if axes]
        accs = {}
        for e in reds:
            C = self.acc_dtype(e)
            acc = n(f"acc{len(accs)}")
            accs[e] = (acc, C)
            self.emit(f"{acc} = tl.full([{n('BLOCK_0')}, {n('BLOCK_1')}], "
                      f"{e.prim.reduce.neutral_value(C)}, {ix.tl_dtype(C)})")
        s1, b1 = lay.axis_size(1), n("BLOCK_1")
        self.emit(f"for {n('start1')} in range(0, {s1}, {b1}):")
        outer = self.ind
        self.ind += "    "
        self.in_loop = True
        self.emit(f"{n('offs1')} = {n('start1')} + tl.arange(0, {b1})[None, :]")
        self.emit(f"{n('mask1')} = {n('offs1')} < {s1}")
        self.axis_indices(1, n("offs1"))
        for e in reds:
            acc, C = accs[e]
            xv = self.operand(e.inputs[0], C)
            red = e.prim.reduce
            masked = f"tl.where({n('mask0')} & {n('mask1')}, {xv}, {red.neutral_value(C)})"
            self.emit(f"{acc} = " + red.combine.format(acc, masked))
        for v in lay.stores:
            if self.on_axis1(v):
                self.store(v)
        self.ind = outer
        self.in_loop = False
        for v in self.scoped:
            self.memo.pop(v, None)
        self.scoped = []
        for e in reds:
            acc, C = accs[e]
            fn = e.prim.reduce.tl
            t = self.tmp()
            expr = f"{fn}({acc}, axis=1, keep_dims=True)"
            if C != e.out.dtype:
                expr = f"({expr}).to({ix.tl_dtype(e.out.dtype)})"
            self.emit(f"{t} = {expr}")
            self.remember(e.out, t)
        for v in lay.stores:
            if not self.on_axis1(v):
                self.store(v)

    def matmul(self, pid: str):
        lay, n = self.lay, self.n
        mm = lay.matmul
        a, b = mm.inputs
        M, N = lay.axis_size(0), lay.axis_size(1)
        bm, bn = n("BLOCK_M"), n("BLOCK_N")
        self.emit(f"{n('zero')} = tl.full([1, 1], 0, tl.int32)")
        nm = f"(({M} + {bm} - 1) // {bm})"
        nn = f"(({N} + {bn} - 1) // {bn})"
        self.emit(f"{n('pid_n')} = {pid} % {nn}")
        self.emit(f"{n('pid_m')} = ({pid} // {nn}) % {nm}")
        if lay.outer:
            self.emit(f"{n('pid_b')} = {pid} // ({nn} * {nm})")
            stride = 1
            for c in reversed(lay.outer):
                size = self.extent(c)
                e = n("pid_b") if stride == 1 else f"{n('pid_b')} // {stride}"
                self.emit(f"{self.cls(c)} = ({e}) % {size}")
                stride *= size
        self.emit(f"{n('offs0')} = {n('pid_m')} * {bm} + tl.arange(0, {bm})[:, None]")
        self.emit(f"{n('mask0')} = {n('offs0')} < {M}")
        self.emit(f"{n('offs1')} = {n('pid_n')} * {bn} + tl.arange(0, {bn})[None, :]")
        self.emit(f"{n('mask1')} = {n('offs1')} < {N}")
        self.axis_indices(0, n("offs0"))
        self.axis_indices(1, n("offs1"))
        acc = n("acc")
        C = ix.compute_dtype(mm.out.dtype)  # PyTorch's: float32 for halves, else the dtype
        form = _mm_form(lay)
        if form == "outer":  # K == 1: one product, no loop
            self.emit(f"{acc} = {self.product(self.load(a), self.load(b), C)}")
        else:
            self.k_loop(acc, C, form)
        t = self.tmp()
        self.emit(f"{t} = {self.cast(acc, C, mm.out.dtype)}")
        self.remember(mm.out, t)

    def k_loop(self, acc, C, form):
        """Accumulate the matmul tile over K, ``BLOCK_K`` at a time."""
        lay, n = self.lay, self.n
        a, b = lay.matmul.inputs
        K = a.shape[-1]
        bm, bn, bk = n("BLOCK_M"), n("BLOCK_N"), n("BLOCK_K")
        self.emit(f"{acc} = tl.zeros([{bm}, {bn}], dtype={ix.tl_dtype(C)})")
        self.emit(f"for {n('k0')} in range(0, {K}, {bk}):")
        outer = self.ind
        self.ind += "    "
        ka, kb = n("ka"), n("kb")
        self.emit(f"{ka} = {n('k0')} + tl.arange(0, {bk})[None, :]")
        self.emit(f"{kb} = {n('k0')} + tl.arange(0, {bk})[:, None]")
        self.token_mask[ka] = f"({ka} < {K})"
        self.token_mask[kb] = f"({kb} < {K})"
        k_of = {"dot": (ka, kb), "sum0": (kb, kb), "sum1": (ka, ka)}[form]  # K in A, in B
        av, bv = (self.load(x, override={lay.k_class: kx}) for x, kx in zip((a, b), k_of))
        if form == "dot":
            # IEEE fp32 as PyTorch's default float32 matmul (tl.dot's default is tf32)
            prec = ', input_precision="ieee"' if a.dtype in (torch.float32, torch.float64) \
                else ""
            self.emit(f"{acc} = tl.dot(tl.broadcast_to({av}, [{bm}, {bk}]), "
                      f"tl.broadcast_to({bv}, [{bk}, {bn}]), {acc}{prec})")
        else:
            self.emit(f"{acc} += tl.sum({self.product(av, bv, C)}, axis={form[-1]}, "
                      "keep_dims=True)")
        self.ind = outer

    def product(self, av, bv, C) -> str:
        """Elementwise product of the matmul's operand blocks, in the accumulation type."""
        a, b = self.lay.matmul.inputs
        return f"{self.cast(av, a.dtype, C)} * {self.cast(bv, b.dtype, C)}"

    @staticmethod
    def cast(name, have, want) -> str:
        return name if have == want else f"{name}.to({ix.tl_dtype(want)})"


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
    name = group.name
    kw = _KernelWriter(group, name)
    segments = group.segments or [group]
    constexprs: dict = {}
    configs_per_seg = []
    counts = []  # programs of each segment as a function of the block sizes
    multi = bool(group.segments)
    for si, seg in enumerate(segments):
        pre = f"S{si}_" if multi else ""
        if seg.layout.kind == "matmul":
            base, alts = _mm_blocks(seg.layout)
            base = {pre + k: v for k, v in base.items()}
            alts = [{pre + k: v for k, v in a.items()} for a in alts]
        else:
            base, alts = _blocks(seg.layout, pre)
        constexprs.update(base)
        configs_per_seg.append(alts)
        counts.append(_program_count(seg.layout, pre))
    kw.lines.append("    pid = tl.program_id(0)")
    if not multi:
        _Segment(kw, group, "", "    ").body("pid")
    else:
        for si, seg in enumerate(segments):
            pre = f"S{si}_"
            before = " + ".join(f"{_count_src(segments[j].layout, f'S{j}_')}"
                                for j in range(si + 1)) or "0"
            kw.lines.append(f"    {'if' if si == 0 else 'elif'} pid < {before}:")
            kw.lines.append(f"        # part {si}: {_seg_summary(seg)}")
            offset = " + ".join(_count_src(segments[j].layout, f"S{j}_") for j in range(si))
            seg_pid = f"{pre}pid"
            kw.lines.append(f"        {seg_pid} = pid" + (f" - ({offset})" if offset else ""))
            _Segment(kw, seg, pre, "        ").body(seg_pid)
    body = kw.lines
    args, signature, arg_names = [], {}, []
    for root in kw.inputs:
        arg_names.append(f"{root!r}_ptr")
        signature[f"{root!r}_ptr"] = ix.ptr_type(root.dtype)
        args.append(("in", root))
    for v in kw.scalars:
        arg_names.append(f"{v!r}_num")
        signature[f"{v!r}_num"] = "fp32" if v.dtype.is_floating_point else "i64"
        args.append(("scalar", v))
    for v, d in kw.outputs:
        nm = f"{v!r}_out" + (f"_{d}" if d else "")
        arg_names.append(nm)
        signature[nm] = ix.ptr_type(v.dtype)
        args.append(("out", v, d))
    cargs = [f"{k}: tl.constexpr" for k in constexprs]
    helpers = sorted({e.prim.triton_helper for e in group.eqns if e.prim.triton_helper})
    src = [_header(group), "", "import triton", "import triton.language as tl", ""]
    for h in helpers:
        src.append(HELPERS[h].rstrip() + "\n")
    src += ["", "@triton.jit", f"def {name}({', '.join(arg_names + cargs)}):"]
    src += body
    source = "\n".join(src) + "\n"

    def grid_fn(cx, counts=counts):
        return sum(c(cx) for c in counts)

    configs = []
    for alts in configs_per_seg:
        for alt in alts:
            cfg = dict(constexprs)
            cfg.update(alt)
            configs.append(cfg)
    return GeneratedKernel(
        name=name, source=source, ops=group.ops, signature=signature,
        constexprs=dict(constexprs), provenance=group.provenance, group=group, args=args,
        grid_fn=grid_fn, configs=configs, bytes_moved=group.bytes_moved, flops=group.flops)


def _program_count(lay: Layout, pre: str):
    s0, s1 = lay.axis_size(0), lay.axis_size(1)
    if lay.kind == "matmul":
        batch = math.prod(lay.sizes[c] for c in lay.outer)
        return lambda cx: batch * _cdiv(s0, cx[pre + "BLOCK_M"]) * _cdiv(s1, cx[pre + "BLOCK_N"])
    m0, m1 = lay.modes

    def count(cx):
        n0 = _cdiv(s0, cx[pre + "BLOCK_0"]) if m0 == "grid" else 1
        n1 = _cdiv(s1, cx[pre + "BLOCK_1"]) if m1 == "grid" else 1
        return n0 * n1
    return count


def _count_src(lay: Layout, pre: str) -> str:
    """The number of programs of a segment as Triton source (constexpr arithmetic)."""
    s0, s1 = lay.axis_size(0), lay.axis_size(1)
    if lay.kind == "matmul":
        batch = math.prod(lay.sizes[c] for c in lay.outer)
        return f"{batch} * (({s0} + {pre}BLOCK_M - 1) // {pre}BLOCK_M) * " \
               f"(({s1} + {pre}BLOCK_N - 1) // {pre}BLOCK_N)"
    parts = []
    if lay.modes[0] == "grid":
        parts.append(f"(({s0} + {pre}BLOCK_0 - 1) // {pre}BLOCK_0)")
    if lay.modes[1] == "grid":
        parts.append(f"(({s1} + {pre}BLOCK_1 - 1) // {pre}BLOCK_1)")
    return " * ".join(parts) or "1"


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
