"""User-facing ops, by family: each picks a primitive, or composes several, through
``fusegrad.dispatch.apply``, and PyTorch's grad_fn names for them come from
``fusegrad.autograd.names``.

``pointwise``, ``reduce``, ``movement``, ``linalg``, ``creation``, ``indexing`` and
``conversion`` hold the ops, all re-exported here (``fusegrad.ops.add``); ``inplace`` holds
the in-place ops and ``methods`` binds everything as Tensor methods and Python operators.
"""

from fusegrad.autograd.names import composite
from fusegrad.ops.conversion import *  # noqa: F403
from fusegrad.ops.creation import *  # noqa: F403
from fusegrad.ops.indexing import *  # noqa: F403
from fusegrad.ops.linalg import *  # noqa: F403
from fusegrad.ops.movement import *  # noqa: F403
from fusegrad.ops.pointwise import *  # noqa: F403
from fusegrad.ops.reduce import *  # noqa: F403
