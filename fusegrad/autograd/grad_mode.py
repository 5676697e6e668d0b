"""Thread-local grad modes: no_grad, enable_grad, set_grad_enabled, inference_mode."""

from __future__ import annotations

import functools
import threading


class _Mode(threading.local):
    def __init__(self):
        self.enabled = True
        self.inference = False


_mode = _Mode()


def is_grad_enabled() -> bool:
    return _mode.enabled


def is_inference_mode_enabled() -> bool:
    return _mode.inference


class _GradModeBase:
    """Context manager that is also a decorator (instantiate it: ``@no_grad()``)."""

    def _set(self):  # returns the state to restore
        raise NotImplementedError

    def __enter__(self):
        self._prev = (_mode.enabled, _mode.inference)
        self._set()
        return self

    def __exit__(self, *exc):
        _mode.enabled, _mode.inference = self._prev
        return False

    def clone(self):
        return type(self)()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.clone():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradModeBase):
    def _set(self):
        _mode.enabled = False


class enable_grad(_GradModeBase):
    def _set(self):
        _mode.enabled = True


class set_grad_enabled(_GradModeBase):
    """Sets the mode at once, so it works as a plain function call too."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = (_mode.enabled, _mode.inference)
        _mode.enabled = self.mode

    def __enter__(self):
        return self

    def clone(self):
        return set_grad_enabled(self.mode)

    def __call__(self, fn):
        # used as a decorator, construction already flipped the mode: undo that
        _mode.enabled, _mode.inference = self._prev
        return super().__call__(fn)

    def _set(self):
        _mode.enabled = self.mode


class inference_mode(_GradModeBase):
    def __init__(self, mode: bool = True):
        self.mode = bool(mode)

    def clone(self):
        return inference_mode(self.mode)

    def _set(self):
        if self.mode:
            _mode.enabled = False
            _mode.inference = True
        else:
            _mode.inference = False
