"""Where a graph's inputs come from and where its outputs go, on every replay.

A :class:`~fusegrad.compiler.ir.graph.Graph` holds one source per input and one sink per
output. The tracer makes them; passes, the scheduler, guards and the backends read them.
"""

from __future__ import annotations

from fusegrad._util import dtypes


class Source:
    """Where one graph input's value comes from."""

    __slots__ = ()


class Sink:
    """Where one graph output's value goes."""

    __slots__ = ()


# --------------------------------------------------------------------------- sources


class Arg(Source):
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __str__(self):
        return f"argument tensor {self.index}"


class Captured(Source):
    """A tensor the function reads from its closure, a module or an optimizer."""

    __slots__ = ("tensor", "name")

    def __init__(self, tensor, name=None):
        self.tensor, self.name = tensor, name

    def __str__(self):
        return f"captured tensor {self.name or hex(id(self.tensor))}"


class GradOf(Source):
    """The ``.grad`` of a tensor, read through its owner (the field may be rebound)."""

    __slots__ = ("tensor", "name")

    def __init__(self, tensor, name=None):
        self.tensor, self.name = tensor, name

    def __str__(self):
        return f"{self.name or 'tensor'}.grad"


class Const(Source):
    """A tensor made inside the trace: its value is part of the program."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __str__(self):
        return f"constant {dtypes.name(self.data.dtype)}{list(self.data.shape)}"


class Random(Source):
    """Drawn from torch's generator on every call, in trace order."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make

    def __str__(self):
        return "random draw"


class Number(Source):
    """A Python number read afresh on every call (a lifted optimizer hyperparameter)."""

    __slots__ = ("container", "key")

    def __init__(self, container, key):
        self.container, self.key = container, key

    def __str__(self):
        return f"number [{self.key!r}] of {type(self.container).__name__}"


# --------------------------------------------------------------------------- sinks


class Returned(Sink):
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __str__(self):
        return f"returned value {self.index}"


class Residual(Returned):
    """A forward value kept for the backward (compiler.autodiff). The backends hand it out
    as they do a returned value, after the user's; the compiled function keeps it on the
    node its outputs hang from instead of returning it."""

    __slots__ = ()

    def __str__(self):
        return f"residual {self.index} kept for backward"


class WriteInPlace(Sink):
    """Copied into a captured tensor's storage (an in-place update of a parameter)."""

    __slots__ = ("tensor", "name")

    def __init__(self, tensor, name=None):
        self.tensor, self.name = tensor, name

    def __str__(self):
        return f"written in place into {self.name or 'captured tensor'}"


class WriteGradInPlace(Sink):
    __slots__ = ("tensor", "name")

    def __init__(self, tensor, name=None):
        self.tensor, self.name = tensor, name

    def __str__(self):
        return f"written in place into {self.name or 'tensor'}.grad"


class SetGrad(Sink):
    __slots__ = ("tensor", "name")

    def __init__(self, tensor, name=None):
        self.tensor, self.name = tensor, name

    def __str__(self):
        return f"stored as {self.name or 'tensor'}.grad"


class SetState(Sink):
    __slots__ = ("owner", "param", "key", "name")

    def __init__(self, owner, param, key, name=None):
        self.owner, self.param, self.key, self.name = owner, param, key, name

    def __str__(self):
        return f"stored as state[{self.name or 'param'}][{self.key!r}]"


# sinks that update state the caller already holds (rather than handing out new values)
UPDATES = (WriteInPlace, WriteGradInPlace, SetState)
