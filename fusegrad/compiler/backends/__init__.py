"""Backends: each turns an optimized graph into a program that replays it.

``cpu`` lowers it to straight-line ATen calls; ``triton`` to generated Triton kernels
(imported on its first use, so ``import fusegrad`` never loads Triton).
"""
