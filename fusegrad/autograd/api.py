"""``backward`` and ``grad``: the entry points of a backward pass (``fusegrad.autograd``)."""

from __future__ import annotations

from fusegrad.autograd.engine import run_backward
from fusegrad.dispatch import full
from fusegrad.tensor import Tensor


def _as_tuple(x):
    if x is None:
        return None
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _make_grads(outputs, grads):
    if grads is None:
        grads = (None,) * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(
            "grad can be implicitly created only for scalar outputs" if not grads else
            f"Mismatch in number of gradients: got {len(grads)} gradients for "
            f"{len(outputs)} outputs")
    out = []
    for i, (t, g) in enumerate(zip(outputs, grads)):
        if g is None:
            if t.requires_grad and t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if t.requires_grad and not t.dtype.is_floating_point:
                raise RuntimeError(
                    f"grad can be implicitly created only for real scalar outputs but got "
                    f"{t.dtype}")
            g = full(t.shape, 1, t.dtype, t.device)
        elif not isinstance(g, Tensor):
            g = full(t.shape, g, t.dtype, t.device)
        elif g.shape != t.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and "
                f"output[{i}] has a shape of {t.shape}.")
        out.append((t, g))
    return out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
             grad_variables=None, inputs=None):
    """Accumulate into ``.grad`` of the graph's leaves (or of ``inputs``) the gradient of
    ``tensors`` weighted by ``grad_tensors``."""
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors if grad_tensors is not None else grad_variables)
    inputs = _as_tuple(inputs)
    if inputs is not None and len(inputs) == 0:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    if retain_graph is None:
        retain_graph = create_graph
    roots = _make_grads(tensors, grad_tensors)
    run_backward(roots, inputs, accumulate=True, retain_graph=retain_graph,
                 create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """Return the gradients of ``outputs`` with respect to ``inputs`` (nothing accumulates)."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    if len(inputs) == 0:
        raise RuntimeError("grad requires non-empty inputs.")
    if is_grads_batched:
        raise NotImplementedError("autograd.grad: is_grads_batched is not supported")
    if allow_unused is None:
        allow_unused = materialize_grads
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _make_grads(outputs, _as_tuple(grad_outputs))
    result = run_backward(roots, inputs, accumulate=False, retain_graph=retain_graph,
                          create_graph=create_graph, allow_unused=allow_unused)
    if materialize_grads:
        result = [full(t.shape, 0, t.dtype, t.device) if g is None else g
                  for t, g in zip(inputs, result)]
    return tuple(result)
