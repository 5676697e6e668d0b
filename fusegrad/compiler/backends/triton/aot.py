"""Ahead-of-time compilation of generated kernels for NVIDIA GPUs, without a GPU.

`aot_compile` runs Triton's full pipeline (ttir -> ttgir -> llir -> ptx -> cubin) for a
`GPUTarget("cuda", arch, 32)` and then re-runs the wheel's own `ptxas -v` on the PTX, with
the same flags Triton's nvidia backend uses, to read the register / spill report. (Triton
3.9 only learns n_regs / n_spills when it loads the cubin on a real device, so the
compiled metadata does not carry them; the ptxas report is the ground truth.)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from typing import Any

from fusegrad.runtime.kernels import Kernel, load_kernel, source_hash

__all__ = ["aot_compile", "clear_aot_cache", "parse_ptxas_report"]

_CACHE: dict[tuple, dict[str, Any]] = {}
_LOCK = threading.Lock()


def clear_aot_cache() -> None:
    _CACHE.clear()


def _sm_name(arch: int) -> str:
    # Same rule as triton.backends.nvidia.compiler.sm_arch_from_capability (sm_90a, sm_100a...).
    try:
        from triton.backends.nvidia.compiler import sm_arch_from_capability

        return sm_arch_from_capability(arch)
    except ImportError:  # pragma: no cover
        return f"sm_{arch}{'a' if arch >= 90 else ''}"


def _ptxas_path(arch: int) -> str:
    # Triton uses `ptxas` below sm_90 and the newer `ptxas-blackwell` from sm_90 on.
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(arch).path


_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_REGS_RE = re.compile(r"Used (\d+) registers")
_SPILL_ST_RE = re.compile(r"(\d+) bytes spill stores")
_SPILL_LD_RE = re.compile(r"(\d+) bytes spill loads")
_STACK_RE = re.compile(r"(\d+) bytes stack frame")
_SMEM_RE = re.compile(r"(\d+) bytes smem")


def parse_ptxas_report(log: str, name: str | None = None) -> dict[str, int]:
    """Parse `ptxas -v` output for entry function `name` (the first entry if None).

    Returns {"n_regs", "spill_stores", "spill_loads", "n_spills", "stack_frame",
    "static_smem"}; n_regs is -1 if the report has no "Used N registers" line. Spill bytes
    are summed over the entry and any non-inlined callees listed in its section.
    """
    entries = list(_ENTRY_RE.finditer(log))
    section = log
    if entries:
        idx = 0
        if name is not None:
            for i, m in enumerate(entries):
                if m.group(1) == name:
                    idx = i
                    break
        start = entries[idx].start()
        end = entries[idx + 1].start() if idx + 1 < len(entries) else len(log)
        section = log[start:end]
    regs = _REGS_RE.search(section)
    stores = sum(int(x) for x in _SPILL_ST_RE.findall(section))
    loads = sum(int(x) for x in _SPILL_LD_RE.findall(section))
    stack = _STACK_RE.search(section)
    smem = _SMEM_RE.search(section)
    return {
        "n_regs": int(regs.group(1)) if regs else -1,
        "spill_stores": stores,
        "spill_loads": loads,
        "n_spills": stores + loads,
        "stack_frame": int(stack.group(1)) if stack else 0,
        "static_smem": int(smem.group(1)) if smem else 0,
    }


def _run_ptxas(ptx: str, arch: int, metadata, name: str) -> tuple[str, list[str]]:
    """Run ptxas -v on `ptx` with the flags triton's make_cubin uses; return (log, cmd)."""
    from triton import knobs

    debug_info: list[str]
    if knobs.compilation.disable_line_info:
        debug_info = ["-lineinfo", "-suppress-debug-info"]
    elif knobs.nvidia.disable_ptxas_opt:
        debug_info = ["-g"]
    else:
        debug_info = ["-lineinfo"]
    fmad = [] if getattr(metadata, "enable_fp_fusion", True) else ["--fmad=false"]
    disable_opt = ["--opt-level", "0"] if knobs.nvidia.disable_ptxas_opt else []
    ptx_opts = getattr(metadata, "ptx_options", None)
    extra = ptx_opts.split(" ") if ptx_opts else []
    with tempfile.TemporaryDirectory(prefix="fusegrad_ptxas_") as tmp:
        src = os.path.join(tmp, f"{name}.ptx")
        out = os.path.join(tmp, f"{name}.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [
            _ptxas_path(arch),
            *debug_info,
            *fmad,
            "-v",
            *disable_opt,
            "--regAllocOptLevel=2",
            *extra,
            f"--gpu-name={_sm_name(arch)}",
            src,
            "-o",
            out,
        ]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(
            f"aot_compile: ptxas failed for kernel '{name}' on sm_{arch} "
            f"(exit {proc.returncode}):\n{log}"
        )
    return log, cmd


def aot_compile(
    kernel: Kernel,
    arch: int = 90,
    *,
    num_warps: int | None = None,
    num_stages: int | None = None,
) -> dict[str, Any]:
    """Compile `kernel` for sm_<arch> (no GPU needed) and report its resource usage.

    Returns a dict with at least: name, arch, n_regs (>0), n_spills (spill store + spill
    load bytes, 0 when none), shared (bytes of shared memory Triton allocates), ptx (str).
    Also: sm ("sm_90a"), spill_stores, spill_loads, stack_frame, num_warps, num_stages,
    cubin (bytes), ptxas_log, ptxas_cmd.
    Results are cached in memory per (source hash, name, signature, constexprs, arch, options).
    Raises RuntimeError naming the kernel and arch if anything fails to compile.
    """
    arch = int(arch)
    key = (
        source_hash(kernel.source),
        kernel.name,
        tuple(sorted(kernel.signature.items())),
        tuple(sorted((k, repr(v)) for k, v in kernel.constexprs.items())),
        arch,
        num_warps,
        num_stages,
    )
    hit = _CACHE.get(key)
    if hit is not None:
        return dict(hit)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return dict(hit)
        result = _compile(kernel, arch, num_warps, num_stages)
        _CACHE[key] = result
        return dict(result)


def _compile(kernel: Kernel, arch: int, num_warps, num_stages) -> dict[str, Any]:
    import triton
    from triton.backends.compiler import GPUTarget

    where = f"kernel '{kernel.name}' for sm_{arch}"
    try:
        # Always a real JITFunction, even when TRITON_INTERPRET=1 is set for this process.
        fn = load_kernel(kernel.name, kernel.source, interpret=False)
    except (RuntimeError, TypeError) as e:
        raise RuntimeError(f"aot_compile failed for {where}: {e}") from e

    signature = dict(kernel.signature)
    for k in kernel.constexprs:
        signature[k] = "constexpr"
    missing = [a for a in fn.arg_names if a not in signature]
    unknown = [a for a in signature if a not in fn.arg_names]
    if missing or unknown:
        raise RuntimeError(
            f"aot_compile failed for {where}: signature does not match the kernel arguments "
            f"{fn.arg_names} (missing: {missing}, unknown: {unknown})"
        )
    no_value = [a for a, t in signature.items() if t == "constexpr" and a not in kernel.constexprs]
    if no_value:
        raise RuntimeError(f"aot_compile failed for {where}: no value for constexpr {no_value}")
    signature = {a: signature[a] for a in fn.arg_names}

    options: dict[str, Any] = {}
    if num_warps is not None:
        options["num_warps"] = num_warps
    if num_stages is not None:
        options["num_stages"] = num_stages
    try:
        src = triton.compiler.ASTSource(
            fn=fn, signature=signature, constexprs=dict(kernel.constexprs)
        )
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    except Exception as e:  # CompilationError, PTXASError, MLIR pass failures, ...
        raise RuntimeError(f"aot_compile failed for {where}: {type(e).__name__}: {e}") from e

    ptx = compiled.asm["ptx"]
    meta = compiled.metadata
    log, cmd = _run_ptxas(ptx, arch, meta, kernel.name)
    report = parse_ptxas_report(log, kernel.name)
    n_regs = report["n_regs"]
    if n_regs < 0:
        # Fall back to metadata (newer triton versions may record it at compile time).
        n_regs = getattr(meta, "n_regs", None)
        if n_regs is None:
            raise RuntimeError(
                f"aot_compile: no register count in ptxas report for {where}:\n{log}"
            )
    return {
        "name": kernel.name,
        "arch": arch,
        "sm": _sm_name(arch),
        "n_regs": int(n_regs),
        "n_spills": report["n_spills"],
        "spill_stores": report["spill_stores"],
        "spill_loads": report["spill_loads"],
        "stack_frame": report["stack_frame"],
        "shared": int(meta.shared),  # triton's dynamic shared memory (bytes)
        "static_smem": report["static_smem"],  # static .shared in the PTX (0 for triton)
        "num_warps": meta.num_warps,
        "num_stages": meta.num_stages,
        "ptx": ptx,
        "cubin": compiled.asm.get("cubin"),
        "ptxas_log": log,
        "ptxas_cmd": cmd,
    }
