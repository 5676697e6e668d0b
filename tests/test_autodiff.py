"""compiler.autodiff: the Graph -> Graph vjp, split into a forward that hands out residuals
and a backward that reads only them.

Every op-case sample is traced, differentiated by ``vjp`` and run as two programs; the
gradients equal eager autograd's on the first call and on a replay with new values, and the
backward never recomputes a forward equation.
"""

import functools
import warnings

import pytest
import torch

import fusegrad
import fusegrad as fg
from fusegrad.compiler import autodiff as AD
from fusegrad.compiler import passes
from fusegrad.compiler.api import _flatten
from fusegrad.compiler.ir import Var, verify
from fusegrad.compiler.program import Program
from fusegrad.compiler.schedule import VIEW_PRIMS
from fusegrad.compiler.tracer import Arg, Residual, Returned, trace
from opcases import ALL_CASES
from test_ops import build, flat

# --------------------------------------------------------------------------- helpers


def _traced(fn, args, kwargs=None):
    """The optimized graph of ``fn(*args, **kwargs)``, its flat tensor inputs and results."""
    kwargs = kwargs or {}
    leaves = []
    _flatten((args, kwargs), leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracer, result = trace(fn, args, kwargs, leaves)
    res = []
    _flatten(result, res)
    graph = tracer.finish(res)
    return passes.optimize(graph, verify_each=True), leaves


def _run(res, leaves, cts):
    """One forward and one backward run of a vjp's two graphs on the cpu backend."""
    fwd = Program(res.forward, res.forward, "cpu", ("T",), [])
    bwd = Program(res.backward, res.backward, "cpu", ("T",), [])
    results = fwd.run(leaves)
    return results, bwd.run(AD.residual_values(res.residuals, leaves, results) + cts)


def _assert_close(got, want, what):
    g, w = got._data, want._data
    assert g.dtype == w.dtype and g.shape == w.shape, \
        f"{what}: {g.dtype}{list(g.shape)} vs {w.dtype}{list(w.shape)}"
    tol = dict(rtol=1e-6, atol=1e-9) if g.dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, w, **tol, equal_nan=True,
                               msg=lambda m: f"{what}: vjp differs from eager\n{m}")


def _forward_keys(graph):
    return {passes._key(e.out): (e.prim.name, tuple(passes._key(x) for x in e.inputs),
                                 passes._freeze(e.params)) for e in graph.eqns}


def _recomputed(res, fwd_graph):
    """Backward equations that repeat a forward equation on the same saved values (views of
    the inputs excepted: recomputing those is the point)."""
    fwd = res.forward
    by_source = {id(s): v for v, s in zip(fwd.inputs, fwd.sources)}
    returned = [o for o, s in zip(fwd.outputs, fwd.sinks) if isinstance(s, Returned)]
    as_fwd = {}
    for j, saved in enumerate(res.residuals.saved):
        v = by_source.get(id(saved.where)) if saved.kind == "input" else returned[saved.where]
        if v is not None:
            as_fwd[_bwd_input(res, j)] = v
    keys = set(_forward_keys(fwd).values())
    bad = []
    for e in res.backward.eqns:
        if e.prim.name in VIEW_PRIMS or not all(isinstance(x, Var) and x in as_fwd
                                                for x in e.vars()):
            continue
        ins = tuple(passes._key(as_fwd.get(x, x)) for x in e.inputs)
        if (e.prim.name, ins, passes._freeze(e.params)) in keys:
            bad.append(e)
    return bad


def _bwd_input(res, j):
    return next(v for v, s in zip(res.backward.inputs, res.backward.sources)
                if isinstance(s, Arg) and s.index == j)


# --------------------------------------------------------------------------- every op case


@functools.lru_cache(maxsize=None)
def _samples(name):
    return next(c for c in ALL_CASES if c.name == name).make_samples()


def _params():
    return [pytest.param(c.name, i, id=f"{c.name}-{i}") for c in ALL_CASES if c.differentiable
            for i in range(len(_samples(c.name)))]


def _scaled(sample, factor):
    """The sample with every float tensor scaled: new values, same domain and same ties."""
    def conv(a):
        if isinstance(a, (list, tuple)):
            return type(a)(conv(b) for b in a)
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return a * factor
        return a

    return type(sample)(conv(sample.args), {k: conv(v) for k, v in sample.kwargs.items()},
                        sample.note, sample.grad_args)


def _eager_grads(case, sample, cts_seed):
    args, kwargs, _ = build(sample, fusegrad)
    leaves = []
    _flatten((args, kwargs), leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = [o for o in flat(case.op(fusegrad, *args, **kwargs))
                if isinstance(o, fusegrad.Tensor)]
    diff_out = [k for k, o in enumerate(outs) if o.dtype.is_floating_point and o.requires_grad]
    diff_in = [i for i, t in enumerate(leaves) if t.requires_grad]
    gen = torch.Generator().manual_seed(cts_seed)
    cts = [fusegrad.from_torch(torch.rand(outs[k].shape, generator=gen, dtype=outs[k].dtype))
           for k in diff_out]
    grads = []
    if diff_out and diff_in:
        grads = fusegrad.autograd.grad([outs[k] for k in diff_out], [leaves[i] for i in diff_in],
                                       grad_outputs=cts, allow_unused=True)
    return args, kwargs, leaves, diff_in, diff_out, cts, grads


@pytest.mark.parametrize("name,idx", _params())
def test_vjp_of_every_op_case_equals_eager(name, idx):
    case = next(c for c in ALL_CASES if c.name == name)
    sample = _samples(name)[idx]
    repro = f"op {name!r} sample {idx}: {sample.describe()}"
    args, kwargs, leaves, diff_in, diff_out, cts, want = _eager_grads(case, sample, idx)
    if not diff_out or not diff_in:
        pytest.skip("nothing to differentiate")
    graph, _ = _traced(lambda *a, **k: case.op(fusegrad, *a, **k), args, kwargs)
    pos = {s.index: i for i, s in enumerate(graph.sources) if isinstance(s, Arg)}
    res = AD.vjp(graph, [pos[i] for i in diff_in if i in pos], diff_out, verify=True)
    verify(res.forward, "vjp")
    verify(res.backward, "vjp")
    assert not _recomputed(res, graph), f"{repro}: backward recomputes {_recomputed(res, graph)}"
    in_graph = [i for i in diff_in if i in pos]
    for call, factor in enumerate((1.0, 0.75)):  # the first call, then new values
        if call:
            args, kwargs, leaves, _, _, cts, want = _eager_grads(case, _scaled(sample, factor),
                                                                 idx)
        results, got = _run(res, leaves, cts)
        got_by_input = dict.fromkeys(diff_in)
        for k, g in zip(res.residuals.grads_of, got):
            got_by_input[in_graph[k]] = g
        for i, w in zip(diff_in, want):
            g = got_by_input[i]
            what = f"{repro}: gradient of input {i}" + (" on replay" if call else "")
            if w is None:
                assert g is None or not g._data.any(), f"{what}: eager gives none"
            else:
                assert g is not None, f"{what}: vjp gives none"
                _assert_close(g, w, what)


# --------------------------------------------------------------------------- structure


def test_backward_of_exp_reads_the_residual_and_recomputes_nothing():
    x = fg.randn(6, requires_grad=True)
    graph, leaves = _traced(lambda x: x.exp().sum(), (x,))
    res = AD.vjp(graph, [0], [0])
    names = [e.prim.name for e in res.backward.eqns]
    assert "exp" not in names, res.backward
    (exp_out,) = [e.out for e in res.forward.eqns if e.prim.name == "exp"]
    sinks = dict(zip(res.forward.outputs, res.forward.sinks))
    assert isinstance(sinks[exp_out], Residual), res.forward
    assert res.residuals.saved == [AD.Saved("result", 1)]  # after the returned sum
    mul = next(e for e in res.backward.eqns if e.prim.name == "mul")
    assert _bwd_input(res, 0) in mul.inputs  # the gradient is g * exp(x), read back
    (ct,) = [fg.ones(())]
    _, (g,) = _run(res, leaves, [ct])
    _assert_close(g, x.exp().detach(), "d exp(x).sum() / dx")


def _mlp(seed=0):
    fg.manual_seed(seed)
    return fg.nn.Sequential(fg.nn.Linear(5, 7), fg.nn.Tanh(), fg.nn.Linear(7, 3))


def test_backward_of_mlp_has_no_forward_matmul_and_saves_only_activations():
    m = _mlp()
    x = fg.randn(4, 5, requires_grad=True)
    graph, leaves = _traced(lambda x: m(x), (x,))
    diff_in = [i for i, s in enumerate(graph.sources)
               if isinstance(s, Arg) or getattr(s, "tensor", None) is not None]
    res = AD.vjp(graph, diff_in, [0])
    bwd = res.backward
    x_in = next(v for v, s in zip(bwd.inputs, bwd.sources)
                if isinstance(s, Arg) and res.residuals.saved[s.index] == AD.Saved("input",
                                                                                 graph.sources[0]))
    matmuls = [e for e in bwd.eqns if e.prim.name == "matmul"]
    assert matmuls and all(e.inputs[0] is not x_in for e in matmuls), bwd  # no x @ W.t()
    assert not any(e.prim.name == "tanh" for e in bwd.eqns), bwd
    # saved: the input batch and the weights (from the call), and the tanh output only
    results = [s for s in res.residuals.saved if s.kind == "result"]
    assert len(results) == 1, res.forward
    residual_eqn = res.forward.producers()[res.forward.outputs[results[0].where]]
    assert residual_eqn.prim.name == "tanh"
    assert not _recomputed(res, graph), bwd
