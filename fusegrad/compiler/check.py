"""``compile(fn, check=True)``: run each call both eagerly and compiled, compare everything
a user can observe, and raise at the first value that differs."""

from __future__ import annotations

import torch

from fusegrad._util import pytree
from fusegrad.compiler.ir import Var
from fusegrad.compiler.ir.io import (Captured, Residual, Returned, SetGrad, SetState,
                                     WriteGradInPlace, WriteInPlace)
from fusegrad.tensor import Tensor

RTOL, ATOL = 1e-4, 1e-5


def _snapshot(program):
    """Copies of every piece of state the program may change, to run eager on the same."""
    snap = []
    for s in program.graph.sinks:
        if isinstance(s, WriteInPlace):
            snap.append(("data", s.tensor, s.tensor._data.clone()))
        elif isinstance(s, (SetGrad, WriteGradInPlace)):
            g = s.tensor._grad
            snap.append(("grad", s.tensor, None if g is None else g._data.clone()))
        elif isinstance(s, SetState):
            st = s.owner.state.get(s.param)
            v = None if st is None else st.get(s.key)
            snap.append(("state", s, None if v is None else v._data.clone()))
    for v, src in zip(program.graph.inputs, program.graph.sources):
        if isinstance(src, Captured):
            snap.append(("data", src.tensor, src.tensor._data.clone()))
    return snap


def _restore(snap):
    for kind, obj, val in snap:
        if kind == "data":
            obj._data.copy_(val)
        elif kind == "grad":
            obj._grad = None if val is None else Tensor._make(val.clone())
        elif kind == "state":
            st = obj.owner.state.get(obj.param)
            if val is None:
                if st is not None:
                    st.pop(obj.key, None)
            else:
                obj.owner.state[obj.param][obj.key] = Tensor._make(val.clone())


def _observe(program, result):
    """Everything the sinks touch, as (description, torch value, producing eqn)."""
    prod = program.graph.producers()
    seen = []
    flat = []
    pytree.flatten(result, flat, lambda x: isinstance(x, Tensor))
    for o, s in zip(program.graph.outputs, program.graph.sinks):
        e = prod.get(o) if isinstance(o, Var) else None
        if isinstance(s, Residual):
            continue  # kept for the backward, never seen by the user
        if isinstance(s, Returned):
            seen.append((f"returned value {s.index}", flat[s.index]._data.clone(), e))
        elif isinstance(s, WriteInPlace):
            seen.append((str(s), s.tensor._data.clone(), e))
        elif isinstance(s, (SetGrad, WriteGradInPlace)):
            g = s.tensor._grad
            seen.append((str(s), None if g is None else g._data.clone(), e))
        elif isinstance(s, SetState):
            v = s.owner.state[s.param][s.key]
            seen.append((str(s), v._data.clone(), e))
    return seen


def run_checked(compiled, program, args, kwargs, leaves, structure):
    snap = _snapshot(program)
    rng = torch.get_rng_state()
    eager_result = compiled.fn(*args, **kwargs)
    eager = _observe(program, eager_result)
    _restore(snap)
    torch.set_rng_state(rng)  # both runs draw the same random numbers
    result = program(leaves, structure)
    got = _observe(program, result)
    for (what, want, e), (_, have, _) in zip(eager, got):
        if (want is None) != (have is None):
            raise CompareError(f"fusegrad.compile(check=True): {what} is "
                               f"{'None' if have is None else 'set'} compiled but "
                               f"{'None' if want is None else 'set'} eagerly")
        if want is None:
            continue
        if want.shape != have.shape or not torch.allclose(
                have.double(), want.double(), rtol=RTOL, atol=ATOL, equal_nan=True):
            diff = (have.double() - want.double()).abs().max().item() \
                if want.shape == have.shape else "shape"
            origin = ""
            if e is not None:
                kernel = next((g.name for g in program.groups if e in g.eqns), None)
                origin = f"; computed by `{e!r}`" + (f" in kernel {kernel}" if kernel else "")
            raise CompareError(f"fusegrad.compile(check=True): {what} differs from eager "
                               f"(max abs diff {diff}){origin}")
    return result


class CompareError(AssertionError):
    pass
