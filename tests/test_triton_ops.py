"""Every sample of the op-case table compiled with ``backend="triton"`` and run in Triton's
interpreter equals the same function run eagerly: forward values and the gradients taken
inside the compiled function (``test_compile_ops._step``), on the first call and on replay.

TRITON_INTERPRET=1 must be set before triton is imported, and the interpreter performs the
kernels' real memory accesses, so a kernel that reads or writes out of bounds can kill the
process (on a GPU: an illegal memory access). So the sweep runs in ONE subprocess: this file
is also that script (``python tests/test_triton_ops.py [FIRST]`` runs the samples from the
FIRST-th on, printing ``RUN <n> <op> <sample>`` before each and ``FAIL [op, sample,
error]`` after each that fails). A crash counts as the failure of the sample that was
running, and a new subprocess goes on from the next one, so every failure is listed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
import warnings

from opcases import ALL_CASES

RUN, FAIL = "RUN ", "FAIL "


def _all_samples():
    for case in ALL_CASES:
        for idx, sample in enumerate(case.make_samples()):
            yield case, idx, sample


def _check_sample(case, sample):
    """Compile the op's step for the triton backend; raise if anything differs from eager."""
    import fusegrad
    from test_compile_ops import _assert_close, _step
    from test_ops import build

    args, kwargs, leaves = build(sample, fusegrad)
    leaves_at = [i for i, a in enumerate(args) if any(a is x for x in leaves)]
    fn = _step(case, kwargs, leaves_at)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_outs, want_grads = fn(*args)
        compiled = fusegrad.compile(fn, backend="triton")
        got_outs, got_grads = compiled(*args)
        again_outs, _ = compiled(*args)  # the replay path: reused buffers, no retrace
    assert len(got_outs) == len(want_outs), f"{len(got_outs)} outputs, eager {len(want_outs)}"
    assert len(got_grads) == len(want_grads), \
        f"{len(got_grads)} gradients, eager {len(want_grads)}"
    for k, (g, g2, w) in enumerate(zip(got_outs, again_outs, want_outs)):
        _assert_close(g, w, f"output {k}")
        _assert_close(g2, w, f"output {k} on replay")
    for k, (g, w) in enumerate(zip(got_grads, want_grads)):
        _assert_close(g, w, f"gradient {k}")


def _describe(e: Exception) -> str:
    where = traceback.extract_tb(e.__traceback__)[-1]
    msg = " | ".join(str(e).strip().splitlines()[:6])
    return f"{type(e).__name__}: {msg} ({where.name}:{where.lineno})"


def sweep(first: int = 0):
    """Run the (op, sample) pairs from the ``first``-th on, printing each failure as it
    happens (a later crash must not lose it)."""
    for k, (case, idx, sample) in enumerate(_all_samples()):
        if k < first:
            continue
        print(f"{RUN}{k} {case.name} {idx}", flush=True)
        try:
            _check_sample(case, sample)
        except Exception as e:  # noqa: BLE001 - every failure is listed, not the first
            fail = [case.name, idx, f"{sample.describe()}: {_describe(e)}"]
            print(FAIL + json.dumps(fail), flush=True)


def _run_from(first: int, env) -> tuple[int, list, int | None]:
    """One subprocess sweeping from sample ``first``: the samples it ran, its failures
    (op, sample, error) and the sample it crashed on, if it did."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(first)], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = proc.stdout.splitlines()
    started = [ln.split() for ln in lines if ln.startswith(RUN)]
    failures = [json.loads(ln[len(FAIL):]) for ln in lines if ln.startswith(FAIL)]
    if proc.returncode == 0:
        return len(started), failures, None
    if not started:
        raise AssertionError(f"the sweep failed to start:\n{proc.stderr[-4000:]}")
    k, op, idx = started[-1][1:]
    failures.append([op, int(idx), f"the interpreter died (exit code {proc.returncode}; a "
                     f"segfault is an out-of-bounds access) {proc.stderr.strip()[-300:]}"])
    return len(started), failures, int(k)


def test_every_op_case_compiled_for_triton_equals_eager(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", FUSEGRAD_CACHE_DIR=str(tmp_path))
    for var in ("FUSEGRAD_DEBUG", "FUSEGRAD_EAGER"):
        env.pop(var, None)
    programs, failures, first = 0, [], 0
    while first is not None:
        ran, failed, crashed_at = _run_from(first, env)
        programs += ran
        failures += [f"{op} sample {idx}: {err}" for op, idx, err in failed]
        first = None if crashed_at is None else crashed_at + 1
    assert not failures, f"{len(failures)} of {programs} op-case samples differ under the " \
        "triton backend:\n" + "\n".join(failures)
    assert programs == sum(1 for _ in _all_samples())


if __name__ == "__main__":
    sweep(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
