"""A compiled program: the optimized graph, its kernels, the backend's code, its stats."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import time

from fusegrad._util import pytree
from fusegrad._util.fileio import atomic_write
from fusegrad.autograd.grad_mode import _mode
from fusegrad.compiler.ir import Graph, Var


# backend name -> (module, class): imported on first use, so that ``import fusegrad``
# never loads Triton
BACKENDS = {
    "cpu": ("fusegrad.compiler.backends.cpu", "CpuProgram"),
    "triton": ("fusegrad.compiler.backends.triton.program", "TritonProgram"),
}


class Program:
    """One traced signature, compiled: ``program(leaves, structure)`` replays it."""

    def __init__(self, raw: Graph, graph: Graph, backend: str, res_structure, name="fn"):
        self.raw_graph = raw
        self.graph = graph
        self.backend = backend
        self.name = name
        self._rebuild = pytree.unflattener(res_structure)
        if backend not in BACKENDS:
            raise ValueError(f"fusegrad.compile: unknown backend {backend!r}")
        t0 = time.perf_counter()
        module, cls = BACKENDS[backend]
        self._impl = getattr(importlib.import_module(module), cls)(graph)
        self.source = self._impl.source
        self.codegen_time = time.perf_counter() - t0
        self.compile_times = {}
        self.run = self._impl.run

    backward = None  # autodiff.Plan when the outputs require grad
    attach = None  # (leaves, outs) -> None: hangs the outputs on their autograd node

    def __call__(self, leaves, structure):
        outs = self.run(leaves)
        if self.attach is not None and _mode.enabled:
            self.attach(leaves, outs)
        return self._rebuild(outs)

    # -- introspection ---------------------------------------------------------------------

    @property
    def groups(self):
        """What the backend runs, one ``compiler.schedule.Group`` each: the Triton kernels
        it launches, or the ATen calls of the cpu program (with the equations each computes)."""
        return self._impl.groups

    @property
    def kernels(self):
        """The backend's kernels (``.name``, ``.source``, ``.ops``): generated Triton
        kernels on triton, the ATen call of each group on cpu."""
        return self._impl.kernels

    @property
    def triton_kernels(self):
        """The Triton kernels the ``triton`` backend launches for this graph, whichever
        backend runs it: readable, dumpable and buildable ahead of time
        (``fusegrad.compiler.aot_compile``) on a machine without a GPU."""
        if self.backend == "triton":
            return self.kernels
        if self._triton_kernels is None:
            from fusegrad.compiler.backends.triton import codegen, layout

            self._triton_kernels = [codegen.generate(g) for g in layout.schedule(self.graph)]
        return self._triton_kernels

    _triton_kernels = None

    def stats(self) -> dict:
        """``n_kernels`` (groups), ``n_calls`` (launches or ATen calls per run, views and
        copies included), ``n_copies``, ``bytes_moved`` and ``flops`` of what the backend
        runs, plus the graph's size."""
        return {**self._impl.stats(), "n_ops": len(self.graph.eqns),
                "n_inputs": len(self.graph.inputs), "n_outputs": len(self.graph.outputs)}

    def dump(self, folder) -> list:
        """Write the IR, the backend code and each kernel's source into ``folder``."""
        os.makedirs(folder, exist_ok=True)
        files = [("graph.py", self.graph.python()), ("raw_graph.py", self.raw_graph.python()),
                 (f"{self.backend}_program.py", self.source)]
        files += [(f"{k.name}.py", k.source) for k in self.kernels]
        paths = []
        for fname, text in files:
            paths.append(os.path.join(folder, fname))
            atomic_write(paths[-1], text)
        return paths

    def to_dot(self) -> str:
        """The graph in Graphviz DOT: inputs as boxes, ops as ellipses labelled with source."""
        out = ["digraph fusegrad {", "  rankdir=TB;", '  node [fontname="monospace"];']
        for v, s in zip(self.graph.inputs, self.graph.sources):
            out.append(f'  {v!r} [shape=box,label="{v!r}: {v.type_str()}\\n{s}"];')
        for e in self.graph.eqns:
            out.append(f'  {e.out!r} [label="{e.out!r} = {e.prim.name}\\n{e.out.type_str()}'
                       f'\\n{e.src}"];')
            for x in e.vars():
                out.append(f"  {x!r} -> {e.out!r};")
        for i, (o, s) in enumerate(zip(self.graph.outputs, self.graph.sinks)):
            if isinstance(o, Var):
                out.append(f'  out{i} [shape=box,style=dashed,label="{s}"];')
                out.append(f"  {o!r} -> out{i};")
        out.append("}")
        return "\n".join(out)

    def draw(self, path="graph.svg") -> str:
        """Write the DOT text, and render it when Graphviz's ``dot`` is installed.

        Returns the path written (the rendered picture, or the ``.dot`` file)."""
        dot_path = os.path.splitext(path)[0] + ".dot"
        with open(dot_path, "w") as f:
            f.write(self.to_dot())
        exe = shutil.which("dot")
        if exe is None:
            return dot_path
        fmt = os.path.splitext(path)[1].lstrip(".") or "svg"
        subprocess.run([exe, f"-T{fmt}", dot_path, "-o", path], check=True)
        return path

    def __repr__(self):
        st = self.stats()
        return f"<Program {self.name} backend={self.backend} ops={st['n_ops']} " \
               f"kernels={st['n_kernels']}>"
