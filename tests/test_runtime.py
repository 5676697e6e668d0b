"""The runtime's support code: atomic file writes."""

from __future__ import annotations

import os

import pytest


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write(tmp_path):
    from fusegrad._util.fileio import atomic_open, atomic_write

    p = tmp_path / "f.txt"
    atomic_write(p, "caf\u00e9")
    assert p.read_bytes() == "caf\u00e9".encode()
    atomic_write(str(p), b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError, match="injected"):
        with atomic_open(p) as f:
            f.write(b"half")
            raise RuntimeError("injected")
    assert p.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temporary file is gone
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "f.txt", b"")
