"""The ``triton`` backend: generated Triton kernels, one per scheduled group.

``layout`` is the tile model (the fusion rules the scheduler asks), ``index`` the index
math and Triton spellings, ``codegen`` the kernel skeleton and ``emit`` one emitter per
primitive kind, ``program`` the launcher that replays the kernels, ``aot`` ahead-of-time
builds for GPUs this machine does not have. Nothing here is imported by
``import fusegrad``; triton itself loads on the first kernel build.
"""
