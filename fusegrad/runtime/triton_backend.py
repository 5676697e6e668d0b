"""The ``triton`` backend: the schedule's kernels, launched in order by generated Python.

``TritonProgram(graph)`` schedules the graph (``compiler.schedule``), generates one Triton
kernel per group (``compiler.codegen_triton``) and writes a launcher, ``run(args)``, that
reads the inputs (arguments, captured parameters, ``.grad`` fields, optimizer state, and
Python numbers such as ``lr`` afresh on every call), computes the host-side number
arithmetic, launches each kernel on its grid, and hands the results back exactly as
``runtime/cpu.py`` does: returned values, parameters and optimizer state written in place,
``.grad`` fields and new state entries set.

Buffers: intermediates live in buffers allocated once per program and reused by liveness;
values that escape (returned, stored as ``.grad`` or state) get fresh storage every call;
an in-place update is written straight into the parameter when every reader of the old
value has run (the scheduler orders them so) and the kernel owns each element it writes,
else into a buffer copied back after the last kernel.

CUDA tensors run compiled kernels; CPU tensors run the same kernels in Triton's
interpreter, which needs ``TRITON_INTERPRET=1`` set before triton is imported.
"""

from __future__ import annotations

import math
import os
import sys

import torch

from fusegrad.compiler import schedule as S
from fusegrad.compiler.codegen_triton import generate
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.tracer import (Arg, Captured, Const, GradOf, Number, Random,
                                      Returned, SetGrad, SetState, WriteGradInPlace,
                                      WriteInPlace)
from fusegrad.runtime.cpu import _PY_FORM
from fusegrad.tensor import Tensor


def _interpreting() -> bool:
    from triton import knobs

    return bool(knobs.runtime.interpret)


class TritonProgram:
    """A compiled graph for the triton backend.

    Attributes:
        groups: the schedule (``compiler.schedule.Group``), in launch order.
        kernels: one ``GeneratedKernel`` (a ``runtime.kernels.Kernel``) per group.
        source: the generated launcher, readable Python.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.groups = S.schedule(graph)
        self.kernels = [generate(g) for g in self.groups]
        self.source, self._env = _Launcher(graph, self.groups, self.kernels).generate()
        code = compile(self.source, f"<fusegrad triton program {id(self):x}>", "exec")
        exec(code, self._env)
        self.run = self._env["run"]
        if _debug_level() >= 4:
            for k in self.kernels:
                print(f"[fusegrad] triton kernel {k.name}:\n{k.source}", file=sys.stderr)
        devs = {v.device.type for v in graph.inputs if not v.weak}
        devs |= {e.out.device.type for e in graph.eqns if not e.out.weak}
        if "cpu" in devs and not _interpreting():
            # the kernels exist and can be read, dumped and AOT-compiled; they cannot run
            self.run = _cannot_run


def _cannot_run(args):
    raise RuntimeError(
        "fusegrad.compile(backend='triton'): the inputs are CPU tensors, which only Triton's "
        "interpreter can run; set TRITON_INTERPRET=1 before triton is imported, move the "
        "tensors to CUDA, or use backend='cpu'")


def _debug_level() -> int:
    try:
        return int(os.environ.get("FUSEGRAD_DEBUG", "0"))
    except ValueError:
        return 0


def _fmt_num(x) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return f"float({str(x)!r})"
    return repr(x)


class _Launcher:
    """Writes ``run(args)``: inputs, host numbers, buffers, launches, write-backs."""

    def __init__(self, graph, groups, kernels):
        self.graph = graph
        self.groups = groups
        self.kernels = kernels
        self.env = {"torch": torch, "_T": Tensor._make, "math": math, "_autotune": _autotune}
        self.lines: list[str] = []
        self.consts: dict[int, str] = {}
        self.names: dict[Var, str] = {}
        self.n_bufs = 0
        self.pool: dict[tuple, list[str]] = {}
        self.strided_back: list[tuple] = []

    def const(self, obj, prefix) -> str:
        key = id(obj)
        if key not in self.consts:
            self.consts[key] = f"{prefix}{len(self.consts)}"
            self.env[self.consts[key]] = obj
        return self.consts[key]

    def emit(self, line):
        self.lines.append(line)

    # -- inputs and host numbers ------------------------------------------------------------

    def inputs(self):
        for v, s in zip(self.graph.inputs, self.graph.sources):
            n = self.names[v] = f"v{v.id}"
            if isinstance(s, Arg):
                self.emit(f"{n} = args[{s.index}]._data.contiguous()")
            elif isinstance(s, Captured):  # kernels index contiguous storage
                self.emit(f"{n} = {self.const(s.tensor, 'c')}._data.contiguous()  # {s}")
            elif isinstance(s, GradOf):
                self.emit(f"{n} = {self.const(s.tensor, 'c')}._grad._data.contiguous()  # {s}")
            elif isinstance(s, Const):
                data = s.data.contiguous()
                self.names[v] = self.const(data, "k")
            elif isinstance(s, Random):
                self.emit(f"{n} = {self.const(s.make, 'r')}().contiguous()  # {s}")
            elif isinstance(s, Number):
                self.emit(f"{n} = {self.const(s.container, 'h')}[{s.key!r}]  # {s}")
            else:
                raise TypeError(f"fusegrad triton backend: unknown source {s}")

    def host_numbers(self):
        for e in self.graph.eqns:
            if not e.out.weak:
                continue
            form = _PY_FORM.get(e.prim.name)
            if form is None:
                raise NotImplementedError(f"fusegrad triton backend: no host form for {e!r}")
            ins = [self.names[x] if isinstance(x, Var) else _fmt_num(x) for x in e.inputs]
            n = self.names[e.out] = f"v{e.out.id}"
            self.emit(f"{n} = {form.format(*ins)}  # {e.src}")

    # -- where each kernel writes -------------------------------------------------------------

    def plan_storage(self):
        """Decide, for every (value, destination), the tensor the kernel writes into."""
        graph = self.graph
        sinks: dict[Var, list] = {}
        for o, s in zip(graph.outputs, graph.sinks):
            if isinstance(o, Var):
                sinks.setdefault(o, []).append(s)
        old_of = {(type(s), id(s.tensor)): v for v, s in zip(graph.inputs, graph.sources)
                  if isinstance(s, (Captured, GradOf))}
        readers: dict[Var, list[int]] = {}
        for g in self.groups:
            for v in g.inputs:
                readers.setdefault(v, []).append(g.index)
        last_use: dict[Var, int] = {v: max(ix) for v, ix in readers.items()}
        self.sinks = sinks
        self.dest: dict[tuple, tuple] = {}  # (var, d) -> ("inplace"|"fresh"|"buffer"|"temp", sink)
        for g in self.groups:
            for v in g.outputs:
                ss = sinks.get(v, [])
                for d in range(g.dests.get(v, 1)):
                    s = ss[d] if d < len(ss) else None
                    if isinstance(s, (WriteInPlace, WriteGradInPlace)):
                        key = (Captured if isinstance(s, WriteInPlace) else GradOf,
                               id(s.tensor))
                        ok = _inplace_ok(g, v, old_of.get(key), last_use)
                        self.dest[(v, d)] = ("inplace" if ok else "temp", s)
                    elif s is not None:
                        self.dest[(v, d)] = ("fresh", s)
                    else:
                        self.dest[(v, d)] = ("buffer", None)
        self.last_use = last_use

    def buffer(self, v) -> str:
        key = (v.numel(), v.dtype, str(v.device))
        free = self.pool.get(key)
        if free:
            return free.pop()
        name = f"b{self.n_bufs}"
        self.n_bufs += 1
        self.env[name] = torch.empty(max(1, v.numel()), dtype=v.dtype, device=v.device)
        return name

    # -- the launcher -------------------------------------------------------------------------

    def generate(self):
        self.inputs()
        self.host_numbers()
        self.plan_storage()
        copy_back = []
        release: dict[int, list] = {}
        self.dest_name: dict[tuple, str] = {}
        for g, k in zip(self.groups, self.kernels):
            kname = self.const(k, "K")
            self.emit(f"# {k.name}: {', '.join(g.ops)}  (~{g.bytes_moved} bytes)")
            for v in g.outputs:
                for d in range(g.dests.get(v, 1)):
                    self.dest_name[(v, d)] = self.destination(g, v, d, release, copy_back)
                if v not in self.names:
                    self.names[v] = self.dest_name[(v, 0)]
            args = [self.dest_name[(a[1], a[2])] if a[0] == "out" else self.names[a[1]]
                    for a in k.args]
            cx = ", ".join(f"{n}={v!r}" for n, v in k.constexprs.items())
            if k.grid() > 0:
                if k.configs:
                    self.emit(f"if {kname}.tuned is None: _autotune({kname}, "
                              f"[{', '.join(args)}])")
                self.emit(f"{kname}.launch(({', '.join(args)}{',' if len(args) == 1 else ''}))"
                          f"  # grid ({k.grid()},), {cx}")
            for key, buf in release.pop(g.index, ()):
                self.pool.setdefault(key, []).append(buf)
        self.outputs(copy_back)
        src = "def run(args):\n" + "\n".join("    " + ln for ln in self.lines) + "\n"
        for k in self.kernels:
            _prepare(k)
        return src, self.env

    def destination(self, g, v, d, release, copy_back) -> str:
        how, s = self.dest[(v, d)]
        if how == "inplace":  # straight into the tensor, unless its layout is not contiguous
            tgt = _target(self.const(s.tensor, "c"), s)
            n = f"v{v.id}_{d}"
            self.emit(f"{n} = {tgt}")
            self.emit(f"{n} = {n} if {n}.is_contiguous() else torch.empty_like({n}, "
                      "memory_format=torch.contiguous_format)")
            self.strided_back.append((n, tgt))
            return n
        if how == "fresh":
            n = f"v{v.id}_{d}"
            self.emit(f"{n} = torch.empty({list(v.shape)!r}, dtype=torch."
                      f"{str(v.dtype).split('.')[-1]}, device={str(v.device)!r})")
            return n
        buf = self.buffer(v)
        if how == "temp":  # copied back after the last kernel: never reused
            copy_back.append((s, buf, v))
        else:
            end = max(self.last_use.get(v, g.index), g.index)
            release.setdefault(end, []).append(((v.numel(), v.dtype, str(v.device)), buf))
        return buf

    def outputs(self, copy_back):
        """Hand the results back as runtime/cpu.py does."""
        for n, tgt in self.strided_back:  # targets whose layout the kernel could not write
            self.emit(f"if {n}.data_ptr() != {tgt}.data_ptr(): {tgt}.copy_({n})")
        if copy_back:  # in-place results a kernel could not write in place
            dsts = [_target(self.const(s.tensor, "c"), s) for s, _, _ in copy_back]
            srcs = [f"{buf}.view({list(v.shape)!r})" for _, buf, v in copy_back]
            self.emit(f"torch._foreach_copy_([{', '.join(dsts)}], [{', '.join(srcs)}])")
        produced = {v for g in self.groups for v in g.outputs}
        used: dict[Var, int] = {}  # destinations of a value handed out so far
        results = []
        for o, s in zip(self.graph.outputs, self.graph.sinks):
            how = ""
            if o is None:
                val = "None"
            elif not isinstance(o, Var):
                val = f"torch.tensor({_fmt_num(o)})"
            elif o in produced:
                d = used.get(o, 0)
                used[o] = d + 1
                how = self.dest[(o, d)][0]
                name = self.dest_name[(o, d)]
                val = name if how == "fresh" else f"{name}.view({list(o.shape)!r})"
            elif o.weak:
                val = f"torch.tensor({self.names[o]})"
            else:  # a graph input handed back: storage of its own, as runtime/cpu does
                val = self.names[o] if isinstance(s, WriteInPlace) else \
                    f"{self.names[o]}.clone()"
            if isinstance(s, Returned):
                results.append("None" if val == "None" else f"_T({val})")
            elif isinstance(s, WriteInPlace):
                c = self.const(s.tensor, "c")
                if how not in ("inplace", "temp"):
                    self.emit(f"if {c}._data.data_ptr() != {val}.data_ptr(): "
                              f"{c}._data.copy_({val})")
                self.emit(f"{c}._vc[0] += 1")
            elif isinstance(s, WriteGradInPlace):
                c = self.const(s.tensor, "c")
                if how not in ("inplace", "temp"):
                    self.emit(f"if {c}._grad._data.data_ptr() != {val}.data_ptr(): "
                              f"{c}._grad._data.copy_({val})")
                self.emit(f"{c}._grad._vc[0] += 1")
            elif isinstance(s, SetGrad):
                c = self.const(s.tensor, "c")
                self.emit(f"{c}._grad = " + ("None" if val == "None" else f"_T({val})"))
            elif isinstance(s, SetState):
                st = self.const(s.owner, "o")
                pk = self.const(s.param, "c")
                self.emit(f"{st}.state[{pk}][{s.key!r}] = _T({val})")
            else:
                raise TypeError(f"fusegrad triton backend: unknown sink {s}")
        self.emit(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")


def _target(c: str, sink) -> str:
    """The storage an in-place sink writes: a tensor's, or (read afresh) its .grad's."""
    return f"{c}._grad._data" if isinstance(sink, WriteGradInPlace) else f"{c}._data"


def _inplace_ok(g, v, old, last_use) -> bool:
    """May kernel ``g`` write ``v`` straight into the storage of ``old`` (the tensor's value
    before the step)? Yes when no later kernel reads ``old`` and, if ``g`` reads it too,
    each program reads exactly the elements it overwrites."""
    if old is None:
        return True
    if last_use.get(old, -1) > g.index:
        return False
    if old not in g.inputs:
        return True
    segs = g.segments or [g]
    for seg in segs:
        lay = seg.layout
        reads = [ld for ld in lay.loads.values() if ld.root is old]
        if not reads:
            continue
        if v not in seg.outputs:
            return False
        if lay.kind == "matmul" and any(ld.var in lay.matmul.inputs for ld in reads):
            return False
        for ld in reads:
            if ld.chain or lay.dims.get(ld.var) != lay.dims.get(v):
                return False
        owned = {c for c in lay.dims[v] if c is not None}
        if not lay.grid_classes() <= owned:
            return False
    return True


# --------------------------------------------------------------------------- launching


def _prepare(k):
    """Bind the launch of one kernel: its jit function, grid and block sizes."""
    k.tuned = None
    fn = k.fn()
    grid = (k.grid(),)
    cx = dict(k.constexprs)
    nw = k.num_warps

    def launch(args, fn=fn, grid=grid, cx=cx, nw=nw, k=k):
        if k.tuned is not None:
            fn[(k.grid(k.tuned),)](*args, **k.tuned, num_warps=nw)
        else:
            fn[grid](*args, **cx, num_warps=nw)

    k.launch = launch


def _autotune(k, args):
    """On CUDA with FUSEGRAD_AUTOTUNE=1: time the kernel's block-size configs on copies of
    its arguments (in-place outputs must not be touched) and keep the fastest."""
    k.tuned = dict(k.constexprs)
    if os.environ.get("FUSEGRAD_AUTOTUNE") != "1":
        return
    if not any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
        return
    import triton.testing

    scratch = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    fn = k.fn()
    best, best_t = None, float("inf")
    for cfg in [dict(k.constexprs)] + list(k.configs):
        try:
            t = triton.testing.do_bench(
                lambda cfg=cfg: fn[(k.grid(cfg),)](*scratch, **cfg, num_warps=k.num_warps),
                warmup=5, rep=20)
        except Exception:  # a config that does not compile (shared memory) is skipped
            continue
        if t < best_t:
            best, best_t = cfg, t
    k.tuned = best or dict(k.constexprs)


