"""fusegrad's own autograd: ``backward``, ``grad``, custom ``Function``, ``gradcheck``."""

from __future__ import annotations

from fusegrad.autograd import profiler
from fusegrad.autograd.api import backward, grad
from fusegrad.autograd.engine import run_backward  # noqa: F401
from fusegrad.autograd.function import Function, FunctionCtx
from fusegrad.autograd.gradcheck import GradcheckError, gradcheck
from fusegrad.autograd.grad_mode import (enable_grad, inference_mode, is_grad_enabled,
                                         no_grad, set_grad_enabled)
from fusegrad.autograd.node import Node

__all__ = ["backward", "grad", "Function", "FunctionCtx", "gradcheck", "GradcheckError",
           "no_grad", "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled",
           "profiler", "Node"]
