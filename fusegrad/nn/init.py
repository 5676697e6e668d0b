"""``fusegrad.nn.init``: in-place initialisation, drawing from torch's generator.

Each function fills the tensor's storage with the same ATen call, in the same order, as
``torch.nn.init`` does, so a model initialised after ``manual_seed(s)`` holds the same numbers
as the PyTorch model. The writes bump the tensor's version like any in-place op and are not
recorded by autograd (PyTorch runs them under ``no_grad``).
"""

from __future__ import annotations

import math
import warnings

import torch

from fusegrad.dispatch import current
from fusegrad.tensor import Tensor

__all__ = ["calculate_gain", "constant_", "eye_", "kaiming_normal_", "kaiming_uniform_",
           "normal_", "ones_", "trunc_normal_", "uniform_", "xavier_normal_", "xavier_uniform_",
           "zeros_"]


def _storage(tensor, fn_name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{fn_name}: expected a fusegrad Tensor, got "
                        f"{type(tensor).__name__}")
    return current().storage(tensor, f"nn.init.{fn_name}")


def _written(tensor):
    tensor._vc[0] += 1
    return tensor


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` (PyTorch's table)."""
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill ``tensor`` with draws from U(a, b)."""
    _storage(tensor, "uniform_").uniform_(a, b, generator=generator)
    return _written(tensor)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill ``tensor`` with draws from N(mean, std^2)."""
    _storage(tensor, "normal_").normal_(mean, std, generator=generator)
    return _written(tensor)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill ``tensor`` with N(mean, std^2) draws, redrawing those outside [a, b].

    When [a, b] holds more than 30% of the mass (the usual case) the draws are PyTorch's;
    narrower windows use plain rejection sampling, which draws different numbers.
    """
    data = _storage(tensor, "trunc_normal_")

    def cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo = data.new_tensor(a, device="cpu").item()  # bounds as the tensor's dtype sees them
    hi = data.new_tensor(b, device="cpu").item()
    narrow = cdf((b - mean) / std) - cdf((a - mean) / std) <= 0.3
    data.normal_(mean, std, generator=generator)
    while True:
        bad = (data < lo) | (data > hi)
        if not bool(bad.any()):
            break
        if narrow:
            data[bad] = data.new_empty(int(bad.sum())).normal_(mean, std, generator=generator)
        else:
            fresh = data.new_empty(data.shape).normal_(mean, std, generator=generator)
            data.copy_(torch.where(bad, fresh, data))
    return _written(tensor)


def constant_(tensor, val):
    """Fill ``tensor`` with ``val``."""
    _storage(tensor, "constant_").fill_(val)
    return _written(tensor)


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    _storage(tensor, "zeros_").zero_()
    return _written(tensor)


def eye_(tensor):
    """Fill the 2-D ``tensor`` with the identity matrix."""
    if tensor.dim() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    data = _storage(tensor, "eye_")
    data.zero_()
    data.fill_diagonal_(1)
    return _written(tensor)


def _calculate_fan_in_and_fan_out(tensor):
    """``(fan_in, fan_out)`` of a weight: input/output features times the receptive field."""
    if tensor.dim() < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive_field_size = 1
    for s in tensor.shape[2:]:
        receptive_field_size *= s
    return tensor.shape[1] * receptive_field_size, tensor.shape[0] * receptive_field_size


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``.

    Args:
        tensor: the tensor to fill (at least 2-D).
        a: negative slope of the leaky ReLU that follows (``nonlinearity='leaky_relu'``).
        mode: ``'fan_in'`` keeps the forward variance, ``'fan_out'`` the backward one.
        nonlinearity: name passed to :func:`calculate_gain`.
        generator: an optional ``torch.Generator``.
    """
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``; arguments as
    :func:`kaiming_uniform_`."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0, std, generator)
