"""The graph IR: a flat SSA list of typed equations that prints as Python.

``graph`` holds the values and equations, ``io`` the sources and sinks that say what a
graph reads and writes, ``verify`` the checker, ``interpret`` the reference interpreter.
"""

from fusegrad.compiler.ir.graph import Eqn, Graph, Var, dtype_str
from fusegrad.compiler.ir.verify import VerifyError, verify

__all__ = ["Eqn", "Graph", "Var", "VerifyError", "dtype_str", "verify"]
