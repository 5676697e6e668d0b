"""Gradients through a compiled function's outputs.

When a compiled function returns tensors that require grad (a compiled model forward),
the trace also differentiates them symbolically, with one extra graph input per output
gradient. The backward program recomputes what it needs of the forward (no activations
are kept between the two calls) and runs when the engine reaches the node that the
returned tensors hang from, exactly like one eager op.
"""

from __future__ import annotations

from fusegrad.autograd.engine import gradient_edge, run_backward
from fusegrad.autograd.node import Node, SavedTensor
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.tracer import Arg, Captured, Returned
from fusegrad.tensor import Tensor, trace_state


def differentiable_outputs(res_leaves):
    return [(i, t) for i, t in enumerate(res_leaves)
            if isinstance(t, Tensor) and isinstance(t._data, Var) and t.grad_fn is not None]


def trace_backward(tracer, outs, n_args):
    """Append the backward of ``outs`` to the trace. Returns (graph, diff_inputs)."""
    # the tensors gradients flow to: autograd leaves and outer (eager) nodes of the inputs
    diff_inputs = []
    seen = set()
    for t, _var in tracer.env.values():
        if t.requires_grad and id(t) not in seen:
            seen.add(id(t))
            diff_inputs.append(t)
    grads_in = []
    for j, (_, t) in enumerate(outs):
        v = tracer.add_input(Var(t.shape, t.dtype, t.device), Arg(n_args + j))
        grads_in.append(Tensor._make(v))
    prev, trace_state.tracer = trace_state.tracer, tracer
    try:
        grads = run_backward([(t, g) for (_, t), g in zip(outs, grads_in)],
                             inputs=diff_inputs, accumulate=False, retain_graph=True,
                             allow_unused=True)
    finally:
        trace_state.tracer = prev
    kept = [(t, g) for t, g in zip(diff_inputs, grads) if g is not None]
    outputs = [tracer.read(g) for _, g in kept]
    graph = Graph(tracer.inputs, tracer.eqns, outputs, tracer.sources,
                  [Returned(k) for k in range(len(outputs))], ["trace_backward"])
    return graph, [t for t, _ in kept]


class CompiledFunctionBackward(Node):
    __slots__ = ("program", "saved", "n_out", "out_meta")

    n_outputs = property(lambda self: self.n_out)

    def apply(self, grads):
        from fusegrad import ops

        if self.saved is None:
            from fusegrad.autograd.node import SECOND_BACKWARD

            raise RuntimeError(SECOND_BACKWARD)
        leaves = [s.unpack() for s in self.saved]
        for s in self.captured_versions():
            s.unpack()  # raises if a captured tensor was modified in place since forward
        gs = [ops.zeros(shape, dtype=dtype) if g is None else g
              for g, (shape, dtype) in zip(grads, self.out_meta)]
        return list(self.program.run(leaves + gs))

    def captured_versions(self):
        return self.metadata.get("captured", ())

    def release(self):
        self.saved = None


def attach(bwd_program, diff_inputs, leaves, outs, diff_positions, graph):
    """Hang the returned tensors at ``diff_positions`` from one backward node."""
    node = CompiledFunctionBackward.__new__(CompiledFunctionBackward)
    Node.__init__(node, [gradient_edge(t) for t in diff_inputs])
    node.program = bwd_program
    node.saved = [SavedTensor(t) for t in leaves]
    node.metadata["captured"] = [SavedTensor(s.tensor) for s in graph.sources
                                 if isinstance(s, Captured)]
    node.n_out = len(diff_positions)
    node.out_meta = [(tuple(outs[i].shape), outs[i].dtype) for i in diff_positions]
    for nr, i in enumerate(diff_positions):
        outs[i].grad_fn = node
        outs[i]._output_nr = nr
    return node


class _ConsumedNode(Node):
    """Stands for a graph the compiled function's own backward already used and freed."""

    __slots__ = ()

    def apply(self, grads):
        from fusegrad.autograd.node import SECOND_BACKWARD

        raise RuntimeError(SECOND_BACKWARD)


def attach_consumed(outs, consumed):
    """``consumed``: [(position, node)]; the node is shared by every call's output (it
    holds nothing and only raises)."""
    for i, node in consumed:
        outs[i].grad_fn = node


def consumed_nodes(diff):
    from fusegrad.autograd.node import node_class

    return [(i, node_class(t.grad_fn.name(), _ConsumedNode)()) for i, t in diff]
