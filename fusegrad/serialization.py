"""``fusegrad.save`` / ``fusegrad.load``: checkpoints of tensors, state dicts and containers.

The format is fusegrad's own and holds no pickle, so loading a file never runs code:

    magic (8 bytes)  version (u32)  meta length (u64)  blob length (u64)  sha256(meta + blob)
    meta: UTF-8 JSON describing the object tree (tensors refer to byte ranges of the blob)
    blob: the tensors' raw bytes, one after the other

The lengths reveal a truncated file and the checksum a corrupted one. Writes go to a temporary
file in the same folder, which is flushed, fsynced and renamed over the target, so a failed or
interrupted save never damages an existing checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections import OrderedDict

import numpy as np
import torch

from fusegrad._util import dtypes
from fusegrad._util.fileio import atomic_open
from fusegrad.interpreter import is_symbolic
from fusegrad.nn.parameter import Parameter
from fusegrad.tensor import Tensor

__all__ = ["load", "save"]

MAGIC = b"\x89FGCKPT\n"
VERSION = 1
_HEADER = struct.Struct("<8sIQQ32s")  # magic, version, meta length, blob length, sha256
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save files are zip archives

_DTYPES = dtypes.BY_NAME


# --------------------------------------------------------------------------- encoding


class _Encoder:
    """Turns an object tree into JSON-able ``meta`` plus a list of byte chunks."""

    def __init__(self):
        self.chunks = []
        self.nbytes = 0
        self.memo = {}  # id(tensor) -> index, so a tensor saved twice loads as one object
        self.tensors = []
        self.keep = []  # objects whose id is in memo stay alive while encoding

    def encode(self, obj, where):
        if isinstance(obj, np.generic):  # numpy scalars (an accuracy, a loss) as Python ones
            obj = obj.item()
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return {"float": repr(float(obj))}  # repr round-trips, nan/inf included
        if isinstance(obj, (Tensor, torch.Tensor)):
            return self.tensor(obj, where)
        if isinstance(obj, torch.dtype):
            return {"dtype": dtypes.name(obj)}
        if isinstance(obj, torch.device):
            return {"device": str(obj)}
        if isinstance(obj, torch.Size):
            return {"size": list(obj)}
        if isinstance(obj, complex):
            return {"complex": [repr(obj.real), repr(obj.imag)]}
        if isinstance(obj, (dict, OrderedDict)):
            if type(obj) not in (dict, OrderedDict):  # e.g. defaultdict: saved as a dict
                obj = dict(obj)
            tag = "odict" if isinstance(obj, OrderedDict) else "dict"
            return {tag: [[self.encode(k, f"{where} (a key)"), self.encode(v, f"{where}[{k!r}]")]
                          for k, v in obj.items()]}
        if type(obj) in (list, tuple):
            tag = "list" if isinstance(obj, list) else "tuple"
            return {tag: [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        raise TypeError(
            f"fusegrad.save: cannot save {where} of type {type(obj).__module__}."
            f"{type(obj).__qualname__}; checkpoints hold tensors, numbers, strings, None, "
            "dtypes, devices and dicts/lists/tuples of them")

    def tensor(self, t, where):
        if id(t) in self.memo:
            return {"ref": self.memo[id(t)]}
        if isinstance(t, Tensor):
            kind = "parameter" if isinstance(t, Parameter) else "tensor"
            data, requires_grad = t._data, t._requires_grad
            if is_symbolic(data):
                raise TypeError(f"fusegrad.save: {where} is a symbolic tensor (inside a "
                                "compiled function); save outside the compiled step")
        else:
            kind, data, requires_grad = "torch", t.detach(), t.requires_grad
        dtype = dtypes.name(data.dtype)
        if dtype not in _DTYPES:
            raise TypeError(f"fusegrad.save: {where} has unsupported dtype {data.dtype}")
        raw = _tensor_bytes(data)
        entry = {"tensor": kind, "dtype": dtype, "shape": list(data.shape),
                 "device": str(data.device), "offset": self.nbytes, "nbytes": len(raw),
                 "requires_grad": bool(requires_grad)}
        self.chunks.append(raw)
        self.nbytes += len(raw)
        self.memo[id(t)] = len(self.tensors)
        self.tensors.append(entry)
        self.keep.append(t)
        return {"ref": self.memo[id(t)]}


def _tensor_bytes(data):
    flat = data.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


def _encode(obj):
    enc = _Encoder()
    tree = enc.encode(obj, "the object")
    meta = json.dumps({"tensors": enc.tensors, "tree": tree}, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    return meta, enc.chunks, enc.nbytes


# --------------------------------------------------------------------------- writing


def _write_payload(f, parts):
    """Write the checkpoint's parts in order (kept separate so tests can make it fail)."""
    for part in parts:
        f.write(part)


def save(obj, f):
    """Save ``obj`` (tensors, Parameters, state dicts, optimizer state dicts and nested
    dicts/lists/tuples of numbers and strings) to ``f``.

    Args:
        obj: the object to save.
        f: a path (``str`` or ``os.PathLike``) or a writable binary file object. A path is
            written atomically: the old file stays intact unless the new one is complete.

    Raises:
        TypeError: ``obj`` holds something a checkpoint cannot store (the error says where).
        OSError: the file cannot be written (the existing file is left unchanged).
    """
    meta, chunks, nbytes = _encode(obj)
    digest = hashlib.sha256(meta)
    for c in chunks:
        digest.update(c)
    header = _HEADER.pack(MAGIC, VERSION, len(meta), nbytes, digest.digest())
    parts = [header, meta, *chunks]
    if hasattr(f, "write"):
        _write_payload(f, parts)
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"fusegrad.save: cannot write '{path}': the folder "
                                   f"'{folder}' does not exist")
    with atomic_open(path) as out:
        _write_payload(out, parts)


# --------------------------------------------------------------------------- reading


def load(f, map_location=None, weights_only=True, **kwargs):
    """Load an object saved by :func:`save` (or, as plain tensors, by ``torch.save``).

    Args:
        f: a path or a readable binary file object.
        map_location: a device (or ``str``) to put every tensor on; by default tensors return
            to the device they were saved from.
        weights_only: accepted for compatibility; loading never executes code.

    Raises:
        FileNotFoundError: there is no file at ``f``.
        RuntimeError: the file is truncated, corrupt or not a checkpoint (naming the path).
    """
    if hasattr(f, "read"):
        name, raw = getattr(f, "name", repr(f)), f.read()
    else:
        name = os.fspath(f)
        try:
            with open(name, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise FileNotFoundError(2, f"fusegrad.load: no such file: '{name}'") from None
    if raw[:len(_ZIP_MAGIC)] == _ZIP_MAGIC:
        return _load_torch_file(name, raw, map_location)
    if len(raw) < len(MAGIC) and MAGIC.startswith(raw):
        raise RuntimeError(f"fusegrad.load: '{name}' is truncated or corrupt (only {len(raw)} "
                           "bytes)")
    if raw[:len(MAGIC)] != MAGIC:
        raise RuntimeError(f"fusegrad.load: '{name}' is not a fusegrad checkpoint (it does not "
                           "start with fusegrad's magic bytes)")
    if len(raw) < _HEADER.size:
        raise RuntimeError(f"fusegrad.load: '{name}' is truncated or corrupt (the header "
                           f"needs {_HEADER.size} bytes, the file has {len(raw)})")
    _, version, meta_len, blob_len, digest = _HEADER.unpack_from(raw)
    if version > VERSION:
        raise RuntimeError(f"fusegrad.load: '{name}' has format version {version}; this "
                           f"fusegrad reads versions up to {VERSION}")
    expected = _HEADER.size + meta_len + blob_len
    if len(raw) != expected:
        raise RuntimeError(f"fusegrad.load: '{name}' is truncated or corrupt (expected "
                           f"{expected} bytes, found {len(raw)})")
    body = memoryview(raw)[_HEADER.size:]
    if hashlib.sha256(body).digest() != digest:
        raise RuntimeError(f"fusegrad.load: '{name}' is truncated or corrupt (checksum "
                           "mismatch)")
    try:
        meta = json.loads(bytes(body[:meta_len]).decode("utf-8"))
        decoder = _Decoder(meta["tensors"], body[meta_len:], map_location)
        return decoder.decode(meta["tree"])
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise RuntimeError(f"fusegrad.load: '{name}' is corrupt ({e})") from e


class _Decoder:
    def __init__(self, entries, blob, map_location):
        self.entries = entries
        self.blob = blob
        self.map_location = map_location
        self.cache = {}

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"unexpected node {str(node)[:60]}")
        (tag, value), = node.items()
        if tag == "float":
            return float(value)
        if tag == "ref":
            return self.tensor(value)
        if tag == "list":
            return [self.decode(v) for v in value]
        if tag == "tuple":
            return tuple(self.decode(v) for v in value)
        if tag in ("dict", "odict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in value]
            return OrderedDict(pairs) if tag == "odict" else dict(pairs)
        if tag == "dtype":
            return _DTYPES[value]
        if tag == "device":
            return torch.device(value)
        if tag == "size":
            return torch.Size(value)
        if tag == "complex":
            return complex(float(value[0]), float(value[1]))
        raise ValueError(f"unknown tag {tag!r}")

    def tensor(self, index):
        if index in self.cache:
            return self.cache[index]
        e = self.entries[index]
        dtype = _DTYPES[e["dtype"]]
        start, n = e["offset"], e["nbytes"]
        if start < 0 or start + n > len(self.blob):
            raise ValueError(f"tensor {index} lies outside the data")
        if n == 0:
            data = torch.empty(e["shape"], dtype=dtype)
        else:
            data = torch.frombuffer(bytearray(self.blob[start:start + n]), dtype=torch.uint8)
            data = data.view(dtype).reshape(e["shape"])
        device = self.map_location if self.map_location is not None else e["device"]
        data = data.to(_device(device))
        out = _wrap(data, e["tensor"], e["requires_grad"])
        self.cache[index] = out
        return out


def _device(device):
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("fusegrad.load: the checkpoint holds CUDA tensors but CUDA is not "
                           "available; pass map_location='cpu'")
    return device


def _wrap(data, kind, requires_grad):
    if kind == "torch":
        return data.requires_grad_(requires_grad) if data.is_floating_point() else data
    if kind == "parameter":
        return Parameter(data, requires_grad=requires_grad)
    t = Tensor._make(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _load_torch_file(name, raw, map_location):
    """A ``torch.save`` file, read with ``weights_only=True`` (no code runs); its tensors
    become fusegrad Tensors (``nn.Parameter`` becomes ``fusegrad.nn.Parameter``)."""
    try:
        obj = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"fusegrad.load: '{name}' looks like a torch.save file but cannot "
                           f"be read ({type(e).__name__}: {e})") from e
    return _from_torch(obj)


def _from_torch(obj):
    if isinstance(obj, torch.nn.Parameter):
        return _wrap(obj.detach(), "parameter", obj.requires_grad)
    if isinstance(obj, torch.Tensor):
        return _wrap(obj.detach(), "tensor", obj.requires_grad)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _from_torch(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _from_torch(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_from_torch(v) for v in obj)
    return obj
