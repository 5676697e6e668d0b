"""Scheduling: the optimized Graph as a list of kernels (Groups), in launch order.

A Group is the set of equations one kernel computes. Views never make kernels of their
own: a kernel that reads a view of a value in memory folds the view into its index math,
and a view of a value the kernel computes itself is a relabelling of registers. Equations
whose result is a Python number (``lr * 2``) run on the host and reach kernels as scalar
arguments.

``deps`` holds the dependency analysis, ``fuse`` the greedy fusion driver, ``group`` the
Group record and kernel naming. What may share a kernel is the backend's decision: it
passes its fusion rules to :func:`schedule` (the Triton tile model lives in
``fusegrad.compiler.backends.triton.layout``).
"""

from fusegrad.compiler.schedule.deps import Analysis, NoFuse, group_io, io_bytes
from fusegrad.compiler.schedule.fuse import schedule
from fusegrad.compiler.schedule.group import Group, kernel_name, stats

__all__ = ["Analysis", "Group", "NoFuse", "group_io", "io_bytes", "kernel_name", "schedule",
           "stats"]
