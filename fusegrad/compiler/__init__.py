"""The compiler: tracer -> graph IR -> symbolic autodiff -> passes -> schedule -> codegen."""

from fusegrad.compiler.api import CompiledFunction, RecompileLimitError, compile
from fusegrad.compiler.tracer import GraphBreak

__all__ = ["compile", "aot_compile", "CompiledFunction", "GraphBreak", "RecompileLimitError"]


def __getattr__(name):
    # aot_compile needs triton; importing it here on first use keeps `import fusegrad` free
    # of a GPU compiler that eager code and the cpu backend never touch
    if name == "aot_compile":
        from fusegrad.compiler.backends.triton.aot import aot_compile

        globals()[name] = aot_compile
        return aot_compile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
