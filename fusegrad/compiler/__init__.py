"""The compiler: tracer -> graph IR -> symbolic autodiff -> passes -> schedule -> codegen."""

from fusegrad.compiler.aot import aot_compile
from fusegrad.compiler.api import CompiledFunction, RecompileLimitError, compile
from fusegrad.compiler.tracer import GraphBreak

__all__ = ["compile", "aot_compile", "CompiledFunction", "GraphBreak", "RecompileLimitError"]
