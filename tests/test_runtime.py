"""The replay runtime: kernel cache and prepared launches, layering, and the layout decisions
of the triton backend's generated ``run``.

Replays with strided inputs run under Triton's interpreter, which must be switched on
before triton is imported: like tests/test_triton_programs.py, this file is also the script
that runs them (``python tests/test_runtime.py CASE...`` prints one JSON line).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fusegrad as fg
from steps import mlp_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    # this checkout's fusegrad, whatever the installed one points to
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    env.pop("FUSEGRAD_DEBUG", None)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- layering

NO_TRITON = textwrap.dedent(
    """
    import sys
    import fusegrad as fg

    x = fg.randn(4, 3, requires_grad=True)
    (x * 2).sum().backward()
    step = fg.compile(lambda a: (a.exp() + 1).sum(1), backend="cpu")
    step(fg.randn(5, 3)); step(fg.randn(5, 3))
    assert step.program.backend == "cpu"
    loaded = sorted(m for m in sys.modules if m == "triton" or m.startswith("triton."))
    assert not loaded, loaded
    import fusegrad.compiler

    assert "aot_compile" in fusegrad.compiler.__all__
    assert "triton" not in sys.modules  # still: aot_compile is imported on first use
    print("OK")
    """
)


def test_import_fusegrad_does_not_import_triton(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_TRITON], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=_env(FUSEGRAD_CACHE_DIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")


def test_aot_compile_is_imported_on_first_use():
    import fusegrad.compiler as C
    from fusegrad.compiler.backends.triton.aot import aot_compile

    assert C.aot_compile is aot_compile
    from fusegrad.compiler import aot_compile as again

    assert again is aot_compile
    with pytest.raises(AttributeError, match="no_such_name"):
        C.no_such_name  # noqa: B018


def _imports(path):
    """(module imported, at module level?) for every import statement in ``path``."""
    tree = ast.parse(open(path).read(), path)
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative to fusegrad.runtime
                mod = "fusegrad.runtime" + ("." + mod if mod else "")
            out.append((mod, id(node) in top))
    return out


@pytest.mark.parametrize("name", ["__init__.py", "kernels.py", "launch.py"])
def test_runtime_support_imports_nothing_from_the_compiler(name):
    path = os.path.join(ROOT, "fusegrad", "runtime", name)
    for mod, at_top in _imports(path):
        assert not mod.startswith("fusegrad.compiler"), (name, mod)
        if mod.split(".")[0] == "triton":
            assert not at_top, f"{name} imports {mod} at module level"


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write(tmp_path):
    from fusegrad._util.fileio import atomic_open, atomic_write

    p = tmp_path / "f.txt"
    atomic_write(p, "caf\u00e9")
    assert p.read_bytes() == "caf\u00e9".encode()
    atomic_write(str(p), b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError, match="injected"):
        with atomic_open(p) as f:
            f.write(b"half")
            raise RuntimeError("injected")
    assert p.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temporary file is gone
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "f.txt", b"")


# --------------------------------------------------------------------------- prepared launches

VADD_SRC = textwrap.dedent(
    """
    import triton
    import triton.language as tl


    @triton.jit
    def vadd_rt(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs,
                 mask=mask), mask=mask)
    """
)


def _vadd():
    from fusegrad.runtime.kernels import Kernel

    return Kernel("vadd_rt", VADD_SRC, signature={"x_ptr": "*fp32", "y_ptr": "*fp32",
                  "out_ptr": "*fp32", "n": "i64"}, constexprs={"BLOCK": 128})


@pytest.fixture
def _kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path / "kernels"))


def test_launch_records_declare_their_fields():
    from fusegrad.compiler.backends.triton.codegen import GeneratedKernel
    from fusegrad.runtime.launch import KernelLaunch

    names = {f.name for f in dataclasses.fields(KernelLaunch)}
    assert {"kernel", "grid", "constexprs", "num_warps", "tuned", "launch"} <= names
    gk = {f.name for f in dataclasses.fields(GeneratedKernel)}
    assert not {"tuned", "launch"} & gk


def test_native_compile_assumes_aligned_pointers_only(_kernel_cache):
    # what the GPU launch compiles, built here for sm_90 without a GPU
    from triton.backends.compiler import GPUTarget

    from fusegrad.runtime.launch import compile_native

    compiled = compile_native(_vadd(), {"BLOCK": 128}, 4, target=GPUTarget("cuda", 90, 32))
    (head,) = [ln for ln in compiled.asm["ttir"].splitlines() if "tt.func public" in ln]
    for arg in ("x_ptr", "y_ptr", "out_ptr"):
        assert f"%{arg}: !tt.ptr<f32> {{tt.divisibility = 16 : i32}}" in head
    assert "%n: i64 loc" in head  # the number: its signature type, no value specialization
    assert compiled.metadata.num_warps == 4


class _FakeCompiled:
    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        self.log.append(("bind", grid))
        return lambda *args: self.log.append(("run", args))


def test_native_launcher_binds_once_and_appends_constexprs(monkeypatch, _kernel_cache):
    from fusegrad.runtime import launch as L

    log = []
    monkeypatch.setattr(L, "compile_native", lambda k, cx, nw: _FakeCompiled(log))
    rec = L.prepare(_vadd(), (3,), {"BLOCK": 128}, 4, interpret=False)
    assert rec.grid == (3,) and rec.constexprs == {"BLOCK": 128} and not rec.tuned
    rec.launch("x", "y", "o", 300)
    rec.launch("x2", "y2", "o2", 300)
    assert log == [("bind", (3, 1, 1)), ("run", ("x", "y", "o", 300, 128)),
                   ("run", ("x2", "y2", "o2", 300, 128))]


def test_autotune_keeps_the_fastest_config_that_runs(monkeypatch, _kernel_cache):
    from fusegrad.runtime import launch as L

    built = []

    def fake_launcher(kernel, grid, cx, nw):
        if cx["BLOCK"] == 512:
            raise RuntimeError("out of shared memory")
        built.append((grid, cx["BLOCK"]))
        return lambda *a: None

    times = {128: 3.0, 256: 1.0, 1024: 2.0}
    monkeypatch.setattr(L, "_native_launcher", fake_launcher)
    monkeypatch.setattr(L, "_bench", lambda fn: times[built[-1][1]])
    configs = [{"BLOCK": b} for b in (128, 256, 512, 1024)]
    rec = L.autotune(_vadd(), configs, lambda cx: -(-1000 // cx["BLOCK"]), [], 4)
    assert rec.tuned and rec.constexprs == {"BLOCK": 256} and rec.grid == (4,)


def test_native_program_prepares_and_tunes_at_build_time(monkeypatch, _kernel_cache):
    # the GPU path with the compiler and the timer replaced: every decision happens while
    # the program is built, and run() only calls the prepared launches
    from fusegrad.runtime import launch as L
    from fusegrad.compiler.backends.triton import program as TB

    launched, timed = [], []

    def fake_launcher(kernel, grid, cx, nw):
        return lambda *args: launched.append((kernel.name, grid, dict(cx), len(args)))

    monkeypatch.setattr(TB, "_mode", lambda graph: "native")
    monkeypatch.setattr(L, "_native_launcher", fake_launcher)
    monkeypatch.setattr(L, "_bench", lambda fn: (fn(), timed.append(1), float(len(timed)))[2])
    monkeypatch.setenv("FUSEGRAD_AUTOTUNE", "1")
    graph, (x, y) = mlp_graph(dims=(6, 9, 4), batch=1200)
    prog = TB.TritonProgram(graph)
    assert len(prog.launches) == len(prog.kernels)
    tuned = [r for r in prog.launches if r.tuned]
    assert tuned and all(r.kernel.configs for r in tuned)
    assert all(r.constexprs == r.kernel.constexprs for r in tuned)  # the first timed fastest
    n_timed = len(timed)
    launched.clear()
    for _ in range(2):
        prog.run([x, y])
    assert len(timed) == n_timed  # nothing is tuned on a replay
    assert len(launched) == 2 * len(prog.kernels)
    for (name, grid, cx, n_args), rec in zip(launched, prog.launches + prog.launches):
        assert (name, grid, cx) == (rec.kernel.name, rec.grid, rec.constexprs)
        assert n_args == len(rec.kernel.signature)
    src = prog.source
    assert "_autotune" not in src and "tuned is None" not in src and ".contiguous()" not in src
    assert "data_ptr() % 16" in src  # a GPU kernel assumes aligned pointers
    for k in prog.kernels:
        assert not hasattr(k, "launch") and not hasattr(k, "tuned")


def test_program_without_a_runtime_prepares_nothing(_kernel_cache):
    from fusegrad.compiler.backends.triton.program import TritonProgram

    graph, (x, y) = mlp_graph(dims=(6, 9, 4), batch=1200)
    prog = TritonProgram(graph)  # CPU tensors, no interpreter in this process
    assert all(r.launch is None for r in prog.launches)
    assert "K" in prog.source and ".launch(" in prog.source
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        prog.run([x, y])


# --------------------------------------------------------------------------- layouts on replay
# Each case runs a step eagerly and compiled (``wrap``) and returns the tensors to compare.
# A new layout is the replay's business, not a retrace's: the compiled step makes only the
# programs its case names.

CASES = {}


def case(programs=1):
    def register(fn):
        CASES[fn.__name__] = (fn, programs)
        return fn

    return register


def _snap(t):
    return None if t is None else t._data.clone()


@case()
def argument_layouts(wrap):
    fg.manual_seed(0)
    a, b = fg.randn(5, 5), fg.randn(5, 5)
    rows = fg.randn(6, 5)[1:]  # contiguous, at an offset into its storage
    f = wrap(lambda x, y: (x * 2 + y, x.sum(0), (x - y).exp()))
    out = {}
    for i, (x, y) in enumerate([(a, b), (a.t(), b), (fg.randn(1, 5).expand(5, 5), b.t()),
                                (rows, a)]):
        for j, r in enumerate(f(x, y)):
            out[f"{i}.{j}"] = _snap(r)
    return out


@case(programs=2)  # the second call is the first with momentum buffers
def parameter_layouts(wrap):
    # w is strided when the program is built: read through a copy, written back; b is
    # contiguous then and replaced by strided storage of the same shape later (the guard
    # lets that replay)
    fg.manual_seed(1)
    w = fg.randn(4, 6).t().detach().requires_grad_(True)
    b = fg.randn(4, requires_grad=True)
    opt = fg.optim.SGD([w, b], lr=0.1, momentum=0.9)

    def step(x):
        opt.zero_grad()
        loss = ((x @ w + b) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    f = wrap(step)
    xs = [fg.randn(3, 6) for _ in range(4)]
    strided = fg.randn(8)[::2]
    out = {}
    for i, x in enumerate(xs):
        if i == 2:
            b.data = strided
        out[f"loss{i}"] = _snap(f(x))
        out[f"w{i}"], out[f"b{i}"] = _snap(w), _snap(b)
        out[f"w.grad{i}"], out[f"b.grad{i}"] = _snap(w.grad), _snap(b.grad)
        for j, p in enumerate((w, b)):
            out[f"m{j}.{i}"] = _snap(opt.state[p]["momentum_buffer"])
    return out


@case()
def grad_layouts(wrap):
    # .grad fields read and written in place, stored by eager code in any layout
    fg.manual_seed(2)
    p = fg.randn(5, 5, requires_grad=True)
    q = fg.randn(7, requires_grad=True)

    def step(s):
        p.grad.mul_(s)
        q.grad.add_(p.grad.sum())

    f = wrap(step)
    grads = [(fg.randn(5, 5), fg.randn(7)), (fg.randn(5, 5).t(), fg.randn(14)[::2]),
             (fg.randn(5, 5), fg.randn(7))]
    out = {}
    for i, (gp, gq) in enumerate(grads):
        p.grad, q.grad = gp.clone(), gq.clone()
        if i == 1:
            p.grad, q.grad = gp, gq  # the strided views themselves
        f(fg.tensor(0.5 + i))
        out[f"p{i}"], out[f"q{i}"] = _snap(p.grad), _snap(q.grad)
    return out


def run_case(name) -> dict:
    import torch

    compiled = []

    def wrap(fn):
        c = fg.compile(fn, backend="triton")
        compiled.append(c)
        return c

    make, programs = CASES[name]
    eager, comp = make(lambda fn: fn), make(wrap)
    errors = []
    for k, a in eager.items():
        b = comp.get(k)
        if a is None or b is None:
            if (a is None) != (b is None):
                errors.append(f"{k}: eager {a} vs compiled {b}")
        elif a.shape != b.shape or not torch.allclose(a, b, rtol=2e-4, atol=2e-5):
            errors.append(f"{k}: eager {a.tolist()} vs compiled {b.tolist()}")
    for c in compiled:
        if len(c.programs) != programs:
            errors.append(f"{len(c.programs)} programs: {c.reasons}")
    sources = [p.source for c in compiled for p in c.programs]
    return {"case": name, "errors": errors, "sources": sources}


def test_replays_with_other_layouts_equal_eager(tmp_path):
    env = _env(TRITON_INTERPRET="1", FUSEGRAD_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *CASES], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["case"] for r in results] == list(CASES)
    for r in results:
        assert not r["errors"], f"{r['case']}: " + "; ".join(r["errors"])
    src = {r["case"]: "\n".join(r["sources"]) for r in results}
    # decided at build time: the strided parameter is copied, the contiguous one is not
    assert "_own(c" in src["parameter_layouts"] and "._foreach_copy_(" in src["parameter_layouts"]
    assert "data_ptr() % 16" not in src["argument_layouts"]  # no alignment test off the GPU


if __name__ == "__main__":
    print(json.dumps([run_case(n) for n in (sys.argv[1:] or list(CASES))]))
