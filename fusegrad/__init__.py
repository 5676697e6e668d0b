"""fusegrad: PyTorch-style training whose whole step compiles into fused kernels.

``import fusegrad as torch`` runs PyTorch-style code eagerly with fusegrad's own autograd;
``fusegrad.compile(step)`` traces a training step once and replays it as fused kernels.
"""

import torch as _torch

from fusegrad import autograd, ops
from fusegrad.ops import methods as _methods  # noqa: F401  (binds Tensor methods, operators)
from fusegrad.autograd.grad_mode import (enable_grad, inference_mode, is_grad_enabled,
                                         is_inference_mode_enabled, no_grad, set_grad_enabled)
from fusegrad.factories import *  # noqa: F401,F403
from fusegrad.ops import (abs, absolute, add, addmm, all, allclose, amax, amin, any, argmax,
                          argmin, bmm, broadcast_to, cast, cat, clamp, clamp_max, clamp_min, clip,
                          clone, concat, concatenate, cos, detach, div, divide, dot, eq, equal,
                          exp, expand, flatten, ge, gt, le, log, log_softmax, logical_and,
                          logical_not, logical_or, logsumexp, lt, matmul, max, maximum, mean,
                          min, minimum, mm, mul, multiply, mv, ne, neg, negative, norm,
                          numel, permute, pow, relu, reshape, rsub, sigmoid, sign, sin,
                          softmax, sqrt, square, squeeze, stack, sub, subtract, sum, swapaxes,
                          t, tanh, transpose, true_divide, unsqueeze, where)
from fusegrad.ops import return_types  # noqa: F401
from fusegrad.primitives import vjp as _vjp  # noqa: F401  (attaches the rules, written in ops)
from fusegrad.tensor import Tensor, is_tensor

for _p in ops.TABLE_UNARY:  # the table's other unary ops (erf, ...)
    globals()[_p.name] = getattr(ops, _p.name)

# dtypes and devices are torch's own objects: fusegrad.float32 is torch.float32
float32 = float = _torch.float32
float64 = double = _torch.float64
float16 = half = _torch.float16
bfloat16 = _torch.bfloat16
int64 = long = _torch.int64
int32 = int = _torch.int32
int16 = short = _torch.int16
int8 = _torch.int8
uint8 = _torch.uint8
bool = _torch.bool
complex64 = cfloat = _torch.complex64
dtype = _torch.dtype
device = _torch.device
Size = _torch.Size
get_default_dtype = _torch.get_default_dtype
set_default_dtype = _torch.set_default_dtype
set_printoptions = _torch.set_printoptions
finfo = _torch.finfo
iinfo = _torch.iinfo
promote_types = _torch.promote_types


class cuda:  # noqa: N801  (mirrors torch.cuda)
    is_available = staticmethod(_torch.cuda.is_available)
    device_count = staticmethod(_torch.cuda.device_count)
    manual_seed = staticmethod(_torch.cuda.manual_seed)
    manual_seed_all = staticmethod(_torch.cuda.manual_seed_all)
    synchronize = staticmethod(lambda *a: _torch.cuda.synchronize(*a)
                               if _torch.cuda.is_available() else None)


def is_floating_point(x):
    return x.is_floating_point()


__version__ = "0.1.0"
from fusegrad import nn  # noqa: E402
from fusegrad import compiler  # noqa: E402
from fusegrad.compiler import compile  # noqa: E402,F401
from fusegrad import optim  # noqa: E402
from fusegrad.serialization import load, save  # noqa: E402
get_num_threads = _torch.get_num_threads  # the eager backend's ATen thread pool
set_num_threads = _torch.set_num_threads
