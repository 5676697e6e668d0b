"""Custom differentiable functions: subclass ``Function``, define static ``forward`` and
``backward``, call ``apply``."""

from __future__ import annotations

from fusegrad.autograd import grad_mode
from fusegrad.autograd.engine import gradient_edge
from fusegrad.autograd.node import SECOND_BACKWARD, Node, SavedTensor
from fusegrad.dispatch import full
from fusegrad.tensor import Tensor


class FunctionCtx:
    """What ``forward`` and ``backward`` share (in PyTorch the ctx is the node itself)."""

    def save_for_backward(self, *tensors):
        self._to_save = tensors

    def save_for_forward(self, *tensors):
        self._to_save_fwd = tensors

    @property
    def saved_tensors(self):
        saved = self.__dict__.get("_saved")
        if saved is None:
            return tuple(self.__dict__.get("_to_save", ()))
        if saved is _FREED:
            raise RuntimeError(SECOND_BACKWARD)
        return tuple(s.unpack() if isinstance(s, SavedTensor) else s for s in saved)

    def mark_dirty(self, *tensors):
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_diff = {id(t) for t in tensors}

    def set_materialize_grads(self, value: bool):
        self._materialize = value


_FREED = object()


class BackwardCFunction(Node, FunctionCtx):
    """The node of one ``Function.apply`` call; its class is named ``<Function>Backward``."""

    _fn_cls = None

    def apply(self, grads):
        if getattr(self, "_materialize", True):
            grads = [full(s, 0, d) if g is None else g
                     for g, (s, d) in zip(grads, self._out_meta)]
        result = self._fn_cls.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        n_in = len(self._input_kinds)
        if len(result) != n_in:
            if len(result) > n_in and all(r is None for r in result[n_in:]):
                result = result[:n_in]
            else:
                raise RuntimeError(
                    f"function {type(self).__name__} returned an incorrect number of gradients "
                    f"(expected {n_in}, got {len(result)})")
        out = []
        for i, (is_tensor, r) in enumerate(zip(self._input_kinds, result)):
            if not is_tensor:
                if r is not None:
                    raise RuntimeError(
                        f"function {type(self).__name__} returned a gradient different than "
                        f"None at position {i + 1}, but the corresponding forward input was "
                        "not a Variable")
                continue
            if r is not None and self.needs_input_grad[i]:
                shape = self._in_shapes[i]
                if tuple(r.shape) != tuple(shape):
                    raise RuntimeError(
                        f"Function {type(self).__name__} returned an invalid gradient at index "
                        f"{i} - got {list(r.shape)} but expected shape compatible with "
                        f"{list(shape)}")
            out.append(r if self.needs_input_grad[i] else None)
        return out

    def release(self):
        if self.__dict__.get("_saved") is not None:
            self._saved = _FREED

    n_outputs = property(lambda self: len(self._out_meta))


class FunctionMeta(type):
    def __init__(cls, name, bases, attrs):
        super().__init__(name, bases, attrs)
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,), {"_fn_cls": cls})


class Function(metaclass=FunctionMeta):
    """Base class of custom autograd functions (static ``forward(ctx, ...)`` and
    ``backward(ctx, *grads)``)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode "
                                  "AD.")

    vjp = backward

    @staticmethod
    def setup_context(ctx, inputs, output):
        return None

    @classmethod
    def apply(cls, *args, **kwargs):
        node = cls._backward_cls.__new__(cls._backward_cls)
        is_tensor = [isinstance(a, Tensor) for a in args]
        needs = tuple(t and a.requires_grad for t, a in zip(is_tensor, args))
        record = grad_mode.is_grad_enabled() and any(needs)
        Node.__init__(node, [gradient_edge(a) if n else (None, 0)
                             for a, t, n in zip(args, is_tensor, needs) if t])
        node.needs_input_grad = needs
        node._input_kinds = is_tensor
        node._in_shapes = [a.shape if t else None for a, t in zip(args, is_tensor)]
        with grad_mode.no_grad():
            outputs = cls.forward(node, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        if not record:
            return outputs
        non_diff = node.__dict__.get("_non_diff", set())
        dirty = {id(t) for t in node.__dict__.get("_dirty", ())}
        wrapped, meta = [], []
        for nr, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                continue
            meta.append((tuple(o.shape), o.dtype))
            if any(o is a for a in args) and id(o) not in dirty:
                o = Tensor._make(o._data, vc=o._vc)  # an input returned as is: a new alias
            if id(o) in non_diff or not o.dtype.is_floating_point:
                wrapped.append(o)
                continue
            o.grad_fn, o._output_nr, o._requires_grad = node, nr, False
            wrapped.append(o)
        node._out_meta = meta
        to_save = node.__dict__.get("_to_save", ())
        node._saved = tuple(
            SavedTensor(t, node) if isinstance(t, Tensor) else t for t in to_save)
        return wrapped[0] if single else tuple(wrapped)


class once_differentiable:  # noqa: N801  (PyTorch's name)
    def __new__(cls, fn):
        return fn
