"""Benchmark one MLP training step (SGD with momentum): fusegrad compiled and eager,
torch eager and torch.compile, interleaved in one process.

    python benchmarks/bench_step.py [--shapes tiny,small,medium] [--no-torch-compile]

Prints a markdown table and writes JSON to benchmarks/results/bench_step.json. Ratios are
speedups over torch eager (higher is better), from medians of many iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fusegrad  # noqa: E402

SHAPES = {
    "tiny": (64, [64, 128, 10]),
    "small": (64, [784, 256, 10]),
    "medium": (256, [1024, 1024, 1024, 10]),
}


def _mlp(lib, dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(lib.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(lib.nn.ReLU())
    return lib.nn.Sequential(*layers)


def make_step(lib, dims, batch, seed=0):
    lib.manual_seed(seed)
    model = _mlp(lib, dims)
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = lib.randn(batch, dims[0])
    y = lib.randint(0, dims[-1], (batch,))

    def step(x, y):
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, x, y


def timed_first(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def bench_shape(name, batch, dims, iters, warmup, use_torch_compile):
    runners = {}
    step, x, y = make_step(fusegrad, dims, batch)
    runners["fusegrad eager"] = (step, x, y, 0.0)
    cstep, cx, cy = make_step(fusegrad, dims, batch)
    cstep = fusegrad.compile(cstep)
    first = timed_first(cstep, cx, cy)
    first += timed_first(cstep, cx, cy)  # the second call traces the momentum-buffer state
    runners["fusegrad compiled"] = (cstep, cx, cy, first)
    tstep, tx, ty = make_step(torch, dims, batch)
    runners["torch eager"] = (tstep, tx, ty, 0.0)
    if use_torch_compile:
        tcstep, tcx, tcy = make_step(torch, dims, batch)
        tcstep = torch.compile(tcstep)
        first = timed_first(tcstep, tcx, tcy) + timed_first(tcstep, tcx, tcy)
        runners["torch.compile"] = (tcstep, tcx, tcy, first)
    for fn, a, b, _ in runners.values():
        for _ in range(warmup):
            fn(a, b)
    times = {k: [] for k in runners}
    for _ in range(iters):  # interleaved: machine noise hits every runner alike
        for k, (fn, a, b, _) in runners.items():
            t0 = time.perf_counter()
            fn(a, b)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["torch eager"]
    rows = []
    for k in runners:
        rows.append({"shape": name, "runner": k, "median_us": med[k] * 1e6,
                     "speedup_vs_torch_eager": base / med[k],
                     "first_call_s": runners[k][3], "iters": iters})
    prog = cstep.program
    stats = prog.stats() if prog is not None else {}
    return rows, stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="tiny,small,medium")
    ap.add_argument("--iters", type=int, default=0, help="0: chosen per shape")
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "bench_step.json"))
    args = ap.parse_args(argv)
    all_rows, all_stats = [], {}
    for name in args.shapes.split(","):
        batch, dims = SHAPES[name]
        iters = args.iters or {"tiny": 400, "small": 200, "medium": 30}[name]
        rows, stats = bench_shape(name, batch, dims, iters, max(5, iters // 10),
                                  not args.no_torch_compile)
        all_rows += rows
        all_stats[name] = stats
        for r in rows:
            print(f"{name:7s} {r['runner']:18s} {r['median_us']:10.1f} us  "
                  f"x{r['speedup_vs_torch_eager']:.2f}  first call {r['first_call_s']:.2f} s",
                  flush=True)
    print("\n| shape | runner | median step (us) | speedup vs torch eager | first call (s) |")
    print("|---|---|---:|---:|---:|")
    for r in all_rows:
        print(f"| {r['shape']} | {r['runner']} | {r['median_us']:.1f} | "
              f"{r['speedup_vs_torch_eager']:.2f} | {r['first_call_s']:.2f} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": {"python": platform.python_version(), "torch": torch.__version__,
                               "cpus": os.cpu_count(), "threads": torch.get_num_threads()},
                   "rows": all_rows, "program_stats": all_stats}, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
