"""Shape and dtype rules shared by the primitives' meta functions, and the errors they
raise for bad input (op name, shapes, dtypes, what was expected)."""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import torch

from fusegrad._util import dtypes

Scalar = (int, float, bool)


class Aval(NamedTuple):
    """What the compiler knows of a value: its shape, dtype and device, no data."""

    shape: torch.Size
    dtype: torch.dtype
    device: torch.device


def check(cond: bool, msg: Callable[[], str], exc=RuntimeError):
    """Raise ``exc(msg())`` when ``cond`` is false; the message is built only on failure."""
    if not cond:
        raise exc(msg())


def aval_of(x) -> Aval | None:
    """The abstract value of a tensor-like operand, or None for a Python number."""
    if isinstance(x, Scalar):
        return None
    return Aval(x.shape, x.dtype, x.device)


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def fmt_operand(x) -> str:
    if isinstance(x, Scalar):
        return f"scalar {x!r}"
    return f"{dtypes.name(x.dtype)}{fmt_shape(x.shape)}"


def broadcast_shapes(op: str, a, b) -> torch.Size:
    a, b = tuple(a), tuple(b)
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        check(
            da == db or da == 1 or db == 1,
            lambda: f"{op}: The size of tensor a ({da}) must match the size of tensor b "
            f"({db}) at non-singleton dimension {max(len(a), len(b)) - i}; "
            f"got shapes {fmt_shape(a)} and {fmt_shape(b)}",
        )
        out.append(db if da == 1 else da)
    return torch.Size(reversed(out))


@functools.lru_cache(maxsize=4096)
def _result_type_cached(ka, kb):
    if ka[0] == kb[0] == "s":  # two Python numbers (lifted into a graph): Python's rules
        if float in (ka[1], kb[1]):
            return torch.float64
        return torch.bool if ka[1] is kb[1] is bool else torch.int64

    def dummy(k):
        if k[0] == "t":
            return torch.empty((0,) if k[2] else (), dtype=k[1])
        return k[1](1)

    return torch.result_type(dummy(ka), dummy(kb))


def _ptype_key(x):
    if isinstance(x, Scalar):
        return ("s", type(x))
    if getattr(x, "weak", False):  # a Python number lifted into a graph input
        return ("s", float if x.dtype.is_floating_point else int)
    return ("t", x.dtype, len(x.shape) > 0)


def result_dtype(a, b) -> torch.dtype:
    """PyTorch's type promotion for a binary op (0-d tensors and Python numbers rank lower)."""
    return _result_type_cached(_ptype_key(a), _ptype_key(b))


def device_of(*xs) -> torch.device:
    devs = {x.device for x in xs if not isinstance(x, Scalar) and not getattr(x, "weak", False)}
    return devs.pop() if len(devs) == 1 else _mixed_devices(devs)


def _mixed_devices(devs):
    if not devs:
        return torch.device("cpu")
    raise RuntimeError(
        f"Expected all tensors to be on the same device, but found at least two devices, "
        f"{', '.join(sorted(str(d) for d in devs))}!"
    )


def normalize_dims(op: str, dims, ndim: int) -> tuple[int, ...]:
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    out = []
    for d in dims:
        lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
        check(
            lo <= d <= hi,
            lambda: f"{op}: Dimension out of range (expected to be in range of [{lo}, {hi}], "
            f"but got {d})",
            IndexError,
        )
        out.append(d % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def is_float(dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def float_result(dtype):
    return dtype if is_float(dtype) else torch.get_default_dtype()


def numel(shape) -> int:
    return math.prod(shape)
