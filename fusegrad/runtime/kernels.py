"""Generated Triton kernels: the `Kernel` record and loading kernel source as a module.

`triton.jit` reads a kernel's source with `inspect`, so a generated kernel has to live in a
real file. `load_kernel` writes the source into a content-addressed cache folder and imports
it from there; the file name is the hash of (source, triton version, device kind), and the
file is written atomically so parallel test workers never import a half-written file.

triton is imported on first use (the first `load_kernel`), never at import time: eager code
and the cpu backend must not pay for loading a GPU compiler.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusegrad._util.fileio import atomic_write

__all__ = [
    "Kernel",
    "cache_dir",
    "device_kind",
    "dump_kernels",
    "load_kernel",
    "source_hash",
]

_CACHE_ENV = "FUSEGRAD_CACHE_DIR"
_DEFAULT_CACHE = Path("~/.cache/fusegrad/kernels")

# (cache folder, file hash) -> loaded @triton.jit function
_LOADED: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


@dataclass
class Kernel:
    """One generated kernel.

    `source` is a complete Python module (it imports triton and triton.language as tl) that
    defines one `@triton.jit` function called `name`. `signature` maps every argument name to
    a Triton type string ("*fp32", "i32", "fp32", ... or "constexpr"); `constexprs` holds the
    values of the constexpr arguments used for ahead-of-time compilation.
    """

    name: str
    source: str
    ops: list[str] = field(default_factory=list)
    signature: dict[str, str] = field(default_factory=dict)
    constexprs: dict[str, object] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)
    _fn: Any = field(default=None, init=False, repr=False, compare=False)
    _fn_key: Any = field(default=None, init=False, repr=False, compare=False)

    def fn(self):
        """The loaded `@triton.jit` function (cached on the instance and in the module)."""
        key = (self.source, device_kind())
        if self._fn is None or self._fn_key != key:
            self._fn = load_kernel(self.name, self.source)
            self._fn_key = key
        return self._fn

    def source_hash(self) -> str:
        return source_hash(self.source)


def source_hash(source: str) -> str:
    """sha256 of the kernel source alone (independent of triton version / device)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def cache_dir() -> Path:
    """Folder for kernel files: $FUSEGRAD_CACHE_DIR or ~/.cache/fusegrad/kernels."""
    env = os.environ.get(_CACHE_ENV)
    return Path(env).expanduser() if env else _DEFAULT_CACHE.expanduser()


def _interpret_enabled() -> bool:
    from triton import knobs

    return bool(knobs.runtime.interpret)


def device_kind(interpret: bool | None = None) -> str:
    """Return "interpret" under TRITON_INTERPRET=1, else the GPU flavour ("cuda" or "hip")."""
    if interpret is None:
        interpret = _interpret_enabled()
    if interpret:
        return "interpret"
    try:
        import torch

        if getattr(torch.version, "hip", None):
            return "hip"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return "cuda"


def _file_hash(source: str, kind: str) -> str:
    import triton

    h = hashlib.sha256()
    for part in (source, triton.__version__, kind):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _write_if_changed(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, unless the file already holds it."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def _exec_module(name: str, path: Path, module_name: str, interpret: bool | None):
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"kernel '{name}': cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # lets inspect.getmodule / pickling find it
    try:
        if interpret is None or interpret == _interpret_enabled():
            spec.loader.exec_module(module)
        else:
            # triton.jit picks JITFunction vs InterpretedFunction at decoration time.
            from triton import knobs

            with knobs.runtime.scope():
                knobs.runtime.interpret = interpret
                spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise RuntimeError(
            f"kernel '{name}': failed to import generated source {path}: {type(e).__name__}: {e}"
        ) from e
    return module


def load_kernel(name: str, source: str, *, interpret: bool | None = None):
    """Write `source` to the kernel cache and return its `@triton.jit` function `name`.

    Returns a `triton.runtime.JITFunction` (an `InterpretedFunction` under TRITON_INTERPRET=1).
    `interpret=False` forces a real JITFunction even in interpreter mode (used for AOT
    compilation); None follows the current TRITON_INTERPRET setting.
    Raises RuntimeError (naming the kernel) if the source does not import or lacks `name`,
    TypeError if `name` is not a @triton.jit function.
    """
    mode = _interpret_enabled() if interpret is None else bool(interpret)
    kind = device_kind(mode)
    digest = _file_hash(source, kind)
    folder = cache_dir()
    key = (str(folder), digest)
    fn = _LOADED.get(key)
    if fn is not None:
        return fn
    with _LOCK:
        fn = _LOADED.get(key)
        if fn is not None:
            return fn
        path = folder / f"{name}_{digest[:24]}.py"
        _write_if_changed(path, source)
        module = _exec_module(name, path, f"_fusegrad_kernel_{name}_{digest[:24]}", interpret)
        fn = getattr(module, name, None)
        if fn is None:
            raise RuntimeError(f"kernel '{name}': generated source {path} defines no '{name}'")
        from triton.runtime.jit import KernelInterface

        if not isinstance(fn, KernelInterface):
            raise TypeError(
                f"kernel '{name}': '{name}' in {path} is {type(fn).__name__}, "
                "not a @triton.jit function"
            )
        _LOADED[key] = fn
        return fn


def dump_kernels(kernels: Iterable[Kernel], folder: str | os.PathLike) -> list[Path]:
    """Write each kernel's source as `<folder>/<name>.py`; returns the written paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in kernels:
        p = out / f"{k.name}.py"
        _write_if_changed(p, k.source)
        paths.append(p)
    return paths
