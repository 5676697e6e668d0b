"""``fusegrad.nn``: modules, parameters, losses and initialisation, as in ``torch.nn``."""

from fusegrad.nn import functional, init, utils
from fusegrad.nn.activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from fusegrad.nn.container import ModuleDict, ModuleList, Sequential
from fusegrad.nn.dropout import Dropout
from fusegrad.nn.flatten import Flatten
from fusegrad.nn.linear import Identity, Linear
from fusegrad.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from fusegrad.nn.module import Module
from fusegrad.nn.parameter import Parameter

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten", "Identity",
           "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "Module", "ModuleDict",
           "ModuleList", "NLLLoss", "Parameter", "ReLU", "Sequential", "SiLU", "Sigmoid",
           "Softmax", "Tanh", "functional", "init", "utils"]
