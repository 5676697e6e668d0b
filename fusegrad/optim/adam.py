"""``fusegrad.optim.Adam``: Adam and AMSGrad, as ``torch.optim.Adam``."""

from __future__ import annotations

import torch

from fusegrad import ops
from fusegrad.optim.optimizer import Optimizer
from fusegrad.tensor import Tensor

__all__ = ["Adam"]


class Adam(Optimizer):
    """Adam (PyTorch's single-tensor algorithm).

    The bias corrections are computed from the ``step`` state tensor with tensor ops, so the
    step needs no Python value of a tensor and compiles into one static graph.

    Args:
        params: parameters or parameter groups to optimize.
        lr: learning rate. Default: 1e-3.
        betas: decay rates of the first and second moment averages. Default: (0.9, 0.999).
        eps: added to the denominator for numerical stability. Default: 1e-8.
        weight_decay: L2 penalty added to the gradient. Default: 0.
        amsgrad: use the AMSGrad variant (the running maximum of the second moment).
        maximize: maximize the objective instead of minimizing. Default: False.
        decoupled_weight_decay: decay the weights directly (AdamW). Default: False.
        foreach, capturable, differentiable, fused: accepted for compatibility; only the
            plain algorithm exists.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        if isinstance(lr, Tensor) or any(isinstance(b, Tensor) for b in betas):
            raise NotImplementedError("Adam: tensor lr/betas are not supported; pass floats "
                                      "(fusegrad.compile already lifts them to graph inputs)")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable or fused:
            raise NotImplementedError("Adam: differentiable=True and fused=True are not "
                                      "supported by fusegrad (fusegrad.compile fuses the step)")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            for key, default in (("amsgrad", False), ("maximize", False),
                                 ("decoupled_weight_decay", False)):
                group.setdefault(key, default)
            for p in group["params"]:
                s = self.state.get(p)
                if s and not isinstance(s.get("step"), Tensor):  # very old checkpoints
                    s["step"] = _step_tensor(p, float(s["step"]))

    def _update_group(self, group):
        # control flow reads the raw values; arithmetic goes through hyper() (see its doc)
        decay_on = group["weight_decay"] != 0
        amsgrad = group["amsgrad"]
        lr = self.hyper(group, "lr")
        beta1 = self.hyper(group, "betas", 0)
        beta2 = self.hyper(group, "betas", 1)
        eps = self.hyper(group, "eps")
        weight_decay = self.hyper(group, "weight_decay") if decay_on else 0.0
        for p, grad in self._grads(group):
            state = self.state[p]
            if len(state) == 0:
                state["step"] = _step_tensor(p, 0.0)
                state["exp_avg"] = ops.zeros_like(p)
                state["exp_avg_sq"] = ops.zeros_like(p)
                if amsgrad:
                    state["max_exp_avg_sq"] = ops.zeros_like(p)
            step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            step_t.add_(1)
            if decay_on:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad + p * weight_decay
            # torch's lerp_(grad, 1 - beta1) for weights below 0.5: m + w * (g - m)
            exp_avg.add_((grad - exp_avg) * (1 - beta1))
            exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
            # bias corrections as 0-d tensors: no Python value of `step` is needed
            bias_correction1 = 1 - beta1 ** step_t
            bias_correction2_sqrt = (1 - beta2 ** step_t).sqrt()
            step_size = lr / bias_correction1
            if amsgrad:
                max_sq = state["max_exp_avg_sq"]
                max_sq.copy_(ops.maximum(max_sq, exp_avg_sq))
                denom = (max_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            else:
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            p.sub_(exp_avg / denom * step_size)


def _step_tensor(p, value):
    """Adam's step count: a 0-d float32 tensor (on the parameter's device, so that a compiled
    step keeps a single device; PyTorch keeps it on the CPU)."""
    return ops.full((), value, dtype=torch.float32, device=p.device)
