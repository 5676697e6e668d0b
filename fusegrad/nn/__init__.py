"""``fusegrad.nn``: modules, parameters, losses and initialisation, as in ``torch.nn``."""

from fusegrad.nn import functional  # noqa: F401
