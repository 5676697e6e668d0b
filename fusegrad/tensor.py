"""``fusegrad.Tensor``: a ``torch.Tensor`` storage (or, while tracing, a symbolic value)
plus fusegrad's own autograd state.

Ops reach tensors through ``fusegrad.dispatch``; what a tensor does besides holding data
(its ``.grad`` field, giving its value to Python) goes through the current interpreter's
effects (``fusegrad.interpreter``), the same code eagerly and under a trace.
"""

from __future__ import annotations

import warnings

import torch

from fusegrad._util import dtypes
from fusegrad._util.hooks import RemovableHandle
from fusegrad.autograd import grad_mode
from fusegrad.interpreter import current, is_symbolic
from fusegrad.primitives import is_float

_mode = grad_mode._mode


class Tensor:
    """A tensor with PyTorch's autograd semantics, backed by a ``torch.Tensor``."""

    __slots__ = ("_data", "_requires_grad", "_grad", "grad_fn", "_output_nr", "_vc", "_base",
                 "_hooks", "_post_acc_hooks", "_accumulator", "_inference", "__dict__",
                 "__weakref__")

    def __init__(self, *args, requires_grad=False):
        # ``fusegrad.Tensor(...)`` is ``torch.Tensor(...)``: data (as the default float
        # dtype) or sizes; a Tensor argument shares its storage
        if len(args) == 1 and isinstance(args[0], Tensor):
            data = args[0]._data
        elif len(args) == 1 and isinstance(args[0], torch.Tensor):
            data = args[0].detach()
        else:
            data = torch.Tensor(*args)
        Tensor._init(self, data)
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _init(t, data, grad_fn=None, output_nr=0, vc=None):
        t._data = data
        t._requires_grad = False
        t._grad = None
        t.grad_fn = grad_fn
        t._output_nr = output_nr
        t._vc = vc if vc is not None else [0]
        t._base = None
        t._hooks = None
        t._post_acc_hooks = None
        t._accumulator = None
        t._inference = False

    @classmethod
    def _make(cls, data, grad_fn=None, output_nr=0, vc=None):
        t = object.__new__(cls)
        Tensor._init(t, data, grad_fn, output_nr, vc)
        return t

    # ------------------------------------------------------------------ autograd state

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad or self.grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, value):
        if value and not is_float(self.dtype):
            raise RuntimeError(
                "only Tensors of floating point and complex dtype can require gradients")
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        if self.grad_fn is not None:
            if requires_grad:
                return self
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use "
                "a computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach().")
        if requires_grad and not is_float(self.dtype):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._requires_grad = bool(requires_grad)
        return self

    def _factory_requires_grad(self):
        """``requires_grad=True`` of a factory (PyTorch words this error differently)."""
        if not is_float(self.dtype):
            raise RuntimeError(
                "Only Tensors of floating point and complex dtype can require gradients")
        return self.requires_grad_(True)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        if self.grad_fn is not None and not self._retains_grad() and self._grad is None:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the .grad field to be populated for a non-leaf Tensor, use "
                ".retain_grad() on the non-leaf Tensor. If you access the non-leaf Tensor by "
                "mistake, make sure you access the leaf Tensor instead.", UserWarning,
                stacklevel=2)
        return current().read_grad(self)

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}")
            if value.dtype != self.dtype:
                # PyTorch's words: a C++ type name for the gradient, a ScalarType for the tensor
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype "
                    f"'{dtypes.cpp_name(value.dtype)}' to a tensor with grad_dtype "
                    f"'{dtypes.scalar_type(self.dtype)}'. The gradient must match the tensor's "
                    "grad_dtype (defaults to the tensor's dtype). You can set the tensor's "
                    "grad_dtype attribute with a specific dtype, or None to allow any dtype. "
                    "Set grad_dtype with caution. Diverging the dtypes of a tensor and its "
                    "gradient may break downstream systems that assume they match.")
            if value.shape != self.shape:
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(value.shape)}' to a tensor "
                    f"of size '{list(self.shape)}'. Please ensure that the gradient and the "
                    "tensor are the same size")
        current().write_grad(self, value)

    def _retains_grad(self):
        node = self.grad_fn
        return bool(node is not None and node._retains and self._output_nr in node._retains)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad()

    def retain_grad(self):
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None:
            return  # leaves always keep their .grad
        current().retain_grad(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` whenever a gradient for this tensor is computed."""
        if not self.requires_grad:
            raise RuntimeError(
                "cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            node = self.grad_fn
            if node._tensor_hooks is None:
                node._tensor_hooks = {}
            lst = node._tensor_hooks.setdefault(self._output_nr, [])
        else:
            if self._hooks is None:
                self._hooks = []
            lst = self._hooks
        lst.append(hook)
        return RemovableHandle(lst, hook)

    def register_post_accumulate_grad_hook(self, hook):
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_acc_hooks is None:
            self._post_acc_hooks = []
        self._post_acc_hooks.append(hook)
        return RemovableHandle(self._post_acc_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        # backward() makes its default gradient through fusegrad.dispatch, a layer above
        from fusegrad.autograd.api import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self):
        t = Tensor._make(self._data, vc=self._vc)
        t._inference = self._inference
        return t

    def detach_(self):
        if self._base is not None and self._base.requires_grad:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead. If you are using "
                "DistributedDataParallel (DDP) for training, and gradient_as_bucket_view is "
                "set as True, gradients are views of DDP buckets, and hence detach_() cannot "
                "be called on these gradients. To fix this error, please refer to the "
                "Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
        self.grad_fn = None
        self._output_nr = 0
        self._requires_grad = False
        return self

    @property
    def data(self):
        return Tensor._make(self._data)

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else value

    @property
    def _version(self) -> int:
        if self._inference:
            raise RuntimeError("Inference tensors do not track version counter.")
        return self._vc[0]

    def is_inference(self) -> bool:
        return self._inference

    # ------------------------------------------------------------------ metadata

    @property
    def shape(self) -> torch.Size:
        return self._data.shape

    def size(self, dim=None):
        return self._data.shape if dim is None else self._data.shape[dim]

    @property
    def dtype(self) -> torch.dtype:
        return self._data.dtype

    @property
    def device(self) -> torch.device:
        return self._data.device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def dim(self) -> int:
        return len(self._data.shape)

    def numel(self) -> int:
        n = 1
        for s in self._data.shape:
            n *= s
        return n

    nelement = numel

    def element_size(self) -> int:
        return self._data.element_size()

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_contiguous(self) -> bool:
        return self._data.is_contiguous()

    def __len__(self):
        if self.dim() == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ------------------------------------------------------------------ values in Python
    # These need the tensor's value; under a trace they are graph breaks.

    def _concrete(self, what):
        current().graph_break(what)
        return self._data

    def item(self):
        data = self._concrete("Tensor.item()")
        if data.numel() != 1:
            raise RuntimeError(
                f"a Tensor with {data.numel()} elements cannot be converted to Scalar")
        return data.item()

    def tolist(self):
        return self._concrete("Tensor.tolist()").tolist()

    def numpy(self, *, force=False):
        if self.requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use "
                "tensor.detach().numpy() instead.")
        return self._concrete("Tensor.numpy()").numpy()

    def __bool__(self):
        data = self._concrete("bool(Tensor)")
        if data.numel() != 1:
            raise RuntimeError(
                "Boolean value of Tensor with more than one value is ambiguous")
        return bool(data)

    def __float__(self):
        return float(self._concrete("float(Tensor)"))

    def __int__(self):
        return int(self._concrete("int(Tensor)"))

    def __index__(self):
        return self._concrete("Tensor.__index__()").__index__()

    def __format__(self, spec):
        if self.dim() == 0 and spec:
            return self.item().__format__(spec)
        return object.__format__(self, spec) if spec else str(self)

    def __array__(self, dtype=None, copy=None):
        a = self._concrete("numpy.asarray(Tensor)").numpy()
        return a.astype(dtype) if dtype is not None else a

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self.dim() == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self, *, tensor_contents=None):
        if is_symbolic(self._data):
            return f"Tensor(symbolic {self._data})"
        body = repr(self._data)
        if self.grad_fn is not None:
            suffix = f"grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            suffix = "requires_grad=True"
        else:
            return body
        return _add_suffix(body, suffix)

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        return (_rebuild, (self._data, self._requires_grad, type(self)))

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the "
                "deepcopy protocol at the moment.")
        t = type(self)._make(self._data.clone())
        t._requires_grad = self._requires_grad
        if self._grad is not None:
            t._grad = Tensor._make(self._grad._data.clone())
        memo[id(self)] = t
        return t


def _rebuild(data, requires_grad, cls=Tensor):
    t = cls._make(data)
    t._requires_grad = requires_grad
    return t


def _add_suffix(body, suffix):
    # PyTorch's placement rule (torch._tensor_str._add_suffixes): wrap when the line is full
    linewidth = torch._tensor_str.PRINT_OPTS.linewidth
    head = body[:-1]
    last_line_len = len(head) - head.rfind("\n") + 1
    if last_line_len + len(suffix) + 2 > linewidth:
        return head + ",\n" + " " * 7 + suffix + ")"
    return head + ", " + suffix + ")"


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def reset_grad(t, set_to_none):
    """PyTorch's zero_grad rule for one tensor (``Module`` and ``Optimizer`` share it); reads
    and writes go through ``t.grad`` so that a traced step sees them."""
    grad = t.grad
    if grad is None:
        return
    if set_to_none:
        t.grad = None
        return
    if grad.grad_fn is not None:
        grad.detach_()
    else:
        grad.requires_grad_(False)
    grad.zero_()
