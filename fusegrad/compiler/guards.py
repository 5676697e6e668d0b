"""Guards: what a trace depends on, checked before each replay.

A guard is a list of checks, each returning None when it holds or a reason such as
``input 0 shape (64, 784) -> (32, 784)`` that ``explain()`` reports for the retrace.
"""

from __future__ import annotations

import torch

from fusegrad.autograd import grad_mode
from fusegrad.compiler.tracer import Captured, Number
from fusegrad.primitives import fmt_shape


def _is_module(obj):
    return hasattr(obj, "named_parameters") and hasattr(obj, "training")


def _is_optimizer(obj):
    return hasattr(obj, "param_groups") and hasattr(obj, "state")


def _referenced(fn, args):
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


def watched_objects(fn, args):
    return _referenced(fn, args)


def parameter_names(fn, args):
    names = {}
    for obj in _referenced(fn, args):
        if _is_module(obj):
            for n, p in obj.named_parameters():
                names.setdefault(id(p), n)
    return names


def _tensor_desc(t):
    return f"{str(t.dtype).replace('torch.', '')}{fmt_shape(t.shape)}"


def describe_signature(leaves, structure) -> str:
    args = ", ".join(_tensor_desc(t) + ("*" if t.requires_grad else "") for t in leaves)
    mode = "grad enabled" if grad_mode.is_grad_enabled() else "grad disabled"
    return f"({args}) {mode}"


class Guard:
    """The checks of one traced signature.

    ``check`` first runs one generated function of inline conditions (the replay fast
    path: one call, no closures); only when it fails do the individual checks run, to
    confirm the miss and say why.
    """

    def __init__(self, checks, fast=None):
        self.checks = checks
        self.fast = fast

    def check(self, leaves, structure):
        if self.fast is not None and self.fast(leaves, structure):
            return None
        for c in self.checks:
            why = c(leaves, structure)
            if why is not None:
                return why
        return None

    @classmethod
    def build(cls, leaves, structure, grad_enabled, tracer, watched, fn=None):
        checks = [_structure_check(structure), _args_check(leaves), _mode_check(grad_enabled)]
        if fn is not None:
            checks.append(_bindings_check(fn))
        for obj in watched:
            if _is_module(obj):
                checks.append(_module_check(obj))
            else:
                checks.append(_optimizer_groups_check(obj, tracer))
        if tracer is not None:
            checks += _tracer_checks(tracer)
        return cls(checks, _fast_path(leaves, structure, grad_enabled, tracer, watched, fn))


def _fast_path(leaves, structure, grad_enabled, tracer, watched, fn):
    """One Python function: True when every condition the trace depends on still holds.

    It may be stricter than the checks (identity where they compare values), never looser.
    """
    from fusegrad.nn.module import structure_version

    env = {"_mode": grad_mode._mode, "_same": _same_items}
    conds = []

    def const(obj):
        name = f"k{len(env)}"
        env[name] = obj
        return name

    k = const(structure)
    conds.append(f"(s is {k} or s == {k})")
    for i, t in enumerate(leaves):
        conds.append(f"leaves[{i}]._data.shape == {const(t.shape)}")
        conds.append(f"leaves[{i}]._data.dtype is {const(t.dtype)}")
        conds.append(f"leaves[{i}]._data.device == {const(t.device)}")
        conds.append(f"(leaves[{i}]._requires_grad or leaves[{i}].grad_fn is not None) is "
                     f"{t.requires_grad}")
    conds.append(f"_mode.enabled is {bool(grad_enabled)}")
    code = getattr(fn, "__code__", None)
    if code is not None:
        glb = getattr(fn, "__globals__", {})
        g = const(glb)
        for n in code.co_names:
            if n in glb:
                conds.append(f"{g}.get({n!r}) is {const(glb[n])}")
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                conds.append(f"{const(cell)}.cell_contents is {const(cell.cell_contents)}")
            except ValueError:
                pass
    for obj in watched:
        if _is_module(obj):
            # train()/eval() and replaced layers all go through Module.__setattr__, which
            # bumps the version: one comparison covers every submodule
            conds.append(f"{const(structure_version)}[0] == {structure_version[0]}")
            continue
        o = const(obj)
        lifted = {(id(src.container), src.key) for src in (tracer.sources if tracer else ())
                  if isinstance(src, Number)}
        conds.append(f"len({o}.param_groups) == {len(obj.param_groups)}")
        for gi, grp in enumerate(obj.param_groups):
            gn = const(grp)
            conds.append(f"{o}.param_groups[{gi}] is {gn}")
            conds.append(f"_same({gn}['params'], {const(list(grp['params']))})")
            for k, v in grp.items():
                if k != "params" and (id(grp), k) not in lifted:
                    conds.append(f"{gn}.get({k!r}) == {const(v)}")
        if tracer is not None:
            st = f"{o}.state"
            conds.append(f"len({st}) == {len(obj.state)}")
            for p, ps in obj.state.items():
                conds.append(f"len({st}.get({const(p)}, ())) == {len(ps)}")
    if tracer is not None:
        captured = {id(src.tensor) for src in tracer.sources if isinstance(src, Captured)}
        for src in tracer.sources:
            if isinstance(src, Captured):
                c = const(src.tensor)
                conds.append(f"{c}._data is {const(src.tensor._data)}")
                if src.tensor.grad_fn is None:
                    conds.append(f"{c}._requires_grad is {src.tensor._requires_grad}")
                else:
                    conds.append(f"{c}.grad_fn is not None")
            elif isinstance(src, Number):
                v = src.container[src.key]
                conds.append(f"type({const(src.container)}[{src.key!r}]) is {const(type(v))}")
        for t, was_none, shape in tracer.grad_deps.values():
            c = const(t)
            if was_none:
                conds.append(f"{c}._grad is None")
            else:
                conds.append(f"{c}._grad is not None and {c}._grad._data.shape == "
                             f"{const(torch.Size(shape))}")
        for obj, snap in tracer.stateful.values():
            for p, (_, contents) in snap.items():
                for key, v in contents.items():
                    if id(v) in captured:
                        conds.append(f"{const(obj)}.state.get({const(p)}, {{}}).get({key!r}) "
                                     f"is {const(v)}")
    src = "def fast(leaves, s):\n    return (" + "\n            and ".join(conds) + ")\n"
    exec(compile(src, "<fusegrad guard>", "exec"), env)
    fast = env["fast"]
    fast.source = src
    return fast


def _bindings_check(fn):
    """The global names and closure cells the function reads still hold the same objects
    (a notebook that re-runs ``opt = SGD(...)`` must not keep updating the old one)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return lambda leaves, s: None
    glb = getattr(fn, "__globals__", {})
    names = [(n, glb[n]) for n in code.co_names if n in glb]
    cells = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            cells.append((cell, cell.cell_contents))
        except ValueError:  # an empty cell
            pass

    def check(leaves, s):
        for n, obj in names:
            if glb.get(n) is not obj:
                return f"global {n!r} now refers to another object"
        for cell, obj in cells:
            if cell.cell_contents is not obj:
                return "a variable the function closes over now refers to another object"
        return None

    return check


def _structure_check(structure):
    def check(leaves, s):
        if s != structure:
            return "non-tensor arguments or argument structure changed"
        return None

    return check


def _args_check(leaves0):
    specs = [(tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in leaves0]

    def check(leaves, s):
        for i, (t, (shape, dtype, device, rg)) in enumerate(zip(leaves, specs)):
            d = t._data
            if tuple(d.shape) != shape:
                return f"input {i} shape {shape} -> {tuple(d.shape)}"
            if d.dtype != dtype:
                return f"input {i} dtype {dtype} -> {d.dtype}"
            if d.device != device:
                return f"input {i} device {device} -> {d.device}"
            if t.requires_grad != rg:
                return f"input {i} requires_grad {rg} -> {t.requires_grad}"
        return None

    return check


def _mode_check(enabled):
    def check(leaves, s):
        now = grad_mode.is_grad_enabled()
        return None if now == enabled else f"grad mode enabled {enabled} -> {now}"

    return check


def _module_check(m):
    # identity of every submodule's parameter and child entries, and the training flags:
    # a replaced layer or parameter, or train()/eval(), needs a new trace
    modules = list(m.modules()) if hasattr(m, "modules") else [m]
    snap = [(sub, sub.training, list(getattr(sub, "_parameters", {}).values()),
             list(getattr(sub, "_modules", {}).values())) for sub in modules]

    from fusegrad.nn.module import structure_version

    seen = [structure_version[0]]

    def check(leaves, s):
        if structure_version[0] == seen[0]:
            return None  # no module attribute changed anywhere since the last full check
        why = full_check()
        if why is None:
            seen[0] = structure_version[0]
        return why

    def full_check():
        for sub, training, params, children in snap:
            if sub.training is not training:
                return f"{type(sub).__name__}.training {training} -> {sub.training}"
            if not _same_items(sub._parameters.values(), params):
                return f"the parameters of {type(sub).__name__} were replaced"
            if not _same_items(sub._modules.values(), children):
                return f"the submodules of {type(sub).__name__} were replaced"
        return None

    return check


def _same_items(now, before) -> bool:
    """Identity of two sequences' items (plain loops: this runs on every replay)."""
    if len(now) != len(before):
        return False
    for a, b in zip(now, before):
        if a is not b:
            return False
    return True


def _optimizer_groups_check(opt, tracer):
    lifted = set()
    if tracer is not None:
        for src in tracer.sources:
            if isinstance(src, Number):
                lifted.add((id(src.container), src.key))
    groups = [(g, [(k, v) for k, v in g.items() if k != "params" and (id(g), k) not in lifted],
               list(g["params"])) for g in opt.param_groups]
    state_keys = {p: frozenset(st) for p, st in opt.state.items()} if tracer else None
    state_lens = [(p, len(k)) for p, k in state_keys.items()] if tracer else None

    def check(leaves, s):
        if len(opt.param_groups) != len(groups):
            return f"{type(opt).__name__}: number of param groups changed"
        for i, (g, (g0, want, ps)) in enumerate(zip(opt.param_groups, groups)):
            for k, v in want:
                if g.get(k) != v:
                    return f"{type(opt).__name__} param_groups[{i}][{k!r}] {v!r} -> {g.get(k)!r}"
            if g is not g0 or not _same_items(g["params"], ps):
                return f"{type(opt).__name__} param_groups[{i}] parameters changed"
        if state_keys is not None:
            st = opt.state
            changed = len(st) != len(state_lens)
            if not changed:
                for p, n in state_lens:
                    if p not in st or len(st[p]) != n:
                        changed = True
                        break
            if changed:
                now = {p: frozenset(v) for p, v in st.items()}
                return f"{type(opt).__name__} state changed: {_state_diff(state_keys, now)}"
        return None

    return check


def _state_diff(before, now):
    for k in set(before) | set(now):
        if before.get(k) != now.get(k):
            return f"{sorted(before.get(k, ()))} -> {sorted(now.get(k, ()))}"
    return "entries changed"


def _tracer_checks(tracer):
    checks = []
    captured = []
    for src in tracer.sources:
        if isinstance(src, Captured):
            t = src.tensor
            captured.append((t, t._data, tuple(t._data.shape), t._data.dtype,
                             t.requires_grad, src.name or "captured tensor"))
        elif isinstance(src, Number):
            checks.append(_number_check(src.container, src.key, type(src.container[src.key])))
    grads = [(t, was_none, shape, t) for t, was_none, shape in tracer.grad_deps.values()]
    names = tracer.names

    def check_captured(leaves, s):
        for t, d0, shape, dtype, rg, name in captured:
            d = t._data
            if d is not d0 and (tuple(d.shape) != shape or d.dtype != dtype):
                return f"{name} changed from {dtype}{list(shape)} to {d.dtype}{list(d.shape)}"
            if t.requires_grad != rg:
                return f"{name}.requires_grad {rg} -> {t.requires_grad}"
        return None

    def check_grads(leaves, s):
        for t, was_none, shape, _ in grads:
            g = t._grad
            if (g is None) != was_none:
                name = names.get(id(t), "a tensor")
                return f"{name}.grad was {'None' if was_none else 'set'}, now " \
                       f"{'None' if g is None else 'set'}"
            if g is not None and tuple(g.shape) != shape:
                return f"{names.get(id(t), 'a tensor')}.grad shape {shape} -> {tuple(g.shape)}"
        return None

    # optimizer state tensors read by identity must still be the ones in the state
    for obj, snap in tracer.stateful.values():
        for p, (_, contents) in snap.items():
            for key, v in contents.items():
                if any(src.tensor is v for src in tracer.sources if isinstance(src, Captured)):
                    checks.append(_state_identity_check(obj, p, key, v))
    return [check_captured, check_grads] + checks


def _number_check(container, key, typ):
    def check(leaves, s):
        v = container.get(key) if isinstance(container, dict) else container[key]
        if type(v) is not typ:
            return f"[{key!r}] type {typ.__name__} -> {type(v).__name__}"
        return None

    return check


def _state_identity_check(opt, p, key, t):
    def check(leaves, s):
        if opt.state.get(p, {}).get(key) is not t:
            return f"{type(opt).__name__} state[{key!r}] tensor was replaced"
        return None

    return check
