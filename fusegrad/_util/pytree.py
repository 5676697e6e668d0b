"""Flattening nested argument and result structures, once for the whole compiler.

``flatten`` returns a hashable description of everything that is not a leaf (it is part of
a compiled function's cache key) and appends the leaves, in order, to a list; ``unflatten``
rebuilds the structure from the description and new leaves.
"""

from __future__ import annotations

import torch

# values compared by value when they are part of a signature
_VALUES = (int, float, str, bool, type(None), torch.dtype, torch.device, slice, type(Ellipsis))


def flatten(obj, leaves: list, is_leaf):
    """The structure of ``obj``; leaves (``is_leaf(x)``) are appended to ``leaves``."""
    if is_leaf(obj):
        leaves.append(obj)
        return ("T",)
    if isinstance(obj, (list, tuple)):
        t = type(obj)
        kind = "list" if t is list else "tuple" if t is tuple else t  # a namedtuple keeps its type
        return (kind, tuple(flatten(o, leaves, is_leaf) for o in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, flatten(v, leaves, is_leaf)) for k, v in obj.items()))
    if isinstance(obj, _VALUES):
        return ("v", type(obj).__name__, obj)
    return ("id", id(obj), obj)  # any other object: the same object, by identity


def unflatten(structure, leaves):
    """Rebuild ``structure`` with the items of the iterator ``leaves`` in its leaf places."""
    kind = structure[0]
    if kind == "T":
        return next(leaves)
    if kind in ("list", "tuple"):
        items = [unflatten(x, leaves) for x in structure[1]]
        return items if kind == "list" else tuple(items)
    if isinstance(kind, type):
        items = [unflatten(x, leaves) for x in structure[1]]
        return kind(*items) if hasattr(kind, "_fields") else kind(items)
    if kind == "dict":
        return {k: unflatten(v, leaves) for k, v in structure[1]}
    if kind in ("v", "id"):
        return structure[2]
    raise TypeError(f"fusegrad.compile: cannot rebuild a structure of kind {kind!r}")


def leaves_of(obj, is_leaf) -> list:
    out: list = []
    flatten(obj, out, is_leaf)
    return out


def unflattener(structure):
    """``unflatten`` specialised once for ``structure``: a function of the leaves' list.

    The compiled function's replay rebuilds its result on every call; the common results
    (one tensor, a flat tuple of tensors) then cost one index or one ``tuple``."""
    if structure == ("T",):
        return lambda leaves: leaves[0]
    if structure[0] == "tuple" and all(x == ("T",) for x in structure[1]):
        n = len(structure[1])
        return lambda leaves: tuple(leaves[:n])
    return lambda leaves: unflatten(structure, iter(leaves))
