"""What generated programs call when they replay: the kernel cache and loader
(``kernels``) and the backends' replay code.

``kernels`` imports nothing from ``fusegrad.compiler``, and triton only on first use.
"""
