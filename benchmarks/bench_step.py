"""Benchmark one MLP training step (SGD with momentum): fusegrad compiled and eager,
torch eager, torch.compile, the same step written by hand in ATen calls, and a jax.jit step
(when jax is importable), interleaved in one process.

    python benchmarks/bench_step.py [--shapes tiny,small,medium] [--no-torch-compile]

Every runner starts from the same weights and batch; after the first steps each one's
parameters are compared with torch eager's (the ``matches`` column). Prints a markdown table
and writes JSON to benchmarks/results/bench_step.json. Ratios are speedups over torch eager
(higher is better), from medians of many iterations.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fusegrad  # noqa: E402

SHAPES = {
    "tiny": (64, [64, 128, 10]),
    "small": (64, [784, 256, 10]),
    "medium": (256, [1024, 1024, 1024, 10]),
}
LR, MOMENTUM = 0.01, 0.9
CHECK_STEPS = 10  # steps every runner takes before its parameters are compared


def _mlp(lib, dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(lib.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(lib.nn.ReLU())
    return lib.nn.Sequential(*layers)


def make_training(lib, dims, batch, seed=0):
    """Model, optimizer and batch; the same values for fusegrad and torch (same seeding)."""
    lib.manual_seed(seed)
    model = _mlp(lib, dims)
    opt = lib.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x = lib.randn(batch, dims[0])
    y = lib.randint(0, dims[-1], (batch,))
    return model, opt, x, y


def training_step(lib, model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def make_step(lib, dims, batch, seed=0):
    model, opt, x, y = make_training(lib, dims, batch, seed)
    return training_step(lib, model, opt), x, y


class AtenStep:
    """The torch step written by hand as straight-line ATen calls on torch.Tensor storage:
    buffers preallocated, no autograd, ReLU applied in place, the softmax-minus-one-hot
    gradient of cross-entropy formed directly, and each momentum update folded into the
    matmul that computes the gradient (``buf = momentum * buf + g.T @ h`` is one addmm)."""

    def __init__(self, model, x):
        params = [p.detach().clone() for p in model.parameters()]
        self.layers = list(zip(params[::2], params[1::2]))  # (weight, bias) per Linear
        n = x.shape[0]
        self.z = [torch.empty(n, w.shape[0]) for w, _ in self.layers]  # activations
        self.dz = [torch.empty_like(z) for z in self.z]  # loss gradient at each layer output
        self.logp = torch.empty_like(self.z[-1])
        self.bufs = [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in self.layers]
        self.ones = torch.ones(n)
        self.minus_one = torch.full((n, 1), -1.0)
        self.scale = 1.0 / n

    def __call__(self, x, y):
        last = len(self.layers) - 1
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = torch.addmm(b, h, w.t(), out=self.z[i])
            if i < last:
                h.relu_()
        logp = torch._log_softmax(h, 1, False, out=self.logp)
        loss = torch.ops.aten.nll_loss_forward(logp, y, None, 1, -100)[0]
        g = torch.exp(logp, out=self.dz[last])  # (softmax - onehot(y)) / n
        g.scatter_add_(1, y[:, None], self.minus_one).mul_(self.scale)
        for i in range(last, -1, -1):
            (w, b), (bw, bb) = self.layers[i], self.bufs[i]
            h = self.z[i - 1] if i else x
            if i:  # the gradient for the layer below, before w changes
                dh = torch.mm(g, w, out=self.dz[i - 1])
                torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
            bw.addmm_(g.t(), h, beta=MOMENTUM)
            bb.addmv_(g.t(), self.ones, beta=MOMENTUM)
            w.sub_(bw, alpha=LR)
            b.sub_(bb, alpha=LR)
            if i:
                g = dh
        return loss

    def parameters(self):
        return [t for layer in self.layers for t in layer]


def make_jax_step(model, x, y):
    """The same step as a jax.jit function of (params, momentum buffers, batch), with the
    state donated back to it; None when jax is not importable."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    ws = [jnp.asarray(p.detach().numpy()) for p in model.parameters()]
    params = list(zip(ws[::2], ws[1::2]))
    bufs = jax.tree.map(jnp.zeros_like, params)

    def loss_fn(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, bufs, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        bufs = jax.tree.map(lambda v, g: MOMENTUM * v + g, bufs, grads)
        params = jax.tree.map(lambda p, v: p - LR * v, params, bufs)
        return params, bufs, loss

    state = [params, bufs]

    def run(x, y):
        state[0], state[1], loss = step(state[0], state[1], x, y)
        return loss.block_until_ready()  # jax dispatches asynchronously: time the work

    run.parameters = lambda: [torch.from_numpy(jax.device_get(t).copy())
                              for layer in state[0] for t in layer]
    return run, jnp.asarray(x.numpy()), jnp.asarray(y.numpy().astype("int32"))


def timed_first(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


@dataclasses.dataclass
class Runner:
    step: Callable
    x: object
    y: object
    parameters: Callable  # () -> the parameters as torch.Tensors, in model order
    first_call_s: float = 0.0
    steps: int = 0  # steps already taken (while compiling)


def compiled_runner(step, x, y, parameters, first_calls):
    """A runner whose first ``first_calls`` steps (tracing, compiling) are timed together."""
    first = sum(timed_first(step, x, y) for _ in range(first_calls))
    return Runner(step, x, y, parameters, first, first_calls)


def _parameters(model):
    return lambda: [torch.as_tensor(p.detach().numpy()) for p in model.parameters()]


def make_runners(batch, dims, use_torch_compile):
    runners = {}
    model, opt, x, y = make_training(fusegrad, dims, batch)
    runners["fusegrad eager"] = Runner(training_step(fusegrad, model, opt), x, y,
                                       _parameters(model))
    model, opt, x, y = make_training(fusegrad, dims, batch)
    # the second call traces again, for the momentum buffers the first one created
    runners["fusegrad compiled"] = compiled_runner(
        fusegrad.compile(training_step(fusegrad, model, opt)), x, y, _parameters(model), 2)
    model, opt, x, y = make_training(torch, dims, batch)
    runners["torch eager"] = Runner(training_step(torch, model, opt), x, y, _parameters(model))
    if use_torch_compile:
        model, opt, x, y = make_training(torch, dims, batch)
        runners["torch.compile"] = compiled_runner(
            torch.compile(training_step(torch, model, opt)), x, y, _parameters(model), 2)
    model, _, x, y = make_training(torch, dims, batch)
    aten = AtenStep(model, x)
    runners["hand-written ATen"] = Runner(aten, x, y, aten.parameters)
    jax_step = make_jax_step(model, x, y)
    if jax_step is not None:
        runners["jax.jit"] = compiled_runner(*jax_step, jax_step[0].parameters, 1)
    return runners


def check_against_torch(runners):
    """Bring every runner to CHECK_STEPS steps; its largest parameter difference from torch
    eager's, and whether all parameters are close."""
    for r in runners.values():
        for _ in range(CHECK_STEPS - r.steps):
            r.step(r.x, r.y)
    want = runners["torch eager"].parameters()
    out = {}
    for k, r in runners.items():
        got = r.parameters()
        diff = max((a - b).abs().max().item() for a, b in zip(got, want))
        out[k] = (diff, all(torch.allclose(a, b, rtol=1e-4, atol=1e-5)
                            for a, b in zip(got, want)))
    return out


def bench_shape(name, batch, dims, iters, warmup, use_torch_compile):
    runners = make_runners(batch, dims, use_torch_compile)
    checked = check_against_torch(runners)
    for r in runners.values():
        for _ in range(warmup):
            r.step(r.x, r.y)
    times = {k: [] for k in runners}
    for _ in range(iters):  # interleaved: machine noise hits every runner alike
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.step(r.x, r.y)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["torch eager"]
    rows = []
    for k, r in runners.items():
        rows.append({"shape": name, "runner": k, "median_us": med[k] * 1e6,
                     "speedup_vs_torch_eager": base / med[k],
                     "first_call_s": r.first_call_s, "iters": iters,
                     "max_param_diff_vs_torch_eager": checked[k][0],
                     "matches_torch_eager": checked[k][1]})
    prog = runners["fusegrad compiled"].step.program
    stats = prog.stats() if prog is not None else {}
    return rows, stats


def add_threads_option(ap):
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default); 1 steadies the figures "
                         "on a machine shared with other work")


def set_threads(n):
    if n:
        torch.set_num_threads(n)


def write_results(path, **payload):
    """The benchmark's JSON, with the machine it ran on."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": {"python": platform.python_version(), "torch": torch.__version__,
                               "cpus": os.cpu_count(), "threads": torch.get_num_threads()},
                   **payload}, f, indent=2)
    print(f"\nwrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="tiny,small,medium")
    ap.add_argument("--iters", type=int, default=0, help="0: chosen per shape")
    ap.add_argument("--no-torch-compile", action="store_true")
    add_threads_option(ap)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "bench_step.json"))
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if importlib.util.find_spec("jax") is None:
        print("jax is not importable: no jax.jit runner")
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
                  f"x{r['speedup_vs_torch_eager']:.2f}  first call {r['first_call_s']:.2f} s  "
                  f"max param diff {r['max_param_diff_vs_torch_eager']:.1e}", flush=True)
    print("\n| shape | runner | median step (us) | speedup vs torch eager | first call (s) "
          "| matches torch eager (max param diff) |")
    print("|---|---|---:|---:|---:|---|")
    for r in all_rows:
        print(f"| {r['shape']} | {r['runner']} | {r['median_us']:.1f} | "
              f"{r['speedup_vs_torch_eager']:.2f} | {r['first_call_s']:.2f} | "
              f"{'yes' if r['matches_torch_eager'] else 'NO'} "
              f"({r['max_param_diff_vs_torch_eager']:.1e}) |")
    write_results(args.out, rows=all_rows, program_stats=all_stats)


if __name__ == "__main__":
    main()
