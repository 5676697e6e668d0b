"""User-facing ops: thin wrappers that pick a primitive (or compose several) and name the
autograd node as PyTorch does. Tensor methods and operators are bound at the bottom.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import torch

from fusegrad import primitives as P
from fusegrad.autograd.grad_mode import _mode
from fusegrad.autograd.names import composite
from fusegrad.primitives import Scalar, check, normalize_dims
from fusegrad.dispatch import apply, check_inplace, constant, current, is_symbolic
from fusegrad.tensor import Tensor

_builtin_slice = builtins.slice
_sum = builtins.sum
_any = builtins.any


def _t(x):
    """Accept fusegrad Tensors and Python numbers as op operands."""
    if isinstance(x, (Tensor, *Scalar)):
        return x
    if isinstance(x, torch.Tensor):
        return Tensor._make(x.detach())
    raise TypeError(f"expected a fusegrad Tensor or a number, got {type(x).__name__}")


# --------------------------------------------------------------------------- pointwise


def _unary(prim):
    def op(x):
        return apply(prim, x)

    op.__name__ = prim.name
    return op


neg = negative = _unary(P.neg)
exp = _unary(P.exp)
log = _unary(P.log)
sqrt = _unary(P.sqrt)
abs = absolute = _unary(P.abs_)
sin = _unary(P.sin)
cos = _unary(P.cos)
tanh = _unary(P.tanh)
sigmoid = _unary(P.sigmoid)
relu = _unary(P.relu)
sign = _unary(P.sign)

# every other public unary prim of the table (one with an in-place form) is an op of the
# same name: a new record is all it takes to get fusegrad.<name> and Tensor.<name>(_)
TABLE_UNARY = [p for p in P.PRIMS.values()
               if p.kind is P.Kind.UNARY and p.inplace and p.name not in globals()]
for _p in TABLE_UNARY:
    globals()[_p.name] = _unary(_p)


def cast(x, dtype):
    if x.dtype == dtype:
        return x
    return apply(P.cast, x, dtype=dtype)


def clone(x, *, memory_format=None):
    return apply(P.copy, x)


def add(a, b, *, alpha=1):
    a, b = _t(a), _t(b)
    if alpha != 1:
        b = b * alpha if isinstance(b, Scalar) else mul(b, alpha)
    if isinstance(a, Scalar):
        a, b = b, a
    return apply(P.add, a, b)


def sub(a, b, *, alpha=1):
    a, b = _t(a), _t(b)
    if alpha != 1:
        b = b * alpha if isinstance(b, Scalar) else mul(b, alpha)
    if isinstance(a, Scalar):
        return apply(P.sub, a, b)  # RsubBackward1
    return apply(P.sub, a, b)


subtract = sub


def rsub(a, b):
    return sub(b, a)


def mul(a, b):
    a, b = _t(a), _t(b)
    if isinstance(a, Scalar):
        a, b = b, a
    return apply(P.mul, a, b)


multiply = mul


def div(a, b, *, rounding_mode=None):
    a, b = _t(a), _t(b)
    if rounding_mode is not None:
        check(not (isinstance(a, Tensor) and a.requires_grad)
              and not (isinstance(b, Tensor) and b.requires_grad),
              lambda: "div: rounding_mode is not differentiable")
        da = a._data if isinstance(a, Tensor) else a
        db = b._data if isinstance(b, Tensor) else b
        return Tensor._make(torch.div(da, db, rounding_mode=rounding_mode))
    if isinstance(a, Scalar):
        return apply(P.div, a, b)
    return apply(P.div, a, b)


divide = true_divide = div


def pow(a, b):
    a, b = _t(a), _t(b)
    return apply(P.pow_, a, b)


def square(x):
    return pow(x, 2)


def maximum(a, b):
    return apply(P.maximum, _t(a), _t(b))


def minimum(a, b):
    return apply(P.minimum, _t(a), _t(b))


def _compare(prim):
    def op(a, b):
        return apply(prim, _t(a), _t(b))

    op.__name__ = prim.name
    return op


eq = _compare(P.PRIMS["eq"])
ne = _compare(P.PRIMS["ne"])
lt = _compare(P.PRIMS["lt"])
le = _compare(P.PRIMS["le"])
gt = _compare(P.PRIMS["gt"])
ge = _compare(P.PRIMS["ge"])
logical_and = _compare(P.logical_and)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def where(condition, x, y):
    return apply(P.where, _t(condition), _t(x), _t(y))


def clamp(x, min=None, max=None):
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        return _clamp_tensor(x, min, max)
    return apply(P.clamp, x, lo=min, hi=max)


@composite("ClampBackward0")
def _clamp_tensor(x, lo, hi):
    # tensor bounds: min(max(x, lo), hi) as two selects, so x gets the gradient where
    # lo <= x <= hi and each bound where it is the result, as in PyTorch
    check(lo is not None or hi is not None,
          lambda: "clamp: At least one of 'min' or 'max' must not be None")
    out = x if lo is None else where(lt(x, lo), lo, x)
    return out if hi is None else where(gt(out, hi), hi, out)


clip = clamp


def clamp_min(x, min):
    return clamp(x, min=min)


def clamp_max(x, max):
    return clamp(x, max=max)


# --------------------------------------------------------------------------- reductions


def _dims_arg(dim):
    if dim is None:
        return None
    if isinstance(dim, int):
        return (dim,)
    return tuple(dim)


def sum(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return apply(P.sum_, x, dims=None, keepdim=False)
    return apply(P.sum_, x, dims=_dims_arg(dim), keepdim=keepdim)


def _mean(x, dim=None, keepdim=False):
    dims = normalize_dims("mean", _dims_arg(dim), x.dim())
    n = math.prod(x.shape[d] for d in dims) if x.dim() else 1
    s = apply(P.sum_, x, dims=None if dim is None else dims, keepdim=keepdim)
    return apply(P.div, s, n)


_mean_all = composite("MeanBackward0", saves=False)(_mean)
_mean_dim = composite("MeanBackward1", saves=False)(_mean)


def mean(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    check(x.dtype.is_floating_point or x.dtype.is_complex,
          lambda: f"mean(): could not infer output dtype. Input dtype must be either a floating "
          f"point or complex dtype. Got: {str(x.dtype).replace('torch.', '').capitalize()}")
    if dim is None:
        return _mean_all(x)
    return _mean_dim(x, dim, keepdim)


def amax(x, dim=(), keepdim=False):
    dims = None if dim == () or dim is None else _dims_arg(dim)
    return apply(P.amax, x, dims=dims, keepdim=keepdim)


def amin(x, dim=(), keepdim=False):
    dims = None if dim == () or dim is None else _dims_arg(dim)
    return apply(P.amin, x, dims=dims, keepdim=keepdim)


def _return_type(name):
    """A (values, indices) named tuple that prints as PyTorch's ``torch.return_types.<name>``."""

    def __repr__(self):
        return f"torch.return_types.{name}(\nvalues={self.values!r},\nindices={self.indices!r})"

    return type(name, (namedtuple(name, ["values", "indices"]),),
                {"__slots__": (), "__repr__": __repr__, "__str__": __repr__})


class return_types:
    max = _return_type("max")
    min = _return_type("min")


def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return apply(P.argmax, reshape(x, (-1,)), dims=0, keepdim=False)
    return apply(P.argmax, x, dims=dim, keepdim=keepdim)


def argmin(x, dim=None, keepdim=False):
    return argmax(neg(x), dim, keepdim)


def _max_min(x, dim, keepdim, which):
    """``max``/``min``: the full reduction, or (values, indices) along ``dim``."""
    prim, pairwise, arg = {"max": (P.amax, maximum, argmax),
                           "min": (P.amin, minimum, argmin)}[which]
    if isinstance(dim, Tensor):
        return pairwise(x, dim)
    if dim is None:
        return apply(prim, x, overload=which, dims=None, keepdim=False)
    indices = arg(x, dim, keepdim)
    result = getattr(return_types, which)
    if _picks_by_index(x):
        return result(_picked[which](x, dim, keepdim, indices=indices), indices)
    values = apply(prim, x, overload=f"{which}.dim", dims=(dim,), keepdim=keepdim)
    return result(values, indices)


def max(x, dim=None, keepdim=False):
    return _max_min(x, dim, keepdim, "max")


def min(x, dim=None, keepdim=False):
    return _max_min(x, dim, keepdim, "min")


def _picks_by_index(x):
    """Whether max/min(x, dim) must route its gradient through the returned indices (only
    needed when it is differentiated; amax is cheaper but splits ties)."""
    return x.dtype.is_floating_point and x.dim() > 0 and _mode.enabled and x.requires_grad


def _pick(x, dim, keepdim, indices):
    # the gradient goes to the element at ``indices`` alone, as PyTorch's max(dim) does
    idx = indices if keepdim else unsqueeze(indices, dim)
    mask = eq(iota(tuple(x.shape), dim % x.dim(), device=x.device), idx)
    return sum(where(mask, x, 0.0), dim, keepdim)


_picked = {"max": composite("MaxBackward0")(_pick), "min": composite("MinBackward0")(_pick)}


@composite("SoftmaxBackward0", saves_out=True)
def softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    # subtracting the row max keeps exp in range; softmax is shift-invariant, so the
    # max is a constant for the derivative
    e = exp(sub(x, amax(x, dim, keepdim=True).detach()))
    return div(e, sum(e, dim, keepdim=True))


def log_softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    (dim,) = normalize_dims("log_softmax", dim, x.dim()) if x.dim() else (0,)
    return apply(P.log_softmax, x, dim=dim)


@composite("LogsumexpBackward0", saves_out=True)
def logsumexp(x, dim, keepdim=False):
    m = amax(x, dim, keepdim=True).detach()
    r = add(log(sum(exp(sub(x, m)), dim, keepdim=True)), m)
    return r if keepdim else squeeze(r, dim)


def _norm(x, p=2, dim=None, keepdim=False):
    check(p == 2 or p == "fro", lambda: f"norm: only p=2 is supported, got p={p!r}")
    return sqrt(sum(mul(x, x), dim, keepdim))


_norm_node = composite("LinalgVectorNormBackward0", saves_out=True)(_norm)


def norm(x, p=2, dim=None, keepdim=False):
    return _norm_node(x, p, dim, keepdim)


# --------------------------------------------------------------------------- movement


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        return tuple(shape[0])
    return tuple(shape)


def _infer_shape(x, shape):
    shape = [int(s) for s in shape]
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        check(shape.count(-1) == 1, lambda: "reshape: only one dimension can be inferred")
        n = x.numel()
        check(known != 0 and n % known == 0,
              lambda: f"reshape: shape '{list(shape)}' is invalid for input of size {n}")
        shape[shape.index(-1)] = n // known
    return tuple(shape)


def _copies(x, shape):
    """Whether ``x.reshape(shape)`` must copy (known in eager only: a trace has no strides)."""
    d = x._data
    if is_symbolic(d) or d.is_contiguous():
        return False
    try:
        d.view(shape)
    except RuntimeError:
        return math.prod(shape) == d.numel()
    return False


def reshape(x, *shape):
    shape = _infer_shape(x, _shape_arg(shape))
    overload = None
    if _copies(x, shape):
        # PyTorch's reshape copies as clone + _unsafe_view: two nodes
        if x.requires_grad and _mode.enabled:
            x = apply(P.copy, x)
        overload = "_unsafe_view"
    return apply(P.reshape, x, overload=overload, shape=shape)


def view(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise TypeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(x, _shape_arg(shape))
    check(not _copies(x, shape), lambda: "view size is not compatible with input tensor's size "
          "and stride (at least one dimension spans across two contiguous subspaces). Use "
          ".reshape(...) instead.")
    return reshape(x, shape)


def view_as(x, other):
    return reshape(x, other.shape)


def reshape_as(x, other):
    return reshape(x, other.shape)


def flatten(x, start_dim=0, end_dim=-1):
    if x.dim() == 0:
        return reshape(x, 1)
    s, e = start_dim % x.dim(), end_dim % x.dim()
    if s == e:
        return x
    shape = (*x.shape[:s], math.prod(x.shape[s:e + 1]), *x.shape[e + 1:])
    return reshape(x, shape)


def squeeze(x, dim=None):
    if dim is None:
        shape = [s for s in x.shape if s != 1]
        return apply(P.reshape, x, overload="squeeze", shape=tuple(shape))
    dims = normalize_dims("squeeze", _dims_arg(dim), x.dim())
    shape = [s for i, s in enumerate(x.shape) if not (i in dims and s == 1)]
    overload = "squeeze.dim" if isinstance(dim, int) else "squeeze.dims"
    return apply(P.reshape, x, overload=overload, shape=tuple(shape))


def unsqueeze(x, dim):
    nd = x.dim() + 1
    check(-nd <= dim < nd, lambda: f"unsqueeze: Dimension out of range (expected to be in "
          f"range of [{-nd}, {nd - 1}], but got {dim})", IndexError)
    dim %= nd
    shape = (*x.shape[:dim], 1, *x.shape[dim:])
    return apply(P.reshape, x, overload="unsqueeze", shape=shape)


def permute(x, *dims):
    dims = tuple(d % x.dim() if x.dim() else d for d in _shape_arg(dims))
    return apply(P.permute, x, dims=dims)


def transpose(x, dim0, dim1):
    return _transpose(x, dim0, dim1, "transpose.int")


def _transpose(x, dim0, dim1, overload):
    nd = x.dim()
    if nd < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return apply(P.reshape, x, overload=overload, shape=tuple(x.shape))
    d0, d1 = normalize_dims("transpose", dim0, nd)[0], normalize_dims("transpose", dim1, nd)[0]
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return apply(P.permute, x, overload=overload, dims=tuple(dims))


swapaxes = transpose


def t(x):
    check(x.dim() <= 2, lambda: f"t() expects a tensor with <= 2 dimensions, but self is "
          f"{x.dim()}D")
    return _transpose(x, 0, -1, "t")


def expand(x, *sizes):
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.dim()
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return apply(P.expand, x, shape=shape)


def expand_as(x, other):
    return expand(x, other.shape)


def broadcast_to(x, shape):
    return expand(x, shape)


def slice(x, dim, start, stop, step=1):
    return apply(P.slice_, x, dim=dim, start=start, stop=stop, step=step)


def unslice(g, shape, dim, start, stop, step=1):
    return apply(P.unslice, g, shape=tuple(shape), dim=dim, start=start, stop=stop, step=step)


def select(x, dim, index):
    n = x.dim()
    check(n > 0, lambda: "select() cannot be applied to a 0-dim tensor.", IndexError)
    dim %= n
    size = x.shape[dim]
    check(-size <= index < size, lambda: f"index {index} is out of bounds for dimension "
          f"{dim} with size {size}", IndexError)
    return apply(P.select, x, dim=dim, index=index % size)


def getitem(x, idx):
    """Basic indexing: ints, slices, None and Ellipsis (views, as in PyTorch)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    if _any(isinstance(i, (Tensor, torch.Tensor, list)) for i in idx):
        return _advanced_index(x, idx)
    n_real = _sum(1 for i in idx if i is not None and i is not Ellipsis)
    check(n_real <= x.dim(), lambda: f"too many indices for tensor of dimension {x.dim()}",
          IndexError)
    out, dim, seen_ellipsis = x, 0, False
    for i in idx:
        if i is Ellipsis:
            check(not seen_ellipsis, lambda: "an index can only have a single ellipsis ('...')",
                  IndexError)
            seen_ellipsis = True
            dim += x.dim() - n_real
        elif i is None:
            out = unsqueeze(out, dim)
            dim += 1
        elif isinstance(i, bool):
            raise IndexError("fusegrad: boolean scalar indices are not supported")
        elif isinstance(i, int):
            out = select(out, dim, i)
        elif isinstance(i, _builtin_slice):
            size = out.shape[dim]
            start, stop, step = i.indices(size)
            check(step > 0, lambda: "step must be greater than zero", ValueError)
            # PyTorch skips a slice that keeps everything unless its start is given nonzero
            if not (i.start in (None, 0) and stop >= size and step == 1):
                out = slice(out, dim, start, builtins.max(start, stop), step)
            dim += 1
        else:
            raise IndexError(f"fusegrad: unsupported index of type {type(i).__name__}; "
                             "only ints, slices, None, Ellipsis and index tensors are allowed")
    if out is x:
        out = apply(P.reshape, x, overload="alias", shape=tuple(x.shape))
    return out



def _advanced_index(x, idx):
    # gathers by index tensors are data-dependent: eager only, and not differentiable
    check(not x.requires_grad or not _mode.enabled, lambda: "indexing with tensors is not "
          "differentiable in fusegrad; index a detached tensor or use basic slicing")
    current().graph_break("indexing with a tensor")
    key = tuple(i._data if isinstance(i, Tensor) else i for i in idx)
    return Tensor._make(x._data[key])


def setitem(x, idx, value):
    if isinstance(value, Tensor) and value.requires_grad and _mode.enabled:
        raise RuntimeError("__setitem__ with a value that requires grad is not supported")
    check_inplace(x)
    if x.requires_grad and _mode.enabled:
        raise RuntimeError(
            "__setitem__ on a tensor that requires grad is not supported; use torch.where or "
            "do it under no_grad()")
    current().graph_break("Tensor.__setitem__")
    key = idx._data if isinstance(idx, Tensor) else idx
    if isinstance(key, tuple):
        key = tuple(k._data if isinstance(k, Tensor) else k for k in key)
    x._data[key] = value._data if isinstance(value, Tensor) else value
    x._vc[0] += 1


def cat(tensors, dim=0):
    tensors = [_t(x) for x in tensors]
    check(len(tensors) > 0, lambda: "cat(): expected a non-empty list of Tensors", ValueError)
    nd = tensors[0].dim()
    dim = dim % nd if nd else 0
    return apply(P.cat, *tensors, dim=dim)


concat = concatenate = cat


@composite("StackBackward0", saves=False)
def _stack(*tensors, dim=0):
    return cat([unsqueeze(x, dim) for x in tensors], dim)


def stack(tensors, dim=0):
    tensors = list(tensors)
    check(len(tensors) > 0, lambda: "stack expects a non-empty TensorList")
    shapes = {tuple(x.shape) for x in tensors}
    check(len(shapes) == 1, lambda: f"stack expects each tensor to be equal size, but got "
          f"{list(tensors[0].shape)} at entry 0 and {list(tensors[1].shape)} at entry 1")
    return _stack(*tensors, dim=dim % (tensors[0].dim() + 1))


# --------------------------------------------------------------------------- matmul


def _mm(a, b):
    return apply(P.matmul, a, b)


@composite("MvBackward0")
def _mv(a, v):
    return reshape(_mm(a, unsqueeze(v, 1)), (a.shape[0],))


@composite("DotBackward0")
def _dot(a, b):
    return reshape(_mm(unsqueeze(a, 0), unsqueeze(b, 1)), ())


def matmul(a, b):
    """``a @ b`` with PyTorch's rules for 1-D and batched operands."""
    check(isinstance(a, Tensor) and isinstance(b, Tensor),
          lambda: "matmul: expected both operands to be Tensors")
    da, db = a.dim(), b.dim()
    check(da > 0 and db > 0, lambda: f"both arguments to matmul need to be at least 1D, but "
          f"they are {da}D and {db}D")
    if da == 1 and db == 1:
        check(a.shape[0] == b.shape[0], lambda: f"inconsistent tensor size, expected tensor "
              f"[{a.shape[0]}] and src [{b.shape[0]}] to have the same number of elements, but "
              f"got {a.shape[0]} and {b.shape[0]} elements respectively")
        return _dot(a, b)
    if da == 2 and db == 1:
        check(a.shape[1] == b.shape[0], lambda: f"size mismatch, got input ({a.shape[0]}), "
              f"mat ({a.shape[0]}x{a.shape[1]}), vec ({b.shape[0]})")
        return _mv(a, b)
    if da == 1:
        out = _mm(unsqueeze(a, 0), b) if db == 2 else matmul(unsqueeze(a, 0), b)
        if db > 2:  # PyTorch folds this into one mv and ends in _unsafe_view
            return apply(P.reshape, out, overload="_unsafe_view",
                         shape=(*out.shape[:-2], out.shape[-1]))
        return apply(P.reshape, out, overload="squeeze_.dim", shape=tuple(out.shape[1:]))
    if db == 1:
        out = matmul(a, unsqueeze(b, -1))
        return apply(P.reshape, out, overload="_unsafe_view", shape=tuple(out.shape[:-1]))
    if da == 2 and db == 2:
        return _mm(a, b)
    if db == 2:  # fold the batch into rows: one large mm, as PyTorch does
        flat = reshape(a, (-1, a.shape[-1]))
        out = _mm(flat, b)
        return apply(P.reshape, out, overload="_unsafe_view", shape=(*a.shape[:-1], b.shape[-1]))
    out = apply(P.matmul, a, b)  # BmmBackward0
    # PyTorch's last step (and so its grad_fn name): a contiguous() of a transposed result
    # for 2-D @ batched, an _unsafe_view of the bmm result otherwise
    return apply(P.reshape, out, overload="clone" if da == 2 else "_unsafe_view",
                 shape=tuple(out.shape))


def mm(a, b):
    check(a.dim() == 2, lambda: "mm: self must be a matrix")
    check(b.dim() == 2, lambda: "mm: mat2 must be a matrix")
    return _mm(a, b)


def bmm(a, b):
    check(a.dim() == 3 and b.dim() == 3, lambda: f"bmm: batch1 and batch2 must be 3D tensors, "
          f"got {a.dim()}D and {b.dim()}D")
    return apply(P.matmul, a, b)


def dot(a, b):
    return _dot(a, b)


def mv(a, v):
    return _mv(a, v)


@composite("AddmmBackward0")
def addmm(bias, a, b, *, beta=1, alpha=1):
    out = _mm(a, b)
    if alpha != 1:
        out = mul(out, alpha)
    return add(out, bias if beta == 1 else mul(bias, beta))


# --------------------------------------------------------------------------- creation


def _dtype(dtype):
    return dtype if dtype is not None else torch.get_default_dtype()


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    size = _shape_arg(size if isinstance(size, (tuple, list, torch.Size)) else (size,))
    if dtype is None:
        dtype = torch.get_default_dtype() if isinstance(fill_value, float) \
            else torch.tensor(fill_value).dtype
    out = apply(P.full, shape=tuple(size), value=fill_value, dtype=dtype,
                device=torch.device(device or "cpu"))
    return out._factory_requires_grad() if requires_grad else out


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return full(_shape_arg(size), 0, dtype=_dtype(dtype), device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return full(_shape_arg(size), 1, dtype=_dtype(dtype), device=device,
                requires_grad=requires_grad)


def full_like(x, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(tuple(x.shape), fill_value, dtype=dtype or x.dtype,
                device=device or x.device, requires_grad=requires_grad)


def zeros_like(x, *, dtype=None, device=None, requires_grad=False):
    return full_like(x, 0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(x, *, dtype=None, device=None, requires_grad=False):
    return full_like(x, 1, dtype=dtype, device=device, requires_grad=requires_grad)


def iota(shape, dim, *, dtype=torch.int64, device="cpu"):
    """Indices along ``dim`` broadcast to ``shape`` (for one-hot masks inside a graph)."""
    view = [1] * len(shape)
    view[dim] = shape[dim]
    # Triton kernels make only uniform fills: the indices are a constant of any trace
    r = constant(P.iota, n=shape[dim], dtype=dtype, device=torch.device(device))
    return expand(reshape(r, view), shape)


# --------------------------------------------------------------------------- conversions


def to(x, *args, **kwargs):
    dtype = kwargs.get("dtype")
    device = kwargs.get("device")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, (str, torch.device)):
            device = torch.device(a)
        elif isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
    out = x
    if device is not None and torch.device(device) != x.device:
        check(not (x.requires_grad and _mode.enabled),
              lambda: "to(device): moving a tensor that requires grad across devices is not "
              "differentiable in fusegrad; move leaves before building the graph")
        out = Tensor._make(x._data.to(device))
    if dtype is not None and dtype != out.dtype:
        out = cast(out, dtype)
    return out


def _caster(dtype):
    def op(x, memory_format=None):
        return cast(x, dtype)

    return op


def type_as(x, other):
    return cast(x, other.dtype)


def contiguous(x, memory_format=None):
    d = x._data
    if is_symbolic(d) or d.is_contiguous():
        return x  # a traced value has no layout: that is the compiler's business
    out = apply(P.copy, x)  # CloneBackward0, as PyTorch's contiguous()
    if not is_symbolic(out._data):  # clone keeps a transposed layout; this copy does not
        out._data = out._data.contiguous()
    return out


def detach(x):
    return x.detach()


def numel(x):
    return x.numel()


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return torch.allclose(_data(a), _data(b), rtol, atol, equal_nan)


def equal(a, b):
    return torch.equal(_data(a), _data(b))


def _data(x):
    return x._data if isinstance(x, Tensor) else torch.as_tensor(x)


def all(x, dim=None):
    return Tensor._make(x._concrete("Tensor.all()").all() if dim is None else x._data.all(dim))


def any(x, dim=None):
    return Tensor._make(x._concrete("Tensor.any()").any() if dim is None else x._data.any(dim))


def logical_not(x):
    return eq(x, False) if x.dtype == torch.bool else eq(x, 0)


def logical_or(a, b):
    return ne(add(cast(a, torch.int64), cast(b, torch.int64)), 0)
