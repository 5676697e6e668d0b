"""Kernel loading (interpreter, on CPU) and ahead-of-time compilation to PTX/cubin (no GPU)."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from fusegrad.compiler.backends.triton.aot import aot_compile, parse_ptxas_report
from fusegrad.runtime.kernels import Kernel, dump_kernels, load_kernel

VADD_SRC = textwrap.dedent(
    """
    import triton
    import triton.language as tl


    @triton.jit
    def vadd_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        y = tl.load(y_ptr + offs, mask=mask)
        tl.store(out_ptr + offs, x + y, mask=mask)
    """
)

SOFTMAX_SRC = textwrap.dedent(
    """
    import triton
    import triton.language as tl


    @triton.jit
    def row_softmax_kernel(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * stride + cols, mask=mask, other=-float("inf"))
        x = x - tl.max(x, axis=0)
        e = tl.where(mask, tl.exp(x), 0.0)
        y = e / tl.sum(e, axis=0)
        tl.store(out_ptr + row * stride + cols, y, mask=mask)
    """
)

# tl.arange needs constexpr bounds: a Triton type error, found only when compiling.
TYPE_ERROR_SRC = textwrap.dedent(
    """
    import triton
    import triton.language as tl


    @triton.jit
    def broken_kernel(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, n)
        tl.store(x_ptr + offs, 1.0)
    """
)

SYNTAX_ERROR_SRC = textwrap.dedent(
    """
    import triton
    import triton.language as tl


    @triton.jit
    def garbled_kernel(x_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK
        tl.store(x_ptr + offs, 1.0)
    """
)

VADD = Kernel(
    name="vadd_kernel",
    source=VADD_SRC,
    ops=["add"],
    signature={
        "x_ptr": "*fp32",
        "y_ptr": "*fp32",
        "out_ptr": "*fp32",
        "n": "i32",
        "BLOCK": "constexpr",
    },
    constexprs={"BLOCK": 128},
    provenance=["z = x + y"],
)
SOFTMAX = Kernel(
    name="row_softmax_kernel",
    source=SOFTMAX_SRC,
    ops=["max", "sub", "exp", "sum", "div"],
    signature={
        "x_ptr": "*fp32",
        "out_ptr": "*fp32",
        "n_cols": "i32",
        "stride": "i32",
        "BLOCK": "constexpr",
    },
    constexprs={"BLOCK": 64},
    provenance=["y = x.softmax(-1)"],
)


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path / "kernels"))
    return tmp_path / "kernels"


INTERPRET_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import triton
    from fusegrad.runtime.kernels import load_kernel
    from triton.runtime.interpreter import InterpretedFunction

    src = json.loads(sys.argv[1])
    vadd = load_kernel("vadd_kernel", src["vadd"])
    assert isinstance(vadd, InterpretedFunction), type(vadd)
    n, block = 1000, 256
    x, y = torch.randn(n), torch.randn(n)
    out = torch.empty(n)
    vadd[(triton.cdiv(n, block),)](x, y, out, n, BLOCK=block)
    torch.testing.assert_close(out, x + y)

    softmax = load_kernel("row_softmax_kernel", src["softmax"])
    a = torch.randn(7, 37)
    b = torch.empty_like(a)
    softmax[(7,)](a, b, 37, a.stride(0), BLOCK=64)
    torch.testing.assert_close(b, torch.softmax(a, dim=-1))
    print("OK")
    """
)


def test_interpreter_matches_torch(_kernel_cache):
    env = dict(os.environ, TRITON_INTERPRET="1", FUSEGRAD_CACHE_DIR=str(_kernel_cache))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            INTERPRET_SCRIPT,
            json.dumps({"vadd": VADD_SRC, "softmax": SOFTMAX_SRC}),
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")
    files = sorted(p.name for p in _kernel_cache.glob("*.py"))
    assert len(files) == 2 and files[0].startswith("row_softmax_kernel_")


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("kernel", [VADD, SOFTMAX], ids=lambda k: k.name)
def test_aot_compile(kernel, arch):
    res = aot_compile(kernel, arch=arch)
    assert res["name"] == kernel.name and res["arch"] == arch
    assert isinstance(res["n_regs"], int) and res["n_regs"] > 0
    assert res["n_spills"] == 0
    assert f".entry {kernel.name}" in res["ptx"]
    assert f".target sm_{arch}" in res["ptx"]
    assert isinstance(res["shared"], int) and res["shared"] >= 0
    assert aot_compile(kernel, arch=arch) == res  # cached


def test_aot_compile_under_interpreter(monkeypatch):
    # A CPU-only CI may set TRITON_INTERPRET=1 for the whole run; AOT must still work.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    k = Kernel(
        name=VADD.name,
        source=VADD_SRC + "\n# interp variant\n",
        signature=dict(VADD.signature),
        constexprs={"BLOCK": 256},
    )
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(k.fn(), InterpretedFunction)
    res = aot_compile(k, arch=80)
    assert res["n_regs"] > 0 and ".entry vadd_kernel" in res["ptx"]


@pytest.mark.parametrize(
    "name,source", [("broken_kernel", TYPE_ERROR_SRC), ("garbled_kernel", SYNTAX_ERROR_SRC)]
)
def test_aot_compile_error_names_kernel(name, source):
    k = Kernel(
        name=name, source=source, signature={"x_ptr": "*fp32", "n": "i32"}, constexprs={"BLOCK": 64}
    )
    if name == "garbled_kernel":
        k.signature = {"x_ptr": "*fp32"}
    with pytest.raises(RuntimeError) as ei:
        aot_compile(k, arch=80)
    msg = str(ei.value)
    assert name in msg and "sm_80" in msg


def test_load_kernel_cache_and_dump(_kernel_cache, tmp_path):
    fn = load_kernel(VADD.name, VADD_SRC)
    assert load_kernel(VADD.name, VADD_SRC) is fn
    assert VADD.fn() is fn
    assert fn.arg_names == ["x_ptr", "y_ptr", "out_ptr", "n", "BLOCK"]
    (cached,) = list(_kernel_cache.glob("vadd_kernel_*.py"))
    assert cached.read_text() == VADD_SRC
    assert not list(_kernel_cache.glob("*.tmp"))

    paths = dump_kernels([VADD, SOFTMAX], tmp_path / "dump")
    assert [p.name for p in paths] == ["vadd_kernel.py", "row_softmax_kernel.py"]
    assert paths[1].read_text() == SOFTMAX_SRC


def test_load_kernel_concurrent_threads():
    src = VADD_SRC + "\n# threads\n"
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(load_kernel(VADD.name, src))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(f is got[0] for f in got)


def test_load_kernel_missing_function():
    with pytest.raises(RuntimeError, match="no_such_kernel"):
        load_kernel("no_such_kernel", VADD_SRC)


def test_parse_ptxas_report_with_spills():
    log = (
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'other' for 'sm_80'\n"
        "ptxas info    : Function properties for other\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 10 registers, used 0 barriers, 380 bytes cmem[0]\n"
        "ptxas info    : Compiling entry function 'big' for 'sm_80'\n"
        "ptxas info    : Function properties for big\n"
        "    96 bytes stack frame, 120 bytes spill stores, 88 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]\n"
    )
    r = parse_ptxas_report(log, "big")
    assert (r["n_regs"], r["spill_stores"], r["spill_loads"], r["n_spills"]) == (255, 120, 88, 208)
    assert r["stack_frame"] == 96 and r["static_smem"] == 16
    assert parse_ptxas_report(log, "other")["n_spills"] == 0
