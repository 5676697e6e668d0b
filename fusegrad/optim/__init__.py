"""``fusegrad.optim``: optimizers with PyTorch's algorithms, state and state dicts."""

from fusegrad.optim.adam import Adam
from fusegrad.optim.optimizer import Optimizer
from fusegrad.optim.sgd import SGD

__all__ = ["SGD", "Adam", "Optimizer"]
