"""The tracer: runs a user function on symbolic tensors and records a Graph.

The tracer is an interpreter (``fusegrad.interpreter``): installed with
``fusegrad.dispatch.interpreting``, it receives every primitive call ``fusegrad.dispatch.apply``
makes and records it instead of executing it, and autograd builds its nodes on the symbolic
tensors as usual, so ``loss.backward()`` inside the function appends the backward graph by
applying the same vjp rules the eager engine uses. The eager core's effects (``.grad``
fields, in-place writes, optimizer numbers and state, graph breaks) reach it the same way.

Concrete tensors the function touches (parameters, ``.grad`` fields, optimizer state)
are lifted to graph inputs; in-place updates of them become graph outputs written back
after each replay; the real objects are left exactly as they were before the trace.
"""

from __future__ import annotations

import contextlib
import functools
import linecache
import os
import sys

import torch

from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.ir.io import (Arg, Captured, Const, GradOf, Number, Random,  # noqa: F401
                                     Residual, Returned, SetGrad, SetState,
                                     WriteGradInPlace, WriteInPlace)
from fusegrad.dispatch import interpreting
from fusegrad.tensor import Tensor

TRACED_OBSERVER_HOOK = (
    "fusegrad.compile: a tensor hook that returns None only observes the gradient, and its "
    "side effects would run once, at trace time, not on every call. Return the (new) "
    "gradient from the hook, or register it outside the compiled function.")
TRACED_RETAIN_GRAD = (
    "fusegrad.compile: retain_grad() inside a compiled function is not supported (the tensor "
    "it would fill lives only inside the trace); return the value you need, or call "
    "retain_grad outside the compiled function")

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GraphBreak(RuntimeError):
    """The function needs a tensor's value in Python: it cannot be one static graph."""

    def __init__(self, what, where):
        self.what, self.where = what, where
        super().__init__(
            f"fusegrad.compile: {what} needs a tensor's value in Python, so the function "
            f"cannot be traced into one static graph (at {where}). Move it out of the "
            f"compiled function, or pass fallback='eager' to run this function eagerly.")


@functools.lru_cache(maxsize=None)
def _in_package(filename) -> bool:
    # normalised once per file: a sys.path entry may hold '..'
    return os.path.abspath(filename).startswith(_PKG_DIR + os.sep)


def user_frame():
    """The innermost stack frame outside the fusegrad package."""
    f = sys._getframe(1)
    while f is not None and _in_package(f.f_code.co_filename):
        f = f.f_back
    return f


def user_line() -> str:
    f = user_frame()
    if f is None:
        return "<unknown>"
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


def user_line_with_code() -> str:
    f = user_frame()
    if f is None:
        return "<unknown>"
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    return f"{f.f_code.co_filename}:{f.f_lineno}: `{code}`"


# --------------------------------------------------------------------------- tracer


class Tracer:
    def __init__(self, names=None):
        self.inputs: list[Var] = []
        self.sources: list = []
        self.eqns: list[Eqn] = []
        self.env: dict[int, tuple[Tensor, Var]] = {}  # concrete tensor -> current value
        self.written: dict[int, Tensor] = {}  # concrete tensors updated in place
        self.grad_snap: dict[int, tuple[Tensor, object]] = {}  # tensor -> .grad before trace
        self.grad_written: set[int] = set()  # tensors whose .grad the trace assigned
        self.grad_deps: dict[int, tuple] = {}  # .grad states read before any assignment
        self.grad_owner: dict[int, Tensor] = {}  # id(grad tensor) -> tensor it is .grad of
        self.created: set[int] = set()  # concrete tensors made during the trace: constants
        self.keep = []  # keeps objects whose ids are used as keys alive
        self.scalars: dict[tuple, Var] = {}
        self.stateful: dict[int, tuple[object, dict]] = {}
        self.names = names or {}  # id(tensor) -> readable name (parameter names)
        self.ran_backward = False
        self.tag = None  # the library scope recording now (optimizer=SGD)

    # -- values -------------------------------------------------------------------------

    def add_input(self, var, source):
        self.inputs.append(var)
        self.sources.append(source)
        return var

    def bind_arg(self, t: Tensor, index: int):
        var = self.add_input(Var(t.shape, t.dtype, t.device), Arg(index))
        self.env[id(t)] = (t, var)
        self._snap_grad(t)

    def read(self, t: Tensor) -> Var:
        data = t._data
        if isinstance(data, Var):
            return data
        hit = self.env.get(id(t))
        if hit is not None:
            return hit[1]
        var = Var(data.shape, data.dtype, data.device)
        name = self.names.get(id(t))
        if id(t) in self.grad_owner:
            owner = self.grad_owner[id(t)]
            source = GradOf(owner, self.names.get(id(owner)))
        elif id(t) in self.created:
            source = Const(data.clone())
        else:
            source = Captured(t, name)
        self.add_input(var, source)
        self.env[id(t)] = (t, var)
        self._snap_grad(t)
        return var

    def value(self, t):
        return self.read(t) if isinstance(t, Tensor) else t

    def record(self, prim, args, params):
        ins = [self.read(a) if isinstance(a, Tensor) else a for a in args]
        aval = prim.meta(*ins, **params)
        vs = [x for x in ins if isinstance(x, Var)]
        # arithmetic on lifted Python numbers only gives a Python number again
        weak = bool(vs) and all(v.weak for v in vs) and prim.host is not None
        out = Var(aval.shape, aval.dtype, aval.device, weak=weak)
        self.eqns.append(Eqn(prim, ins, params, out, user_line(), self.tag))
        return out

    def write(self, t: Tensor, value: Tensor):
        """``t`` now holds ``value`` (the functional form of an in-place update)."""
        var = self.read(value)
        if isinstance(t._data, Var):
            t._data = var
            if value.grad_fn is not None:
                t.grad_fn, t._output_nr = value.grad_fn, value._output_nr
            return
        if value.grad_fn is not None:
            raise RuntimeError(
                "fusegrad.compile: an in-place op that autograd records on a tensor created "
                f"outside the compiled function is not supported (at {user_line()})")
        self.env[id(t)] = (t, var)
        self.written[id(t)] = t

    def note_constant(self, t: Tensor):
        self.created.add(id(t))
        self.keep.append(t)

    def random_input(self, make, shape, dtype, device):
        return self.add_input(Var(shape, dtype, device), Random(make))

    def lift_scalar(self, container, key, lift=True):
        value = container[key]
        if not lift or not isinstance(value, (int, float)) \
                or isinstance(value, bool):
            return value  # a constant of the trace, guarded by value
        k = (id(container), key)
        var = self.scalars.get(k)
        if var is None:
            dtype = torch.float64 if isinstance(value, float) else torch.int64
            var = self.add_input(Var((), dtype, torch.device("cpu"), weak=True),
                                 Number(container, key))
            self.scalars[k] = var
            self.keep.append(container)
        return Tensor._make(var)

    def graph_break(self, what):
        raise GraphBreak(what, user_line_with_code())

    # -- the rest of the interpreter's protocol (fusegrad.interpreter) ---------------------

    run = record

    def mutate(self, t, method, datas):
        return False  # traced values are SSA: an in-place op is recorded as a new value

    def snapshot(self, data):
        return data

    def retain_grad(self, t, by_backward=False):
        if not by_backward:
            raise RuntimeError(TRACED_RETAIN_GRAD)
        # backward(inputs=[t]) fills t.grad by accumulation inside the trace

    def observer_hook(self):
        raise RuntimeError(TRACED_OBSERVER_HOOK)

    def note_backward(self):
        self.ran_backward = True

    def storage(self, t, what):
        raise RuntimeError(f"{what}: writing a tensor's storage directly cannot run inside a "
                           "compiled function; do it before compiling the step")

    @contextlib.contextmanager
    def provenance(self, tag):
        prev, self.tag = self.tag, tag
        try:
            yield
        finally:
            self.tag = prev

    # -- .grad fields ---------------------------------------------------------------------

    def _snap_grad(self, t):
        if id(t) not in self.grad_snap:
            self.grad_snap[id(t)] = (t, t._grad)

    def read_grad(self, t: Tensor):
        if isinstance(t._data, Var):
            return t._grad
        self._snap_grad(t)
        g = t._grad
        if id(t) not in self.grad_written and id(t) not in self.grad_deps:
            # the trace depends on what .grad held before the call: guard it
            self.grad_deps[id(t)] = (t, g is None, None if g is None else tuple(g.shape))
        if g is not None and not isinstance(g._data, Var) and id(g) not in self.env:
            self.grad_owner[id(g)] = t
            self.keep.append(g)
        return g

    def write_grad(self, t: Tensor, value):
        if not isinstance(t._data, Var):
            self._snap_grad(t)
            self.grad_written.add(id(t))
        t._grad = value

    # -- stateful objects (optimizers) -----------------------------------------------------

    def watch_stateful(self, obj):
        if id(obj) not in self.stateful:
            snap = {p: (s, dict(s)) for p, s in obj.state.items()}
            self.stateful[id(obj)] = (obj, snap)

    # -- finishing --------------------------------------------------------------------------

    def finish(self, result_leaves):
        """Build the graph and put every real object back as it was before the trace."""
        outputs, sinks = [], []
        for i, leaf in enumerate(result_leaves):
            if isinstance(leaf, Tensor):
                outputs.append(self.read(leaf))
                sinks.append(Returned(i))
        for t in self.written.values():
            if id(t) in self.created:
                continue  # a constant made during the trace: its new value goes elsewhere
            owner = self.grad_owner.get(id(t))
            if owner is not None:
                # a .grad updated in place (zero_grad(set_to_none=False)): on a replay the
                # owner's .grad is another object, so write through the owner
                if owner._grad is t:
                    outputs.append(self.env[id(t)][1])
                    sinks.append(WriteGradInPlace(owner, self.names.get(id(owner))))
                continue
            outputs.append(self.env[id(t)][1])
            sinks.append(WriteInPlace(t, self.names.get(id(t))))
        for t, before in self.grad_snap.values():
            after = t._grad
            t._grad = before
            if after is before:
                continue
            outputs.append(None if after is None else self.read(after))
            sinks.append(SetGrad(t, self.names.get(id(t))))
        for obj, snap in self.stateful.values():
            for p, s in obj.state.items():
                old = snap[p][1] if p in snap else {}
                for key, v in s.items():
                    if isinstance(v, Tensor) and (old.get(key) is not v
                                                  or isinstance(v._data, Var)):
                        if id(v) in self.written and old.get(key) is v:
                            continue  # updated in place: WriteInPlace covers it
                        outputs.append(self.read(v))
                        sinks.append(SetState(obj, p, key, self.names.get(id(p))))
            obj.state.clear()
            for p, (s, contents) in snap.items():
                s.clear()
                s.update(contents)
                obj.state[p] = s
        # None outputs (a .grad set to None) are kept as Python None sinks
        return Graph(self.inputs, self.eqns, outputs, self.sources, sinks, ["trace"])


def trace(fn, args, kwargs, flat_tensors, names=None):
    """Run ``fn`` under a tracer; returns (tracer, result)."""
    tracer = Tracer(names)
    for i, t in enumerate(flat_tensors):
        tracer.bind_arg(t, i)
    try:
        with interpreting(tracer):
            result = fn(*args, **kwargs)
    except BaseException:
        tracer.finish([])  # restore real objects
        raise
    return tracer, result
