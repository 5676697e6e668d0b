"""The runtime's support code: layering (no triton on `import fusegrad`, nothing from the
compiler) and atomic file writes."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import pytest


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
    from fusegrad.compiler.aot import aot_compile

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


@pytest.mark.parametrize("name", ["__init__.py", "kernels.py"])
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
