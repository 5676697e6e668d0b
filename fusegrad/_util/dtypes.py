"""One table of dtype names: the IR's short names, torch's, ATen's ScalarType and C++
names (used in PyTorch's error messages), Triton's element and pointer types."""

from __future__ import annotations

from typing import NamedTuple

import torch


class DtypeNames(NamedTuple):
    short: str  # IR type strings: f32[64, 10]
    scalar: str  # ATen ScalarType: "Float"
    cpp: str  # C++ type in PyTorch's messages: "float"
    tl: str | None  # Triton element type
    ptr: str | None  # Triton pointer type in a kernel signature


_TABLE = {
    torch.float32: DtypeNames("f32", "Float", "float", "tl.float32", "*fp32"),
    torch.float64: DtypeNames("f64", "Double", "double", "tl.float64", "*fp64"),
    torch.float16: DtypeNames("f16", "Half", "c10::Half", "tl.float16", "*fp16"),
    torch.bfloat16: DtypeNames("bf16", "BFloat16", "c10::BFloat16", "tl.bfloat16", "*bf16"),
    torch.int64: DtypeNames("i64", "Long", "long int", "tl.int64", "*i64"),
    torch.int32: DtypeNames("i32", "Int", "int", "tl.int32", "*i32"),
    torch.int16: DtypeNames("i16", "Short", "short int", "tl.int16", "*i16"),
    torch.int8: DtypeNames("i8", "Char", "signed char", "tl.int8", "*i8"),
    torch.uint8: DtypeNames("u8", "Byte", "unsigned char", "tl.uint8", "*u8"),
    torch.bool: DtypeNames("b8", "Bool", "bool", "tl.int1", "*i1"),
    torch.complex64: DtypeNames("c64", "ComplexFloat", "c10::complex<float>", None, None),
    torch.complex128: DtypeNames("c128", "ComplexDouble", "c10::complex<double>", None, None),
}


def name(dtype) -> str:
    """torch's own name without the module: ``float32``."""
    return str(dtype).removeprefix("torch.")


def short(dtype) -> str:
    e = _TABLE.get(dtype)
    return e.short if e else name(dtype)


def scalar_type(dtype) -> str:
    e = _TABLE.get(dtype)
    return e.scalar if e else name(dtype)


def cpp_name(dtype) -> str:
    e = _TABLE.get(dtype)
    return e.cpp if e else name(dtype)


def tl(dtype) -> str | None:
    e = _TABLE.get(dtype)
    return e.tl if e else None


def ptr(dtype) -> str | None:
    e = _TABLE.get(dtype)
    return e.ptr if e else None


_ITEMSIZE: dict = {}


def itemsize(dtype) -> int:
    size = _ITEMSIZE.get(dtype)
    if size is None:
        size = _ITEMSIZE[dtype] = torch.empty((), dtype=dtype).element_size()
    return size


BY_NAME = {name(d): d for d in _TABLE}
