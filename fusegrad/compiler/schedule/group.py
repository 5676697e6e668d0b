"""The Group record (one kernel: the equations it computes and what it moves), kernel
names, and schedule statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

from fusegrad import primitives as P
from fusegrad.primitives import Kind


@dataclass(eq=False)
class Group:
    """One kernel: its equations (graph order), what it reads and writes, its cost."""

    eqns: list
    layout: object | None  # the backend's plan (the Triton Layout)
    inputs: list  # Vars read from memory (graph inputs or other groups' outputs)
    scalars: list  # host numbers (weak Vars) it takes as arguments
    outputs: list  # Vars it writes to memory
    bytes_moved: int
    flops: int
    segments: list = field(default_factory=list)  # the parts of a multi-tensor kernel
    name: str = ""
    index: int = 0
    update: str | None = None  # "sgd" / "adam": the optimizer step it applies, if any
    dests: dict = field(default_factory=dict)  # stored Var -> storages it is written to

    @property
    def kind(self) -> str:
        return "multi" if self.segments else self.layout.kind

    @property
    def ops(self) -> list:
        return [e.prim.name for e in self.eqns]

    @property
    def provenance(self) -> list:
        seen = []
        for e in self.eqns:
            if e.src and e.src not in seen:
                seen.append(e.src)
        return seen

    def listing(self) -> str:
        return "\n".join(repr(e) for e in self.eqns)

    def __repr__(self):
        return f"<Group {self.name or self.kind}: {len(self.eqns)} eqns, " \
               f"{self.bytes_moved} B, {self.flops} flop>"


def finish_multi(m: Group):
    for seg in m.segments:
        m.eqns.extend(seg.eqns)
        for v in seg.inputs:
            if v not in m.inputs:
                m.inputs.append(v)
        for v in seg.scalars:
            if v not in m.scalars:
                m.scalars.append(v)
        m.outputs.extend(seg.outputs)
        m.dests.update(seg.dests)
        m.bytes_moved += seg.bytes_moved
        m.flops += seg.flops


# --------------------------------------------------------------------------- naming
# Kernel names say what a kernel computes: known patterns, the prims that are not mere
# plumbing, and the library scope (the optimizer) whose update it applies.

_SOFTMAX = (P.amax, P.exp, P.sum_)
_SOFTMAX_KINDS = (Kind.REDUCE, Kind.BINARY, Kind.COMPARE)
_SOFTMAX_UNARY = (P.exp, P.log, P.neg)


def _pattern_names(eqns) -> list[str]:
    prims = {e.prim for e in eqns}
    parts = []
    mm = [e for e in eqns if e.prim.kind is Kind.MATMUL]
    if mm:
        out = mm[0].out
        bias = any(e.prim is P.add and out in e.inputs for e in eqns)
        parts.append("addmm" if bias else "mm")
    log_softmax = P.log_softmax in prims or {*_SOFTMAX, P.log} <= prims
    if log_softmax:
        parts.append("log_softmax")
    elif {*_SOFTMAX, P.div} <= prims:
        parts.append("softmax")
    if log_softmax and {P.eq, P.cast, P.sum_, P.mul} <= prims:  # picking the target's class
        parts.append("nll")
    return parts


def _plumbing(p) -> bool:
    """Prims a kernel name leaves out: data movement, creation, casts and copies."""
    return p.kind in (Kind.MOVEMENT, Kind.CREATE, Kind.MATMUL) or p.identity.noop is not None


def kernel_name(g: Group, i: int) -> str:
    """``fused_<what it fuses>_<i>``: matmul/softmax patterns, then op names, then the
    optimizer it applies; ``multi_tensor_<optimizer>_<i>`` for a multi-tensor kernel."""
    if g.segments:
        kinds = []
        for seg in g.segments:
            if seg.update and seg.update not in kinds:
                kinds.append(seg.update)
        return f"multi_tensor_{'_'.join(kinds) or 'update'}_{i}"
    parts = _pattern_names(g.eqns)
    softmax = any(p in parts for p in ("softmax", "log_softmax"))
    names = []
    for e in g.eqns:
        p = e.prim
        if _plumbing(p) or e.tag is not None:  # an optimizer's arithmetic is named by it
            continue
        if softmax and (p.kind in _SOFTMAX_KINDS or p in _SOFTMAX_UNARY):
            continue  # the arithmetic of a named softmax / log-softmax / nll
        if parts and parts[0] == "addmm" and p is P.add:
            continue
        n = p.name
        if n not in names and n not in parts and len(names) < 2 \
                and len(parts) + len(names) < 3:
            names.append(n)
    parts += names
    if g.update:
        parts.append(g.update)
    if not parts:
        parts = [g.eqns[0].prim.name if g.eqns else "copy"]
    return f"fused_{'_'.join(parts)}_{i}"


def update_kind(eqns):
    """The optimizer whose update the group applies (from the ops' provenance tags)."""
    for e in eqns:
        if e.tag is not None and e.tag.startswith("optimizer="):
            return e.tag.split("=", 1)[1].lower()
    return None


def stats(groups) -> dict:
    """``n_kernels``, ``bytes_moved`` and ``flops`` of a schedule."""
    return {
        "n_kernels": len(groups),
        "bytes_moved": sum(g.bytes_moved for g in groups),
        "flops": sum(g.flops for g in groups),
    }


