"""Training steps several test files compile: an MLP step and an optimizer-only step."""

from __future__ import annotations

import fusegrad as fg
import fusegrad.nn as nn
import fusegrad.nn.functional as F


def mlp_step(dims=(784, 256, 10), batch=64, opt="sgd_momentum", set_to_none=True, seed=0):
    """A compiled (cpu backend) MLP + cross-entropy + optimizer step and its arguments."""
    fg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], dims[2]))
    if opt == "sgd_momentum":
        optim = fg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optim = fg.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        optim.zero_grad(set_to_none=set_to_none)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optim.step()
        return loss

    x, y = fg.randn(batch, dims[0]), fg.randint(0, dims[-1], (batch,))
    return fg.compile(step, backend="cpu"), (x, y)


def mlp_graph(calls=2, **kw):
    """The optimized graph of :func:`mlp_step` after ``calls`` calls, and its arguments."""
    step, args = mlp_step(**kw)
    for _ in range(calls):
        step(*args)
    return step.program.graph, args


def sgd_update_step():
    """A compiled step that is only an SGD-momentum update of three parameters, after two
    calls (so the momentum buffers exist)."""
    params = [fg.randn(33, requires_grad=True), fg.randn(5, 7, requires_grad=True),
              fg.randn(1029, requires_grad=True)]
    opt = fg.optim.SGD(params, lr=0.1, momentum=0.9)

    def step(*grads):
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    c = fg.compile(step, backend="cpu")
    for _ in range(2):
        c(*[fg.randn(*p.shape) for p in params])
    return c
