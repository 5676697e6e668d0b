"""Prepared kernel launches: what a launch needs is settled once, when a program is built.

A replayed program calls ``KernelLaunch.launch(*args)`` for each kernel with nothing but its
tensor and number arguments; the grid and the constexprs (block sizes) are frozen in the
record, and nothing is looked up, bound or tuned on the way to the kernel.

- On a GPU the kernel is compiled here, once, for a specialization that holds on every
  replay: each pointer argument 16-byte aligned (the program sees to it: the buffers it
  allocates are, and inputs that are not get copied), each number argument of its type in
  the kernel's signature, no specialization on values. ``fn[grid](...)`` would instead bind
  the arguments and recompute the cache key on every launch, and specialize on what the
  first call happened to pass (an int that is a multiple of 16), which a later call may
  not share. The compiled kernel's launcher (``CompiledKernel[grid]``) is bound once.
- Under TRITON_INTERPRET=1 there is nothing to compile: the launch keeps ``fn[grid]`` bound
  to the frozen grid, with the constexprs and warps already applied.

Autotuning (``FUSEGRAD_AUTOTUNE=1``, GPU only) times the kernel's block-size configs on
scratch arguments while the program is built and freezes the fastest, so a replay never
asks whether a kernel is tuned.

Imports nothing of fusegrad but ``runtime.kernels``, and triton only when a launch is prepared.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fusegrad.runtime.kernels import Kernel

__all__ = ["AUTOTUNE_ENV", "KernelLaunch", "autotune", "autotune_enabled", "compile_native",
           "prepare"]

AUTOTUNE_ENV = "FUSEGRAD_AUTOTUNE"


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV) == "1"


@dataclass(eq=False)
class KernelLaunch:
    """One kernel of a program as it is launched on every replay.

    ``launch(*args)`` takes the kernel's non-constexpr arguments in signature order; it is
    None for a kernel that is never launched (an empty grid, or a program whose tensors no
    Triton runtime here can reach).
    """

    kernel: Kernel
    grid: tuple[int, ...]
    constexprs: dict[str, object]
    num_warps: int
    tuned: bool = False  # the constexprs won a timing of the kernel's configs
    launch: Callable[..., object] | None = field(default=None, repr=False)


def prepare(kernel: Kernel, grid: Sequence[int], constexprs: dict, num_warps: int, *,
            interpret: bool) -> KernelLaunch:
    """The launch of ``kernel`` on ``grid`` with ``constexprs``: through Triton's interpreter
    when ``interpret``, else compiled for the current GPU."""
    grid = tuple(grid)
    if interpret:
        launch = functools.partial(kernel.fn()[grid], **constexprs, num_warps=num_warps)
    else:
        launch = _native_launcher(kernel, grid, constexprs, num_warps)
    return KernelLaunch(kernel, grid, dict(constexprs), num_warps, launch=launch)


def autotune(kernel: Kernel, configs: Sequence[dict], grid_of: Callable[[dict], int],
             scratch: Sequence, num_warps: int) -> KernelLaunch:
    """Time each config (constexprs) of ``kernel`` on the GPU with ``scratch`` arguments and
    return the launch of the fastest; ``grid_of(config)`` is its number of programs.

    The scratch arguments stand in for the real ones (same sizes and dtypes), so tuning
    never touches a tensor the program writes in place.
    """
    best = None
    for cfg in configs:
        grid = (grid_of(cfg),)
        try:
            launch = _native_launcher(kernel, grid, cfg, num_warps)
            t = _bench(lambda launch=launch: launch(*scratch))
        except Exception:  # a config that does not fit the GPU (shared memory) is skipped
            continue
        if best is None or t < best[0]:
            best = (t, cfg, grid, launch)
    if best is None:  # none ran: the first config's own error is the one worth raising
        return prepare(kernel, (grid_of(configs[0]),), configs[0], num_warps, interpret=False)
    _, cfg, grid, launch = best
    return KernelLaunch(kernel, grid, dict(cfg), num_warps, tuned=True, launch=launch)


def compile_native(kernel: Kernel, constexprs: dict, num_warps: int, target=None):
    """Compile ``kernel`` (a ``triton.compile`` ``CompiledKernel``) for ``target`` (the current
    GPU when None) with every pointer argument assumed 16-byte aligned and no number
    argument specialized on its value."""
    import triton
    from triton import knobs
    from triton.compiler import ASTSource, make_backend

    if target is None:
        from triton.runtime import driver

        target = driver.active.get_current_target()
    fn = kernel.fn()
    names = list(fn.arg_names)
    signature = {**kernel.signature, **{k: "constexpr" for k in constexprs}}
    missing = [a for a in names if a not in signature]
    if missing:
        raise RuntimeError(f"kernel '{kernel.name}': no signature type for {missing}")
    signature = {a: signature[a] for a in names}
    aligned = make_backend(target).parse_attr("D")
    attrs = {(i,): aligned for i, a in enumerate(names) if signature[a].startswith("*")}
    src = ASTSource(fn, signature, constexprs=dict(constexprs), attrs=attrs)
    options = {"num_warps": num_warps, "debug": bool(knobs.runtime.debug)}
    return triton.compile(src, target=target, options=options)


def _native_launcher(kernel: Kernel, grid: tuple, constexprs: dict, num_warps: int):
    compiled = compile_native(kernel, constexprs, num_warps)
    names = list(kernel.fn().arg_names)
    n = len(names) - len(constexprs)
    if set(names[n:]) != set(constexprs):
        raise RuntimeError(f"kernel '{kernel.name}': the constexpr arguments {list(constexprs)} "
                           f"must come last in {names}")
    # the launcher takes every argument, constexprs included, in signature order
    tail = tuple(constexprs[a] for a in names[n:])
    runner = compiled[grid + (1,) * (3 - len(grid))]
    if not tail:
        return runner
    return lambda *args: runner(*args, *tail)


def _bench(fn) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=5, rep=20)
