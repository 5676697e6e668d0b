"""The ``cpu`` backend: the optimized graph as generated straight-line Python over ATen.

Each primitive's ATen call comes from its record; epilogue rules, keyed by record, fuse a
few equations into one call (matmul + bias into ``addmm``, the ReLU mask of backward into
``threshold_backward``, ...). Each call is a group: ``stats()`` counts groups, the calls
the generated program makes and its copies. No autograd bookkeeping runs on replay.
Intermediates live in buffers allocated once per program and reused across calls by
liveness; an elementwise op whose operand dies there writes into that operand's buffer;
values that escape (returned, stored as ``.grad`` or optimizer state) get fresh storage
every call, since the caller may keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from fusegrad import primitives as P
from fusegrad._util import dtypes
from fusegrad.compiler.backends.io_plan import (BufferPool, ProgramText, count_calls, fmt_num,
                                              load_run, read_source, return_line,
                                              write_sink)
from fusegrad.compiler.ir import Graph, Var
from fusegrad.compiler.ir.cost import eqn_flops
from fusegrad.compiler.schedule import Analysis, Group, group_io, io_bytes
from fusegrad.compiler.ir.io import Captured, WriteInPlace
from fusegrad.primitives import Kind

class AtenCall:
    """A fused ATen call standing for several equations of the graph: the cpu backend's
    own lowering vocabulary, between the epilogue rules and code generation (the primitive
    table is untouched). It answers the record fields code generation reads."""

    kind = None
    is_view = False
    host = None
    aten_rev = None
    foreach = False

    def __init__(self, name, aten, aten_out=False, foreach_op=None):
        self.name, self.aten, self.aten_out = name, aten, aten_out
        self.elementwise = foreach_op is not None
        self.foreach_op = foreach_op  # x +/- alpha * y: a foreach add/sub with alpha


ADDMM = AtenCall("addmm", "torch.addmm({0}, {1}, {2}{out})", aten_out=True)
LINEAR = AtenCall("linear", "torch._C._nn.linear({0}, {1}, {2})")
MM_T = AtenCall("mm_t", "torch.mm({0}.t(), {1}{out})", aten_out=True)
ADD_SCALED = AtenCall("add_scaled", "torch.add({0}, {1}, alpha={2}{out})", True, "add")
SUB_SCALED = AtenCall("sub_scaled", "torch.sub({0}, {1}, alpha={2}{out})", True, "sub")
THRESHOLD_BWD = AtenCall("threshold_backward",
                         "torch.ops.aten.threshold_backward({0}, {1}, 0)")
LOG_SOFTMAX_BWD = AtenCall("log_softmax_backward",
                           "torch._log_softmax_backward_data({0}, {1}, {p[dim]}, {1}.dtype)")


def _is_transpose(e):
    return e is not None and e.prim is P.permute and tuple(e.params["dims"]) == (1, 0)


def _is_number(x):
    return not isinstance(x, Var) or x.weak


class _Match:
    """What the epilogue rules see of the graph: each value's producer and use count."""

    def __init__(self, graph):
        self.uses = {}
        for e in graph.eqns:
            for x in e.vars():
                self.uses[x] = self.uses.get(x, 0) + 1
        for o in graph.outputs:
            if isinstance(o, Var):
                self.uses[o] = self.uses.get(o, 0) + 2
        self.prod = {e.out: e for e in graph.eqns}

    def single(self, x, prim):
        """The equation producing ``x`` with ``prim``, when ``x`` has no other reader."""
        p = self.prod.get(x) if isinstance(x, Var) else None
        return p if p is not None and p.prim is prim and self.uses.get(x) == 1 else None


# --------------------------------------------------------------------------- epilogue rules
# Each rule sees one equation and returns (fused equation, equations it absorbs) or None.


def _bias_matmul(m, e):
    """matmul + bias -> addmm; x @ W.T + b -> linear."""
    ins, o = e.inputs, e.out
    for mm, bias in ((ins[0], ins[1]), (ins[1], ins[0])):
        pm = m.single(mm, P.matmul)
        if pm is not None and len(mm.shape) == 2 and isinstance(bias, Var) \
                and not bias.weak and bias.dtype == mm.dtype \
                and tuple(o.shape) == tuple(mm.shape) and len(bias.shape) <= 2:
            pt = m.single(pm.inputs[1], P.permute)
            if _is_transpose(pt) and len(bias.shape) == 1:
                return e.replace(prim=LINEAR, inputs=[pm.inputs[0], pt.inputs[0], bias],
                                 params={}), (pm, pt)
            return e.replace(prim=ADDMM, inputs=[bias, *pm.inputs], params={}), (pm,)
    return None


def _sum_dropping_dims(m, e):
    """sum(x, dims, keepdim=True).reshape(without those dims): sum without keepdim."""
    ps = m.single(e.inputs[0], P.sum_)
    if ps is not None and ps.params.get("keepdim") and ps.params.get("dims"):
        dims = ps.params["dims"]
        shape = [d for k, d in enumerate(ps.inputs[0].shape) if k not in dims]
        if list(e.out.shape) == shape:
            return e.replace(prim=ps.prim, inputs=ps.inputs,
                             params={"dims": dims, "keepdim": False}), (ps,)
    return None


def _transposed_mm(m, e):
    """(a.T @ b).T -> b.T @ a as one mm of the transposed operand."""
    if not _is_transpose(e) or len(e.inputs[0].shape) != 2:
        return None
    pm = m.single(e.inputs[0], P.matmul)
    pa = pm and m.single(pm.inputs[0], P.permute)
    if pm is not None and _is_transpose(pa) and len(pm.inputs[1].shape) == 2:
        return e.replace(prim=MM_T, inputs=[pm.inputs[1], pa.inputs[0]], params={}), (pm, pa)
    return None


def _log_softmax_backward(m, e):
    """g - exp(out) * sum(g, dim, keepdim) with out = log_softmax(x, dim): ATen's backward."""
    ins, o = e.inputs, e.out
    if not isinstance(ins[1], Var):
        return None
    pm = m.single(ins[1], P.mul)
    pe = pm and m.single(pm.inputs[0], P.exp)
    ps = pm and m.single(pm.inputs[1], P.sum_)
    po = pe and m.prod.get(pe.inputs[0])
    if pe is not None and ps is not None and po is not None and po.prim is P.log_softmax \
            and ps.inputs[0] is ins[0] and ps.params.get("keepdim") \
            and tuple(ps.params["dims"] or ()) == (po.params["dim"],) \
            and tuple(ins[0].shape) == tuple(o.shape):
        return e.replace(prim=LOG_SOFTMAX_BWD, inputs=[ins[0], po.out],
                         params={"dim": po.params["dim"]}), (pm, pe, ps)
    return None


def _scaled(m, e):
    """x + s * y -> add(x, y, alpha=s) (and sub) for a number s."""
    ins, o = e.inputs, e.out
    pairs = ((ins[0], ins[1]),) if not e.prim.commutative else \
        ((ins[0], ins[1]), (ins[1], ins[0]))
    for x, mv in pairs:
        pm = m.single(mv, P.mul)
        if pm is None or not isinstance(x, Var) or x.weak:
            continue
        y, sc = pm.inputs
        if _is_number(y):
            y, sc = sc, y
        if isinstance(y, Var) and not y.weak and _is_number(sc) \
                and tuple(y.shape) == tuple(o.shape) == tuple(x.shape) \
                and y.dtype == x.dtype == o.dtype:
            call = ADD_SCALED if e.prim is P.add else SUB_SCALED
            return e.replace(prim=call, inputs=[x, y, sc], params={}), (pm,)
    return None


def _threshold_backward(m, e):
    """where(relu_out > 0, g, 0) -> threshold_backward(g, relu_out, 0)."""
    ins, o = e.inputs, e.out
    if ins[2] != 0.0 or not isinstance(ins[1], Var):
        return None
    pc = m.single(ins[0], P.gt)
    if pc is not None and pc.inputs[1] == 0 and isinstance(pc.inputs[0], Var):
        r = pc.inputs[0]
        pr = m.prod.get(r)
        if pr is not None and pr.prim is P.relu \
                and tuple(r.shape) == tuple(ins[1].shape) == tuple(o.shape):
            return e.replace(prim=THRESHOLD_BWD, inputs=[ins[1], r], params={}), (pc,)
    return None


EPILOGUES = {
    P.add: (_bias_matmul, _scaled),
    P.sub: (_log_softmax_backward, _scaled),
    P.reshape: (_sum_dropping_dims,),
    P.permute: (_transposed_mm,),
    P.where: (_threshold_backward,),
}


def _fuse_calls(graph: Graph):
    """Equations -> ATen calls, by the epilogue rules of each equation's primitive.

    Returns the calls in graph order and, for each, the graph equations it computes."""
    m = _Match(graph)
    absorbed, out, covers = set(), [], {}
    for e in graph.eqns:
        new, gone = e, ()
        for rule in EPILOGUES.get(e.prim, ()):
            hit = rule(m, e)
            if hit is not None:
                new, gone = hit
                absorbed.update(gone)
                break
        out.append(new)
        covers[new] = [*gone, e]
    calls = [e for e in out if e not in absorbed]
    return calls, {e: covers[e] for e in calls}


@dataclass
class CpuKernel:
    """One call the cpu program makes for a group of equations: ``source`` is its ATen
    line, ``ops`` the primitives it computes."""

    name: str
    ops: list
    source: str
    provenance: list


class CpuProgram:
    """A compiled graph for the cpu backend: ``run(flat_args)`` replays it.

    Its groups are the ATen calls the epilogue rules chose, each with the equations it
    computes; ``stats()`` counts what the generated program really does."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.source, self._env, calls = _generate(graph)
        self.run = load_run(self.source, self._env, f"<fusegrad cpu program {id(self):x}>")
        self._calls = calls
        self._report = None

    def _describe(self):
        """Groups, kernels and call counts, made when introspection first asks: a replay
        never needs them, so compiling does not pay for them."""
        if self._report is None:
            an = Analysis(self.graph)
            groups, kernels = [], []
            for i, (call, covered, line) in enumerate(self._calls):
                loads, scalars, stores = group_io(an, covered)
                name = f"aten_{call.prim.name}_{i}"
                groups.append(Group(covered, None, list(loads), scalars, stores,
                                    io_bytes(an, covered), sum(map(eqn_flops, covered)),
                                    name=name, index=i))
                kernels.append(CpuKernel(name, [e.prim.name for e in covered], line,
                                         groups[-1].provenance))
            self._report = groups, kernels, count_calls(self.source)
        return self._report

    @property
    def groups(self):
        return self._describe()[0]

    @property
    def kernels(self):
        return self._describe()[1]

    def stats(self) -> dict:
        groups, _, counts = self._describe()
        return {"n_kernels": len(groups), **counts,
                "bytes_moved": sum(g.bytes_moved for g in groups),
                "flops": sum(g.flops for g in groups)}


def _generate(graph: Graph):
    text = ProgramText()
    env, lines = text.env, text.lines
    names = {}
    weak = set()

    def name(x):
        if isinstance(x, Var):
            return names[x]
        return fmt_num(x)

    # --- inputs
    for v, s in zip(graph.inputs, graph.sources):
        expr, constant = read_source(text, s)
        if constant:
            names[v] = expr
            continue
        n = names[v] = f"v{v.id}"
        lines.append(f"{n} = {expr}")
        if v.weak:
            weak.add(v)

    eqns, covers = _fuse_calls(graph)
    calls = []  # (call, equations it computes, its line) of each group
    # --- liveness and aliasing: a view shares its root's storage
    root = {v: v for v in graph.inputs}
    last_use = {}
    for i, e in enumerate(eqns):
        for x in e.vars():
            last_use[root[x]] = i
        root[e.out] = root[e.inputs[0]] if e.prim.is_view else e.out
    n_eq = len(eqns)
    escaping = set()
    for o, s in zip(graph.outputs, graph.sinks):
        if isinstance(o, Var):
            escaping.add(root[o])
            last_use[root[o]] = n_eq
    owned_inputs = {root[v] for v, s in zip(graph.inputs, graph.sources)
                    if isinstance(s, Captured) and any(
                        isinstance(k, WriteInPlace) and k.tensor is s.tensor
                        for k in graph.sinks)}
    # storage an in-place sink will receive: computing straight into it saves a copy
    target_of = {}
    for o, k in zip(graph.outputs, graph.sinks):
        if isinstance(k, WriteInPlace) and isinstance(o, Var):
            for v, s in zip(graph.inputs, graph.sources):
                if isinstance(s, Captured) and s.tensor is k.tensor:
                    target_of[o] = v

    pool = BufferPool(text)
    buf_of = {}  # root var -> buffer name (preallocated or reused operand storage)
    storage = {}  # value name -> name of the buffer that holds it (for reordering)

    for i, e in enumerate(eqns):
        name_in = [name(x) for x in e.inputs]
        out = e.out
        n = names[out] = f"v{out.id}"
        p = e.params
        prim = e.prim
        fmt = dict(p=p, dtype=f"torch.{dtypes.name(out.dtype)}",
                   dev=f"torch.device({str(out.device)!r})", all=", ".join(name_in))
        if "step" in p:  # a slice's index expression
            fmt["sl"] = ", ".join([":"] * p["dim"] + [f"{p['start']}:{p['stop']}:{p['step']}"])
        if "dims" in p:  # a reduction's dims, as a tuple (None: all)
            d = p["dims"]
            fmt["dims"] = repr(() if d is None else tuple(d) if isinstance(d, (list, tuple))
                               else (d,))
        if prim.is_view:
            storage[n] = storage.get(name_in[0], name_in[0])
            lines.append(f"{n} = " + prim.view.aten.format(*name_in, **fmt))
        else:
            dest = None
            supports_out = prim.aten_out
            # an elementwise call with out= may write into a dying operand's storage
            elementwise = supports_out and (prim.kind.pointwise if prim.kind is not None
                                            else prim.elementwise)
            if supports_out and out not in escaping:
                # reuse a dying operand's storage, else a preallocated buffer
                for x in e.vars():
                    r = root[x]
                    if elementwise and r is x and x not in weak and last_use.get(r) == i \
                            and (r not in graph.inputs or r in owned_inputs) \
                            and r not in escaping and tuple(x.shape) == tuple(out.shape) \
                            and x.dtype == out.dtype:
                        dest = buf_of.get(r, names[r])  # the buffer changes hands
                        pool.hold(dest, (tuple(out.shape), out.dtype), last_use.get(out, i))
                        break
                if dest is None:
                    key = (tuple(out.shape), out.dtype)
                    dest = pool.take(key, lambda: torch.empty(out.shape, dtype=out.dtype,
                                                              device=out.device))
                    pool.hold(dest, key, last_use.get(out, i))
                buf_of[out] = dest
            elif supports_out and elementwise and out in target_of:
                tgt = target_of[out]
                if last_use.get(tgt) is None or last_use[tgt] <= i:
                    dest = names[tgt]
                    buf_of[out] = dest
            fmt["out"] = f", out={dest}" if dest else ""
            if out.weak:
                weak.add(out)
                lines.append(f"{n} = " + prim.host.format(*name_in))
                continue
            call = _scalar_first(prim, e.inputs, name_in, weak) or \
                prim.aten.format(*name_in, **fmt)
            if dest and "out=" not in call:
                call = f"{dest}.copy_({call})"
            storage[n] = storage.get(dest, dest) if dest else n
            ops = [storage.get(a, a) if isinstance(x, Var) and x not in weak else None
                   for x, a in zip(e.inputs, name_in)]
            inplace = _inplace_form(prim, name_in, ops, storage[n], out.numel()) if dest \
                else None
            lines.append(_InPlace(n, storage[n], call, inplace, ops) if inplace
                         else f"{n} = {call}")
            calls.append((e, covers[e], f"{n} = {call}"))
        pool.step_done(i)

    # --- outputs: escaping values need storage of their own
    results = []
    given = set()
    for o, s in zip(graph.outputs, graph.sinks):
        if o is None:
            val = "None"
        elif not isinstance(o, Var):
            val = f"torch.tensor({fmt_num(o)})"
        else:
            r = root[o]
            val = names[o]
            if r in given or r in graph.inputs and not isinstance(s, WriteInPlace):
                val = f"{val}.clone()"
            given.add(r)
        written = isinstance(s, WriteInPlace) and \
            buf_of.get(o) == names.get(_input_of(graph, s.tensor))
        write_sink(text, s, val, written, results)
    lines.append(return_line(results))
    return text.source(_batch_inplace(lines)), env, calls


# --------------------------------------------------------------------------- multi-tensor
# Runs of in-place elementwise updates (an optimizer step over every parameter) become
# one torch._foreach_* call per operation instead of one call per parameter.

class _Other(NamedTuple):
    """The second operand of a foreach step: a tensor's name or a number's expression."""

    text: str
    tensor: bool


class _InPlace:
    """One in-place elementwise line: ``step`` is [(op, dest, other, alpha)] in
    foreach terms (``other`` an :class:`_Other`, or None for a unary op)."""

    def __init__(self, name, dest, line, steps, reads):
        self.name, self.dest, self.line, self.steps = name, dest, line, steps
        self.reads = {r for r in reads if r is not None} | {dest}

    def __str__(self):
        return f"{self.name} = {self.line}"


# Above this size a fused call's single pass over memory beats saving calls by batching.
FOREACH_SPLIT_LIMIT = 1 << 16


def _inplace_form(prim, names, bufs, dest, numel):
    """The line as foreach steps writing ``dest`` in place, or None."""
    if prim.kind is Kind.UNARY and prim.foreach and bufs[0] == dest:
        return [(prim.name, dest, None, None)]
    if prim.kind is Kind.BINARY and prim.foreach:
        a, b = (_Other(n, buf is not None) for n, buf in zip(names, bufs))
        if bufs[0] == dest:
            return [(prim.name, dest, b, None)]
        if bufs[1] == dest and prim.commutative:
            return [(prim.name, dest, a, None)]
        return None
    op = prim.foreach_op if isinstance(prim, AtenCall) else None
    if op is not None:  # x +/- sc * y: x and y tensors, sc a number
        x, y, sc = names
        if bufs[0] == dest:
            return [(op, dest, _Other(y, True), sc)]
        if bufs[1] == dest and numel <= FOREACH_SPLIT_LIMIT:
            # y <- x +/- s*y: scale y in place, then add x (two batched passes)
            scale = sc if op == "add" else f"(-{sc})"
            return [("mul", dest, _Other(scale, False), None),
                    ("add", dest, _Other(x, True), None)]
    return None


def _batch_inplace(lines):
    out, run = [], []
    for ln in lines + [None]:
        if isinstance(ln, _InPlace):
            run.append(ln)
            continue
        if run:
            out += _schedule_run(run)
            run = []
        if ln is not None:
            out.append(ln)
    return [str(x) for x in out]


def _schedule_run(run):
    """List-schedule a run of in-place lines (respecting reads and writes of buffers),
    emitting together the ready lines that do the same operation."""
    if len(run) < 2:
        return run
    preds = {i: set() for i in range(len(run))}
    for j, b in enumerate(run):
        for i in range(j):
            a = run[i]
            if a.dest in b.reads or b.dest in a.reads:
                preds[j].add(i)
    done, out = set(), []
    while len(done) < len(run):
        ready = [i for i in range(len(run)) if i not in done and preds[i] <= done]
        first = run[ready[0]]
        key = _key(first)
        group = [i for i in ready if _key(run[i]) == key] if key else [ready[0]]
        if len(group) == 1:
            out.append(str(run[group[0]]))
        else:
            out += _foreach_lines([run[i] for i in group])
        done.update(group)
    return out


def _key(ln):
    if len(ln.steps) != 1:
        return ("multi", tuple((op, _other_kind(o), a) for op, _, o, a in ln.steps))
    op, _, other, alpha = ln.steps[0]
    return (op, _other_kind(other), alpha)


def _other_kind(other):
    """Steps batch together when their operands are all tensors, or the same number."""
    if other is None:
        return None
    return "tensor" if other.tensor else ("number", other.text)


def _foreach_lines(group):
    lines = []
    for k in range(len(group[0].steps)):
        op, _, other, alpha = group[0].steps[k]
        dests = "[" + ", ".join(ln.steps[k][1] for ln in group) + "]"
        kind = _other_kind(other)
        if kind is None:
            call = f"torch._foreach_{op}_({dests})"
        elif kind == "tensor":
            others = "[" + ", ".join(ln.steps[k][2].text for ln in group) + "]"
            call = f"torch._foreach_{op}_({dests}, {others}" + (
                f", alpha={alpha})" if alpha is not None else ")")
        else:
            call = f"torch._foreach_{op}_({dests}, {other.text})"
        lines.append(call)
    lines.append(", ".join(ln.name for ln in group) + " = " + ", ".join(ln.dest for ln in group))
    return lines


def _input_of(graph, tensor):
    for v, s in zip(graph.inputs, graph.sources):
        if isinstance(s, Captured) and s.tensor is tensor:
            return v
    return None


def _scalar_first(prim, inputs, names, weak):
    """ATen has no ``sub(number, tensor)``: the record's ``aten_rev`` spells those."""
    if prim.aten_rev is None or len(inputs) != 2:
        return None
    a = inputs[0]
    if isinstance(a, Var) and a not in weak:
        return None
    return prim.aten_rev.format(*names)
