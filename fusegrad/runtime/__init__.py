"""What generated programs call when they replay: the kernel cache and loader
(``kernels``) and prepared kernel launches (``launch``). The backends that generate those
programs live in ``fusegrad.compiler.backends``.

``kernels`` and ``launch`` import nothing from ``fusegrad.compiler``, and triton only on
first use.
"""
