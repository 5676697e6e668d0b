"""The ``FUSEGRAD_DEBUG`` ladder, read in one place.

1 prints a compile summary, 2 per-phase compile times, 3 the IR after each pass and
the fusion decisions, 4 the generated programs and Triton kernels.
"""

from __future__ import annotations

import os
import sys


def level() -> int:
    try:
        return int(os.environ.get("FUSEGRAD_DEBUG", "0"))
    except ValueError:
        return 0


def log(msg: str) -> None:
    print(f"[fusegrad] {msg}", file=sys.stderr)


def logger(at: int):
    """``log`` when the ladder reaches ``at``, else a function that does nothing."""
    return log if level() >= at else _quiet


def _quiet(msg: str) -> None:
    pass
