"""Reverse-mode autodiff of a Graph, split into a forward that keeps residuals and a backward.

``vjp(graph, diff_inputs, diff_outputs)`` walks the forward equations in reverse and runs
each primitive's ``vjp`` rule (the rule eager backward runs) under a fresh tracer. The
forward values a rule reads (``prim.saves``) become inputs of the backward graph, and the
forward graph hands them out as extra outputs (``Residual`` sinks): one forward run gives
the user's results and everything the backward needs, and the backward never recomputes
the forward. Views of the forward's own inputs are recomputed in the backward rather than
saved: a view costs nothing, while handing one out of a program copies it.

A compiled function whose outputs require grad runs on this split. The node its outputs
hang from (``CompiledFunctionBackward``) keeps the residuals of its own call and runs only
the backward program. Where the trace holds what the rules alone cannot reproduce (a
``detach`` or ``no_grad`` region, which leave no mark in the graph, a custom
``autograd.Function``, a tensor hook), the backward is recorded instead by replaying the
eager engine over the trace's autograd graph, and is split into residuals and backward the
same way.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from fusegrad import ops as F
from fusegrad.autograd import grad_mode
from fusegrad.autograd.engine import CompositeNode, creating_graph, gradient_edge, run_backward
from fusegrad.autograd.node import SECOND_BACKWARD, Node, SavedTensor, node_class
from fusegrad.compiler import passes
from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.program import Program
from fusegrad.compiler.ir.io import Arg, Captured, Const, Number, Residual, Returned
from fusegrad.compiler.tracer import Tracer
from fusegrad.primitives import aval_of, is_float
from fusegrad.dispatch import PrimNode, interpreting
from fusegrad.tensor import Tensor

CREATE_GRAPH = (
    "fusegrad.compile: create_graph=True through the outputs of a compiled function is not "
    "supported: its backward runs as one compiled program, so the gradients it returns have "
    "no graph of their own. Take the higher-order gradient inside the compiled function, or "
    "run the function eagerly.")


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
    with interpreting(rec.tracer), grad_mode.no_grad():
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
                hit = e.prim.is_view and self._rooted(e.inputs[0])
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


# --------------------------------------------------------------------------- compiled outputs


def differentiable_outputs(res_leaves):
    """``[(position, tensor)]`` of the returned values autograd can reach through."""
    return [(i, t) for i, t in enumerate(res_leaves)
            if isinstance(t, Tensor) and isinstance(t._data, Var) and t.grad_fn is not None]


class Plan(NamedTuple):
    """What one traced signature needs to hang its outputs from a backward node.

    ``diff_inputs`` are the forward's ``Arg``/``Captured`` sources gradients flow to;
    ``diff_outputs`` the positions of the returned values that get the node, with
    ``out_meta`` their (shape, dtype); ``program`` runs the backward graph.
    """

    program: Program
    residuals: Residuals
    diff_inputs: list
    diff_outputs: list
    out_meta: list


def differentiate(tracer, graph: Graph, optimized: Graph, diff, leaves, verify=False):
    """The forward and backward of a compiled function whose outputs require grad.

    Args:
        tracer: the finished trace of the function (its autograd graph is still alive).
        graph: the traced graph, one equation per recorded primitive.
        optimized: ``graph`` after the pass pipeline.
        diff: ``differentiable_outputs`` of the returned values.
        leaves: the tensors the function was traced with.
        verify: run the IR verifier after every pass.

    Returns:
        ``(vjp, diff_inputs)``: the split graphs (``vjp.forward`` replaces ``optimized``)
        and the forward sources (``Arg``/``Captured``) the backward's gradients are for.
    """
    srcs = [(v, s) for v, s in zip(graph.inputs, graph.sources)
            if isinstance(s, (Arg, Captured)) and _input_value(s, leaves).requires_grad]
    outs = [t for _, t in diff]
    positions = [i for i, _ in diff]
    if _rules_reproduce(graph, [v for v, _ in srcs], positions, outs, tracer):
        pos = {v: i for i, v in enumerate(optimized.inputs)}
        kept = [(pos[v], s) for v, s in srcs if v in pos]  # the passes may drop an unused one
        return vjp(optimized, [i for i, _ in kept], positions, verify=verify), \
            [s for _, s in kept]
    targets = [_input_value(s, leaves) for _, s in srcs]
    return _replay(tracer, graph, targets, outs, verify), [s for _, s in srcs]


def _rules_reproduce(graph, ins, positions, outs, tracer) -> bool:
    """Whether differentiating ``graph`` by the rules gives what eager autograd would.

    The graph keeps no mark of ``detach``, ``no_grad``, custom Functions or hooks; the
    trace's autograd graph does. Each of its primitive nodes was recorded with one equation,
    and it can only need fewer gradients than the graph says, so equal counts of
    (primitive, inputs needing grad) mean every equation is differentiated as in eager.
    """
    active = _active(graph, ins)
    want = Counter()
    reach = {graph.outputs[i] for i in positions} & active
    for e in reversed(graph.eqns):
        if e.out in reach:
            needs = tuple(isinstance(x, Var) and x in active for x in e.inputs)
            want[(e.prim, needs)] += 1
            reach.update(x for x, n in zip(e.inputs, needs) if n)
    stop = set()
    for t, _ in tracer.env.values():
        if t.requires_grad:
            stop.add(gradient_edge(t)[0])
    have = Counter()
    seen, stack = set(), [t.grad_fn for t in outs]
    while stack:
        n = stack.pop()
        if n in seen or n in stop:
            continue
        seen.add(n)
        if n._pre_hooks or n._hooks or n._tensor_hooks or n._retains:
            return False
        if isinstance(n, CompositeNode):
            stack.append(n.inner_out.grad_fn)  # its inner graph ends at the same edges
            continue
        if not isinstance(n, PrimNode):
            return False
        have[(n.prim, tuple(n.needs_input_grad))] += 1
        stack.extend(c for c, _ in n.next_functions if c is not None)
    return have == want


def _replay(tracer, graph, targets, outs, verify) -> VJP:
    """Record the eager engine's backward over the trace's autograd graph (hooks, custom
    Functions and detach behave exactly as in eager), then split it like ``vjp``."""
    rec = _Recorder(graph)
    bt = rec.tracer
    bt.env = dict(tracer.env)  # the call's tensors read as the forward's values, not captured
    cts = [Tensor._make(bt.add_input(Var(t.shape, t.dtype, t.device), _Cotangent(k)))
           for k, t in enumerate(outs)]
    with interpreting(bt):
        # boundary: the run stops at the inputs, whose own hooks and graph stay outside
        grads = run_backward(list(zip(outs, cts)), inputs=targets, accumulate=False,
                             retain_graph=True, allow_unused=True, boundary=True)
    seen = set()
    for k, t in enumerate(targets):
        if id(t) in seen:
            grads[k] = None  # f(x, x): the first edge to x carries its whole gradient
        seen.add(id(t))
    grads = [None if g is None else bt.read(g) for g in grads]
    # the recorded equations read forward values directly: make them backward inputs
    defined = set(bt.inputs) | {e.out for e in bt.eqns}

    def own(x):
        return rec.saved(x) if isinstance(x, Var) and x not in defined else x

    for e in bt.eqns:
        e.inputs = [own(x) for x in e.inputs]
    return _split(graph, rec, [None if g is None else own(g) for g in grads], len(outs),
                  "replay_backward", verify)


def build_plan(result: VJP, diff_inputs, diff, backend, name) -> Plan:
    """Compile the backward graph and bundle what ``attach`` needs on each call."""
    program = Program(result.backward, result.backward, backend, ("T",), name=name)
    return Plan(program, result.residuals, diff_inputs, [i for i, _ in diff],
                [(tuple(t.shape), t.dtype) for _, t in diff])


class CompiledFunctionBackward(Node):
    """The node a compiled function's differentiable outputs hang from: it keeps the
    residuals of its own call and runs only the backward program."""

    __slots__ = ("plan", "saved")

    n_outputs = property(lambda self: len(self.plan.out_meta))

    def apply(self, grads):
        if self.saved is None:
            raise RuntimeError(SECOND_BACKWARD)
        if creating_graph():
            raise RuntimeError(CREATE_GRAPH)
        residuals = [s.unpack() for s in self.saved]  # raises if one was modified in place
        cts = [F.zeros(shape, dtype=dtype) if g is None else g
               for g, (shape, dtype) in zip(grads, self.plan.out_meta)]
        out = [None] * len(self.next_functions)
        for k, g in zip(self.plan.residuals.grads_of, self.plan.program.run(residuals + cts)):
            out[k] = g
        return out

    def release(self):
        self.saved = None


def attach(plan: Plan, leaves, results):
    """Hang this call's differentiable results from a new node over this call's inputs.

    Args:
        plan: the signature's :class:`Plan`.
        leaves: the tensors the forward program was called with.
        results: what it returned (the user's values, then the residuals).
    """
    node = CompiledFunctionBackward.__new__(CompiledFunctionBackward)
    Node.__init__(node, [gradient_edge(_input_value(s, leaves)) for s in plan.diff_inputs])
    node.plan = plan
    for nr, i in enumerate(plan.diff_outputs):
        results[i].grad_fn = node
        results[i]._output_nr = nr
    # after the outputs have their node: a returned value saved here is saved as an output
    node.saved = [SavedTensor(t, node)
                  for t in residual_values(plan.residuals, leaves, results)]
    return node


class _ConsumedNode(Node):
    """Stands for a graph the compiled function's own backward already used and freed."""

    __slots__ = ()

    def apply(self, grads):
        raise RuntimeError(SECOND_BACKWARD)


def attach_consumed(outs, consumed):
    """``consumed``: [(position, node)]; the node is shared by every call's output (it
    holds nothing and only raises)."""
    for i, node in consumed:
        outs[i].grad_fn = node


def consumed_nodes(diff):
    return [(i, node_class(t.grad_fn.name(), _ConsumedNode)()) for i, t in diff]
