"""The structure the code must keep: one primitive table read by field, packages that
import only downwards, and a new primitive that needs one record and nothing else."""

from __future__ import annotations

import ast
import os
import re
import pathlib
import subprocess
import sys

import pytest
import torch

import fusegrad as fg
from fusegrad import primitives as P

PKG = pathlib.Path(fg.__file__).parent
HERE = pathlib.Path(__file__).parent


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _is_prim_name(node) -> bool:
    """``<...>.prim.name`` or ``prim.name`` / ``p.name`` of a record."""
    if not (isinstance(node, ast.Attribute) and node.attr == "name"):
        return False
    v = node.value
    return (isinstance(v, ast.Attribute) and v.attr == "prim") or \
        (isinstance(v, ast.Name) and v.id in ("prim", "p"))


def _literals(node) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)


def test_no_phase_compares_a_prim_name_with_a_string():
    """Phases read record fields; a name compared with a literal is a second table."""
    hits = []
    for path, tree in _modules():
        if path.is_relative_to(PKG / "primitives"):
            continue
        # names bound to a prim's name (``pn = e.prim.name``) count as the name too
        aliases = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and _is_prim_name(n.value) for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            named = any(_is_prim_name(x) or (isinstance(x, ast.Name) and x.id in aliases)
                        for x in sides)
            if named and any(_literals(x) for x in sides):
                hits.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert not hits, f"prim names compared with strings at {hits}"


# Layers, bottom to top: a module may import its own layer and those below it.
LAYERS = [
    ("_util",),
    ("primitives",),
    ("interpreter",),
    ("autograd", "tensor", "dispatch"),
    ("ops", "factories", "primitives.vjp"),
    ("nn", "optim", "serialization"),
    ("runtime",),
    ("compiler.ir",),
    ("compiler",),
    ("__init__",),
]


def _layer(module: str) -> int:
    rel = module.removeprefix("fusegrad").lstrip(".") or "__init__"
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (rel == n or rel.startswith(n + ".")) and len(n) > best_len:
                best, best_len = i, len(n)
    assert best is not None, f"{module} is in no layer"
    return best


def _module_name(path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts
    return ".".join(parts)


def _imports(node):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fusegrad"):
        if node.module == "fusegrad":
            return [f"fusegrad.{a.name}" for a in node.names]
        return [node.module]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("fusegrad")]
    return []


def test_top_level_imports_go_downwards():
    bad = []
    for path, tree in _modules():
        me = _module_name(path)
        mine = _layer(me) if me != "fusegrad" else len(LAYERS) - 1
        for node in tree.body:  # module level: what importing the module pulls in
            for target in _imports(node):
                if _layer(target) > mine:
                    bad.append(f"{me} imports {target}")
    assert not bad, bad


def test_primitives_and_runtime_import_nothing_above_them():
    for path, tree in _modules():
        me = _module_name(path)
        if not (me.startswith("fusegrad.primitives") or me.startswith("fusegrad.runtime")
                or me.startswith("fusegrad._util")) or me == "fusegrad.primitives.vjp":
            continue
        for node in ast.walk(tree):  # function-local imports too
            for target in _imports(node):
                assert _layer(target) <= _layer(me), f"{me} imports {target}"


# --------------------------------------------------------------------------- the eager core

# The eager core: it reaches the compiler only through the current interpreter.
CORE = ["tensor", "dispatch", "interpreter", "factories", "ops", "autograd", "nn", "optim"]

# Function-local imports of fusegrad modules left in the core, each with its reason.
LOCAL_IMPORTS = {
    # backward() makes its default gradient through dispatch, a layer above Tensor
    ("fusegrad/tensor.py", "Tensor.backward", "fusegrad.autograd.api"),
}


def _core_modules():
    for path, tree in _modules():
        rel = path.relative_to(PKG).as_posix()
        if any(rel.removesuffix(".py") == c or rel.startswith(c + "/") for c in CORE):
            yield path, tree


def test_the_core_never_asks_for_the_tracer():
    """Tracing is an interpreter: no core module tests for a tracer or imports the compiler."""
    hits = []
    for path, tree in _core_modules():
        rel = path.relative_to(PKG.parent).as_posix()
        if "trace_state" in path.read_text():
            hits.append(f"{rel} mentions trace_state")
        for node in ast.walk(tree):
            hits += [f"{rel}:{node.lineno} imports {t}" for t in _imports(node)
                     if t == "fusegrad.compiler" or t.startswith("fusegrad.compiler.")]
    assert not hits, hits


def _local_imports(tree):
    """(qualified function name, imported module) of the imports inside functions."""
    out = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [child.name])
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                if scope:  # inside a function or class body
                    out.extend((".".join(scope), t) for t in _imports(child))
            else:
                visit(child, scope)

    visit(tree, [])
    return out


def test_the_core_has_no_function_local_imports_but_the_listed_ones():
    """A function-local import hides a cycle; the core may keep only those listed above."""
    found = set()
    for path, tree in _core_modules():
        rel = path.relative_to(PKG.parent).as_posix()
        found |= {(rel, fn, target) for fn, target in _local_imports(tree)}
    new, gone = sorted(found - LOCAL_IMPORTS), sorted(LOCAL_IMPORTS - found)
    assert not new, f"function-local imports in the core (import at module top): {new}"
    assert not gone, f"no longer there, drop them from LOCAL_IMPORTS: {gone}"


def test_the_core_imports_form_no_cycle():
    """Module-level imports between core modules form a DAG (a package's ``__init__`` only
    re-exports, so ``from fusegrad.ops import movement`` is an edge to the submodule)."""
    mods = {_module_name(path): tree for path, tree in _core_modules()}
    graph = {}
    for me, tree in mods.items():
        edges = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module in mods:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                edges |= {s for s in subs if s in mods} or {node.module}
            else:
                edges |= {t for t in _imports(node) if t in mods}
        graph[me] = edges - {me}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [m, n]))
            if n not in state:
                visit(n, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_every_overload_an_op_names_is_in_the_naming_table():
    """``apply(..., overload="...")`` keys into autograd/names.py's one table of names."""
    from fusegrad.autograd.names import OVERLOADS

    def strings(node):  # the literal keys an expression can give (not f-string pieces)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return strings(node.body) | strings(node.orelse)
        return set()

    used = set()
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            used |= {k for kw in node.keywords if kw.arg == "overload" for k in strings(kw.value)}
            if getattr(node.func, "id", "") in ("_transpose", "_fill", "_write"):
                used |= {k for a in node.args for k in strings(a)}  # helpers that pass it on
    assert len(used) > 10 and used <= set(OVERLOADS), sorted(used - set(OVERLOADS))
    assert all(re.fullmatch(r"[A-Z]\w*Backwards?\d*", n.name) for n in OVERLOADS.values())


def test_every_interpreter_implements_the_whole_protocol():
    """Eager and the tracer answer every op and every effect: none falls back unnoticed."""
    from fusegrad.compiler.tracer import Tracer
    from fusegrad.interpreter import Eager, Effects, Interpreter

    wanted = {n for proto in (Interpreter, Effects) for n, v in vars(proto).items()
              if callable(v) and not n.startswith("_")}
    assert len(wanted) > 10
    for cls in (Eager, Tracer):
        missing = sorted(n for n in wanted if not callable(getattr(cls, n, None)))
        assert not missing, f"{cls.__name__} lacks {missing}"


def test_iota_in_a_trace_is_a_constant_of_the_program():
    """ops.iota (one-hot masks, max(dim)'s gradient) is a Const source, never a captured
    tensor guarded by identity."""
    from fusegrad.compiler.ir.io import Captured, Const

    x = fg.randn(3, 4)
    w = fg.nn.Parameter(fg.randn(4, 5))
    target = fg.tensor([0, 4, 2])

    def step():
        w.grad = None
        loss = fg.nn.functional.cross_entropy(x @ w, target)
        loss.backward()
        return loss

    cf = fg.compile(step, backend="cpu")
    for _ in range(2):
        loss = cf()
    want = fg.nn.functional.cross_entropy(x @ w, target)
    assert torch.allclose(loss._data, want._data)
    sources = cf.program.graph.sources
    assert not any(isinstance(s, Captured) and s.tensor.dtype == torch.int64
                   and s.tensor is not target for s in sources)
    raw = fg.compiler.tracer.trace(step, (), {}, [])[0]
    assert any(isinstance(s, Const) and s.data.dtype == torch.int64 for s in raw.sources)


# --------------------------------------------------------------------------- one record


def test_erf_is_one_record_that_runs_everywhere():
    """``erf`` was added as a single record in primitives/pointwise.py."""
    assert P.PRIMS["erf"] is P.erf and not P.missing_fields(P.erf)
    x = torch.randn(4, 5, dtype=torch.float64)
    a = fg.from_torch(x.clone()).requires_grad_()
    fg.erf(a).sum().backward()
    xt = x.clone().requires_grad_()
    torch.erf(xt).sum().backward()
    assert torch.allclose(fg.erf(a).detach()._data, torch.erf(x))
    assert torch.allclose(a.grad._data, xt.grad)
    assert fg.erf(a).grad_fn.name() == "ErfBackward0" and a.erf().shape == a.shape

    _erf_step("cpu")
    # the triton backend on CPU tensors needs Triton's interpreter, set before its import
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = f"import sys; sys.path[:0] = {[str(PKG.parent), str(HERE)]!r}; " \
        "import test_architecture as t; t._erf_step('triton')"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def _erf_step(backend):
    """A compiled step through erf equals eager on ``backend`` (first call and replay)."""
    x = torch.randn(4, 5)
    w = fg.nn.Parameter(fg.from_torch(x.clone()))

    def step():
        w.grad = None
        loss = (w.erf() * 2).sum()
        loss.backward()
        return loss

    cf = fg.compile(step, backend=backend)
    want = 4 / torch.pi ** 0.5 * torch.exp(-x ** 2)
    for _ in range(2):
        loss = cf()
        assert torch.allclose(loss._data, (torch.erf(x) * 2).sum(), atol=1e-4), backend
        assert torch.allclose(w.grad._data, want, atol=1e-5), backend
    assert any(e.prim is P.erf for e in cf.program.graph.eqns)


@pytest.mark.parametrize("name", [p.name for p in P.PRIMS.values()
                                  if p.kind is P.Kind.UNARY and p.inplace])
def test_every_unary_record_is_an_op_and_an_inplace_method(name):
    """fusegrad.<name>, Tensor.<name>() and Tensor.<name>_() come from the record alone and
    equal torch's: values, gradients and node names."""
    p = P.PRIMS[name]
    x = torch.tensor([0.5, 0.3, 2.0])
    assert torch.equal(getattr(fg, name)(fg.from_torch(x))._data, getattr(torch, name)(x))
    a, b = fg.from_torch(x.clone()).requires_grad_(), x.clone().requires_grad_()
    ya, yb = a * 1, b * 1
    getattr(ya, p.inplace)()
    getattr(yb, p.inplace)()
    ya.sum().backward()
    yb.sum().backward()
    assert torch.allclose(ya.detach()._data, yb.detach()) and ya._version == yb._version
    assert torch.allclose(a.grad._data, b.grad)
    assert ya.grad_fn.name() == yb.grad_fn.name()
