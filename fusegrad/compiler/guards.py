"""Guards: what a trace depends on, checked before each replay.

A guard is one list of ``Check`` records. Each states a condition once, as a Python expression
over the call's tensors (``leaves``), the structure of the rest of its arguments (``s``) and
named constants, with what to say when it is false (``input 0 shape (64, 784) -> (32, 784)``:
the reason ``explain()`` reports for the retrace).

The expressions render into one generated function that ands them all: a replay pays one call.
Only on a miss are the records evaluated one by one, in order, for the first that fails and
its reason; so each expression may assume that every earlier one held.

The module records (training flags; parameter, child and buffer entries) stay out of the fast
function: ``nn.Module`` bumps ``structure_version`` on every attribute write and registration,
so one comparison of that counter with the value the guard holds stands in for all of them.
When the counter has moved but every record still holds (``model.eval(); model.train()``, a
write to another module), the guard takes the counter's new value: the next call is fast again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from fusegrad._util import dtypes
from fusegrad.autograd import grad_mode
from fusegrad.compiler.ir.io import Captured, Number
from fusegrad.nn.module import structure_version
from fusegrad.primitives import fmt_shape


def _is_module(obj):
    return hasattr(obj, "named_parameters") and hasattr(obj, "training")


def _is_optimizer(obj):
    return hasattr(obj, "param_groups") and hasattr(obj, "state")


def referenced(fn, args):
    """Modules and optimizers the function can reach: closure, globals it names, bound self,
    arguments (one level into plain objects)."""
    found = []
    seen = set()

    def visit(obj, depth=0):
        if id(obj) in seen or obj is None:
            return
        seen.add(id(obj))
        if _is_module(obj) or _is_optimizer(obj):
            found.append(obj)
            return
        if depth == 0 and hasattr(obj, "__dict__") and not isinstance(obj, type) \
                and not callable(obj):
            for v in vars(obj).values():
                visit(v, 1)

    code = getattr(fn, "__code__", None)
    if code is not None:
        glb = getattr(fn, "__globals__", {})
        for n in code.co_names:
            if n in glb:
                visit(glb[n])
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                visit(cell.cell_contents)
            except ValueError:
                pass
    if hasattr(fn, "__self__"):
        visit(fn.__self__)
    if _is_module(fn):
        visit(fn)
    for a in args:
        visit(a)
    return found


def parameter_names(fn, args):
    names = {}
    for obj in referenced(fn, args):
        if _is_module(obj):
            for n, p in obj.named_parameters():
                names.setdefault(id(p), n)
    return names


def _tensor_desc(t):
    return f"{dtypes.name(t.dtype)}{fmt_shape(t.shape)}"


def describe_signature(leaves) -> str:
    args = ", ".join(_tensor_desc(t) + ("*" if t.requires_grad else "") for t in leaves)
    mode = "grad enabled" if grad_mode.is_grad_enabled() else "grad disabled"
    return f"({args}) {mode}"


@dataclasses.dataclass
class Check:
    expr: str  # true while the trace still fits: over leaves, s and the names in env
    env: dict  # the constants expr names
    reason: str | Callable  # what explain() says when expr is false, or (leaves, s) -> that
    fast: bool = True  # False: the fast function compares the module version instead

    def why(self, leaves, s) -> str:
        return self.reason if isinstance(self.reason, str) else self.reason(leaves, s)


class _Checks(list):
    """Check records under construction: ``const`` names an object for the next record."""

    def __init__(self):
        super().__init__()
        self._env = {}
        self._names = 0

    def const(self, obj) -> str:
        name = f"k{self._names}"
        self._names += 1
        self._env[name] = obj
        return name

    def add(self, expr, reason, fast=True):
        self.append(Check(expr, self._env, reason, fast))
        self._env = {}


class Guard:
    """The checks of one traced signature.

    ``fast(leaves, s)`` is the generated and-ing of the records (the replay path: one call,
    no closures). When it fails, ``full`` ands every record, the module ones included; only
    when that fails too are the records evaluated one by one, to say why. ``misses`` counts
    the calls that left the fast path.
    """

    def __init__(self, checks, version):
        self.checks = checks
        self.misses = 0
        self.checked_at = [version]  # the module version the module records held at
        self.fast, self.full, self._tests, self.source = _render(checks, self.checked_at)

    def check(self, leaves, structure):
        if self.fast(leaves, structure):
            return None
        self.misses += 1
        version = structure_version[0]  # read first: a write during the checks re-checks
        if self.full(leaves, structure):
            self.checked_at[0] = version  # only the counter had moved: re-arm the fast path
            return None
        for c, holds in zip(self.checks, self._tests):
            if not holds(leaves, structure):
                return c.why(leaves, structure)
        return None

    @classmethod
    def build(cls, leaves, structure, grad_enabled, tracer, watched, fn=None):
        version = structure_version[0]  # before the snapshots: a write during them re-checks
        b = _Checks()
        _structure_checks(b, structure)
        for i, t in enumerate(leaves):
            _input_checks(b, i, t)
        _mode_checks(b, grad_enabled)
        if fn is not None:
            _binding_checks(b, fn)
        for obj in watched:
            if _is_module(obj):
                for sub in obj.modules() if hasattr(obj, "modules") else [obj]:
                    _module_checks(b, sub)
            else:
                _optimizer_checks(b, obj, tracer)
        if tracer is not None:
            _tracer_checks(b, tracer)
        return cls(b, version)


_MODULE_VERSION = "_version[0] == _checked_at[0]"


def _render(checks, checked_at):
    """The fast function, the full one and one test per record, from one generated source."""
    env = {"_mode": grad_mode._mode, "_same": _same_items, "_version": structure_version,
           "_checked_at": checked_at}
    for c in checks:
        env.update(c.env)
    exprs = [f"({c.expr})" for c in checks]
    fast = []
    for c, e in zip(checks, exprs):
        if c.fast:
            fast.append(e)
        elif _MODULE_VERSION not in fast:
            fast.append(_MODULE_VERSION)

    def function(name, conds):
        return f"def {name}(leaves, s):\n    return (" + "\n            and ".join(conds) + ")\n\n"

    src = (function("fast", fast) + function("full", exprs) +
           "tests = (\n" + "".join(f"    lambda leaves, s: {e},\n" for e in exprs) + ")\n")
    exec(compile(src, "<fusegrad guard>", "exec"), env)
    return env["fast"], env["full"], env["tests"], src


def _requires_grad(x, rg):
    """``x.requires_grad is rg``, with the property inlined."""
    if rg:
        return f"{x}._requires_grad or {x}.grad_fn is not None"
    return f"not {x}._requires_grad and {x}.grad_fn is None"


def _structure_checks(b, structure):
    k = b.const(structure)
    b.add(f"s is {k} or s == {k}", "non-tensor arguments or argument structure changed")


def _input_checks(b, i, t):
    x = f"leaves[{i}]"
    shape, dtype, device, rg = tuple(t.shape), t.dtype, t.device, t.requires_grad
    b.add(f"{x}._data.shape == {b.const(t.shape)}",
          lambda leaves, s: f"input {i} shape {shape} -> {tuple(leaves[i].shape)}")
    b.add(f"{x}._data.dtype is {b.const(dtype)}",
          lambda leaves, s: f"input {i} dtype {dtype} -> {leaves[i].dtype}")
    b.add(f"{x}._data.device == {b.const(device)}",
          lambda leaves, s: f"input {i} device {device} -> {leaves[i].device}")
    b.add(_requires_grad(x, rg),
          lambda leaves, s: f"input {i} requires_grad {rg} -> {leaves[i].requires_grad}")


def _mode_checks(b, enabled):
    b.add(f"_mode.enabled is {bool(enabled)}",
          lambda leaves, s: f"grad mode enabled {enabled} -> {grad_mode.is_grad_enabled()}")


def _binding_checks(b, fn):
    """The global names and closure cells the function reads still hold the same objects
    (a notebook that re-runs ``opt = SGD(...)`` must not keep updating the old one)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    glb = getattr(fn, "__globals__", {})
    for n in code.co_names:
        if n in glb:
            b.add(f"{b.const(glb)}.get({n!r}) is {b.const(glb[n])}",
                  f"global {n!r} now refers to another object")
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            obj = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        b.add(f"{b.const(cell)}.cell_contents is {b.const(obj)}",
              "a variable the function closes over now refers to another object")


def _module_checks(b, sub):
    # the training flag and the identity of every parameter, child and buffer entry: a
    # replaced layer, parameter or buffer, or train()/eval(), needs a new trace
    kind = type(sub).__name__
    training = sub.training
    b.add(f"{b.const(sub)}.training is {training}",
          lambda leaves, s: f"{kind}.training {training} -> {sub.training}", fast=False)
    for registry, what in (("_parameters", "parameters"), ("_modules", "submodules"),
                           ("_buffers", "buffers")):
        entries = list(getattr(sub, registry, {}).values())
        b.add(f"_same({b.const(sub)}.{registry}.values(), {b.const(entries)})",
              f"the {what} of {kind} were replaced", fast=False)


def _same_items(now, before) -> bool:
    """Identity of two sequences' items (plain loops: this runs on every replay)."""
    if len(now) != len(before):
        return False
    for a, b in zip(now, before):
        if a is not b:
            return False
    return True


def _optimizer_checks(b, opt, tracer):
    kind = type(opt).__name__
    lifted = {(id(src.container), src.key) for src in (tracer.sources if tracer else ())
              if isinstance(src, Number)}
    b.add(f"len({b.const(opt)}.param_groups) == {len(opt.param_groups)}",
          f"{kind}: number of param groups changed")
    for i, group in enumerate(opt.param_groups):
        for key, v in group.items():
            if key != "params" and (id(group), key) not in lifted:
                _hyperparameter_check(b, opt, i, key, v)
        g = b.const(group)
        b.add(f"{b.const(opt)}.param_groups[{i}] is {g} and "
              f"_same({g}['params'], {b.const(list(group['params']))})",
              f"{kind} param_groups[{i}] parameters changed")
    if tracer is not None:
        # the trace read the state: entries it did not find must still be missing
        before = {p: frozenset(st) for p, st in opt.state.items()}
        st = f"{b.const(opt)}.state"
        b.add(" and ".join([f"len({st}) == {len(before)}"] +
                           [f"len({st}.get({b.const(p)}, ())) == {len(keys)}"
                            for p, keys in before.items()]),
              lambda leaves, s: f"{kind} state changed: {_state_diff(before, opt.state)}")


def _hyperparameter_check(b, opt, i, key, v):
    # reads the group the optimizer holds now, so a replaced group dict with another value
    # still names the key that changed
    b.add(f"{b.const(opt)}.param_groups[{i}].get({key!r}) == {b.const(v)}",
          lambda leaves, s: f"{type(opt).__name__} param_groups[{i}][{key!r}] {v!r} -> "
                            f"{opt.param_groups[i].get(key)!r}")


def _state_diff(before, state):
    now = {p: frozenset(v) for p, v in state.items()}
    for k in set(before) | set(now):
        if before.get(k) != now.get(k):
            return f"{sorted(before.get(k, ()))} -> {sorted(now.get(k, ()))}"
    return "entries changed"


def _tracer_checks(b, tracer):
    captured = [src for src in tracer.sources if isinstance(src, Captured)]
    for src in captured:
        _captured_checks(b, src.tensor, src.name or "captured tensor")
    for t, was_none, shape in tracer.grad_deps.values():
        _grad_checks(b, t, was_none, shape, tracer.names.get(id(t), "a tensor"))
    for src in tracer.sources:
        if isinstance(src, Number):
            _number_check(b, src.container, src.key)
    # optimizer state tensors read by identity must still be the ones in the state
    ids = {id(src.tensor) for src in captured}
    for opt, snap in tracer.stateful.values():
        for p, (_, contents) in snap.items():
            for key, v in contents.items():
                if id(v) in ids:
                    b.add(f"{b.const(opt)}.state.get({b.const(p)}, {{}}).get({key!r}) is "
                          f"{b.const(v)}",
                          f"{type(opt).__name__} state[{key!r}] tensor was replaced")


def _captured_checks(b, t, name):
    # the replay reads t._data afresh: new storage fits if shape, dtype and device are the
    # same (model.to(device) swaps the storage, keeping the other two)
    d0 = t._data
    c = b.const(t)
    b.add(f"{c}._data is {b.const(d0)} or ({c}._data.shape == {b.const(d0.shape)} and "
          f"{c}._data.dtype is {b.const(d0.dtype)} and {c}._data.device == {b.const(d0.device)})",
          lambda leaves, s: _storage_change(name, d0, t._data))
    rg = t.requires_grad
    b.add(_requires_grad(b.const(t), rg),
          lambda leaves, s: f"{name}.requires_grad {rg} -> {t.requires_grad}")


def _storage_change(name, before, now):
    if now.shape == before.shape and now.dtype == before.dtype:
        return f"{name} device {before.device} -> {now.device}"
    return f"{name} changed from {before.dtype}{list(before.shape)} to {now.dtype}{list(now.shape)}"


def _grad_checks(b, t, was_none, shape, name):
    if was_none:
        b.add(f"{b.const(t)}._grad is None", f"{name}.grad was None, now set")
        return
    b.add(f"{b.const(t)}._grad is not None", f"{name}.grad was set, now None")
    b.add(f"{b.const(t)}._grad._data.shape == {b.const(torch.Size(shape))}",
          lambda leaves, s: f"{name}.grad shape {shape} -> {tuple(t._grad.shape)}")


def _number_check(b, container, key):
    typ = type(container[key])
    c = b.const(container)
    value = f"{c}.get({key!r})" if isinstance(container, dict) else f"{c}[{key!r}]"
    b.add(f"type({value}) is {b.const(typ)}",
          lambda leaves, s: f"[{key!r}] type {typ.__name__} -> "
                            f"{type(_read(container, key)).__name__}")


def _read(container, key):
    return container.get(key) if isinstance(container, dict) else container[key]
