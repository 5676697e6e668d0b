"""Reverse-mode autodiff of a Graph, split into a forward that keeps residuals and a backward.

``vjp(graph, diff_inputs, diff_outputs)`` walks the forward equations in reverse and runs
each primitive's ``vjp`` rule (the rule eager backward runs) under a fresh tracer. The
forward values a rule reads (``prim.saves``) become inputs of the backward graph, and the
forward graph hands them out as extra outputs (``Residual`` sinks): one forward run gives
the user's results and everything the backward needs, and the backward never recomputes
the forward. Views of the forward's own inputs are recomputed in the backward rather than
saved: a view costs nothing, while handing one out of a program copies it.
"""

from __future__ import annotations

from typing import NamedTuple

from fusegrad import ops as F
from fusegrad.autograd import grad_mode
from fusegrad.compiler import passes
from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.schedule import VIEW_PRIMS
from fusegrad.compiler.tracer import Arg, Captured, Const, Number, Residual, Returned, Tracer
from fusegrad.primitives import aval_of, is_float
from fusegrad.tensor import Tensor, trace_state

class Saved(NamedTuple):
    """Where one residual of the backward comes from on each call.

    ``kind`` is ``"input"`` (``where`` is the forward's ``Arg``/``Captured`` source: the
    value the call was given) or ``"result"`` (``where`` indexes the tuple the forward
    program returns: the user's values, then the ``Residual`` outputs).
    """

    kind: str
    where: object


class Residuals(NamedTuple):
    """How the backward graph is called.

    Attributes:
        saved: one entry per leading backward argument (``Arg(j)`` for ``j < len(saved)``).
        n_cotangents: the arguments after those, one per differentiated output, in order.
        grads_of: for each backward output, the index (into ``diff_inputs``) of the input
            whose gradient it is; inputs that get no gradient are left out.
    """

    saved: list
    n_cotangents: int
    grads_of: list


class VJP(NamedTuple):
    forward: Graph
    backward: Graph
    residuals: Residuals


def vjp(graph: Graph, diff_inputs, diff_outputs, *, verify=False) -> VJP:
    """Differentiate ``graph`` with the primitives' vjp rules.

    Args:
        graph: the forward graph (raw or optimized).
        diff_inputs: positions in ``graph.inputs`` to differentiate with respect to.
        diff_outputs: positions in ``graph.outputs`` whose cotangents the backward takes.
        verify: run the IR verifier after every pass.

    Returns:
        ``VJP(forward, backward, residuals)``: ``forward`` is ``graph`` plus one
        ``Residual`` output per value the backward reads; ``backward`` reads those and the
        output cotangents (see :class:`Residuals`) and returns the input gradients. Both
        are optimized.
    """
    rec = _Recorder(graph)
    ins = [graph.inputs[i] for i in diff_inputs]
    outs = [graph.outputs[i] for i in diff_outputs]
    active = _active(graph, ins)
    cts = {}
    for k, v in enumerate(outs):
        ct = Tensor._make(rec.tracer.add_input(Var(v.shape, v.dtype, v.device), _Cotangent(k)))
        if isinstance(v, Var) and v in active:
            cts[v] = ct if v not in cts else cts[v] + ct
    with _recording(rec.tracer), grad_mode.no_grad():
        for e in reversed(graph.eqns):
            g = cts.pop(e.out, None)
            if g is None:
                continue
            start = len(rec.tracer.eqns)
            ctx = _RuleCtx(e, rec, active)
            for x, gi in zip(e.inputs, e.prim.vjp(ctx, g)):
                if gi is None or not isinstance(x, Var) or x not in active:
                    continue
                if gi.dtype != x.dtype:  # f32 * f64: the f32 input gets an f32 gradient
                    gi = F.cast(gi, x.dtype)
                cts[x] = gi if x not in cts else cts[x] + gi
            for b in rec.tracer.eqns[start:]:
                b.src = e.src  # each backward equation names the forward line it undoes
    grads = [cts.get(v) for v in ins]
    return _split(graph, rec, [None if g is None else g._data for g in grads], len(outs),
                  "vjp", verify)


def _active(graph, ins):
    """The float values that depend on ``ins`` through differentiable primitives."""
    active = {v for v in ins if is_float(v.dtype) and not v.weak}
    for e in graph.eqns:
        if e.prim.vjp is not None and is_float(e.out.dtype) and not e.out.weak \
                and any(x in active for x in e.vars()):
            active.add(e.out)
    return active


class _recording:
    def __init__(self, tracer):
        self.tracer = tracer

    def __enter__(self):
        self.prev, trace_state.tracer = trace_state.tracer, self.tracer

    def __exit__(self, *exc):
        trace_state.tracer = self.prev


class _Pending:
    """Source of a backward input not bound yet: the forward value ``var``."""

    def __init__(self, var):
        self.var = var

    def __str__(self):
        return f"forward value {self.var!r}"


class _Cotangent:
    def __init__(self, index):
        self.index = index

    def __str__(self):
        return f"cotangent of differentiated output {self.index}"


class _Recorder:
    """The backward's tracer, and the backward input standing for each forward value read."""

    def __init__(self, fwd: Graph):
        self.tracer = Tracer()
        self.source = dict(zip(fwd.inputs, fwd.sources))
        self.producer = fwd.producers()
        self.inputs, self.sources = [], []  # residual inputs, bound after optimizing
        self.prologue = []  # views of forward inputs, recomputed first in the backward
        self.of = {}  # forward Var -> backward Var
        self._cheap = {}

    def saved(self, v: Var) -> Var:
        hit = self.of.get(v)
        if hit is not None:
            return hit
        e = self.producer.get(v)
        if e is not None and self._rooted(v):
            out = Var(v.shape, v.dtype, v.device, v.weak)
            self.prologue.append(Eqn(e.prim, [self.saved(e.inputs[0])], e.params, out, e.src))
        else:
            s = self.source.get(v)
            out = Var(v.shape, v.dtype, v.device, v.weak)
            self.inputs.append(out)
            # constants and lifted numbers are read where they live, not saved
            self.sources.append(s if isinstance(s, (Const, Number)) else _Pending(v))
        self.of[v] = out
        return out

    def _rooted(self, v) -> bool:
        """Whether ``v`` is a forward input the call supplies, or a chain of views of one."""
        hit = self._cheap.get(v)
        if hit is None:
            e = self.producer.get(v)
            if e is None:
                hit = isinstance(self.source.get(v), (Arg, Captured, Const))
            else:
                hit = e.prim.name in VIEW_PRIMS and self._rooted(e.inputs[0])
            self._cheap[v] = hit
        return hit


class _RuleCtx:
    """What a vjp rule sees (as ``autograd.node._Ctx``): saved operands become backward
    inputs only when the rule reads them, so the residuals are what the rules need."""

    __slots__ = ("_e", "_rec", "params", "avals", "needs_input_grad")

    def __init__(self, e, rec, active):
        self._e, self._rec = e, rec
        self.params = e.params
        self.avals = [aval_of(x) for x in e.inputs]
        self.needs_input_grad = tuple(isinstance(x, Var) and x in active for x in e.inputs)

    @property
    def inputs(self):
        return _RuleInputs(self._e, self._rec)

    @property
    def out(self):
        if "out" not in self._e.prim.saves:
            return None
        return Tensor._make(self._rec.saved(self._e.out))


class _RuleInputs:
    __slots__ = ("_e", "_rec")

    def __init__(self, e, rec):
        self._e, self._rec = e, rec

    def __len__(self):
        return len(self._e.inputs)

    def __getitem__(self, i):
        x = self._e.inputs[i]
        if not isinstance(x, Var):
            return x
        # an operand the primitive does not save is None, as in eager backward
        return Tensor._make(self._rec.saved(x)) if i in self._e.prim.saves else None

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _split(fwd, rec, grads, n_ct, name, verify):
    """Build and optimize the backward, then bind each residual it still reads to a
    forward input or a new ``Residual`` output of the forward."""
    bt = rec.tracer
    kept = [(k, g) for k, g in enumerate(grads) if g is not None]
    bwd = Graph(rec.inputs + bt.inputs, rec.prologue + bt.eqns, [g for _, g in kept],
                rec.sources + bt.sources, [Returned(j) for j in range(len(kept))], [name])
    bwd = passes.optimize(bwd, verify_each=verify)
    src_of = dict(zip(fwd.inputs, fwd.sources))
    result_of, n_results = {}, 0  # forward output Var -> its index in the program's results
    for o, s in zip(fwd.outputs, fwd.sinks):
        if isinstance(s, Returned):
            if isinstance(o, Var):
                result_of.setdefault(o, n_results)
            n_results += 1
    saved, extra, sources = [], [], []
    for s in bwd.sources:
        if isinstance(s, _Pending):
            fs = src_of.get(s.var)
            if isinstance(fs, (Arg, Captured)):
                saved.append(Saved("input", fs))
            elif s.var in result_of:
                saved.append(Saved("result", result_of[s.var]))
            else:
                saved.append(Saved("result", n_results + len(extra)))
                extra.append(s.var)
            s = Arg(len(saved) - 1)
        sources.append(s)
    n_res = len(saved)
    sources = [Arg(n_res + s.index) if isinstance(s, _Cotangent) else s for s in sources]
    # inputs in call order (residuals, then cotangents), then what the program reads itself
    args = sorted((s.index, i) for i, s in enumerate(sources) if isinstance(s, Arg))
    order = [i for _, i in args] + [i for i, s in enumerate(sources) if not isinstance(s, Arg)]
    bwd = bwd.replace(inputs=[bwd.inputs[i] for i in order], sources=[sources[i] for i in order])
    fwd = fwd.replace(outputs=fwd.outputs + extra,
                      sinks=fwd.sinks + [Residual(k) for k in range(len(extra))],
                      history=fwd.history + [name])
    fwd = passes.optimize(fwd, verify_each=verify)
    return VJP(fwd, bwd, Residuals(saved, n_ct, [k for k, _ in kept]))


def residual_values(residuals: Residuals, leaves, results) -> list:
    """The values of the backward's residual arguments after one forward call.

    Args:
        residuals: the plan :func:`vjp` returned.
        leaves: the tensors the forward program was called with.
        results: what the forward program returned.
    """
    return [_input_value(s.where, leaves) if s.kind == "input" else results[s.where]
            for s in residuals.saved]


def _input_value(source, leaves):
    return leaves[source.index] if isinstance(source, Arg) else source.tensor

