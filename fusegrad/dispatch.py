"""The dispatch point: every op on tensors reaches the current interpreter through here.

``apply`` asks one question, who interprets this op (``fusegrad.interpreter.current()``),
hands it the primitive call and records the autograd node on the result, the same way
whoever interprets it. ``apply_inplace`` does the same for in-place ops and writes the
result into the tensor through the interpreter. The interpreter is installed with
``interpreting(interp)`` (the profiler and ``fusegrad.compile``'s tracer do).
"""

from __future__ import annotations

import torch

from fusegrad import primitives as P
from fusegrad._util import dtypes
from fusegrad.autograd.engine import gradient_edge
from fusegrad.autograd.grad_mode import _mode
from fusegrad.autograd.names import node_name
from fusegrad.autograd.node import (SECOND_BACKWARD, Node, SavedTensor, _Ctx, _SavedInputs,
                                    node_class)
from fusegrad.interpreter import (EAGER, Eager, Effects, Interpreter, Wrapper,  # noqa: F401
                                  current, interpreting, is_symbolic, raise_op_error)
from fusegrad.primitives import aval_of
from fusegrad.tensor import Tensor


def apply(prim, *args, overload=None, **params):
    """Run primitive ``prim`` on ``args`` and record it for autograd.

    Args:
        prim: the primitive record.
        *args: its operands, Tensors and Python numbers.
        overload: the ATen overload the calling op stands for when PyTorch names its node
            after that rather than after the primitive (``"squeeze.dim"``; see
            ``fusegrad.autograd.names``).
        **params: the primitive's parameters.

    Returns:
        The result Tensor, with its ``grad_fn`` when autograd records the call.
    """
    data = current().run(prim, args, params)
    out = Tensor._make(data)
    if prim.is_view and not is_symbolic(data):
        src = args[0]
        if data.untyped_storage().data_ptr() == src._data.untyped_storage().data_ptr():
            out._vc = src._vc  # a view shares its base's version counter
            out._base = src if src._base is None else src._base
    if _mode.enabled and prim.vjp is not None:
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        if True in needs:
            record_node(prim, args, params, out, needs, overload)
    elif _mode.inference:
        out._inference = True
    return out


def record_node(prim, args, params, out, needs, overload=None):
    """Hang ``out`` from a new ``PrimNode`` of ``prim`` over the ``args`` that need grad."""
    named = node_name(prim, args, params, overload)
    cls = node_class(named.name, PrimNode)
    node = cls.__new__(cls)
    # PyTorch's nodes have no edge for some operands (where's condition, some numbers)
    keep = [i for i, a in enumerate(args) if (named.number_edges or isinstance(a, Tensor))
            and i not in prim.nondiff_args]
    Node.__init__(node, [
        gradient_edge(args[i]) if isinstance(args[i], Tensor) and needs[i] else (None, 0)
        for i in keep
    ])
    node.prim = prim
    node.params = params
    node.avals = [aval_of(a) for a in args]
    node.needs_input_grad = needs
    saves = prim.saves
    for i in saves:
        if i != "out" and isinstance(args[i], Tensor) and args[i]._inference:
            raise RuntimeError(INFERENCE_SAVE)
    node._saved = [
        (SavedTensor(a) if i in saves else None) if isinstance(a, Tensor) else a
        for i, a in enumerate(args)
    ]
    node._freed = False
    node.metadata["out_shape"] = out.shape
    node.metadata["out_dtype"] = out.dtype
    if len(keep) != len(args):
        node.metadata["keep"] = keep
    out.grad_fn = node
    node._out = SavedTensor(out, node) if "out" in saves else None
    return node


class PrimNode(Node):
    """The node of one primitive call; subclassed per PyTorch name (``MulBackward0``...)."""

    __slots__ = ("prim", "params", "avals", "needs_input_grad", "_saved", "_out", "_freed")

    def apply(self, grads):
        if self._freed:
            raise RuntimeError(SECOND_BACKWARD)
        ctx = _Ctx()
        ctx.inputs = _SavedInputs(self._saved)
        ctx.out = self._out
        ctx.params = self.params
        ctx.avals = self.avals
        ctx.needs_input_grad = self.needs_input_grad
        g = grads[0]
        if g is None:
            g = full(self.metadata["out_shape"], 0, self.metadata["out_dtype"])
        grads = list(self.prim.vjp(ctx, g))
        for i, (gi, av) in enumerate(zip(grads, self.avals)):
            if gi is not None and av is not None and gi.dtype != av.dtype:
                # f32 * f64: the f32 input gets an f32 grad
                grads[i] = apply(P.cast, gi, dtype=av.dtype)
        keep = self.metadata.get("keep")  # edges exist only for these inputs (rsub, 2 ** x)
        return [grads[i] for i in keep] if keep is not None else list(grads)

    def release(self):
        if self.prim.saves:
            self._freed = True
            self._saved = [None if isinstance(s, SavedTensor) else s for s in self._saved]
            self._out = None


def full(shape, value, dtype, device="cpu"):
    """A new tensor of ``shape`` holding ``value``: the gradients the autograd core makes
    (it sits below ``fusegrad.ops``)."""
    return apply(P.full, shape=tuple(shape), value=value, dtype=dtype,
                 device=torch.device(device))


INFERENCE_SAVE = (
    "Inference tensors cannot be saved for backward. Please do not use Tensors created in "
    "inference mode in computation tracked by autograd. To work around this, you can make a "
    "clone to get a normal tensor and use it in autograd, or use `torch.no_grad()` instead of "
    "`torch.inference_mode()`.")


# --------------------------------------------------------------------------- in-place


def check_inplace(t):
    """Raise PyTorch's error when ``t`` may not be written in place."""
    if _mode.enabled and t.grad_fn is None and t._requires_grad:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation.")
    base = t._base
    if _mode.enabled and base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place "
            "operation.")
    if t._inference and not _mode.inference:
        raise RuntimeError(
            "Inplace update to inference tensor outside InferenceMode is not allowed.You can "
            "make a clone to get a normal tensor before doing inplace update.See "
            "https://github.com/pytorch/rfcs/pull/17 for more details.")


def apply_inplace(prim, t, *args, **params):
    """Run ``prim`` and write the result into ``t``: the version bumps and, when autograd
    records it, ``t``'s history continues from the new node."""
    check_inplace(t)
    interp = current()
    needs_grad = _mode.enabled and prim.vjp is not None and any(
        isinstance(a, Tensor) and a.requires_grad for a in (t, *args))
    if not needs_grad and prim.inplace is not None and not params:
        datas = [a._data if isinstance(a, Tensor) else a for a in args]
        try:
            if interp.mutate(t, prim.inplace, datas):
                return t
        except (RuntimeError, IndexError, TypeError) as e:
            raise_op_error(prim, [t._data, *datas], params, e)
    if needs_grad and t._base is not None:
        # the base would not see the new history (PyTorch's CopySlices is not built)
        raise RuntimeError(
            f"{prim.name}_: in-place operations on a view are not supported when autograd "
            "records them; use the out-of-place op instead")
    out = apply(prim, t, *args, **params)
    if out.dtype != t.dtype:
        raise RuntimeError(
            f"result type {dtypes.scalar_type(out.dtype)} can't be cast to the desired "
            f"output type {dtypes.scalar_type(t.dtype)}")
    node = out.grad_fn
    if node is not None and isinstance(node._saved[0], SavedTensor) and \
            node._saved[0].tensor is t:
        # the rule needs t as it was before this write: PyTorch's original_self
        old = Tensor._make(interp.snapshot(t._data), grad_fn=t.grad_fn, output_nr=t._output_nr)
        old._requires_grad = t._requires_grad
        node._saved[0] = SavedTensor(old)
    return assign(t, out)


def assign(t, value):
    """``t`` takes ``value``'s content and, when autograd recorded it, its history: the end
    of every in-place op. The version bumps; an untracked write leaves older nodes' saved
    versions alone, so backward through them raises, as in PyTorch."""
    current().write(t, value)
    node = value.grad_fn
    saved = None
    if node is not None:
        t.grad_fn, t._output_nr = node, value._output_nr
        # a saved result of the node must refer to t's storage and version
        saved = getattr(node, "_out", None)
        if saved is not None:
            saved.data, saved.vc = t._data, t._vc
    t._vc[0] += 1
    if saved is not None:
        saved.version = t._vc[0]
    return t


# --------------------------------------------------------------------------- effects
# Stateful library code (optimizers) calls these so that a compiled step can lift its
# Python numbers to graph inputs and write its state back after each replay.


def scalar_input(container, key, lift=True):
    """``container[key]`` (a Python number); under a trace with ``lift``, a graph input read
    afresh on every call, so that changing it (an optimizer's ``lr``) needs no retrace."""
    return current().lift_scalar(container, key, lift)


def provenance(tag):
    """Ops recorded inside carry ``tag`` (``optimizer=SGD``): kernels are named from it."""
    return current().provenance(tag)


def note_stateful(obj):
    """Tell a running trace that ``obj`` (an optimizer) may mutate its ``state`` dict."""
    current().watch_stateful(obj)


def constant(prim, **params):
    """Run the creation primitive ``prim`` now: its result is a constant of any trace (for
    records a backend cannot emit, such as ``iota``)."""
    t = Tensor._make(EAGER.run(prim, (), params))
    current().note_constant(t)
    return t
