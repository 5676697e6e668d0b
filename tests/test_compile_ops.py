"""Every op of the op-case table, compiled: forward values and gradients (taken inside the
compiled function with autograd.grad) equal the same function run eagerly."""

import functools
import warnings

import pytest
import torch

import fusegrad
from fusegrad._util import pytree
from fusegrad.compiler.ir.interpret import eval_graph
from fusegrad.compiler.ir.io import Arg, Const, Returned
from opcases import ALL_CASES
from test_ops import build, flat

# every sample of every op (cap kept so a huge table cannot slow the suite down)
SAMPLES_PER_OP = 1000


def _params():
    out = []
    for case in ALL_CASES:
        for i in range(min(SAMPLES_PER_OP, len(_samples(case.name)))):
            out.append(pytest.param(case.name, i, id=f"{case.name}-{i}"))
    return out


@functools.lru_cache(maxsize=None)
def _samples(name):
    return next(c for c in ALL_CASES if c.name == name).make_samples()


def _step(case, kwargs, leaves_at):
    """forward, then gradients of a nonlinear scalar of every float output."""

    def fn(*args):
        out = case.op(fusegrad, *args, **kwargs)
        outs = [o for o in flat(out) if isinstance(o, fusegrad.Tensor)]
        leaves = [args[i] for i in leaves_at]
        grads = []
        floats = [o for o in outs if o.dtype.is_floating_point and o.requires_grad]
        if case.differentiable and leaves and floats:
            loss = sum((o.sin() * (k + 1)).sum() for k, o in enumerate(floats))
            grads = fusegrad.autograd.grad(loss, leaves, allow_unused=True)
        return outs, [g for g in grads if g is not None]

    return fn


def _assert_close(a, b, what):
    a, b = a._data, b._data
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{list(a.shape)} vs " \
        f"{b.dtype}{list(b.shape)}"
    if a.dtype.is_floating_point:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, equal_nan=True,
                                   msg=lambda m: f"{what}: compiled differs from eager\n{m}")
    else:
        assert torch.equal(a, b), f"{what}: compiled differs from eager"


@pytest.mark.parametrize("name,idx", _params())
def test_compiled_op_equals_eager(name, idx):
    case = next(c for c in ALL_CASES if c.name == name)
    sample = _samples(name)[idx]
    repro = f"op {name!r} sample {idx}: {sample.describe()}"
    args, kwargs, leaves = build(sample, fusegrad)
    leaves_at = [i for i, a in enumerate(args) if any(a is x for x in leaves)]
    fn = _step(case, kwargs, leaves_at)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_outs, want_grads = fn(*args)
        compiled = fusegrad.compile(fn, verify=True)
        got_outs, got_grads = compiled(*args)
        again_outs, _ = compiled(*args)  # the replay path, not only the first call
    assert len(compiled.entries) == 1, repro
    assert len(got_outs) == len(want_outs), repro
    for k, (g, w, g2) in enumerate(zip(got_outs, want_outs, again_outs)):
        _assert_close(g, w, f"{repro}: output {k}")
        _assert_close(g2, w, f"{repro}: output {k} on replay")
    assert len(got_grads) == len(want_grads), repro
    for k, (g, w) in enumerate(zip(got_grads, want_grads)):
        _assert_close(g, w, f"{repro}: gradient {k}")
    # the reference interpreter runs the traced and the optimized graph to the same values
    tensors = [a for a in pytree.leaves_of(args, lambda x: isinstance(x, fusegrad.Tensor))]
    result = pytree.leaves_of((got_outs, got_grads), lambda x: isinstance(x, fusegrad.Tensor))
    prog = compiled.program
    for graph in (prog.raw_graph, prog.graph):
        got = _interpreted(graph, tensors)
        if got is None:
            continue
        for s, v in zip(graph.sinks, got):
            if type(s) is Returned:
                w = fusegrad.Tensor._make(v) if isinstance(v, torch.Tensor) else v
                _assert_close(w, result[s.index], f"{repro}: {graph.history[-1]} interpreted")


def _interpreted(graph, tensors):
    """The graph's outputs by the reference interpreter, or None when it reads a source a
    test cannot supply afresh (a random draw, a captured tensor, a number)."""
    inputs = []
    for s in graph.sources:
        if isinstance(s, Arg):
            inputs.append(tensors[s.index]._data)
        elif isinstance(s, Const):
            inputs.append(s.data)
        else:
            return None
    return eval_graph(graph, inputs)
