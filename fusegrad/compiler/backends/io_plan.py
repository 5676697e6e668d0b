"""What both backends' generated ``run(args)`` share: reading each graph input from its
source, and handing each output to its sink (returned, written in place into a parameter
or a ``.grad``, stored as ``.grad`` or as optimizer state), with the version counters
eager would bump. A backend adds only its launches and its own storage decisions.
"""

from __future__ import annotations

import ast
import linecache
import math

import torch

from fusegrad.compiler.ir.io import (Arg, Captured, Const, GradOf, Number, Random, Returned,
                                     SetGrad, SetState, WriteGradInPlace, WriteInPlace)
from fusegrad.tensor import Tensor


def fmt_num(x) -> str:
    """A Python number as source text (non-finite floats too)."""
    if isinstance(x, float) and not math.isfinite(x):
        return f"float({str(x)!r})"
    return repr(x)


class ProgramText:
    """The lines of a generated ``run(args)`` and the objects it refers to by name."""

    def __init__(self, **env):
        self.env = {"torch": torch, "_T": Tensor._make, "math": math, **env}
        self._consts: dict[int, str] = {}
        self.lines: list = []

    def const(self, obj, prefix) -> str:
        """The name ``run`` uses for ``obj`` (one name per object)."""
        name = self._consts.get(id(obj))
        if name is None:
            name = self._consts[id(obj)] = f"{prefix}{len(self._consts)}"
            self.env[name] = obj
        return name

    def emit(self, line):
        self.lines.append(line)

    def source(self, lines=None) -> str:
        body = self.lines if lines is None else lines
        return "def run(args):\n" + "\n".join("    " + str(ln) for ln in body) + "\n"


class BufferPool:
    """Intermediate buffers allocated once per program and reused by liveness: a buffer
    whose value is dead after step ``i`` serves a later value of the same ``key``."""

    def __init__(self, text: ProgramText):
        self.text = text
        self.free: dict[tuple, list[str]] = {}
        self.free_at: dict[int, list] = {}
        self.holder_until: dict[str, int] = {}  # buffer -> the step its value dies at
        self.made: set[str] = set()

    def take(self, key, make) -> str:
        """A free buffer of ``key``, or a new one ``make()`` allocates."""
        free = self.free.get(key)
        if free:
            return free.pop()
        name = f"b{len(self.made)}"
        self.made.add(name)
        self.text.env[name] = make()
        return name

    def hold(self, name, key, until: int):
        """``name`` holds a value until step ``until`` (a later holder replaces it)."""
        self.holder_until[name] = until
        self.free_at.setdefault(until, []).append((key, name))

    def step_done(self, i: int):
        """Buffers whose value died at step ``i`` become free (if no one took them over)."""
        for key, name in self.free_at.pop(i, ()):
            if self.holder_until.get(name) == i and name in self.made:
                self.free.setdefault(key, []).append(name)


def load_run(source: str, env: dict, name: str):
    """Compile a generated ``run(args)`` into ``env`` and return it. The source is
    registered with ``linecache`` under ``name``, so a failing call's traceback shows its
    line of the generated program."""
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), env)
    return env["run"]


def read_source(text: ProgramText, s) -> tuple[str, bool]:
    """(expression for the value of source ``s``, whether it is a compile-time constant)."""
    if isinstance(s, Arg):
        return f"args[{s.index}]._data", False
    if isinstance(s, Captured):
        return f"{text.const(s.tensor, 'c')}._data", False
    if isinstance(s, GradOf):
        return f"{text.const(s.tensor, 'c')}._grad._data", False
    if isinstance(s, Const):
        return text.const(s.data, "k"), True
    if isinstance(s, Random):
        return f"{text.const(s.make, 'r')}()", False
    if isinstance(s, Number):
        return f"{text.const(s.container, 'h')}[{s.key!r}]", False
    raise TypeError(f"fusegrad: unknown graph source {s}")


def write_sink(text: ProgramText, s, val: str, written, results: list):
    """Hand ``val`` (a torch tensor expression, or ``"None"``) to sink ``s``.

    ``written``: True when the value is already in the target's storage (computed in
    place), so an in-place sink only bumps the version; None when only the call can tell
    (the copy is skipped when both share storage). Returned values go to ``results``."""
    if isinstance(s, Returned):
        results.append("None" if val == "None" else f"_T({val})")
    elif isinstance(s, (WriteInPlace, WriteGradInPlace)):
        c = text.const(s.tensor, "c")
        owner = c if isinstance(s, WriteInPlace) else f"{c}._grad"  # the tensor written
        target = f"{owner}._data"
        if written is None:
            text.emit(f"if {target}.data_ptr() != {val}.data_ptr(): {target}.copy_({val})")
        elif not written:
            text.emit(f"{target}.copy_({val})")
        text.emit(f"{owner}._vc[0] += 1")
    elif isinstance(s, SetGrad):
        c = text.const(s.tensor, "c")
        text.emit(f"{c}._grad = " + ("None" if val == "None" else f"_T({val})"))
    elif isinstance(s, SetState):
        owner, param = text.const(s.owner, "o"), text.const(s.param, "c")
        text.emit(f"{owner}.state[{param}][{s.key!r}] = _T({val})")
    else:
        raise TypeError(f"fusegrad: unknown graph sink {s}")


def return_line(results) -> str:
    return f"return ({', '.join(results)}{',' if len(results) == 1 else ''})"


_NOT_CALLS = {"device", "Size", "dtype"}


def count_calls(source: str) -> dict:
    """``n_calls``: the ATen calls (torch functions and tensor methods) a generated program
    makes per run; ``n_copies``: those of them that copy (``copy_``, ``clone``)."""
    calls = copies = 0
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        root = node.func
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id == "math" or node.func.attr in _NOT_CALLS:
            continue
        calls += 1
        copies += node.func.attr in ("copy_", "clone")
    return {"n_calls": calls, "n_copies": copies}
