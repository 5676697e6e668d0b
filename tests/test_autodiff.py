"""compiler.autodiff: the Graph -> Graph vjp, split into a forward that hands out residuals
and a backward that reads only them, and the compiled-function path built on it.

Every op-case sample is traced, differentiated by ``vjp`` and run as two programs; the
gradients equal eager autograd's on the first call and on a replay with new values, and the
backward never recomputes a forward equation.
"""

import functools
import os
import subprocess
import sys
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
from fusegrad.compiler.ir.io import Arg, Residual, Returned
from fusegrad.compiler.tracer import trace
from opcases import ALL_CASES
from test_ops import build, flat

SECOND = "Trying to backward through the graph a second time"
INPLACE = "modified by an inplace operation"


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
    fwd = Program(res.forward, res.forward, "cpu", ("T",))
    bwd = Program(res.backward, res.backward, "cpu", ("T",))
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


def _recomputed(res):
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
        if e.prim.is_view or not all(isinstance(x, Var) and x in as_fwd
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
    assert not _recomputed(res), f"{repro}: backward recomputes {_recomputed(res)}"
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
    assert not _recomputed(res), bwd


def test_forward_program_runs_once_per_call_and_backward_runs_no_forward_equation():
    m = _mlp()
    f = fg.compile(lambda x: m(x).tanh())
    x = fg.randn(4, 5, requires_grad=True)
    f(x)
    prog = f.program
    plan = prog.backward
    assert "vjp" in prog.graph.history and plan is not None
    split = AD.VJP(prog.graph, plan.program.graph, plan.residuals)
    assert not _recomputed(split), plan.program.graph
    assert "tanh" not in {e.prim.name for e in plan.program.graph.eqns}
    counts = {"fwd": 0, "bwd": 0}

    def counting(run, key):
        def wrapped(args):
            counts[key] += 1
            return run(args)
        return wrapped

    prog.run = counting(prog.run, "fwd")
    plan.program.run = counting(plan.program.run, "bwd")
    for k in range(3):
        y = f(fg.randn(4, 5, requires_grad=True))
        assert counts == {"fwd": k + 1, "bwd": k}
        (y * y).sum().backward()
        assert counts == {"fwd": k + 1, "bwd": k + 1}
    assert len(f.entries) == 1


# --------------------------------------------------------------------------- compiled path


def test_compiled_mlp_forward_with_eager_backward_equals_eager():
    m_c, m_e = _mlp(), _mlp()
    f = fg.compile(lambda x: m_c(x))
    for k in range(4):
        fg.manual_seed(10 + k)
        xc = fg.randn(6, 5, requires_grad=True)
        xe = xc.detach().clone().requires_grad_(True)
        yc, ye = f(xc), m_e(xe)
        _assert_close(yc.detach(), ye.detach(), f"call {k}: output")
        assert type(yc.grad_fn).__name__ == "CompiledFunctionBackward"
        ((yc.sin() * 2).sum() + yc.sum()).backward()
        ((ye.sin() * 2).sum() + ye.sum()).backward()
        _assert_close(xc.grad, xe.grad, f"call {k}: x.grad")
        for (n, pc), pe in zip(m_c.named_parameters(), m_e.parameters()):
            _assert_close(pc.grad, pe.grad, f"call {k}: {n}.grad (accumulated)")
    assert len(f.entries) == 1 and "vjp" in f.program.graph.history


def test_gradients_go_to_each_calls_own_inputs():
    cg = fg.compile(lambda a, b: a * b)
    a = fg.randn(3, requires_grad=True)
    bs = [fg.randn(3, requires_grad=True) for _ in range(3)]
    for b in bs:
        cg(a, b).sum().backward()
    for b in bs:
        assert b.grad is not None
        _assert_close(b.grad, a.detach(), "b.grad")
    _assert_close(a.grad, (bs[0] + bs[1] + bs[2]).detach(), "a.grad summed over calls")


def test_second_backward_raises_unless_retained():
    f = fg.compile(lambda x: (x.exp() * x).sum())
    x = fg.randn(4, requires_grad=True)
    y = f(x)
    y.backward(retain_graph=True)
    y.backward()
    _assert_close(x.grad, (2 * (x.exp() * (x + 1))).detach(), "twice the gradient")
    with pytest.raises(RuntimeError, match=SECOND):
        y.backward()
    with pytest.raises(RuntimeError, match=SECOND):
        x2 = fg.randn(4, requires_grad=True)
        y2 = f(x2)
        fg.autograd.grad(y2, x2)
        fg.autograd.grad(y2, x2)


def test_inplace_change_of_a_saved_value_raises_like_eager():
    def fn(x, w):
        return (x * w).sum()

    for run in (fn, fg.compile(fn)):
        x, w = fg.randn(3, requires_grad=True), fg.randn(3, requires_grad=True)
        y = run(x, w)
        with fg.no_grad():
            w.mul_(2)
        with pytest.raises(RuntimeError, match=INPLACE):
            y.backward()
    # exp saves its result: changing the returned value breaks backward in both modes
    for run in (lambda x: x.exp(), fg.compile(lambda x: x.exp())):
        x = fg.randn(3, requires_grad=True)
        y = run(x)
        y.add_(1)
        with pytest.raises(RuntimeError, match=INPLACE):
            y.sum().backward()
    # ... while changing its input is fine: exp's gradient does not read it
    for run in (lambda x: x.exp(), fg.compile(lambda x: x.exp())):
        x = fg.randn(3, requires_grad=True)
        y = run(x)
        with fg.no_grad():
            x.add_(1)
        y.sum().backward()


def test_inplace_change_of_a_captured_weight_raises_like_eager():
    m = _mlp()
    f = fg.compile(lambda x: m(x))
    for run in (lambda x: m(x), f):
        y = run(fg.randn(2, 5, requires_grad=True))
        with fg.no_grad():
            m[2].weight.add_(1)
        with pytest.raises(RuntimeError, match=INPLACE):
            y.sum().backward()


def test_create_graph_through_compiled_outputs_raises_clearly():
    f = fg.compile(lambda x: (x * x).sum())
    x = fg.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="create_graph=True through the outputs of a comp"):
        fg.autograd.grad(f(x), x, create_graph=True)


def test_several_outputs_unused_output_and_repeated_input():
    f = fg.compile(lambda x, y: (x.sin() * y, (x * y).exp(), x + 1))
    fe = f.fn
    for k in range(2):
        x, y = fg.randn(2, 3), fg.randn(3)
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        ys = [y.clone().requires_grad_(True) for _ in range(2)]
        (a, _, c), (ae, _, ce) = f(xs[0], ys[0]), fe(xs[1], ys[1])
        (a.sum() + (c * c).sum()).backward()  # the second output gets no gradient
        (ae.sum() + (ce * ce).sum()).backward()
        _assert_close(xs[0].grad, xs[1].grad, "x.grad")
        _assert_close(ys[0].grad, ys[1].grad, "y.grad")
    g = fg.compile(lambda a, b: a * b + a)
    x1 = fg.randn(4, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g(x1, x1).sum().backward()
    g.fn(x2, x2).sum().backward()
    _assert_close(x1.grad, x2.grad, "f(x, x): x.grad")


def test_dropout_mask_is_a_residual_of_the_same_call():
    f = fg.compile(lambda x: fg.nn.functional.dropout(x * 3, 0.5))
    x = fg.randn(64, requires_grad=True)
    fg.manual_seed(3)
    y = f(x)
    y.sum().backward()
    _assert_close(x.grad, (y.detach() != 0).to(x.dtype) * 6.0, "dropout gradient")
    assert any(isinstance(s, Residual) for s in f.program.graph.sinks)


@pytest.mark.parametrize("kind", ["detach", "no_grad", "function", "hook"])
def test_what_the_graph_does_not_show_falls_back_to_the_engine(kind):
    class Clip(fg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g.clamp(-0.1, 0.1)  # not the derivative of x * 2

    def fn(x, w):
        h = x * w
        if kind == "detach":
            h = h + (x * 3).detach() * w.exp()
        elif kind == "no_grad":
            with fg.no_grad():
                s = (x * w).sum()
            h = h * s
        elif kind == "function":
            h = Clip.apply(h)
        else:
            h = h * 1.5
            h.register_hook(lambda g: g * 10)
        return h.tanh()

    f = fg.compile(fn)
    for k in range(2):
        x1, w1 = fg.randn(3, requires_grad=True), fg.randn(3, requires_grad=True)
        x2, w2 = [t.detach().clone().requires_grad_(True) for t in (x1, w1)]
        f(x1, w1).sum().backward()
        fn(x2, w2).sum().backward()
        _assert_close(x1.grad, x2.grad, f"{kind}: x.grad")
        _assert_close(w1.grad, w2.grad, f"{kind}: w.grad")
    assert "replay_backward" in f.program.graph.history
    assert AD.Saved("input", f.program.graph.sources[0]) in f.program.backward.residuals.saved \
        or kind == "function"


@pytest.mark.parametrize("path", ["vjp", "replay_backward"])
def test_backward_through_compiled_loss_with_composites(path):
    m = _mlp()
    x = fg.randn(4, 5)
    y = fg.randint(0, 3, (4,))

    def loss_fn(x, y):
        loss = fg.nn.functional.cross_entropy(m(x), y) + m(x).amax(1).sum()
        if path == "replay_backward":  # softmax detaches its row max, which the graph hides
            loss = loss + m(x).softmax(1)[:, 0].sum() + m(x).logsumexp(1).mean()
        return loss

    f = fg.compile(loss_fn)
    for _ in range(2):
        m.zero_grad()
        f(x, y).backward()
        got = [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        loss_fn(x, y).backward()
        for g, p in zip(got, m.parameters()):
            _assert_close(g, p.grad, "parameter gradient")
    assert path in f.program.graph.history


_TRITON_SCRIPT = """
import fusegrad as fg
fg.manual_seed(0)
m = fg.nn.Sequential(fg.nn.Linear(5, 7), fg.nn.Tanh(), fg.nn.Linear(7, 3))
f = fg.compile(lambda x: fg.nn.functional.dropout(m(x), 0.3).sigmoid(), backend="triton")
worst = 0.0
for k in range(2):
    x = fg.randn(4, 5, requires_grad=True)
    fg.manual_seed(k)
    y = f(x)
    (y * y).sum().backward()
    got = [y.detach(), x.grad] + [p.grad for p in m.parameters()]
    x.grad = None
    m.zero_grad()
    fg.manual_seed(k)
    ye = f.fn(x)
    (ye * ye).sum().backward()
    want = [ye.detach(), x.grad] + [p.grad for p in m.parameters()]
    worst = max([worst] + [(a - b).abs().max().item() for a, b in zip(got, want)])
    x.grad = None
    m.zero_grad()
assert "vjp" in f.program.graph.history and f.program.backward.program.kernels
print(worst)
"""


def test_compiled_forward_and_backward_on_the_triton_backend(tmp_path):
    pytest.importorskip("triton")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fusegrad.__file__)))
    env = dict(os.environ, TRITON_INTERPRET="1", FUSEGRAD_CACHE_DIR=str(tmp_path),
               PYTHONPATH=root)
    env.pop("FUSEGRAD_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5
