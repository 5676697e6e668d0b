"""The handle a hook registration returns (PyTorch's ``RemovableHandle``)."""

from __future__ import annotations


class RemovableHandle:
    """``remove()`` takes ``item`` out of the hook list ``lst`` it was appended to."""

    def __init__(self, lst, item):
        self._lst, self._item = lst, item

    def remove(self):
        if self._item in self._lst:
            self._lst.remove(self._item)
