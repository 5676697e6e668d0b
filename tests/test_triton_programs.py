"""The triton backend end to end: every kernel generated for a set of test programs runs in
Triton's interpreter and equals eager, and compiles ahead of time for sm_80 and sm_90 with
no register spills.

TRITON_INTERPRET=1 must be set before triton is imported, so each test runs a chunk of the
cases in a subprocess: this file is also that script (``python tests/test_triton_programs.py
CASE...`` prints one JSON line with, per case, the errors found and the kernels generated),
and the test AOT-compiles exactly the kernels the subprocess ran. Shapes are small and
ragged (not multiples of any block size) so that the interpreter, at ~0.5 ms per program
instance, stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fusegrad as fg
import fusegrad.nn as nn
import fusegrad.nn.functional as F

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


class World:
    """One copy of a test program: ``step`` and its arguments per call, and the tensors to
    compare after each call (parameters, .grad fields, optimizer state)."""

    def __init__(self, step, calls, state=None, before=None):
        self.step, self.calls, self.state = step, calls, state or (lambda: {})
        self.before = before or {}  # call index -> what to change before that call


def _mlp_world(opt, dims=(12, 20, 5), batch=9, calls=3, set_to_none=True):
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], dims[2]))
    optim = opt(model.parameters())

    def step(x, y):
        optim.zero_grad(set_to_none=set_to_none)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optim.step()
        return loss

    fg.manual_seed(1)
    args = [(fg.randn(batch, dims[0]), fg.randint(0, dims[-1], (batch,))) for _ in range(calls)]

    def state():
        out = {}
        for name, p in model.named_parameters():
            out[name] = p
            out[name + ".grad"] = p.grad
            for k, v in optim.state.get(p, {}).items():
                out[f"{name}.{k}"] = v
        return out

    def lower_lr():  # a new learning rate takes effect without a retrace
        optim.param_groups[0]["lr"] *= 0.5

    return World(step, args, state, before={calls - 1: lower_lr})


@case
def mlp_sgd_momentum():
    return _mlp_world(lambda p: fg.optim.SGD(p, lr=0.1, momentum=0.9))


@case
def mlp_adam():
    return _mlp_world(lambda p: fg.optim.Adam(p, lr=0.01))


@case
def mlp_sgd_big_batch():
    # 150 rows: bias gradients cannot sit in one matmul tile, so the bias updates become
    # a multi-tensor kernel
    return _mlp_world(lambda p: fg.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.1),
                      dims=(6, 7, 3), batch=150, calls=2, set_to_none=False)


@case
def cross_entropy_fwd_bwd():
    fg.manual_seed(2)
    logits = fg.randn(7, 13, requires_grad=True)
    y = fg.randint(0, 13, (7,))

    def step(t):
        logits.grad = None
        loss = F.cross_entropy(logits * t, y)
        loss.backward()
        return loss

    return World(step, [(fg.tensor(1.5),), (fg.tensor(0.5),)], lambda: {"grad": logits.grad})


@case
def softmax_rows_and_cols():
    fg.manual_seed(3)

    def step(x):
        return fg.softmax(x, dim=-1), fg.softmax(x, dim=0), fg.log_softmax(x * 2, dim=0)

    return World(step, [(fg.randn(7, 37),)])


@case
def broadcasting_chain():
    fg.manual_seed(4)

    def step(a, b, c):
        h = (a * b + c).relu() - (c * 0.5).exp()
        h = fg.where(h > 0.1, h.sigmoid(), (b * 2 + 1).tanh())
        h = h.clamp(min=-0.5, max=0.7) + (a.abs() + 1).sqrt() * a.sign()
        return h, (a - 3) ** 2, 2.0 ** b

    args = (fg.randn(5, 1, 7), fg.randn(1, 6, 1), fg.randn(6, 7))
    return World(step, [args])


@case
def reductions_each_axis():
    fg.manual_seed(5)

    def step(x):
        return (x.sum(0), x.sum(1), x.sum(2), x.sum(), x.amax(1), x.amin(2, keepdim=True),
                x.mean((0, 2)), x.argmax(2), (x > 0).sum(1), x.max())

    return World(step, [(fg.randn(5, 6, 7),)])


@case
def reductions_long_rows():
    fg.manual_seed(6)

    def step(x, v):
        # 4500 and 9000 elements: more than one block holds, so the kernels loop
        return (x * 2).sum(1), (x.exp() - 1).amax(1), (v * v).mean()

    return World(step, [(fg.randn(3, 4500), fg.randn(9000))])


@case
def views_slices_cat():
    fg.manual_seed(7)
    p = fg.randn(6, 9, requires_grad=True)

    def step(x):
        p.grad = None
        y = fg.cat([p[:, 2:7] * 2, x.t()], 1)
        loss = (y ** 2).sum() + p[3].sum()
        loss.backward()
        return loss, y, x.t()[1:4].reshape(-1)

    return World(step, [(fg.randn(4, 6),)], lambda: {"p.grad": p.grad})


@case
def batched_matmul():
    fg.manual_seed(8)

    def step(a, b, c):
        return (a @ b).relu(), a @ c, (a @ b).sum(-1)

    return World(step, [(fg.randn(3, 5, 6), fg.randn(6, 7), fg.randn(3, 6, 4))])


@case
def regression_two_params():
    # parameters outside any matmul: their updates make one multi-tensor kernel
    fg.manual_seed(9)
    w = fg.randn(40, requires_grad=True)
    s = fg.randn(1, requires_grad=True)
    opt = fg.optim.SGD([w, s], lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.mse_loss((x * w).sum(1) * s, y)
        loss.backward()
        opt.step()
        return loss

    args = [(fg.randn(300, 40), fg.randn(300)) for _ in range(3)]

    def state():
        out = {"w": w, "s": s, "w.grad": w.grad, "s.grad": s.grad}
        for i, p in enumerate((w, s)):
            out.update({f"{i}.{k}": v for k, v in opt.state.get(p, {}).items()})
        return out

    return World(step, args, state)


@case
def optimizer_step_only():
    # only the optimizer step compiled: each parameter's update is its own pointwise group,
    # and all of them run as one multi-tensor kernel
    fg.manual_seed(11)
    params = [fg.randn(33, requires_grad=True), fg.randn(5, 7, requires_grad=True),
              fg.randn(1029, requires_grad=True)]
    opt = fg.optim.Adam(params, lr=0.01, weight_decay=0.1)

    def step(*grads):
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    calls = [tuple(fg.randn(*p.shape) for p in params) for _ in range(3)]

    def state():
        out = {}
        for i, p in enumerate(params):
            out[f"{i}"] = p
            out.update({f"{i}.{k}": v for k, v in opt.state.get(p, {}).items()})
        return out

    return World(step, calls, state)


@case
def grads_scaled_in_place():
    # .grad tensors written in place through their owners (WriteGradInPlace sinks)
    fg.manual_seed(12)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    model(fg.randn(5, 4)).sum().backward()

    def step(scale):
        for p in model.parameters():
            p.grad.mul_(scale)
        model[0].bias.grad.zero_()

    def state():
        return {n + ".grad": p.grad for n, p in model.named_parameters()}

    return World(step, [(fg.tensor(0.5),), (fg.tensor(3.0),)], state)


@case
def linear_log_softmax_wide():
    # the row reduction over 200 output features rides in the matmul's epilogue
    fg.manual_seed(13)
    layer = nn.Linear(20, 200)

    def step(x):
        with fg.no_grad():
            return fg.log_softmax(layer(x), 1)

    return World(step, [(fg.randn(37, 20),)])


@case
def float64_and_ints():
    fg.manual_seed(10)

    def step(x, n):
        return (x * 3).sum(0), n * 2 + 1, (x > 0).float() * x

    return World(step, [(fg.randn(4, 5, dtype=fg.float64), fg.randint(0, 9, (4, 5)))])


# --------------------------------------------------------------------------- the runner


def _as_torch(v):
    if isinstance(v, fg.Tensor):
        return v._data
    return v


def _compare(a, b, what, errors, rtol=2e-4, atol=2e-5):
    import torch

    a, b = _as_torch(a), _as_torch(b)
    if a is None or b is None:
        if a is not b:
            errors.append(f"{what}: eager {a!r} vs compiled {b!r}")
        return
    if not isinstance(a, torch.Tensor):
        if a != b:
            errors.append(f"{what}: eager {a!r} vs compiled {b!r}")
        return
    if a.shape != b.shape or a.dtype != b.dtype:
        errors.append(f"{what}: eager {a.dtype}{list(a.shape)} vs compiled {b.dtype}"
                      f"{list(b.shape)}")
        return
    if a.dtype.is_floating_point:
        if not torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
            d = (a - b).abs().max().item()
            errors.append(f"{what}: max abs difference {d:.3g}")
    elif not torch.equal(a, b):
        errors.append(f"{what}: integer values differ")


def _flat(out):
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def run_case(name) -> dict:
    eager, comp = CASES[name](), CASES[name]()
    step = fg.compile(comp.step, backend="triton")
    errors = []
    for i, (ea, ca) in enumerate(zip(eager.calls, comp.calls)):
        if i in eager.before:
            eager.before[i]()
            comp.before[i]()
        oe, oc = _flat(eager.step(*ea)), _flat(step(*ca))
        if len(oe) != len(oc):
            errors.append(f"call {i}: {len(oe)} outputs vs {len(oc)}")
        for j, (a, b) in enumerate(zip(oe, oc)):
            _compare(a, b, f"call {i} output {j}", errors)
        se, sc = eager.state(), comp.state()
        for k in se:
            _compare(se[k], sc.get(k), f"call {i} {k}", errors)
    kernels = []
    for prog in step.programs:
        for k in prog.kernels:
            kernels.append({"name": k.name, "source": k.source, "signature": k.signature,
                            "constexprs": k.constexprs})
    if len(step.programs) > 2:
        errors.append(f"{len(step.programs)} traces: {step.reasons}")
    return {"case": name, "errors": errors, "kernels": kernels,
            "n_kernels": [len(p.kernels) for p in step.programs]}


CHUNKS = [
    ["mlp_sgd_momentum", "softmax_rows_and_cols", "float64_and_ints", "grads_scaled_in_place"],
    ["mlp_adam", "cross_entropy_fwd_bwd", "batched_matmul", "linear_log_softmax_wide"],
    ["mlp_sgd_big_batch", "reductions_each_axis", "broadcasting_chain"],
    ["regression_two_params", "reductions_long_rows", "views_slices_cat",
     "optimizer_step_only"],
]


def _run_chunk(names, cache):
    env = dict(os.environ, TRITON_INTERPRET="1", FUSEGRAD_CACHE_DIR=str(cache))
    env.pop("FUSEGRAD_DEBUG", None)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *names], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_chunks_cover_every_case():
    assert sorted(n for c in CHUNKS for n in c) == sorted(CASES)


@pytest.mark.parametrize("chunk", range(len(CHUNKS)), ids=lambda i: "+".join(CHUNKS[i]))
def test_interpreter_equals_eager_and_kernels_build(chunk, tmp_path, monkeypatch):
    from fusegrad.compiler.backends.triton.aot import aot_compile
    from fusegrad.runtime.kernels import Kernel

    results = _run_chunk(CHUNKS[chunk], tmp_path / "interp")
    for r in results:
        assert not r["errors"], f"{r['case']}: " + "; ".join(r["errors"])
        assert r["kernels"], f"{r['case']}: no kernels"
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path / "aot"))
    seen = set()
    for r in results:
        for k in r["kernels"]:
            if k["source"] in seen:
                continue
            seen.add(k["source"])
            kern = Kernel(k["name"], k["source"], signature=k["signature"],
                          constexprs=k["constexprs"])
            for arch in (80, 90):
                res = aot_compile(kern, arch)
                assert res["n_regs"] > 0, (r["case"], k["name"], arch)
                assert res["n_spills"] == 0, (r["case"], k["name"], arch, res["ptxas_log"])


if __name__ == "__main__":
    print(json.dumps([run_case(n) for n in (sys.argv[1:] or list(CASES))]))
