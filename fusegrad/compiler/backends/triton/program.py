"""The ``triton`` backend: the schedule's kernels, launched in order by generated Python.

``TritonProgram(graph)`` schedules the graph (``compiler.schedule``), generates one Triton
kernel per group (``backends.triton.codegen``) and writes a launcher, ``run(args)``, that
reads the inputs (arguments, captured parameters, ``.grad`` fields, optimizer state, and
Python numbers such as ``lr`` afresh on every call), computes the host-side number
arithmetic, launches each kernel on its grid, and hands the results back exactly as
``backends/cpu.py`` does: returned values, parameters and optimizer state written in place,
``.grad`` fields and new state entries set.

Buffers: intermediates live in buffers allocated once per program and reused by liveness;
values that escape (returned, stored as ``.grad`` or state) get fresh storage every call;
an in-place update is written straight into the parameter when every reader of the old
value has run (the scheduler orders them so) and the kernel owns each element it writes,
else into a buffer copied back after the last kernel.

Layouts: kernels index contiguous (and, on a GPU, 16-byte aligned) storage. What is known
when the program is built is decided then: a captured tensor, or one written in place, is
read or written directly when its storage is contiguous, through a copy when not; a replay
only compares the storage object with the one seen at build time, and tests the layout
again if it was replaced (``p.data = ...``). Storage a call brings afresh (argument tensors,
``.grad`` fields) gets one layout test per call, and only a tensor that fails it is copied.
Each launch goes to a ``runtime.launch.KernelLaunch`` prepared at build time (grid and
block sizes frozen, autotuning done).

CUDA tensors run compiled kernels; CPU tensors run the same kernels in Triton's
interpreter, which needs ``TRITON_INTERPRET=1`` set before triton is imported.
"""

from __future__ import annotations


import torch

from fusegrad._util import dtypes
from fusegrad.compiler import schedule as S
from fusegrad.compiler.backends.triton import layout as triton_layout
from fusegrad.compiler.backends.io_plan import (BufferPool, ProgramText, count_calls, fmt_num,
                                              load_run, read_source, return_line,
                                              write_sink)
from fusegrad.compiler.backends.triton.codegen import generate
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.ir.io import (Arg, Captured, Const, GradOf, WriteGradInPlace,
                                     WriteInPlace)
from fusegrad.runtime import launch as L


def _interpreting() -> bool:
    from triton import knobs

    return bool(knobs.runtime.interpret)


class TritonProgram:
    """A compiled graph for the triton backend.

    Attributes:
        groups: the schedule (``compiler.schedule.Group``), in launch order.
        kernels: one ``GeneratedKernel`` (a ``runtime.kernels.Kernel``) per group.
        launches: one ``runtime.launch.KernelLaunch`` per kernel, as ``run`` launches it.
        source: the generated launcher, readable Python.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.groups = triton_layout.schedule(graph)
        self.kernels = [generate(g) for g in self.groups]
        mode = _mode(graph)
        launcher = _Launcher(graph, self.groups, self.kernels, mode)
        self.source, self._env = launcher.generate()
        self.launches = launcher.launches
        run = load_run(self.source, self._env, f"<fusegrad triton program {id(self):x}>")
        # CPU tensors without the interpreter: the kernels exist and can be read, dumped and
        # AOT-compiled; they cannot run
        self.run = run if mode is not None else _cannot_run

    def stats(self) -> dict:
        """One launch per kernel; copies are the host-side ``copy_``/``clone`` calls."""
        st = S.stats(self.groups)
        copies = count_calls(self.source)["n_copies"]
        return {**st, "n_calls": len(self.launches) + copies, "n_copies": copies}


def _mode(graph) -> str | None:
    """How this process runs the graph's kernels: "interpret" (TRITON_INTERPRET=1), "native"
    (compiled for the GPU) or None (CPU tensors, no interpreter: they cannot run)."""
    if _interpreting():
        return "interpret"
    devs = {v.device.type for v in graph.inputs if not v.weak}
    devs |= {e.out.device.type for e in graph.eqns if not e.out.weak}
    return None if "cpu" in devs else "native"


def _cannot_run(args):
    raise RuntimeError(
        "fusegrad.compile(backend='triton'): the inputs are CPU tensors, which only Triton's "
        "interpreter can run; set TRITON_INTERPRET=1 before triton is imported, move the "
        "tensors to CUDA, or use backend='cpu'")



class _Launcher:
    """Writes ``run(args)``: inputs, host numbers, buffers, launches, write-backs."""

    def __init__(self, graph, groups, kernels, mode):
        self.graph = graph
        self.groups = groups
        self.kernels = kernels
        self.mode = mode
        self.text = ProgramText(_own=_own_copy)
        self.env, self.lines = self.text.env, self.text.lines
        self.const, self.emit = self.text.const, self.text.emit
        self.names: dict[Var, str] = {}
        self.pool = BufferPool(self.text)
        self.strided_back: list[tuple] = []
        self.read_as: dict[int, str] = {}  # id(captured tensor) -> its storage's name in run

    # -- layouts ------------------------------------------------------------------------------

    def usable(self, t) -> bool:
        """Can a kernel index ``t``'s storage as it is? Contiguous, and on a GPU 16-byte
        aligned (``runtime.launch`` compiles every pointer argument as aligned)."""
        return t.is_contiguous() and (self.mode != "native" or t.data_ptr() % 16 == 0)

    def unusable(self, n) -> str:
        """The per-call form of ``not usable(n)``, for storage known only at call time."""
        test = f"not {n}.is_contiguous()"
        return test + f" or {n}.data_ptr() % 16" if self.mode == "native" else test

    def replaced(self, n, storage) -> str:
        """The per-call test for ``n``, whose storage was ``storage`` (usable) at build time:
        true only when the tensor was given other, unusable storage since."""
        return f"{n} is not {self.const(storage, 'd')} and ({self.unusable(n)})"

    # -- inputs and host numbers ------------------------------------------------------------

    def inputs(self):
        for v, s in zip(self.graph.inputs, self.graph.sources):
            n = self.names[v] = f"v{v.id}"
            if isinstance(s, Const):
                data = s.data if self.usable(s.data) else _own_copy(s.data)
                self.names[v] = self.const(data, "k")
                continue
            expr, _ = read_source(self.text, s)
            if isinstance(s, Captured) and not self.usable(s.tensor._data):
                self.emit(f"{n} = _own({expr})  # {s}, not contiguous: copied every call")
                continue
            self.emit(f"{n} = {expr}  # {s}")
            if isinstance(s, Captured):  # checked once at build time; rebinding re-checks
                self.emit(f"if {self.replaced(n, s.tensor._data)}: {n} = _own({n})")
                self.read_as[id(s.tensor)] = n
            elif isinstance(s, (Arg, GradOf)):  # any strides may arrive: copy only if needed
                self.emit(f"if {self.unusable(n)}: {n} = _own({n})")

    def host_numbers(self):
        for e in self.graph.eqns:
            if not e.out.weak:
                continue
            form = e.prim.host
            if form is None:
                raise NotImplementedError(f"fusegrad triton backend: no host form for {e!r}")
            ins = [self.names[x] if isinstance(x, Var) else fmt_num(x) for x in e.inputs]
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
                        if ok and isinstance(s, WriteInPlace):
                            ok = self.usable(s.tensor._data)  # else a buffer, copied back
                        self.dest[(v, d)] = ("inplace" if ok else "temp", s)
                    elif s is not None:
                        self.dest[(v, d)] = ("fresh", s)
                    else:
                        self.dest[(v, d)] = ("buffer", None)
        self.last_use = last_use

    def buffer(self, v) -> str:
        return self.pool.take(_buffer_key(v), lambda: torch.empty(
            max(1, v.numel()), dtype=v.dtype, device=v.device))

    # -- launches -----------------------------------------------------------------------------

    def prepare(self, k) -> L.KernelLaunch:
        """Bind the launch of kernel ``k``: grid and block sizes frozen, tuned if asked."""
        grid = (k.grid(),)
        if grid[0] == 0 or self.mode is None:  # never launched
            return L.KernelLaunch(k, grid, dict(k.constexprs), k.num_warps)
        if self.mode == "native" and k.configs and L.autotune_enabled():
            configs = [dict(k.constexprs)] + [dict(c) for c in k.configs]
            return L.autotune(k, configs, k.grid, _scratch(k), k.num_warps)
        return L.prepare(k, grid, k.constexprs, k.num_warps,
                         interpret=self.mode == "interpret")

    # -- the launcher -------------------------------------------------------------------------

    def generate(self):
        self.launches = [self.prepare(k) for k in self.kernels]
        self.inputs()
        self.host_numbers()
        self.plan_storage()
        copy_back = []
        self.dest_name: dict[tuple, str] = {}
        for g, k, launch in zip(self.groups, self.kernels, self.launches):
            kname = self.const(launch, "K")
            self.emit(f"# {k.name}: {', '.join(g.ops)}  (~{g.bytes_moved} bytes)")
            for v in g.outputs:
                for d in range(g.dests.get(v, 1)):
                    self.dest_name[(v, d)] = self.destination(g, v, d, copy_back)
                if v not in self.names:
                    self.names[v] = self.dest_name[(v, 0)]
            args = [self.dest_name[(a[1], a[2])] if a[0] == "out" else self.names[a[1]]
                    for a in k.args]
            cx = ", ".join(f"{n}={v!r}" for n, v in launch.constexprs.items())
            if launch.grid[0] > 0:
                self.emit(f"{kname}.launch({', '.join(args)})  # grid {launch.grid}, {cx}"
                          + (" (tuned)" if launch.tuned else ""))
            self.pool.step_done(g.index)
        self.outputs(copy_back)
        return self.text.source(), self.env

    def destination(self, g, v, d, copy_back) -> str:
        how, s = self.dest[(v, d)]
        if how == "inplace":  # straight into the tensor
            tgt = _target(self.const(s.tensor, "c"), s)
            n = self.read_as.get(id(s.tensor)) if isinstance(s, WriteInPlace) else None
            if n is None:
                n = f"v{v.id}_{d}"
                self.emit(f"{n} = {tgt}")
                # a stand-in, copied back at the end, for storage the kernel cannot write
                test = self.replaced(n, s.tensor._data) if isinstance(s, WriteInPlace) \
                    else self.unusable(n)  # a .grad: whatever eager code stored there
                self.emit(f"if {test}: {n} = torch.empty_like({n}, "
                          "memory_format=torch.contiguous_format)")
            # else the storage the tensor was read from, a copy if it was replaced by
            # unusable storage: the kernel owns each element it overwrites (_inplace_ok)
            self.strided_back.append((n, tgt))
            return n
        if how == "fresh":
            n = f"v{v.id}_{d}"
            self.emit(f"{n} = torch.empty({list(v.shape)!r}, dtype=torch."
                      f"{dtypes.name(v.dtype)}, device={str(v.device)!r})")
            return n
        buf = self.buffer(v)
        if how == "temp":  # copied back after the last kernel: never reused
            copy_back.append((s, buf, v))
        else:
            end = max(self.last_use.get(v, g.index), g.index)
            self.pool.hold(buf, _buffer_key(v), end)
        return buf

    def outputs(self, copy_back):
        """Hand the results back as backends/cpu.py does."""
        for n, tgt in self.strided_back:  # targets a stand-in was written for
            self.emit(f"if {n} is not {tgt}: {tgt}.copy_({n})")
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
                val = f"torch.tensor({fmt_num(o)})"
            elif o in produced:
                d = used.get(o, 0)
                used[o] = d + 1
                how = self.dest[(o, d)][0]
                name = self.dest_name[(o, d)]
                val = name if how == "fresh" else f"{name}.view({list(o.shape)!r})"
            elif o.weak:
                val = f"torch.tensor({self.names[o]})"
            else:  # a graph input handed back: storage of its own, as backends/cpu does
                val = self.names[o] if isinstance(s, WriteInPlace) else \
                    f"{self.names[o]}.clone()"
            write_sink(self.text, s, val, True if how in ("inplace", "temp") else None,
                       results)
        self.emit(return_line(results))


def _buffer_key(v):
    """Kernels address buffers flat: any value of the same size and dtype may share one."""
    return (v.numel(), v.dtype, str(v.device))


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


def _own_copy(t):
    """A copy of ``t`` in contiguous, freshly allocated (so aligned) storage."""
    return t.clone(memory_format=torch.contiguous_format)


def _scratch(k) -> list:
    """Arguments for timing kernel ``k``: fresh tensors of its arguments' sizes and dtypes
    (zeros, so that an int tensor used as an index stays in bounds) and numbers."""
    out = []
    for a in k.args:
        v = a[1]
        if a[0] == "scalar":
            out.append(1.0 if v.dtype.is_floating_point else 1)
        else:
            out.append(torch.zeros(max(1, v.numel()), dtype=v.dtype, device=v.device))
    return out
