"""Benchmark fusegrad's generated Triton kernels, one kernel kind at a time, against torch eager.

    python benchmarks/kernels/run.py [--cases a,b] [--out benchmarks/results]

Kinds: a pointwise chain, a row softmax, cross-entropy forward+backward, addmm+bias+relu,
the fused optimizer updates (SGD momentum, Adam) and a whole MLP training step.

- On CUDA each case runs compiled with the triton backend and eagerly in torch, timed with
  ``triton.testing.do_bench``; the table gives milliseconds, the speedup, GB/s (the
  schedule's bytes moved over the time) and TFLOP/s.
- On a CPU-only machine it reports the static figures per kernel (bytes moved and flops
  from the schedule, registers and spills for sm_90 from ``aot_compile``) and checks the
  kernels in Triton's interpreter against torch eager (in a subprocess, since
  TRITON_INTERPRET=1 must be set before triton is imported).

Results go to ``<out>/kernels.json`` and ``<out>/kernels.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import fusegrad  # noqa: E402
from cases import CASES  # noqa: E402


def _torch_of(v):
    if isinstance(v, fusegrad.Tensor):
        return v._data
    return v


def compare(ref, got, what, errors, rtol=2e-4, atol=2e-5):
    """Append to ``errors`` where a fusegrad value differs from torch's; returns max diff."""
    ref, got = _torch_of(ref), _torch_of(got)
    if ref is None or got is None:
        if ref is not got:
            errors.append(f"{what}: torch {ref!r} vs fusegrad {got!r}")
        return 0.0
    ref = ref.detach().cpu()
    got = got.detach().cpu()
    if ref.shape != got.shape:
        errors.append(f"{what}: shapes {list(ref.shape)} vs {list(got.shape)}")
        return float("inf")
    if not ref.dtype.is_floating_point:
        if not torch.equal(ref, got.to(ref.dtype)):
            errors.append(f"{what}: values differ")
        return 0.0
    diff = (ref.float() - got.float()).abs().max().item() if ref.numel() else 0.0
    if not torch.allclose(ref.float(), got.float(), rtol=rtol, atol=atol):
        errors.append(f"{what}: max abs difference {diff:.3g}")
    return diff


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def run_against_torch(name, size, calls=2):
    """Compile the case for the triton backend (CPU tensors, so in Triton's interpreter)
    and compare ``calls`` calls with torch eager."""
    build = CASES[name]
    tfn, tmake, tstate = build(torch, size)
    ffn, fmake, fstate = build(fusegrad, size)
    step = fusegrad.compile(ffn, backend="triton")
    errors, worst = [], 0.0
    for i in range(calls):
        ta = tmake()
        fa = tuple(fusegrad.from_torch(a) for a in ta)
        to, fo = _flat(tfn(*ta)), _flat(step(*fa))
        for j, (a, b) in enumerate(zip(to, fo)):
            worst = max(worst, compare(a, b, f"call {i} output {j}", errors))
        ts, fs = tstate(), fstate()
        for k in ts:
            worst = max(worst, compare(ts[k], fs.get(k), f"call {i} {k}", errors))
    return step, errors, worst


def eager_bytes(graph) -> int:
    """What one ATen kernel per primitive would move (views free): the unfused baseline."""
    from fusegrad.compiler.ir.cost import nbytes

    total = 0
    for e in graph.eqns:
        if e.prim.is_view or e.out.weak:
            continue
        total += sum(nbytes(x) for x in {x for x in e.vars() if not x.weak}) + nbytes(e.out)
    return total


def static_figures(name, size):
    """Schedule the case (cpu backend, two calls) and build every kernel for sm_90."""
    from fusegrad.compiler import schedule
    from fusegrad.compiler.backends.triton import layout as S
    from fusegrad.compiler.backends.triton.aot import aot_compile
    from fusegrad.compiler.backends.triton.codegen import generate

    fn, make, _ = CASES[name](fusegrad, size)
    step = fusegrad.compile(fn, backend="cpu")
    for _ in range(2):
        step(*make())
    graph = step.program.graph
    groups = S.schedule(graph)
    kernels = []
    for g in groups:
        k = generate(g)
        row = {"name": k.name, "ops": len(k.ops), "bytes_moved": g.bytes_moved,
               "flops": g.flops, "grid": k.grid(), "constexprs": k.constexprs}
        try:
            res = aot_compile(k, 90)
            row.update(regs_sm90=res["n_regs"], spills_sm90=res["n_spills"],
                       smem_sm90=res["shared"])
        except RuntimeError as e:
            row.update(aot_error=str(e)[:500])
        kernels.append(row)
    st = schedule.stats(groups)
    return {"n_kernels": st["n_kernels"], "bytes_moved": st["bytes_moved"], "flops": st["flops"],
            "eager_bytes": eager_bytes(graph), "kernels": kernels}


def interpreter_check(names, size):
    """Run the cases' kernels in Triton's interpreter (a subprocess) against torch."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--interpret-check",
                           "--cases", ",".join(names), "--size", size], env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"interpreter run failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _interpret_main(names, size):
    out = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            step, errors, worst = run_against_torch(name, size)
            out[name] = {"ok": not errors, "errors": errors[:5], "max_abs_diff": worst,
                         "kernels": [k.name for k in step.program.kernels],
                         "seconds": time.perf_counter() - t0}
        except Exception as e:  # reported, not hidden
            out[name] = {"ok": False, "errors": [f"{type(e).__name__}: {e}"[:1000]]}
    print(json.dumps(out))


def cuda_bench(name):
    """Time the compiled case and torch eager on the GPU."""
    import triton.testing

    build = CASES[name]
    with torch.device("cuda"):
        tfn, tmake, tstate = build(torch, "gpu")
        ffn, fmake, fstate = build(fusegrad, "gpu")
        ta = tmake()
    fa = tuple(fusegrad.from_torch(a) for a in ta)
    step = fusegrad.compile(ffn, backend="triton")
    errors = []
    for j, (a, b) in enumerate(zip(_flat(tfn(*ta)), _flat(step(*fa)))):
        compare(a, b, f"output {j}", errors, rtol=1e-3, atol=1e-4)
    step(*fa)  # the steady-state program (optimizer state exists)
    t_fused = triton.testing.do_bench(lambda: step(*fa))
    t_eager = triton.testing.do_bench(lambda: tfn(*ta))
    st = step.program.stats()
    return {"ms_fusegrad": t_fused, "ms_torch_eager": t_eager, "speedup": t_eager / t_fused,
            "n_kernels": st["n_kernels"], "bytes_moved": st["bytes_moved"], "flops": st["flops"],
            "GB/s": st["bytes_moved"] / t_fused / 1e6, "TFLOP/s": st["flops"] / t_fused / 1e9,
            "ok": not errors, "errors": errors[:5],
            "kernels": [k.name for k in step.program.kernels]}


def markdown(results, cuda) -> str:
    lines = []
    if cuda:
        lines += ["| case | kernels | fusegrad ms | torch eager ms | speedup | GB/s | TFLOP/s "
                  "| ok |", "|---|---|---|---|---|---|---|---|"]
        for name, r in results["cases"].items():
            lines.append(f"| {name} | {r['n_kernels']} | {r['ms_fusegrad']:.3f} | "
                         f"{r['ms_torch_eager']:.3f} | {r['speedup']:.2f}x | {r['GB/s']:.0f} | "
                         f"{r['TFLOP/s']:.2f} | {'yes' if r['ok'] else 'NO'} |")
        return "\n".join(lines) + "\n"
    lines += ["| case | kernel | bytes moved | flops | regs sm_90 | spills "
              "| interpreter vs torch |",
              "|---|---|---|---|---|---|---|"]
    for name, r in results["cases"].items():
        chk = r.get("interpreter", {})
        verdict = ("ok" if chk.get("ok") else "FAIL: " + "; ".join(chk.get("errors", [])))
        if chk.get("ok"):
            verdict += f" (max diff {chk['max_abs_diff']:.1e})"
        lines.append(f"| **{name}** | {r['n_kernels']} kernels | {r['bytes_moved']:,} "
                     f"(unfused {r['eager_bytes']:,}) | {r['flops']:,} | | | {verdict} |")
        for k in r["kernels"]:
            regs = k.get("regs_sm90", "error")
            lines.append(f"| | `{k['name']}` | {k['bytes_moved']:,} | {k['flops']:,} | {regs} | "
                         f"{k.get('spills_sm90', '-')} | |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--size", default=None, help="gpu or cpu shapes (default: by device)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "results"))
    ap.add_argument("--interpret-check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    if args.interpret_check:
        return _interpret_main(names, args.size or "cpu")
    cuda = torch.cuda.is_available()
    size = args.size or ("gpu" if cuda else "cpu")
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu (static figures and "
               "Triton interpreter)", "platform": platform.platform(), "size": size,
               "torch": torch.__version__, "cases": {}}
    import triton

    results["triton"] = triton.__version__
    if cuda:
        for name in names:
            results["cases"][name] = cuda_bench(name)
    else:
        checks = interpreter_check(names, size)
        for name in names:
            r = static_figures(name, size)
            r["interpreter"] = checks.get(name, {})
            results["cases"][name] = r
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kernels.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = markdown(results, cuda)
    with open(os.path.join(args.out, "kernels.md"), "w") as f:
        f.write(f"# fusegrad kernels on {results['device']}\n\n{table}")
    print(table)
    failed = [n for n, r in results["cases"].items()
              if not (r.get("ok") if cuda else r.get("interpreter", {}).get("ok"))]
    if failed:
        print(f"correctness failures: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
