"""``fusegrad.nn.functional``: layers and losses as compositions of fusegrad ops, each one
autograd node named as PyTorch names it."""

from __future__ import annotations

import math
import warnings

import torch

from fusegrad import factories, ops
from fusegrad import primitives as P
from fusegrad.autograd.names import composite
from fusegrad.dispatch import apply
from fusegrad.interpreter import is_symbolic
from fusegrad.ops import log_softmax, sigmoid, softmax, tanh  # noqa: F401
from fusegrad.primitives import check

__all__ = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "linear", "mse_loss",
           "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits",
           "binary_cross_entropy", "dropout", "one_hot", "gelu", "leaky_relu", "silu"]


def relu(input, inplace=False):
    """``max(input, 0)``; ``inplace=True`` overwrites ``input`` (``ReluBackward0`` either way)."""
    return input.relu_() if inplace else ops.relu(input)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``; 2-D input becomes one addmm, like PyTorch's."""
    rows = int(math.prod(input.shape[:-1])) if input.dim() > 1 else 1
    check(input.shape[-1] == weight.shape[-1], lambda: f"linear: mat1 and mat2 shapes cannot be "
          f"multiplied ({rows}x{input.shape[-1]} and {weight.shape[1]}x{weight.shape[0]})")
    wt = ops.t(weight)
    if input.dim() == 2:
        return ops.addmm(bias, input, wt) if bias is not None else ops.mm(input, wt)
    if bias is None:
        return ops.matmul(input, wt)  # PyTorch's names: UnsafeViewBackward0, SqueezeBackward4
    lead = input.shape[:-1]
    flat = ops.reshape(input, (-1, input.shape[-1]))
    out = ops.addmm(bias, flat, wt)
    return ops.view(out, (*lead, weight.shape[0]))


def _reduce(loss, reduction):
    if reduction == "mean":
        return ops.mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    check(reduction == "none", lambda: f"{reduction} is not a valid value for reduction",
          ValueError)
    return loss


def _check_target_shape(name, input, target):
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.", stacklevel=3)


@composite("MseLossBackward0")
def _mse(input, target, reduction):
    d = ops.sub(input, target)
    return _reduce(ops.mul(d, d), reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    _check_target_shape("mse_loss", input, target)
    return _mse(input, target, reduction)


@composite("L1LossBackward0")
def _l1(input, target, reduction):
    return _reduce(ops.abs(ops.sub(input, target)), reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    _check_target_shape("l1_loss", input, target)
    return _l1(input, target, reduction)


@composite("BinaryCrossEntropyWithLogitsBackward0")
def _bce_logits(input, target, weight, pos_weight, reduction):
    # (1 - t) x + w_pos * log(1 + exp(-x)), with log(1 + exp(-x)) computed stably
    m = ops.clamp(ops.neg(input), min=0)
    softplus = ops.add(ops.log(ops.add(ops.exp(ops.neg(m)), ops.exp(ops.sub(ops.neg(input), m)))),
                       m)
    if pos_weight is not None:
        softplus = ops.mul(ops.add(ops.mul(ops.sub(pos_weight, 1), target), 1), softplus)
    loss = ops.add(ops.mul(ops.rsub(target, 1), input), softplus)
    if weight is not None:
        loss = ops.mul(loss, weight)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    check(tuple(target.shape) == tuple(input.shape), lambda: f"Target size ({target.shape}) must "
          f"be the same as input size ({input.shape})", ValueError)
    return _bce_logits(input, target, weight, pos_weight, reduction)


@composite("BinaryCrossEntropyBackward0")
def _bce(input, target, weight, reduction):
    # PyTorch clamps the log at -100 so that p = 0 or 1 gives a finite loss
    logp = ops.clamp(ops.log(input), min=-100)
    log1mp = ops.clamp(ops.log(ops.rsub(input, 1)), min=-100)
    loss = ops.neg(ops.add(ops.mul(target, logp), ops.mul(ops.rsub(target, 1), log1mp)))
    if weight is not None:
        loss = ops.mul(loss, weight)
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    check(tuple(target.shape) == tuple(input.shape), lambda: f"Using a target size "
          f"({target.shape}) that is different to the input size ({input.shape}) is deprecated. "
          "Please ensure they have the same size.", ValueError)
    return _bce(input, target, weight, reduction)


def _class_mask(input, target, dim=1):
    """One-hot of integer ``target`` along ``dim`` of ``input``'s shape, in input's dtype."""
    idx = ops.iota(tuple(input.shape), dim, device=input.device)
    return ops.cast(ops.eq(idx, ops.unsqueeze(target, dim)), input.dtype)


@composite("NllLossBackward0")
def _nll(logp, target, weight, ignore_index, reduction):
    squeeze = logp.dim() == 1
    if squeeze:
        logp, target = ops.unsqueeze(logp, 0), ops.unsqueeze(target, 0)
    # M holds each position's weight at its target class and 0 elsewhere: the loss is
    # -sum(logp * M) and the 'mean' denominator sum(M). A target equal to ignore_index
    # outside [0, C) matches no class, so only an in-range ignore_index needs a mask.
    mask = _class_mask(logp, target)
    if 0 <= ignore_index < logp.shape[1]:
        keep = ops.cast(ops.ne(target, ignore_index), logp.dtype)
        mask = ops.mul(mask, ops.unsqueeze(keep, 1))
    if weight is not None:
        shape = [1] * logp.dim()
        shape[1] = weight.shape[0]
        mask = ops.mul(mask, ops.reshape(weight, shape))
    picked = ops.mul(logp, mask)
    if reduction == "mean":
        return ops.neg(ops.div(ops.sum(picked), ops.sum(mask)))
    if reduction == "sum":
        return ops.neg(ops.sum(picked))
    check(reduction == "none", lambda: f"{reduction} is not a valid value for reduction",
          ValueError)
    loss = ops.neg(ops.sum(picked, 1))
    return ops.reshape(loss, ()) if squeeze else loss


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    check(not target.dtype.is_floating_point, lambda: f"nll_loss: expected target of integer "
          f"dtype (class indices), got {target.dtype}")
    n_in = input.shape[0] if input.dim() > 1 else 1
    n_t = target.shape[0] if target.dim() > 0 else 1
    check(input.dim() >= 1 and n_in == n_t, lambda: f"Expected input batch_size ({n_in}) to "
          f"match target batch_size ({n_t}).", ValueError)
    if target.dim() > 0 and not is_symbolic(target._data):  # known values: check them
        t = target._data
        n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
        bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
        if bool(bad.any()):
            raise IndexError(f"Target {int(t[bad][0])} is out of bounds.")
    return _nll(input, target, weight, ignore_index, reduction)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Log-softmax over dim 1 followed by the negative log-likelihood of ``target``.

    ``target`` holds class indices (int64, shape (N,)) or class probabilities (input's shape).
    """
    check(input.dim() >= 1, lambda: "cross_entropy: input must have at least 1 dimension")
    dim = 1 if input.dim() > 1 else 0
    logp = log_softmax(input, dim)
    if target.dtype.is_floating_point:
        check(tuple(target.shape) == tuple(input.shape), lambda: f"cross_entropy: probability "
              f"targets must have the input's shape {list(input.shape)}, got "
              f"{list(target.shape)}")
        if label_smoothing:
            target = ops.add(ops.mul(target, 1 - label_smoothing),
                             label_smoothing / input.shape[dim])
        # PyTorch's order of ops, hence its grad_fn names: -(logp * target).sum() / n
        picked = ops.mul(logp, target)
        if reduction == "none":
            return ops.neg(ops.sum(picked, dim))
        total = ops.neg(ops.sum(picked))
        if reduction == "sum":
            return total
        check(reduction == "mean", lambda: f"{reduction} is not a valid value for reduction",
              ValueError)
        n = input.numel() // input.shape[dim]
        return apply(P.div, total, n, overload="div.Scalar")
    check(label_smoothing == 0.0, lambda: "cross_entropy: label_smoothing with class-index "
          "targets is not supported")
    return nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)


@composite("NativeDropoutBackward0")
def _dropout(x, mask, scale):
    return ops.mul(ops.mul(x, mask), scale)


def dropout(input, p=0.5, training=True, inplace=False):
    check(0.0 <= p <= 1.0, lambda: f"dropout probability has to be between 0 and 1, but got {p}",
          ValueError)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return ops.mul(input, 0.0)
    keep = factories.rand_like(input) >= p
    return _dropout(input, ops.cast(keep, input.dtype), 1.0 / (1.0 - p))


def one_hot(tensor, num_classes=-1):
    if num_classes < 0:
        num_classes = int(tensor.max().item()) + 1
    shape = (*tensor.shape, num_classes)
    idx = ops.iota(shape, len(shape) - 1, device=tensor.device)
    return ops.cast(ops.eq(idx, ops.unsqueeze(tensor, -1)), torch.int64)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return ops.where(input > 0, input, ops.mul(input, negative_slope))


def silu(input, inplace=False):
    return ops.mul(input, sigmoid(input))


def gelu(input, approximate="none"):
    check(approximate == "tanh", lambda: "gelu: only approximate='tanh' is supported")
    inner = ops.mul(ops.add(input, ops.mul(ops.pow(input, 3), 0.044715)), 0.7978845608028654)
    return ops.mul(ops.mul(input, 0.5), ops.add(tanh(inner), 1.0))
