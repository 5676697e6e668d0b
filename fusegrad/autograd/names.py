"""PyTorch's ``grad_fn`` names: which node an op's result hangs from, and its edges.

A primitive's own node is named by its record (``P.mul.grad_name`` is ``MulBackward0``).
Where the operands decide PyTorch's node (a Python number first, batched operands),
``BY_OPERANDS`` says which. Where PyTorch computes a fusegrad op with another ATen
overload (``squeeze.dim`` is a reshape here), the op names that overload
(``apply(P.reshape, x, overload="squeeze.dim", ...)``) and ``OVERLOADS`` gives its node.
Both also say whether a Python-number operand gets an (empty) edge, as in PyTorch's node.

Decompositions that PyTorch runs as one ATen op get one node of its name: ``composite``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from fusegrad import primitives as P
from fusegrad.autograd.engine import CompositeNode, gradient_edge
from fusegrad.autograd.grad_mode import _mode
from fusegrad.autograd.node import Node, SavedTensor, node_class
from fusegrad.primitives import Scalar
from fusegrad.tensor import Tensor


class NodeName(NamedTuple):
    """A PyTorch node: its class name, and whether Python-number operands have an edge."""

    name: str
    number_edges: bool = True


# ATen overload fusegrad's op stands for -> PyTorch's node for it
OVERLOADS = {
    # max(x) / min(x) over every element; the values of max(x, dim) without indices
    "max": NodeName("MaxBackward1"),
    "min": NodeName("MinBackward1"),
    "max.dim": NodeName("MaxBackward0"),
    "min.dim": NodeName("MinBackward0"),
    # views: each is a reshape or permute here
    "alias": NodeName("AliasBackward0"),  # x[...] that keeps everything
    "_unsafe_view": NodeName("UnsafeViewBackward0"),  # reshape that copies, matmul results
    "squeeze": NodeName("SqueezeBackward0"),
    "squeeze.dim": NodeName("SqueezeBackward1"),
    "squeeze.dims": NodeName("SqueezeBackward2"),
    "squeeze_.dim": NodeName("SqueezeBackward4"),  # matmul(1-D, 2-D) squeezes in place
    "unsqueeze": NodeName("UnsqueezeBackward0"),
    "t": NodeName("TBackward0"),
    "transpose.int": NodeName("TransposeBackward0"),
    "clone": NodeName("CloneBackward0"),  # matmul(2-D, batched): contiguous() of a transpose
    # arithmetic with a Python number
    "div.Scalar": NodeName("DivBackward1", number_edges=False),  # cross_entropy's mean
    "__rtruediv__": NodeName("MulBackward0", number_edges=False),  # n / x: x.reciprocal() * n
    # in-place writes, as a select between the old content and the new
    "fill_.Scalar": NodeName("FillBackward2"),
    "fill_.Tensor": NodeName("FillBackward3"),
    "zero_": NodeName("ZeroBackward0"),
    "copy_": NodeName("CopyBackwards"),
}


def _number_first(node):
    return lambda args, params: node if isinstance(args[0], Scalar) else None


def _pow(args, params):
    if isinstance(args[1], Scalar):
        return NodeName("PowBackward0", number_edges=False)  # x ** 2
    if isinstance(args[0], Scalar):
        return NodeName("PowBackward2", number_edges=False)  # 2 ** x
    return NodeName("PowBackward1")  # x ** y


# primitive -> its node for these operands (None: the primitive's own)
BY_OPERANDS = {
    P.sub: _number_first(NodeName("RsubBackward1", number_edges=False)),  # 1 - x
    P.div: _number_first(NodeName("DivBackward0", number_edges=False)),  # 1 / x
    P.pow_: _pow,
    P.sum_: lambda args, params: NodeName("SumBackward0") if params["dims"] is None else None,
    P.matmul: lambda args, params: NodeName("BmmBackward0")
    if any(a.dim() > 2 for a in args) else None,
}


def node_name(prim, args, params, overload=None) -> NodeName:
    """PyTorch's node for ``prim`` applied to ``args`` by an op standing for ``overload``."""
    if overload is not None:
        return OVERLOADS[overload]
    rule = BY_OPERANDS.get(prim)
    hit = rule(args, params) if rule is not None else None
    return hit if hit is not None else NodeName(prim.grad_name)


def composite(grad_name, saves=True, saves_out=False):
    """Make ``fn`` (a decomposition into other ops) one autograd node called ``grad_name``.

    When nothing needs a gradient the decomposition simply runs. Under a trace the node is
    made too, so a compiled function's outputs carry the names eager gives them.

    Args:
        grad_name: PyTorch's node name (``AddmmBackward0``).
        saves: False for ops whose PyTorch node saves no tensors (mean, stack): their
            backward can run again without ``retain_graph``, as in PyTorch.
        saves_out: True for ops whose PyTorch node saves its result (softmax, logsumexp,
            norm): an in-place change of the result makes backward raise, as in PyTorch.

    Returns:
        A decorator.
    """

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _mode.enabled:
                return fn(*args, **kwargs)
            # integer tensors (class targets, indices) get no edge, as in PyTorch's nodes
            tensors = [a for a in args if isinstance(a, Tensor) and P.is_float(a.dtype)]
            if not any(t.requires_grad for t in tensors):
                return fn(*args, **kwargs)
            inner = fn(*args, **kwargs)
            if inner.grad_fn is None:
                return inner
            cls = node_class(grad_name, CompositeNode)
            node = cls.__new__(cls)
            Node.__init__(node, [gradient_edge(t) if t.requires_grad else (None, 0)
                                 for t in tensors])
            node.inner_out = inner
            node.inner_inputs = [t if t.requires_grad else None for t in tensors]
            if not saves:
                node.metadata["keeps_inner"] = True
            out = Tensor._make(inner._data, grad_fn=node, vc=inner._vc)
            if saves_out:
                node.metadata["saved_out"] = SavedTensor(out, node)
            return out

        return wrapper

    return deco
