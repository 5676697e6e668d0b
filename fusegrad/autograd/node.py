"""Autograd graph nodes: the ``Node`` base, saved tensors, and the node classes named as
PyTorch names them.

The node kinds that run something live with what they run: ``PrimNode`` (a primitive's
vjp) in ``fusegrad.dispatch``, ``AccumulateGrad`` and ``CompositeNode`` in the engine.
"""

from __future__ import annotations

import itertools
import re
import weakref

from fusegrad._util import dtypes
from fusegrad._util.hooks import RemovableHandle
from fusegrad.tensor import Tensor

_seq = itertools.count()

SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


class Node:
    """A backward function. ``next_functions`` holds one ``(node, output_nr)`` edge per input."""

    __slots__ = ("next_functions", "_seq", "_pre_hooks", "_hooks", "_tensor_hooks",
                 "_retains", "metadata", "__weakref__")

    def __init__(self, next_functions=()):
        self.next_functions = tuple(next_functions)
        self._seq = next(_seq)
        self._pre_hooks = []
        self._hooks = []
        self._tensor_hooks = None  # {output_nr: [hook]} for hooks on non-leaf tensors
        self._retains = None  # {output_nr: weakref to tensor} for retain_grad()
        self.metadata = {}

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    n_outputs = 1

    def apply(self, grads):  # -> one gradient per next_functions edge
        raise NotImplementedError

    def release(self):
        """Free saved tensors after a backward that does not retain the graph."""

    def register_hook(self, fn):
        self._hooks.append(fn)
        return RemovableHandle(self._hooks, fn)

    def register_prehook(self, fn):
        self._pre_hooks.append(fn)
        return RemovableHandle(self._pre_hooks, fn)

    def __call__(self, *grads):
        return self.apply(list(grads))


class SavedTensor:
    """A tensor saved for backward, checked against in-place changes when unpacked."""

    __slots__ = ("data", "vc", "version", "requires_grad", "node", "output_nr", "tensor",
                 "freed", "desc")

    def __init__(self, t, node=None):
        # An output is saved as its storage plus a weak link to its node, not as the
        # Tensor: that would make a cycle tensor -> grad_fn -> tensor.
        self.vc = t._vc
        self.version = t._vc[0]
        self.freed = False
        if node is not None and t.grad_fn is node:
            self.tensor = None
            self.data = t._data
            self.node = weakref.ref(node)
            self.output_nr = t._output_nr
            self.desc = f"output {t._output_nr} of {node.name()}"
        else:
            self.tensor, self.data, self.node, self.desc = t, None, None, None

    def unpack(self):
        if self.freed:
            raise RuntimeError(SECOND_BACKWARD)
        if self.vc[0] != self.version:
            ref = self.tensor._data if self.tensor is not None else self.data
            kind = dtypes.scalar_type(ref.dtype)
            which = f", which is {self.desc}," if self.desc else ""
            if self.tensor is not None and self.tensor.grad_fn is not None:
                which = f", which is output {self.tensor._output_nr} of " \
                        f"{self.tensor.grad_fn.name()},"
            which = re.sub(r"Backward\d*,$", ",", which)  # PyTorch names the op: "of Exp,"
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: [torch.{kind}Tensor {list(ref.shape)}]{which} is at "
                f"version {self.vc[0]}; expected version {self.version} instead. Hint: enable "
                "anomaly detection to find the operation that failed to compute its gradient, "
                "with torch.autograd.set_detect_anomaly(True, check_nan=False)."
            )
        if self.tensor is not None:
            return self.tensor
        return Tensor._make(self.data, grad_fn=self.node(), output_nr=self.output_nr, vc=self.vc)


class _Ctx:
    """What a primitive's vjp rule sees."""

    __slots__ = ("inputs", "_out", "params", "avals", "needs_input_grad")

    @property
    def out(self):
        # unpacked (and its version checked) only if the rule reads it, like ``inputs``
        o = self._out
        if isinstance(o, SavedTensor):
            o = self._out = o.unpack()
        return o

    @out.setter
    def out(self, value):
        self._out = value


class _SavedInputs:
    """``ctx.inputs`` of a recorded node: a saved tensor is unpacked (and its version
    checked) only when the rule reads it, so ``y = x * 2; x.add_(1)`` stays
    differentiable as in PyTorch, which saves only what each gradient needs."""

    __slots__ = ("_saved",)

    def __init__(self, saved):
        self._saved = saved

    def __len__(self):
        return len(self._saved)

    def __getitem__(self, i):
        s = self._saved[i]
        return s.unpack() if isinstance(s, SavedTensor) else s

    def __iter__(self):
        return (self[i] for i in range(len(self._saved)))


_node_classes: dict[str, type] = {}


def node_class(name: str, base: type) -> type:
    """The node class called ``name`` (cached), so ``type(t.grad_fn).__name__`` is PyTorch's."""
    key = (name, base)
    cls = _node_classes.get(key)
    if cls is None:
        cls = _node_classes[key] = type(name, (base,), {"__slots__": ()})
    return cls
