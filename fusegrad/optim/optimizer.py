"""``fusegrad.optim.Optimizer``: parameter groups, per-parameter state and state dicts in
PyTorch's format.

Subclasses write ``step()`` in fusegrad ops only (so that ``fusegrad.compile`` can trace it):
it starts with ``note_stateful(self)``, runs under ``no_grad``, reads gradients through
``p.grad`` and every float hyperparameter through :func:`hyper`.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from itertools import chain

import torch

from fusegrad.autograd.grad_mode import enable_grad, no_grad
from fusegrad.dispatch import note_stateful, provenance, scalar_input
from fusegrad.tensor import Tensor, reset_grad

__all__ = ["Optimizer", "hyper", "required"]


class _RequiredParameter:
    """Marks a hyperparameter without a default."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


# hyperparameters that become graph inputs under fusegrad.compile: changing them replays
# without a retrace; the others stay constants the passes can fold (momentum 0.9, ...)
LIFTED = ("lr",)


def hyper(group, key, index=None, lifted=LIFTED):
    """The float hyperparameter ``group[key]`` (or ``group[key][index]`` for ``betas``).

    Eagerly it is the Python number. Under a trace a key in ``lifted`` becomes a 0-d graph
    input read afresh on every call (changing ``group['lr']`` between steps takes effect
    without a retrace); the others stay constants guarded by value. Code using it must accept
    a number or a 0-d Tensor (``p.sub_(buf * lr)``, not ``alpha=-lr``).
    """
    lift = key in lifted
    if index is None:
        return scalar_input(group, key, lift)
    return scalar_input(group[key], index, lift)


def _typename(obj):
    return "fusegrad." + type(obj).__name__ if isinstance(obj, Tensor) else type(obj).__name__


class Optimizer:
    """Base class of optimizers.

    Args:
        params: an iterable of Tensors, or of dicts defining parameter groups (each with a
            ``'params'`` entry and optional per-group hyperparameters).
        defaults: the hyperparameters of a group that does not set them.
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, (Tensor, torch.Tensor)):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got " + _typename(params))
        self.state = defaultdict(dict)  # keyed by the parameter object (Tensor hashes by id)
        self.param_groups = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"

    def add_param_group(self, param_group):
        """Add a group of parameters, filling in the optimizer's defaults.

        Args:
            param_group: a dict with ``'params'`` (a Tensor or an ordered iterable of them,
                or of ``(name, Tensor)`` pairs) and optional hyperparameters.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list "
                "instead.")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some "
                                 "param names are missing")
            param_group["param_names"] = names
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in params]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error; see "
                          "github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all optimized tensors: to None (default) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                reset_grad(p, set_to_none)

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()``'s loss if given."""
        note_stateful(self)  # under fusegrad.compile: state updates become graph outputs
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad(), provenance(f"optimizer={type(self).__name__}"):
            for group in self.param_groups:
                self._update_group(group)
        return loss

    lifted = LIFTED  # the hyperparameters a compiled step reads afresh on every call

    def hyper(self, group, key, index=None):
        """:func:`hyper` with this optimizer's lifted hyperparameters."""
        return hyper(group, key, index, self.lifted)

    def _update_group(self, group):
        """The algorithm, for one parameter group (subclasses define it)."""
        raise NotImplementedError

    @staticmethod
    def _grads(group):
        """(parameter, gradient) for the group's parameters that have one; the gradient is
        negated when the group maximizes."""
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            yield p, (-grad if group["maximize"] else grad)

    # ------------------------------------------------------------------ state dict

    def state_dict(self):
        """The optimizer's state in PyTorch's format.

        Returns:
            ``{'state': {index: {key: value}}, 'param_groups': [{..., 'params': [index]}]}``
            where parameters are numbered in group order. State tensors are shared, not copied.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v
                 for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load state saved by :meth:`state_dict`.

        Group counts, group sizes and the shape of every state tensor are checked before
        anything changes; the tensors are copied (cast to each parameter's dtype and device).
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict \
                or "state" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and "
                             f"'param_groups' (as returned by state_dict()), got "
                             f"{type(state_dict).__name__}")
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k not in id_map:
                state[k] = v
                continue
            param = id_map[k]
            if not isinstance(v, dict):
                raise TypeError(f"{name}.load_state_dict: state of parameter {k} should be a "
                                 f"dict, got {type(v).__name__}")
            state[param] = {key: _cast_state(name, k, key, param, value)
                            for key, value in v.items()}
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            new_groups.append(saved)
        # everything is checked and converted: commit
        self.__setstate__({"state": state, "param_groups": new_groups})


def _cast_state(opt_name, index, key, param, value):
    """A copy of one saved state value, on ``param``'s device (and dtype for float state)."""
    if isinstance(value, torch.Tensor):
        value = Tensor._make(value.detach())
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    data = value._data
    if key != "step" and data.dim() > 0 and data.shape != param.shape:
        raise ValueError(
            f"{opt_name}.load_state_dict: state '{key}' of parameter {index} has shape "
            f"{list(data.shape)}, but the parameter has shape {list(param.shape)}")
    dtype = param.dtype if key != "step" and param.is_floating_point() else data.dtype
    return Tensor._make(data.to(device=param.device, dtype=dtype, copy=True))
