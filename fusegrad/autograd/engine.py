"""The backward engine: runs ``grad_fn`` nodes in dependency order, as PyTorch's does.

Ready nodes run most-recently-created first; gradients arriving at one node from
several edges are summed before it runs; hooks on non-leaf tensors run on the
gradient entering their node, hooks on leaves before accumulation into ``.grad``.

The two nodes whose work is the engine's own live here too: ``AccumulateGrad`` (a leaf's
``.grad``) and ``CompositeNode`` (a nested run over a decomposition's inner graph).
"""

from __future__ import annotations

import heapq
import threading
import weakref

from fusegrad.autograd import grad_mode
from fusegrad.autograd.node import SECOND_BACKWARD, Node
from fusegrad.interpreter import current
from fusegrad.tensor import Tensor


class _State(threading.local):
    def __init__(self):
        self.stack = []  # (retain_graph, create_graph) of the runs under way


_state = _State()


def creating_graph() -> bool:
    return bool(_state.stack) and _state.stack[-1][1]


def retaining_graph() -> bool:
    return bool(_state.stack) and _state.stack[-1][0]


def gradient_edge(t):
    """The (node, output_nr) that receives the gradient of tensor ``t``."""
    if t.grad_fn is not None:
        return t.grad_fn, t._output_nr
    if t.requires_grad:
        return _accumulator(t), 0
    return None, 0


def _accumulator(t):
    # one AccumulateGrad per leaf while any graph holds it, as in PyTorch
    acc = t._accumulator() if t._accumulator is not None else None
    if acc is None:
        acc = AccumulateGrad(t)
        t._accumulator = weakref.ref(acc)
    return acc


class AccumulateGrad(Node):
    """The node at a leaf that requires grad: sums incoming gradients into ``.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        super().__init__(())
        self.variable = variable

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"  # PyTorch's name() of this C++ node

    def apply(self, grads):
        accumulate_grad(self.variable, grads[0])
        return []


def _call_hook(hook, g):
    r = hook(g)
    if r is None:
        current().observer_hook()
    return r


def _leaf_hooks(t, g):
    """Run the hooks registered on leaf ``t`` over its incoming gradient ``g``."""
    for hook in t._hooks or ():
        r = _call_hook(hook, g)
        if r is not None:
            g = r
    return g


def accumulate_grad(t, g):
    """Sum ``g`` into ``t.grad`` the way AccumulateGrad does."""
    g = _leaf_hooks(t, g)
    if g is None:
        return
    interp = current()
    old = interp.read_grad(t)
    if old is None:
        # own the buffer: the incoming gradient may alias another tensor's (add's vjp
        # passes the same gradient to both inputs)
        t._grad = g if g.requires_grad else Tensor._make(interp.snapshot(g._data))
    elif creating_graph() or g.requires_grad or not interp.mutate(old, "add_", [g._data]):
        t._grad = old + g
    for hook in t._post_acc_hooks or ():
        if hook(t) is not None:
            raise RuntimeError("Tensor post accumulate grad hooks should return None.")


def _apply_tensor_hooks(node, grads):
    if node._tensor_hooks:
        for nr, hooks in node._tensor_hooks.items():
            for hook in hooks:
                if grads[nr] is None:
                    continue
                r = _call_hook(hook, grads[nr])
                if r is not None:
                    grads[nr] = r
    if node._retains:
        for nr, ref in node._retains.items():
            t = ref()
            if t is not None and grads[nr] is not None:
                g = grads[nr] if creating_graph() else grads[nr].detach()
                # accumulates over backward calls, out of place as PyTorch's retain_grad hook
                t._grad = (g if creating_graph() else Tensor._make(current().snapshot(g._data))) \
                    if t._grad is None else t._grad + g


def _collect(roots):
    """Dependency counts of every node reachable from ``roots``."""
    deps: dict[Node, int] = {}
    seen = set()
    stack = [n for n in roots]
    for n in roots:
        seen.add(n)
    while stack:
        n = stack.pop()
        for nxt, _ in n.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return deps, seen


def _needed(roots, targets):
    """For each node, whether some target can be reached from it (the rest need not run)."""
    order, visited = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)  # post-order: every child is finished before its parent
            continue
        if n in visited:
            continue
        visited.add(n)
        stack.append((n, True))
        stack.extend((c, False) for c, _ in n.next_functions if c is not None and c not in visited)
    memo: dict[Node, bool] = {}
    for n in order:
        memo[n] = n in targets or any(memo.get(c, False) for c, _ in n.next_functions if c)
    return memo


def run_backward(roots, inputs=None, *, accumulate=True, retain_graph=False,
                 create_graph=False, allow_unused=False, boundary=False):
    """Backpropagate ``roots`` = [(tensor, gradient)].

    With ``accumulate`` the gradients go into ``.grad`` (of ``inputs`` only, when given);
    without it they are returned, one per input, as ``autograd.grad`` does.
    """
    interp = current()
    interp.note_backward()
    root_edges = []
    for i, (t, g) in enumerate(roots):
        node, nr = gradient_edge(t)
        if node is None:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        root_edges.append((node, nr, g))

    targets = {}
    if inputs is not None and accumulate:
        for t in inputs:
            if t.grad_fn is not None:
                # backward(inputs=[non_leaf]) retains its grad, as in PyTorch
                interp.retain_grad(t, by_backward=True)
    if inputs is not None:
        for t in inputs:
            node, nr = gradient_edge(t)
            if node is None:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
            targets.setdefault(node, set()).add(nr)

    root_nodes = list({n: None for n, _, _ in root_edges})
    deps, reachable = _collect(root_nodes)
    needed = _needed(root_nodes, targets) if inputs is not None else None

    buffers: dict[Node, list] = {}
    for node, nr, g in root_edges:
        buf = buffers.setdefault(node, [None] * node.n_outputs)
        buf[nr] = g if buf[nr] is None else buf[nr] + g

    captured: dict[tuple, object] = {}
    executed = []
    ready = [(-n._seq, id(n), n) for n in root_nodes if deps.get(n, 0) == 0]
    heapq.heapify(ready)
    _state.stack.append((retain_graph, create_graph))
    try:
        with grad_mode.set_grad_enabled(create_graph):
            while ready:
                _, _, node = heapq.heappop(ready)
                grads = buffers.pop(node, None) or [None] * node.n_outputs
                run = needed is None or needed.get(node, False)
                out_grads = None
                if run and any(g is not None for g in grads):
                    for hook in node._pre_hooks:
                        r = hook(tuple(grads))
                        if r is not None:
                            grads = list(r)
                    if not (boundary and node in targets):
                        # a composite's inner run stops at nodes of the outer graph: their
                        # hooks run once, when the outer run reaches them
                        _apply_tensor_hooks(node, grads)
                    if isinstance(node, AccumulateGrad) and not accumulate and \
                            node in targets and not boundary:
                        # autograd.grad sees a leaf's hooks too (PyTorch's tensor pre-hooks)
                        grads = [_leaf_hooks(node.variable, grads[0])]
                    if node in targets:
                        for nr in targets[node]:
                            captured[(node, nr)] = grads[nr]
                    if isinstance(node, AccumulateGrad):
                        if accumulate and (inputs is None or node in targets):
                            node.apply(grads)
                        out_grads = []
                    elif inputs is not None and not accumulate and node in targets and \
                            (boundary or not _below_targets(node, needed, targets)):
                        # a composite's inner run stops at every input: the outer run
                        # carries the gradient on from there (else x and x.t() count twice)
                        out_grads = None
                    else:
                        out_grads = node.apply(grads)
                        executed.append(node)
                        if accumulate and node in targets:
                            _accumulate_non_leaf(node, grads, inputs)
                        for hook in node._hooks:
                            r = hook(tuple(out_grads), tuple(grads))
                            if r is not None:
                                out_grads = list(r)
                for i, (nxt, nr) in enumerate(node.next_functions):
                    if nxt is None:
                        continue
                    g = out_grads[i] if out_grads is not None and i < len(out_grads) else None
                    if g is not None:
                        buf = buffers.setdefault(nxt, [None] * nxt.n_outputs)
                        buf[nr] = g if buf[nr] is None else buf[nr] + g
                    deps[nxt] -= 1
                    if deps[nxt] == 0:
                        heapq.heappush(ready, (-nxt._seq, id(nxt), nxt))
    finally:
        _state.stack.pop()
        if not retain_graph:
            for node in executed:
                node.release()

    if accumulate:
        return None
    result = []
    for i, t in enumerate(inputs):
        node, nr = gradient_edge(t)
        g = captured.get((node, nr))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"The differentiated Tensor at index {i} appears to not have been used in the "
                "graph. Set allow_unused=True if this is the desired behavior.")
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return result


def _below_targets(node, needed, targets):
    """Whether some other target lies below ``node`` (then it must run on)."""
    return any(needed.get(nxt, False) for nxt, _ in node.next_functions if nxt is not None)


def _accumulate_non_leaf(node, grads, inputs):
    # backward(inputs=[non_leaf]) accumulates into the non-leaf's .grad
    for t in inputs:
        if t.grad_fn is node and grads[t._output_nr] is not None and not t._retains_grad():
            accumulate_grad(t, grads[t._output_nr])


class CompositeNode(Node):
    """One named node over a decomposition's inner graph (``AddmmBackward0``, ``NllLossBackward0``).

    Backward runs the engine on the inner graph down to the composite's inputs, so the
    decomposition's primitives supply the derivative and no rule is written twice.
    """

    __slots__ = ("inner_out", "inner_inputs")

    def apply(self, grads):
        if self.inner_out is None:
            raise RuntimeError(SECOND_BACKWARD)
        saved_out = self.metadata.get("saved_out")
        if saved_out is not None:
            saved_out.unpack()  # raises if the result was modified in place since
        wanted = [t for t in self.inner_inputs if t is not None]
        got = run_backward(
            [(self.inner_out, grads[0])], inputs=wanted, accumulate=False,
            retain_graph=retaining_graph() or "keeps_inner" in self.metadata,
            create_graph=creating_graph(), allow_unused=True, boundary=True,
        )
        it = iter(got)
        out, seen = [], set()
        for t, edge in zip(self.inner_inputs, self.next_functions):
            g = next(it) if t is not None else None
            if g is not None and edge in seen:
                g = None  # a repeated input (x @ x): its whole gradient went to the first edge
            seen.add(edge)
            out.append(g)
        return out

    def release(self):
        # the inner run already freed its nodes' saved tensors
        if "keeps_inner" not in self.metadata:
            self.inner_out = None
            self.metadata.pop("saved_out", None)
