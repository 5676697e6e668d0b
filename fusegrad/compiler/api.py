"""``fusegrad.compile``: trace once per input signature, optimize, compile, replay."""

from __future__ import annotations

import functools
import os
import time
import warnings

from fusegrad._util import debug, pytree
from fusegrad.autograd import grad_mode
from fusegrad.compiler import autodiff as AD
from fusegrad.compiler import guards as G
from fusegrad.compiler import passes
from fusegrad.compiler.ir import Graph
from fusegrad.compiler.program import BACKENDS, Program
from fusegrad.compiler.tracer import GraphBreak, trace
from fusegrad.tensor import Tensor

DEFAULT_MAX_SIGNATURES = 8


class RecompileLimitError(RuntimeError):
    pass


def _eager_env() -> bool:
    return os.environ.get("FUSEGRAD_EAGER") == "1"


def _is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def _flatten(obj, leaves):
    return pytree.flatten(obj, leaves, _is_tensor)


_TENSOR_ARGS: dict[int, tuple] = {}


def _tensor_args(n):
    """The structure ``_flatten`` gives ``(args, {})`` for ``n`` tensor arguments."""
    _TENSOR_ARGS[n] = ("tuple", (("tuple", (("T",),) * n), ("dict", ())))
    return _TENSOR_ARGS[n]


class _Entry:
    def __init__(self, program, guard, signature, eager=False):
        self.program, self.guard, self.signature, self.eager = program, guard, signature, eager
        self.calls = 0


class CompiledFunction:
    """The callable ``fusegrad.compile`` returns. ``.program`` is the program the last call
    used; ``.explain()`` says what was traced and why each retrace happened."""

    def __init__(self, fn, backend=None, fallback="error", check=False,
                 max_signatures=DEFAULT_MAX_SIGNATURES, verify=False):
        if fallback not in ("error", "eager"):
            raise ValueError(f"fusegrad.compile: fallback must be 'error' or 'eager', "
                             f"got {fallback!r}")
        if backend is not None and backend != "eager" and backend not in BACKENDS:
            names = ", ".join(repr(b) for b in (None, *BACKENDS, "eager"))
            raise ValueError(f"fusegrad.compile: unknown backend {backend!r}; expected one of "
                             f"{names}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.backend = backend
        self.fallback = fallback
        self.check = check
        self.max_signatures = max_signatures
        self.verify = verify
        self.entries: list[_Entry] = []
        self.reasons: list[str] = []
        self.program: Program | None = None
        self._warned = False
        self._last: _Entry | None = None

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self.backend == "eager" or (not self.entries and _eager_env()):
            # FUSEGRAD_EAGER is read until the first trace: reading os.environ on every
            # replay would cost more than some whole steps
            return self.fn(*args, **kwargs)
        if not kwargs and all(type(a) is Tensor for a in args):  # the common call, fast
            leaves = list(args)
            structure = _TENSOR_ARGS.get(len(args)) or _tensor_args(len(args))
        else:
            leaves = []
            structure = _flatten((args, kwargs), leaves)
        entry = self._lookup(leaves, structure)
        if entry.eager:
            return self.fn(*args, **kwargs)
        entry.calls += 1
        self.program = entry.program
        if self.check:
            return self._run_checked(entry, args, kwargs, leaves, structure)
        return entry.program(leaves, structure)

    def _lookup(self, leaves, structure):
        # the entry the previous call used first: usually it fits, and when it does not,
        # its failed guard is the reason worth reporting
        last = self._last
        if last is not None:
            reason = last.guard.check(leaves, structure)
            if reason is None:
                return last
        else:
            reason = None
        for entry in reversed(self.entries):
            if entry is last:
                continue
            why = entry.guard.check(leaves, structure)
            if why is None:
                self._last = entry
                return entry
            if reason is None:
                reason = why
        if len(self.entries) >= self.max_signatures:
            raise RecompileLimitError(
                f"fusegrad.compile: {self.fn.__qualname__} hit the recompile limit of "
                f"{self.max_signatures} signatures; nothing falls back silently. Retraces "
                "happened because:\n  " + "\n  ".join(self.reasons + [reason]))
        self.reasons.append(reason or "first call")
        entry = self._compile(leaves, structure)
        self.entries.append(entry)
        self._last = entry
        return entry

    def _compile(self, leaves, structure):
        args, kwargs = pytree.unflatten(structure, iter(leaves))
        t0 = time.perf_counter()
        names = G.parameter_names(self.fn, args)
        watch = G.referenced(self.fn, args)
        enabled = grad_mode.is_grad_enabled()
        try:
            tracer, result = trace(self.fn, args, kwargs, leaves, names)
        except GraphBreak as e:
            if self.fallback == "eager":
                if not self._warned:
                    warnings.warn(f"{e} Running {self.fn.__qualname__} eagerly.", stacklevel=3)
                    self._warned = True
                guard = G.Guard.build(leaves, structure, enabled, None, watch, self.fn)
                return _Entry(None, guard, f"eager fallback: {e.what}", eager=True)
            raise GraphBreak(e.what, e.where) from None
        t_trace = time.perf_counter() - t0
        res_leaves: list = []
        res_structure = _flatten(result, res_leaves)
        diff = AD.differentiable_outputs(res_leaves) if enabled else []
        consumed = None
        if diff and (tracer.ran_backward or tracer.written or tracer.stateful):
            # a training step: the loss it returns had its graph consumed by the backward
            # inside, as in eager; a later backward through it raises eager's error
            consumed = AD.consumed_nodes(diff)
        graph: Graph = tracer.finish(res_leaves)
        guard = G.Guard.build(leaves, structure, enabled, tracer, watch, self.fn)
        level = debug.level()
        log = None
        if level >= 3:
            debug.log(f"IR of {self.fn.__qualname__} after trace:\n{graph}")

            def log(name, g, dt):
                debug.log(f"IR after {name} ({dt * 1e3:.2f} ms):\n{g}")
        t1 = time.perf_counter()
        optimized = passes.optimize(graph, verify_each=self.verify, log=log)
        t_passes = time.perf_counter() - t1
        backend = self.backend or _default_backend(leaves, graph)
        plan = None
        if diff and consumed is None:
            # outputs that require grad: the forward also hands out what its backward reads
            split, diff_inputs = AD.differentiate(tracer, graph, optimized, diff, leaves,
                                                  verify=self.verify)
            optimized = split.forward
            plan = AD.build_plan(split, diff_inputs, diff, backend,
                                 self.fn.__qualname__ + ".backward")
        program = Program(graph, optimized, backend, res_structure,
                          name=self.fn.__qualname__)
        program.backward = plan
        if plan is not None:  # outs end with the residuals the backward node keeps
            program.attach = functools.partial(AD.attach, plan)
        elif consumed:
            program.attach = lambda leaves, outs: AD.attach_consumed(outs, consumed)
        program.compile_times = {"trace": t_trace, "passes": t_passes,
                                 "codegen": program.codegen_time,
                                 "total": time.perf_counter() - t0}
        sig = G.describe_signature(leaves)
        if level >= 1:
            st = program.stats()
            debug.log(f"compiled {self.fn.__qualname__} for {sig}: {len(optimized.eqns)} ops, "
                      f"{st['n_kernels']} kernels, backend {backend}, "
                      f"{program.compile_times['total'] * 1e3:.1f} ms")
        if level >= 2:
            times = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in program.compile_times.items())
            debug.log(f"compile phases: {times}")
        if level >= 4:
            debug.log(f"generated {backend} program:\n{program.source}")
            if backend == "triton":
                for k in program.kernels:
                    debug.log(f"Triton kernel {k.name}:\n{k.source}")
        return _Entry(program, guard, sig)

    # -- check=True ------------------------------------------------------------------------

    def _run_checked(self, entry, args, kwargs, leaves, structure):
        from fusegrad.compiler import check as C

        return C.run_checked(self, entry.program, args, kwargs, leaves, structure)

    # -- introspection -----------------------------------------------------------------------

    def explain(self) -> str:
        lines = [f"fusegrad.compile({self.fn.__qualname__}): {len(self.entries)} signature(s)"]
        for i, (e, why) in enumerate(zip(self.entries, self.reasons)):
            lines.append(f"[{i}] {e.signature}")
            lines.append(f"    traced because: {why}")
            lines.append(f"    calls: {e.calls}")
            if e.program is not None:
                st = e.program.stats()
                lines.append(f"    backend {e.program.backend}: {len(e.program.graph.eqns)} ops, "
                             f"{st['n_kernels']} kernels, bytes_moved {st['bytes_moved']}, "
                             f"flops {st['flops']}, compiled in "
                             f"{e.program.compile_times['total'] * 1e3:.1f} ms")
                for k in e.program.kernels:
                    lines.append(f"      {k.name}: {', '.join(k.ops)}")
        return "\n".join(lines)

    @property
    def programs(self):
        return [e.program for e in self.entries if e.program is not None]


def _default_backend(leaves, graph) -> str:
    devices = {t.device.type for t in leaves}
    devices |= {v.device.type for v in graph.inputs if not v.weak}
    return "triton" if "cuda" in devices else "cpu"


def compile(fn=None, *, backend=None, fallback="error", check=False,
            max_signatures=DEFAULT_MAX_SIGNATURES, verify=False):
    """Compile ``fn`` (a whole training step or any tensor function).

    Args:
        fn: the function; ``@fusegrad.compile`` and ``@fusegrad.compile(...)`` both work.
        backend: ``"cpu"``, ``"triton"``, ``"eager"``, or None to pick by the inputs' device.
        fallback: ``"error"`` raises at a graph break; ``"eager"`` runs eagerly, warning once.
        check: run every call compiled and eagerly and raise at the first difference.
        max_signatures: how many input signatures may be traced before an error.
        verify: run the IR verifier after every pass.

    Returns:
        A :class:`CompiledFunction`.
    """
    def wrap(f):
        return CompiledFunction(f, backend=backend, fallback=fallback, check=check,
                                max_signatures=max_signatures, verify=verify)

    return wrap if fn is None else wrap(fn)
