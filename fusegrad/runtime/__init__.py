"""What generated programs call when they replay: the kernel cache and loader
(``kernels``), prepared kernel launches (``launch``) and the backends' replay code.

``kernels`` and ``launch`` import nothing from ``fusegrad.compiler``, and triton only on
first use.
"""
