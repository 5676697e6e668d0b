"""``fusegrad.optim.SGD``: stochastic gradient descent with momentum, as ``torch.optim.SGD``."""

from __future__ import annotations

from fusegrad.optim.optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's single-tensor algorithm).

    Args:
        params: parameters or parameter groups to optimize.
        lr: learning rate. Default: 1e-3.
        momentum: momentum factor. Default: 0.
        dampening: dampening of the momentum. Default: 0.
        weight_decay: L2 penalty added to the gradient. Default: 0.
        nesterov: use Nesterov momentum. Default: False.
        maximize: maximize the objective instead of minimizing. Default: False.
        foreach, differentiable, fused: accepted for compatibility; only the plain
            (``differentiable=False``, ``fused=False``) algorithm exists.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable or fused:
            raise NotImplementedError("SGD: differentiable=True and fused=True are not "
                                      "supported by fusegrad (fusegrad.compile fuses the step)")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _update_group(self, group):
        # control flow reads the raw values; arithmetic goes through hyper() (see its doc)
        momentum_on = group["momentum"] != 0
        decay_on = group["weight_decay"] != 0
        lr = self.hyper(group, "lr")
        momentum = self.hyper(group, "momentum") if momentum_on else 0.0
        dampening = self.hyper(group, "dampening") if momentum_on else 0.0
        weight_decay = self.hyper(group, "weight_decay") if decay_on else 0.0
        for p, grad in self._grads(group):
            if decay_on:
                grad = grad + p * weight_decay
            if momentum_on:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = grad.clone().detach()
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(momentum).add_(grad * (1 - dampening))
                grad = grad + buf * momentum if group["nesterov"] else buf
            p.sub_(grad * lr)
