"""Graph passes: each is pure, keeps the graph valid, and does what its name says."""

import torch as T

import fusegrad as fg
from fusegrad.compiler import passes
from fusegrad.compiler.ir import verify
from fusegrad.compiler.ir.interpret import as_function
from fusegrad.compiler.ir.io import Arg
from fusegrad.compiler.tracer import trace


def traced(fn, *args):
    tracer, result = trace(fn, args, {}, list(args))
    leaves = list(result) if isinstance(result, tuple) else [result]
    return tracer.finish(leaves)


def prim_names(graph):
    return [e.prim.name for e in graph.eqns]


def run_graph(graph, *args):
    return as_function(graph)(*[a._data for a in args])


def test_simplify_drops_identities_and_merges_chains():
    x = fg.randn(3, 4)
    g = traced(lambda x: ((x * 1 + 0) / 1).t().t().reshape(12).reshape(4, 3).exp(), x)
    out = passes.simplify(g)
    verify(out, "simplify")
    names = prim_names(passes.dce(out))
    assert names.count("permute") == 0  # t().t() is the identity
    assert names.count("reshape") == 1  # the chain is one reshape
    assert "mul" not in names and "add" not in names and "div" not in names
    assert out.history[-1] == "simplify" and g.history == ["trace"]  # g itself unchanged
    (want,) = run_graph(g, x)
    (got,) = run_graph(out, x)
    assert T.allclose(want, got)


def test_cse_merges_equal_ops():
    x = fg.randn(5)
    g = traced(lambda x: x.exp() + x.exp() * x.exp(), x)
    out = passes.dce(passes.cse(g))
    verify(out)
    assert prim_names(out).count("exp") == 1
    assert T.allclose(run_graph(g, x)[0], run_graph(out, x)[0])


def test_dce_removes_dead_ops_and_inputs():
    x, unused = fg.randn(4), fg.randn(4)

    def fn(x, unused):
        _ = unused.sin() * 3  # dead
        return x.cos()

    g = traced(fn, x, unused)
    out = passes.dce(g)
    verify(out)
    assert prim_names(out) == ["cos"]
    assert [s.index for s in out.sources if isinstance(s, Arg)] == [0]


def test_fold_constants_evaluates_constant_subgraphs():
    x = fg.randn(4)
    g = traced(lambda x: x * (fg.ones(4) * 2 + 1).exp(), x)
    out = passes.fold_constants(g)
    verify(out)
    assert prim_names(out) == ["mul"]
    assert T.allclose(run_graph(g, x)[0], run_graph(out, x)[0])


def test_pipeline_verifies_after_every_pass_and_counts_flops():
    m = fg.nn.Linear(6, 3)
    x = fg.randn(2, 6)
    g = traced(lambda x: m(x).relu().sum(), x)
    seen = []
    out = passes.optimize(g, verify_each=True, log=lambda name, gr, dt: seen.append(name))
    assert seen == [p.__name__ for p in passes.PIPELINE]
    assert passes.flops(out) >= 2 * 2 * 6 * 3


def test_printed_ir_runs_and_matches_eager():
    x = fg.randn(3, 5)
    fn = lambda x: (x.softmax(1) * x.sigmoid()).sum(0)  # noqa: E731
    g = passes.optimize(traced(fn, x))
    text = g.python()
    assert text.splitlines()[0].startswith("# constructed by trace")
    assert "# f32[5]" in text
    (got,) = run_graph(g, x)
    assert T.allclose(got, fn(x)._data, atol=1e-6)


def test_verifier_catches_a_broken_graph():
    import pytest

    from fusegrad.compiler.ir import VerifyError

    x = fg.randn(3)
    g = traced(lambda x: x.exp().sin(), x)
    broken = g.replace(eqns=list(reversed(g.eqns)))
    with pytest.raises(VerifyError, match="before it is defined"):
        verify(broken)
    e = g.eqns[0]
    e.out.shape = T.Size([7])
    with pytest.raises(VerifyError, match="meta says"):
        verify(g)
