"""Fusion and scheduling (compiler/schedule/ with the Triton tile model): kernel counts,
bytes moved against the fused lower bound, the invariants of a schedule, and the logged
reasons for not fusing. Graphs are traced on the cpu backend; their Triton programs are
built (not run: that needs Triton's interpreter or a GPU) from the same graphs. The cpu
backend's own report of what it runs is checked last."""

import re

import pytest
import torch

import fusegrad as fg
from fusegrad.compiler import schedule as S
from fusegrad.compiler.backends.triton import layout as TL
from fusegrad.compiler.backends.io_plan import count_calls
from fusegrad.compiler.backends.triton.program import TritonProgram
from fusegrad.compiler.ir.cost import nbytes
from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.ir.io import Arg, Returned, WriteInPlace
from fusegrad.compiler.backends.triton.codegen import generate
from fusegrad.primitives import PRIMS, Kind, Primitive
from steps import mlp_step, sgd_update_step

MB = 1e6


def programs(step, args, calls=2):
    out = []
    for _ in range(calls):
        step(*args)
        out.append(step.program)
    return out


def lower_bound(graph, h_bytes):
    """Every graph input read once, every output written once, the hidden activation
    written once and read back once: what a perfectly fused step moves."""
    total = sum(nbytes(v) for v in graph.inputs if not v.weak)
    total += sum(nbytes(o) for o in graph.outputs if isinstance(o, Var))
    return total + 2 * h_bytes


@pytest.fixture(scope="module")
def mlp_programs():
    step, args = mlp_step()
    return programs(step, args)


def test_mlp_step_kernel_count_and_bytes(mlp_programs):
    first, steady = mlp_programs
    h = 64 * 256 * 4
    # the first step (momentum buffers created): the 3.59 MB fused lower bound
    assert abs(lower_bound(first.graph, h) - 3.59 * MB) < 0.01 * MB
    for prog in (first, steady):
        tp = TritonProgram(prog.graph)
        st = tp.stats()
        assert st["n_kernels"] <= 10, [k.name for k in tp.kernels]
        assert st["n_kernels"] == len(tp.launches)  # one launch each
        assert st["n_calls"] == len(tp.launches) + st["n_copies"]
        assert st["bytes_moved"] <= 1.5 * lower_bound(prog.graph, h), st
    assert TritonProgram(first.graph).stats()["bytes_moved"] <= 1.5 * 3.59 * MB


def test_mlp_step_fusions(mlp_programs):
    for prog in mlp_programs:
        tp = TritonProgram(prog.graph)
        names = [k.name for k in tp.kernels]
        assert names[0].startswith("fused_addmm_relu"), names
        groups = tp.groups
        # the loss: log-softmax and NLL, forward and gradient, in one kernel
        ce = [g for g in groups if "log_softmax" in g.ops]
        assert len(ce) == 1 and "sum" in ce[0].ops and "exp" in ce[0].ops
        # each weight's optimizer update rides in its weight-gradient matmul
        for g in groups:
            if g.kind == "matmul" and g.update:
                assert {"sub", "mul"} <= set(g.ops)
        updated = sum(1 for g in groups if g.kind == "matmul" and g.update)
        assert updated >= 2, names


def test_adam_mlp_kernel_count():
    step, args = mlp_step(dims=(30, 20, 5), batch=8, opt="adam")
    for prog in programs(step, args):
        tp = TritonProgram(prog.graph)
        assert tp.stats()["n_kernels"] <= 10
        assert any(k.name.endswith(f"adam_{i}") for i, k in enumerate(tp.kernels))


def _check_schedule(graph, groups):
    an = S.Analysis(graph)
    owned = {}
    for g in groups:
        for seg in g.segments or [g]:
            for e in seg.eqns:
                assert e not in owned, f"{e!r} in two kernels"
                owned[e] = g.index
    assert set(owned) == set(an.members), "every non-view equation is in one kernel"
    produced = {v: g.index for g in groups for v in g.outputs}
    for g in groups:
        for v in g.inputs:
            assert v in an.inputs or produced.get(v, 10**9) < g.index, \
                f"{g.name} reads {v!r} before it is written"
    member_outs = {e.out for e in an.members}
    for o in graph.outputs:
        if isinstance(o, Var) and o in member_outs:
            assert o in produced, f"output {o!r} is never written"
    st = S.stats(groups)
    assert st["n_kernels"] == len(groups)
    assert all(g.bytes_moved > 0 and g.flops >= 0 for g in groups)


def test_schedule_invariants(mlp_programs):
    for prog in mlp_programs:
        _check_schedule(prog.graph, TL.schedule(prog.graph))


def test_schedule_is_a_pure_function_of_the_graph(mlp_programs):
    g = mlp_programs[1].graph
    a, b = TL.schedule(g), TL.schedule(g)
    assert [x.name for x in a] == [x.name for x in b]
    assert [[e.out for e in x.eqns] for x in a] == [[e.out for e in x.eqns] for x in b]
    assert [x.bytes_moved for x in a] == [x.bytes_moved for x in b]


def test_cpu_backend_reports_what_it_runs(mlp_programs):
    """The cpu program's groups are its ATen calls; n_calls is what its code calls."""
    for prog in mlp_programs:
        assert prog.backend == "cpu"
        st = prog.stats()
        assert st["n_kernels"] == len(prog.groups) == len(prog.kernels)
        assert st["n_calls"] == count_calls(prog.source)["n_calls"]
        # a kernel's call is in the program as written, or batched with the same call on
        # other tensors into one torch._foreach_* call
        for k in prog.kernels:
            assert k.source in prog.source or "_foreach_" in prog.source, k
        # every computing equation is in exactly one group (views a call absorbs, too)
        covered = [e for g in prog.groups for e in g.eqns]
        assert len(covered) == len(set(covered))
        assert {e for e in covered if not e.prim.is_view} == \
            {e for e in prog.graph.eqns if not e.prim.is_view and not e.out.weak}
        assert st["flops"] == sum(g.flops for g in prog.groups) > 2 * 64 * 784 * 256
        names = [k.name for k in prog.kernels]
        assert names[0] == "aten_linear_0" and any("threshold_backward" in n for n in names)


def test_call_counter_counts_aten_calls_views_and_copies():
    src = ("def run(args):\n    v1 = torch.mm(v0.t(), v0)\n    c0._data.copy_(v1)\n"
           "    v2 = v1.clone()\n    v3 = math.sqrt(h['lr'])\n    v4 = torch.empty("
           "(2,), device=torch.device('cpu'))\n    return (_T(v2),)\n")
    assert count_calls(src) == {"n_calls": 5, "n_copies": 2}


def test_refusals_are_logged(capfd, monkeypatch):
    def softmax(x):
        return fg.softmax(x, 1)

    c = fg.compile(softmax, backend="cpu")
    c(fg.randn(3, 10000))
    msgs = []
    groups = TL.schedule(c.program.graph, log=msgs.append)
    assert len(groups) == 3  # max, exp+sum, divide: a 10000-wide row is no one block
    assert any(re.fullmatch(r"cannot fuse t\d+ with t\d+: reduction over 10000 elements "
                            r"feeds broadcast \(t\d+\) and is too large for one block", m)
               for m in msgs), msgs
    assert len(msgs) == len(set(msgs))
    monkeypatch.setenv("FUSEGRAD_DEBUG", "3")
    TL.schedule(c.program.graph)
    err = capfd.readouterr().err
    assert "[fusegrad] cannot fuse" in err and "feeds broadcast" in err


def test_small_rows_fuse_into_one_kernel():
    def softmax(x):
        return fg.softmax(x, 1), fg.log_softmax(x, 0)

    c = fg.compile(softmax, backend="cpu")
    c(fg.randn(7, 37))
    (g,) = TL.schedule(c.program.graph)
    assert g.kind == "reduction" and g.layout.modes == ("whole", "whole")


def test_reductions_over_each_axis():
    def f(x):
        return x.sum(0), x.sum(1), x.sum(2), x.amax((0, 2))

    c = fg.compile(f, backend="cpu")
    c(fg.randn(50, 60, 70))
    groups = TL.schedule(c.program.graph)
    _check_schedule(c.program.graph, groups)
    for g in groups:
        assert g.kind == "reduction"
        for e, axes in g.layout.reduce_axes.items():
            reduced = {g.layout.dims[e.inputs[0]][d] for d in e.params["dims"]}
            assert reduced == {c for a in axes for c in g.layout.axes[a]}


def test_multi_tensor_optimizer_kernel():
    c = sgd_update_step()
    (g,) = TL.schedule(c.program.graph)
    assert g.kind == "multi" and len(g.segments) == 3
    assert g.name == "multi_tensor_sgd_0"


def test_unrelated_iteration_spaces_stay_apart():
    def f(a, b, s):
        return a * s, b * s  # share only a scalar

    c = fg.compile(f, backend="cpu")
    c(fg.randn(64, 64), fg.randn(50), fg.tensor(2.0))
    msgs = []
    groups = TL.schedule(c.program.graph, log=msgs.append)
    assert len(groups) == 2
    assert any("unrelated iteration spaces" in m for m in msgs)


def test_inplace_update_runs_after_every_reader(mlp_programs):
    graph = mlp_programs[1].graph
    groups = TL.schedule(graph)
    by_tensor = {id(s.tensor): v for v, s in zip(graph.inputs, graph.sources)
                 if hasattr(s, "tensor")}
    writer = {v: g.index for g in groups for v in g.outputs}
    for o, s in zip(graph.outputs, graph.sinks):
        if isinstance(s, WriteInPlace):
            old = by_tensor[id(s.tensor)]
            readers = [g.index for g in groups if old in g.inputs]
            assert all(r <= writer[o] for r in readers)


def test_op_without_template_fails_loudly():
    weird = Primitive("weird_op", Kind.UNARY, PRIMS["neg"].meta, torch.neg, differentiable=False)
    x = Var((4,), torch.float32, torch.device("cpu"))
    y = Var((4,), torch.float32, torch.device("cpu"))
    g = Graph([x], [Eqn(weird, [x], {}, y, "t.py:1")], [y], [Arg(0)], [Returned(0)])
    with pytest.raises(NotImplementedError, match="weird_op"):
        [generate(k) for k in TL.schedule(g)]


def test_a_cpu_program_still_shows_its_triton_kernels(mlp_programs):
    prog = mlp_programs[1]
    names = [k.name for k in prog.triton_kernels]
    assert names == [k.name for k in TritonProgram(prog.graph).kernels]
    assert all("@triton.jit" in k.source for k in prog.triton_kernels)
