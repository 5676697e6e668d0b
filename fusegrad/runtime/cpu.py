"""The ``cpu`` backend: the optimized graph as generated straight-line Python over ATen.

No autograd bookkeeping runs on replay. Intermediates live in buffers allocated once per
program and reused across calls by liveness; an elementwise op whose operand dies there
writes into that operand's buffer; values that escape (returned, stored as ``.grad`` or
optimizer state) get fresh storage every call, since the caller may keep them.
"""

from __future__ import annotations

import math

import torch

from fusegrad.compiler.ir import Eqn, Graph, Var
from fusegrad.compiler.tracer import (Arg, Captured, Const, GradOf, Number, Random,
                                      Returned, SetGrad, SetState, WriteGradInPlace,
                                      WriteInPlace)
from fusegrad.tensor import Tensor

# prim -> (ATen function or method template, supports out=, elementwise)
# ``{0}``.. are operands, ``{p[name]}`` params; scalars are inlined.
_ELEMENTWISE = {
    "neg": "torch.neg({0}{out})", "exp": "torch.exp({0}{out})", "log": "torch.log({0}{out})",
    "sqrt": "torch.sqrt({0}{out})", "abs": "torch.abs({0}{out})", "sin": "torch.sin({0}{out})",
    "cos": "torch.cos({0}{out})", "tanh": "torch.tanh({0}{out})",
    "sigmoid": "torch.sigmoid({0}{out})", "relu": "torch.relu({0})",
    "sign": "torch.sign({0}{out})", "add": "torch.add({0}, {1}{out})",
    "sub": "torch.sub({0}, {1}{out})", "mul": "torch.mul({0}, {1}{out})",
    "div": "torch.div({0}, {1}{out})", "pow": "torch.pow({0}, {1}{out})",
    "maximum": "torch.maximum({0}, {1}{out})", "minimum": "torch.minimum({0}, {1}{out})",
    "eq": "torch.eq({0}, {1}{out})", "ne": "torch.ne({0}, {1}{out})",
    "lt": "torch.lt({0}, {1}{out})", "le": "torch.le({0}, {1}{out})",
    "gt": "torch.gt({0}, {1}{out})", "ge": "torch.ge({0}, {1}{out})",
    "logical_and": "torch.logical_and({0}, {1}{out})",
    "where": "torch.where({0}, {1}, {2}{out})",
    "clamp": "torch.clamp({0}, {p[lo]!r}, {p[hi]!r}{out})",
    # fused calls made by _peephole (x + alpha * y)
    "add_scaled": "torch.add({0}, {1}, alpha={2}{out})",
    "sub_scaled": "torch.sub({0}, {1}, alpha={2}{out})",
}
_VIEWS = {
    "reshape": "{0}.reshape({p[shape]!r})", "permute": "{0}.permute({p[dims]!r})",
    "expand": "{0}.expand({p[shape]!r})", "select": "{0}.select({p[dim]}, {p[index]})",
    "slice": "{0}[{sl}]",
}
_OTHERS = {
    "sum": "torch.sum({0}, {dims}, keepdim={p[keepdim]}{out})",
    "amax": "torch.amax({0}, {dims}, keepdim={p[keepdim]}{out})",
    "amin": "torch.amin({0}, {dims}, keepdim={p[keepdim]}{out})",
    "argmax": "torch.argmax({0}, {p[dims]!r}, keepdim={p[keepdim]})",
    "matmul": "torch.matmul({0}, {1}{out})",
    "cast": "{0}.to({dtype})", "copy": "{0}.clone()",
    "cat": "torch.cat([{all}], {p[dim]}{out})",
    "unslice": "torch.slice_scatter(torch.zeros({p[shape]!r}, dtype={dtype}, device={dev}), "
               "{0}, {p[dim]}, {p[start]}, {p[stop]}, {p[step]})",
    "full": "torch.full({p[shape]!r}, {p[value]!r}, dtype={dtype}, device={dev})",
    "log_softmax": "torch.log_softmax({0}, {p[dim]})",
    # fused calls made by _peephole
    "addmm": "torch.addmm({0}, {1}, {2}{out})",
    "threshold_backward": "torch.ops.aten.threshold_backward({0}, {1}, 0)",
    "log_softmax_backward": "torch._log_softmax_backward_data({0}, {1}, {p[dim]}, {1}.dtype)",
    "linear": "torch._C._nn.linear({0}, {1}, {2})",
    "mm_t": "torch.mm({0}.t(), {1}{out})",
}


class AtenCall:
    """A fused ATen call standing for several equations (cpu backend only; the primitive
    table is untouched: these exist between the peephole pass and code generation)."""

    kind = "aten"

    def __init__(self, name):
        self.name = name


_ADDMM, _ADD_SCALED, _SUB_SCALED, _THRESHOLD_BWD, _LOG_SOFTMAX_BWD, _LINEAR, _MM_T = (
    AtenCall("addmm"), AtenCall("add_scaled"), AtenCall("sub_scaled"),
    AtenCall("threshold_backward"), AtenCall("log_softmax_backward"), AtenCall("linear"),
    AtenCall("mm_t"))


def _is_transpose(e):
    return e is not None and e.prim.name == "permute" and tuple(e.params["dims"]) == (1, 0)


def _is_number(x):
    return not isinstance(x, Var) or x.weak


def _peephole(graph: Graph):
    """Equations -> ATen calls: matmul + bias -> addmm, x - s*y -> sub(x, y, alpha=s),
    the ReLU mask of backward -> threshold_backward."""
    uses = {}
    for e in graph.eqns:
        for x in e.vars():
            uses[x] = uses.get(x, 0) + 1
    for o in graph.outputs:
        if isinstance(o, Var):
            uses[o] = uses.get(o, 0) + 2
    prod = {e.out: e for e in graph.eqns}

    def single(x, prim):
        p = prod.get(x) if isinstance(x, Var) else None
        return p if p is not None and p.prim.name == prim and uses.get(x) == 1 else None

    absorbed, out = set(), []
    for e in graph.eqns:
        n, ins, o = e.prim.name, e.inputs, e.out
        new = None
        if n == "add":
            for mm, bias in ((ins[0], ins[1]), (ins[1], ins[0])):
                pm = single(mm, "matmul")
                if pm is not None and len(mm.shape) == 2 and isinstance(bias, Var) \
                        and not bias.weak and bias.dtype == mm.dtype \
                        and tuple(o.shape) == tuple(mm.shape) and len(bias.shape) <= 2:
                    pt = single(pm.inputs[1], "permute")
                    if _is_transpose(pt) and len(bias.shape) == 1:  # x @ W.T + b
                        new = Eqn(_LINEAR, [pm.inputs[0], pt.inputs[0], bias], {}, o, e.src)
                        absorbed.add(pt)
                    else:
                        new = Eqn(_ADDMM, [bias, *pm.inputs], {}, o, e.src)
                    absorbed.add(pm)
                    break
        if new is None and n == "reshape":
            # sum(x, dims, keepdim=True).reshape(without those dims): sum without keepdim
            ps = single(ins[0], "sum")
            if ps is not None and ps.params.get("keepdim") and ps.params.get("dims"):
                dims = ps.params["dims"]
                shape = [d for k, d in enumerate(ps.inputs[0].shape) if k not in dims]
                if list(o.shape) == shape:
                    new = Eqn(ps.prim, ps.inputs, {"dims": dims, "keepdim": False}, o, e.src)
                    absorbed.add(ps)
        if new is None and _is_transpose(e) and len(ins[0].shape) == 2:
            pm = single(ins[0], "matmul")
            pa = pm and single(pm.inputs[0], "permute")
            if pm is not None and _is_transpose(pa) and len(pm.inputs[1].shape) == 2:
                new = Eqn(_MM_T, [pm.inputs[1], pa.inputs[0]], {}, o, e.src)
                absorbed.update((pm, pa))
        if new is None and n == "sub" and isinstance(ins[1], Var):
            # g - exp(out) * sum(g, dim, keepdim): the rule of log_softmax's vjp
            pm = single(ins[1], "mul")
            pe = pm and single(pm.inputs[0], "exp")
            ps = pm and single(pm.inputs[1], "sum")
            po = pe and prod.get(pe.inputs[0])
            if pe is not None and ps is not None and po is not None \
                    and po.prim.name == "log_softmax" and ps.inputs[0] is ins[0] \
                    and ps.params.get("keepdim") and tuple(ps.params["dims"] or ()) == (
                        po.params["dim"],) and tuple(ins[0].shape) == tuple(o.shape):
                new = Eqn(_LOG_SOFTMAX_BWD, [ins[0], po.out], {"dim": po.params["dim"]}, o,
                          e.src)
                absorbed.update((pm, pe, ps))
        if new is None and n in ("add", "sub"):
            pairs = ((ins[0], ins[1]),) if n == "sub" else ((ins[0], ins[1]), (ins[1], ins[0]))
            for x, m in pairs:
                pm = single(m, "mul")
                if pm is None or not isinstance(x, Var) or x.weak:
                    continue
                y, s = pm.inputs
                if _is_number(y):
                    y, s = s, y
                if isinstance(y, Var) and not y.weak and _is_number(s) \
                        and tuple(y.shape) == tuple(o.shape) == tuple(x.shape) \
                        and y.dtype == x.dtype == o.dtype:
                    new = Eqn(_SUB_SCALED if n == "sub" else _ADD_SCALED, [x, y, s], {}, o,
                              e.src)
                    absorbed.add(pm)
                    break
        if new is None and n == "where" and ins[2] == 0.0 and isinstance(ins[1], Var):
            pc = single(ins[0], "gt")
            if pc is not None and pc.inputs[1] == 0 and isinstance(pc.inputs[0], Var):
                r = pc.inputs[0]
                pr = prod.get(r)
                if pr is not None and pr.prim.name == "relu" \
                        and tuple(r.shape) == tuple(ins[1].shape) == tuple(o.shape):
                    new = Eqn(_THRESHOLD_BWD, [ins[1], r], {}, o, e.src)
                    absorbed.add(pc)
        out.append(new or e)
    return [e for e in out if e not in absorbed]


class CpuProgram:
    """A compiled graph for the cpu backend: ``run(flat_args)`` replays it."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.source, self._env = _generate(graph)
        code = compile(self.source, f"<fusegrad cpu program {id(self):x}>", "exec")
        exec(code, self._env)
        self.run = self._env["run"]
        self.n_calls = sum(1 for line in self.source.splitlines() if "torch." in line)


def _fmt_num(x):
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, float) and not math.isfinite(x):
        return f"float({str(x)!r})"
    return repr(x)


def _generate(graph: Graph):
    env = {"torch": torch, "_T": Tensor._make, "math": math}
    consts = {}

    def const(obj, prefix):
        key = id(obj)
        if key not in consts:
            consts[key] = f"{prefix}{len(consts)}"
            env[consts[key]] = obj
        return consts[key]

    names = {}
    weak = set()

    def name(x):
        if isinstance(x, Var):
            return names[x]
        return _fmt_num(x)

    lines = []
    # --- inputs
    for v, s in zip(graph.inputs, graph.sources):
        n = names[v] = f"v{v.id}"
        if isinstance(s, Arg):
            lines.append(f"{n} = args[{s.index}]._data")
        elif isinstance(s, Captured):
            lines.append(f"{n} = {const(s.tensor, 'c')}._data")
        elif isinstance(s, GradOf):
            lines.append(f"{n} = {const(s.tensor, 'c')}._grad._data")
        elif isinstance(s, Const):
            names[v] = const(s.data, "k")
        elif isinstance(s, Random):
            lines.append(f"{n} = {const(s.make, 'r')}()")
        elif isinstance(s, Number):
            lines.append(f"{n} = {const(s.container, 'h')}[{s.key!r}]")
            weak.add(v)
        else:
            raise TypeError(f"unknown source {s}")

    eqns = _peephole(graph)
    # --- liveness and aliasing: a view shares its root's storage
    root = {v: v for v in graph.inputs}
    last_use = {}
    for i, e in enumerate(eqns):
        for x in e.vars():
            last_use[root[x]] = i
        root[e.out] = root[e.inputs[0]] if e.prim.name in _VIEWS else e.out
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

    pool: dict[tuple, list[str]] = {}
    free_at: dict[int, list] = {}
    buf_of = {}  # root var -> buffer name (preallocated or reused operand storage)
    release = {}  # buffer name -> index of the last use of the value it holds
    storage = {}  # value name -> name of the buffer that holds it (for reordering)
    n_bufs = 0

    for i, e in enumerate(eqns):
        name_in = [name(x) for x in e.inputs]
        out = e.out
        n = names[out] = f"v{out.id}"
        p = e.params
        pn = e.prim.name
        fmt = dict(p=p, dtype=f"torch.{str(out.dtype).split('.')[-1]}",
                   dev=f"torch.device({str(out.device)!r})")
        if pn in _VIEWS:
            storage[n] = storage.get(name_in[0], name_in[0])
            if pn == "slice":
                fmt["sl"] = ", ".join([":"] * p["dim"] + [f"{p['start']}:{p['stop']}:{p['step']}"])
            lines.append(f"{n} = " + _VIEWS[pn].format(*name_in, **fmt))
        else:
            dest = None
            # where's out= overload takes no Python numbers; relu has none
            elementwise = pn in _ELEMENTWISE and pn not in ("relu", "where")
            supports_out = elementwise or pn in ("sum", "amax", "amin", "matmul", "cat",
                                                 "addmm", "mm_t")
            if supports_out and out not in escaping:
                # reuse a dying operand's storage, else a preallocated buffer
                for x in e.vars():
                    r = root[x]
                    if elementwise and r is x and x not in weak and last_use.get(r) == i \
                            and (r not in graph.inputs or r in owned_inputs) \
                            and r not in escaping and tuple(x.shape) == tuple(out.shape) \
                            and x.dtype == out.dtype:
                        dest = buf_of.get(r, names[r])
                        release[dest] = last_use.get(out, i)  # the buffer changes hands
                        free_at.setdefault(release[dest], []).append(
                            ((tuple(out.shape), out.dtype), dest))
                        break
                if dest is None:
                    key = (tuple(out.shape), out.dtype)
                    free = pool.get(key)
                    if free:
                        dest = free.pop()
                    else:
                        dest = f"b{n_bufs}"
                        n_bufs += 1
                        env[dest] = torch.empty(out.shape, dtype=out.dtype, device=out.device)
                    release[dest] = last_use.get(out, i)
                    free_at.setdefault(release[dest], []).append((key, dest))
                buf_of[out] = dest
            elif supports_out and elementwise and out in target_of:
                tgt = target_of[out]
                if last_use.get(tgt) is None or last_use[tgt] <= i:
                    dest = names[tgt]
                    buf_of[out] = dest
            fmt["out"] = f", out={dest}" if dest else ""
            if pn in ("sum", "amax", "amin"):
                fmt["dims"] = "()" if p["dims"] is None else repr(tuple(p["dims"]))
            if pn == "cat":
                fmt["all"] = ", ".join(name_in)
            if out.weak:
                weak.add(out)
                lines.append(f"{n} = " + _PY_FORM[pn].format(*name_in))
                continue
            tmpl = _ELEMENTWISE.get(pn) or _OTHERS[pn]
            call = _scalar_first(pn, e.inputs, name_in, weak) or tmpl.format(*name_in, **fmt)
            if dest and "out=" not in call:
                call = f"{dest}.copy_({call})"
            storage[n] = storage.get(dest, dest) if dest else n
            ops = [storage.get(a, a) if isinstance(x, Var) and x not in weak else None
                   for x, a in zip(e.inputs, name_in)]
            inplace = _inplace_form(pn, name_in, ops, storage[n], out.numel()) if dest \
                else None
            lines.append(_InPlace(n, storage[n], call, inplace, ops) if inplace
                         else f"{n} = {call}")
        for key, dest in free_at.pop(i, ()):
            if release.get(dest) == i and dest.startswith("b"):
                pool.setdefault(key, []).append(dest)

    # --- outputs: escaping values need storage of their own
    results = []
    given = set()
    for o, s in zip(graph.outputs, graph.sinks):
        if o is None:
            val = "None"
        elif not isinstance(o, Var):
            val = f"_T(torch.tensor({_fmt_num(o)}))"
        else:
            r = root[o]
            v = names[o]
            if r in given or r in graph.inputs and not isinstance(s, WriteInPlace):
                v = f"{v}.clone()"
            given.add(r)
            val = v
        if isinstance(s, Returned):
            results.append(f"_T({val})" if val != "None" else "None")
        elif isinstance(s, WriteInPlace):
            c = const(s.tensor, "c")
            if buf_of.get(o) != names.get(_input_of(graph, s.tensor)):
                lines.append(f"{c}._data.copy_({val})")
            lines.append(f"{c}._vc[0] += 1")
        elif isinstance(s, WriteGradInPlace):
            c = const(s.tensor, "c")
            lines.append(f"{c}._grad._data.copy_({val})")
            lines.append(f"{c}._grad._vc[0] += 1")
        elif isinstance(s, SetGrad):
            c = const(s.tensor, "c")
            lines.append(f"{c}._grad = " + ("None" if val == "None" else f"_T({val})"))
        elif isinstance(s, SetState):
            st = const(s.owner, "o")
            pk = const(s.param, "c")
            lines.append(f"{st}.state[{pk}][{s.key!r}] = _T({val})")
    lines.append(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
    lines = _batch_inplace(lines)
    src = "def run(args):\n" + "\n".join("    " + ln for ln in lines) + "\n"
    return src, env


# --------------------------------------------------------------------------- multi-tensor
# Runs of in-place elementwise updates (an optimizer step over every parameter) become
# one torch._foreach_* call per operation instead of one call per parameter.

_FOREACH_UNARY = {"neg", "exp", "sqrt", "abs", "sigmoid", "log", "sin", "cos", "tanh"}


class _InPlace:
    """One in-place elementwise line: ``step`` is [(op, dest, other, alpha)] in
    foreach terms (``other`` a buffer name, a number expression, or None)."""

    def __init__(self, name, dest, line, steps, reads):
        self.name, self.dest, self.line, self.steps = name, dest, line, steps
        self.reads = {r for r in reads if r is not None} | {dest}

    def __str__(self):
        return f"{self.name} = {self.line}"


# Above this size a fused call's single pass over memory beats saving calls by batching.
FOREACH_SPLIT_LIMIT = 1 << 16


def _inplace_form(pn, names, bufs, dest, numel):
    """The line as foreach steps writing ``dest`` in place, or None."""
    if pn in _FOREACH_UNARY and bufs[0] == dest:
        return [(pn, dest, None, None)]
    if pn in ("add", "mul", "sub", "div"):
        a, b = names
        if bufs[0] == dest:
            return [(pn, dest, b, None)]
        if bufs[1] == dest and pn in ("add", "mul"):
            return [(pn, dest, a, None)]
        return None
    if pn in ("add_scaled", "sub_scaled"):
        x, y, s = names
        op = "add" if pn == "add_scaled" else "sub"
        if bufs[0] == dest:
            return [(op, dest, y, s)]
        if bufs[1] == dest and numel <= FOREACH_SPLIT_LIMIT:
            # y <- x +/- s*y: scale y in place, then add x (two batched passes)
            return [("mul", dest, s if op == "add" else f"(-{s})", None),
                    ("add", dest, x, None)]
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
    if other is None:
        return None
    if other.startswith("v") or other.startswith("b") or other.startswith("k"):
        return "tensor"
    return ("number", other)


def _foreach_lines(group):
    lines = []
    for k in range(len(group[0].steps)):
        op, _, other, alpha = group[0].steps[k]
        dests = "[" + ", ".join(ln.steps[k][1] for ln in group) + "]"
        kind = _other_kind(other)
        if kind is None:
            call = f"torch._foreach_{op}_({dests})"
        elif kind == "tensor":
            others = "[" + ", ".join(ln.steps[k][2] for ln in group) + "]"
            call = f"torch._foreach_{op}_({dests}, {others}" + (
                f", alpha={alpha})" if alpha is not None else ")")
        else:
            call = f"torch._foreach_{op}_({dests}, {other})"
        lines.append(call)
    lines.append(", ".join(ln.name for ln in group) + " = " + ", ".join(ln.dest for ln in group))
    return lines


# arithmetic on lifted Python numbers stays Python arithmetic (as it was in eager)
_PY_FORM = {"add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})",
            "div": "({0} / {1})", "pow": "({0} ** {1})", "neg": "(-{0})",
            "sqrt": "math.sqrt({0})", "exp": "math.exp({0})", "log": "math.log({0})",
            "maximum": "max({0}, {1})", "minimum": "min({0}, {1})"}


def _input_of(graph, tensor):
    for v, s in zip(graph.inputs, graph.sources):
        if isinstance(s, Captured) and s.tensor is tensor:
            return v
    return None


def _scalar_first(pn, inputs, names, weak):
    """ATen has no ``sub(number, tensor)``: spell those with the tensor first."""
    if pn not in ("sub", "div", "add", "mul") or len(inputs) != 2:
        return None
    a, b = inputs
    a_num = not isinstance(a, Var) or a in weak
    if not a_num:
        return None
    if pn == "sub":
        return f"torch.rsub({names[1]}, {names[0]})"
    if pn == "div":
        return f"torch.mul(torch.reciprocal({names[1]}), {names[0]})"
    return f"torch.{pn}({names[1]}, {names[0]})"
