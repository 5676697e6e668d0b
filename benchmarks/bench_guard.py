"""Benchmark the replay guard of a compiled MLP training step (cpu backend).

    python benchmarks/bench_guard.py [--shapes tiny,small] [--iters 10000] [--rounds 5]

For each shape it measures, in microseconds (medians over many calls):

- the guard of the settled signature (``entry.guard.check(leaves, structure)``) before and
  after a ``model.eval(); model.train()`` round trip,
- the same check when every call follows a module attribute write (the slow checks, each
  time: what a guard that never re-arms pays after one such write),
- the whole step before and after the round trip.

Each round compiles the step afresh (a new guard, armed at the current module version) and
takes every figure once; the table shows the median over rounds, so that a burst of load on
the machine moves one round, not a whole column. Prints a markdown table and writes JSON
(every round's figures too) to benchmarks/results/bench_guard.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fusegrad  # noqa: E402
from fusegrad.compiler.api import _flatten  # noqa: E402
from fusegrad.nn.module import structure_version  # noqa: E402

from bench_step import (SHAPES, add_threads_option, make_training, set_threads,  # noqa: E402
                        training_step, write_results)

BATCH = 50  # calls per timed sample: one perf_counter pair costs about as much as a check
WARMUP = 5


def median_us(fn, iters, before=None):
    """Median over ``iters // BATCH`` samples of the time of one ``fn()`` (and ``before()``,
    when given, ahead of every call), in microseconds, after a few untimed samples."""
    samples = []
    for _ in range(max(1, iters // BATCH) + WARMUP):
        t0 = time.perf_counter()
        for _ in range(BATCH):
            if before is not None:
                before()
            fn()
        samples.append((time.perf_counter() - t0) / BATCH)
    return statistics.median(samples[WARMUP:]) * 1e6


def bump():
    structure_version[0] += 1


FIGURES = ["guard_before_us", "guard_after_toggle_us", "guard_slow_us", "step_before_us",
           "step_after_toggle_us"]


def bench_round(batch, dims, iters):
    model, opt, x, y = make_training(fusegrad, dims, batch)
    cstep = fusegrad.compile(training_step(fusegrad, model, opt), backend="cpu")
    for _ in range(5):  # the second call retraces for the momentum buffers
        cstep(x, y)
    entry = cstep._last
    leaves = [x, y]
    structure = _flatten(((x, y), {}), [])

    def check():
        assert entry.guard.check(leaves, structure) is None

    def run():
        cstep(x, y)

    out = {"guard_before_us": median_us(check, iters),
           "step_before_us": median_us(run, iters // 10)}
    model.eval()
    model.train()
    out["guard_after_toggle_us"] = median_us(check, iters)
    out["step_after_toggle_us"] = median_us(run, iters // 10)
    # last: after this, a guard that never re-arms stays on its slow checks
    out["guard_slow_us"] = median_us(check, iters, before=bump) - median_us(bump, iters)
    assert len(cstep.entries) == 2, "the round trip must not retrace"
    return out


def bench_shape(name, batch, dims, iters, rounds):
    runs = [bench_round(batch, dims, iters) for _ in range(rounds)]
    row = {"shape": name, "iters": iters, "rounds": runs}
    row.update((k, statistics.median(r[k] for r in runs)) for k in FIGURES)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="tiny,small")
    ap.add_argument("--iters", type=int, default=10000, help="guard calls per figure and round")
    ap.add_argument("--rounds", type=int, default=5)
    add_threads_option(ap)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "bench_guard.json"))
    args = ap.parse_args(argv)
    set_threads(args.threads)
    rows = []
    for name in args.shapes.split(","):
        batch, dims = SHAPES[name]
        rows.append(bench_shape(name, batch, dims, args.iters, args.rounds))
    print("| shape | guard before (us) | guard after eval/train (us) | guard after each write "
          "(us) | step before (us) | step after eval/train (us) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['guard_before_us']:.2f} | {r['guard_after_toggle_us']:.2f} "
              f"| {r['guard_slow_us']:.2f} | {r['step_before_us']:.1f} "
              f"| {r['step_after_toggle_us']:.1f} |")
    write_results(args.out, rows=rows)


if __name__ == "__main__":
    main()
