"""Who interprets an op: the ``Interpreter`` and ``Effects`` protocols, the eager evaluator
and the one thread-local that holds the current interpreter.

``fusegrad.dispatch.apply`` hands every primitive call to the current interpreter:
``Eager`` runs the primitive's ``impl``, the profiler wraps the interpreter it finds, and
``fusegrad.compile``'s tracer records the call into a graph instead. What is not a primitive
(``.grad`` fields, writes into a tensor's storage, numbers and objects a trace must watch,
graph breaks, ...) is an effect the interpreter implements too: ``Eager`` implements each
trivially, so the eager core never asks whether it is being traced.

``Tensor`` reads its ``.grad`` through the current interpreter, so this module sits below
``fusegrad.tensor``: it knows tensors only by their fields (``_data``, ``_grad``, ``_vc``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Protocol

import torch

from fusegrad.primitives import Scalar


def is_symbolic(data) -> bool:
    """Whether a tensor's ``_data`` is a symbolic value of a trace (an IR ``Var``) rather
    than a ``torch.Tensor`` that holds numbers."""
    return not isinstance(data, torch.Tensor)


def raise_op_error(prim, datas, params, err):
    """Re-raise an ATen failure as the primitive's own clear error when its meta rule has one."""
    prim.meta(*datas, **params)  # raises the op's message (op name, shapes, dtypes)
    raise type(err)(f"{prim.name}: {err}") from err


class Interpreter(Protocol):
    """Runs primitives and owns the storage of the tensors it makes."""

    def run(self, prim, args, params):
        """The result of ``prim`` on ``args`` (Tensors and Python numbers): a tensor's
        ``_data`` (a ``torch.Tensor``, or a symbolic value while tracing)."""

    def mutate(self, t, method, datas) -> bool:
        """Run torch's in-place ``method`` on ``t``'s storage with ``datas`` and bump its
        version; False when storage is not written here (a trace records a functional
        update instead)."""

    def write(self, t, value):
        """``t`` now holds ``value``'s content (the end of an in-place op)."""

    def snapshot(self, data):
        """``data`` as it is now, safe from later in-place writes."""


class Effects(Protocol):
    """What the eager core does besides running primitives, as the interpreter sees it."""

    def read_grad(self, t):
        """``t.grad``."""

    def write_grad(self, t, value):
        """``t.grad = value``."""

    def retain_grad(self, t, by_backward=False):
        """Keep the gradient of non-leaf ``t`` in ``t.grad`` from now on (``by_backward``:
        asked by ``backward(inputs=[t])``)."""

    def observer_hook(self):
        """A tensor hook returned None: it only looked at the gradient."""

    def note_backward(self):
        """A backward pass starts."""

    def graph_break(self, what):
        """``what`` (``Tensor.item()``, ...) needs a tensor's value in Python."""

    def storage(self, t, what):
        """The ``torch.Tensor`` behind ``t``, for ``what`` to write into outside autograd."""

    def note_constant(self, t):
        """``t`` was made from Python data or torch (a factory)."""

    def random_input(self, make, shape, dtype, device):
        """A random tensor's ``_data``; ``make()`` draws it from torch's generator."""

    def lift_scalar(self, container, key, lift):
        """``container[key]``, a Python number an optimizer reads (``lift``: changing it
        between calls must take effect)."""

    def watch_stateful(self, obj):
        """``obj`` (an optimizer) may change its ``state`` dict."""

    def provenance(self, tag):
        """A context manager: the ops inside come from the library scope ``tag``."""


class Eager:
    """Runs every primitive at once on ``torch.Tensor`` storage; every effect is trivial."""

    def run(self, prim, args, params):
        datas = [a if isinstance(a, Scalar) else a._data for a in args]
        try:
            return prim.impl(*datas, **params)
        except (RuntimeError, IndexError, TypeError, ValueError) as e:
            raise_op_error(prim, datas, params, e)

    def mutate(self, t, method, datas):
        getattr(t._data, method)(*datas)
        t._vc[0] += 1
        return True

    def write(self, t, value):
        t._data.copy_(value._data)

    def snapshot(self, data):
        return data.clone()

    def read_grad(self, t):
        return t._grad

    def write_grad(self, t, value):
        t._grad = value

    def retain_grad(self, t, by_backward=False):
        node = t.grad_fn
        if node._retains is None:
            node._retains = {}
        node._retains[t._output_nr] = weakref.ref(t)

    def observer_hook(self):
        pass

    def note_backward(self):
        pass

    def graph_break(self, what):
        pass

    def storage(self, t, what):
        return t._data

    def note_constant(self, t):
        pass

    def random_input(self, make, shape, dtype, device):
        return make()

    def lift_scalar(self, container, key, lift):
        return container[key]

    def watch_stateful(self, obj):
        pass

    def provenance(self, tag):
        return contextlib.nullcontext()


class Wrapper:
    """An interpreter that hands everything to ``inner`` (subclasses override what they
    observe, as the profiler does ``run``)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


EAGER = Eager()


class _State(threading.local):
    def __init__(self):
        self.interp = EAGER


_state = _State()


def current():
    """The interpreter of this thread's ops: ``EAGER`` unless something installed another."""
    return _state.interp


@contextlib.contextmanager
def interpreting(interp):
    """Run the block with ``interp`` as this thread's interpreter."""
    prev, _state.interp = _state.interp, interp
    try:
        yield interp
    finally:
        _state.interp = prev
