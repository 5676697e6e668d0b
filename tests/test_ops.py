"""Every user-facing op against real PyTorch, driven by the OpCase table in tests/opcases/.

For every (op, sample) pair: forward values, dtype, shape and requires_grad equal torch's;
gradients for a random upstream gradient equal ``torch.autograd``'s; fusegrad's own
``autograd.gradcheck`` passes; and ``type(out.grad_fn).__name__`` equals torch's.
Every failure starts with a one-line repro naming the op and the sample index; to run a
single case: ``FUSEGRAD_OPCASE='add:3' pytest tests/test_ops.py``.
"""

from __future__ import annotations

import functools
import os
import shlex
import warnings
import zlib

import pytest
import torch

import fusegrad
from opcases import ALL_CASES, BY_NAME

RTOL, ATOL = 1e-6, 1e-10

# Ops whose torch grad_fn name reflects how ATen decomposes them internally, not the op:
# {op name: {sample indices or "all"}}.  Empty: every name matches torch's.
GRAD_NAME_EXCEPTIONS: dict[str, set] = {}


# Known failures, kept visible: {(test, op name, sample index): reason}.  strict=True, so a
# fix turns them into an XPASS failure and the entry must go.
XFAIL: dict[tuple, str] = {}


def _params(test):
    only = os.environ.get("FUSEGRAD_OPCASE")
    out = []
    for case in ALL_CASES:
        for i in range(len(_samples(case.name))):
            if only and only != f"{case.name}:{i}" and only != case.name:
                continue
            reason = XFAIL.get((test, case.name, i))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(case.name, i, id=f"{case.name}-{i}", marks=marks))
    return out


@functools.lru_cache(maxsize=None)
def _samples(name):
    return BY_NAME[name].make_samples()


def repro(test, name, idx):
    sample = _samples(name)[idx]
    cmd = f"FUSEGRAD_OPCASE={shlex.quote(f'{name}:{idx}')} pytest tests/test_ops.py -k {test}"
    return f"repro: {cmd}  # op {name!r} sample {idx}: {sample.describe()}"


# --------------------------------------------------------------------------- harness


def _wants_grad(sample, key):
    return sample.grad_args is None or key in sample.grad_args


def build(sample, lib):
    """The sample's args/kwargs as fresh ``lib`` tensors, and the leaves that require grad."""
    leaves = []

    def conv(a, key):
        if isinstance(a, (list, tuple)):
            return type(a)(conv(b, key) for b in a)
        if not isinstance(a, torch.Tensor):
            return a
        data = a.detach().clone()  # clone keeps a transposed sample's strides
        x = fusegrad.from_torch(data) if lib is fusegrad else data
        if a.is_floating_point() and _wants_grad(sample, key):
            x.requires_grad_(True)
            leaves.append(x)
        return x

    args = tuple(conv(a, i) for i, a in enumerate(sample.args))
    kwargs = {k: conv(v, k) for k, v in sample.kwargs.items()}
    return args, kwargs, leaves


def flat(out):
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def run(case, sample, lib):
    args, kwargs, leaves = build(sample, lib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = case.op(lib, *args, **kwargs)
    return out, leaves


def data(t):
    return t._data if isinstance(t, fusegrad.Tensor) else t


def assert_same(got, want, what):
    assert isinstance(got, fusegrad.Tensor), f"{what}: expected a fusegrad.Tensor, got " \
        f"{type(got).__name__}"
    g = data(got)
    assert g.dtype == want.dtype, f"{what}: dtype {g.dtype}, torch gives {want.dtype}"
    assert g.shape == want.shape, f"{what}: shape {list(g.shape)}, torch gives {list(want.shape)}"
    w = want.detach()
    if w.dtype.is_floating_point:
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL, equal_nan=True, msg=lambda m:
                                   f"{what}: values differ from torch's\n{m}")
    else:
        assert torch.equal(g, w), f"{what}: values differ from torch's\n{g}\n{w}"


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name,idx", _params("test_forward"))
def test_forward(name, idx):
    case, sample = BY_NAME[name], _samples(name)[idx]
    r = repro("test_forward", name, idx)
    want, _ = run(case, sample, torch)
    got, _ = run(case, sample, fusegrad)
    wants, gots = flat(want), flat(got)
    assert len(gots) == len(wants), f"{r}\n{len(gots)} outputs, torch gives {len(wants)}"
    for k, (g, w) in enumerate(zip(gots, wants)):
        assert_same(g, w, f"{r}\noutput {k}")
        assert g.requires_grad == w.requires_grad, \
            f"{r}\noutput {k}: requires_grad={g.requires_grad}, torch: {w.requires_grad}"
        assert g.is_leaf == w.is_leaf, f"{r}\noutput {k}: is_leaf={g.is_leaf}, torch: {w.is_leaf}"
    if isinstance(want, tuple):  # torch.return_types.max and friends
        for field in ("values", "indices"):
            assert hasattr(got, field) == hasattr(want, field), f"{r}\nresult field .{field}"


@pytest.mark.parametrize("name,idx", _params("test_grad_fn_name"))
def test_grad_fn_name(name, idx):
    case, sample = BY_NAME[name], _samples(name)[idx]
    if not case.grad_name:
        pytest.skip("grad_fn name not compared for this op")
    r = repro("test_grad_fn_name", name, idx)
    want, _ = run(case, sample, torch)
    got, _ = run(case, sample, fusegrad)
    for k, (g, w) in enumerate(zip(flat(got), flat(want))):
        wname = None if w.grad_fn is None else type(w.grad_fn).__name__
        gname = None if g.grad_fn is None else type(g.grad_fn).__name__
        exc = GRAD_NAME_EXCEPTIONS.get(name, ())
        if "all" in exc or idx in exc:
            assert (gname is None) == (wname is None), f"{r}\noutput {k}: {gname} vs {wname}"
            continue
        assert gname == wname, f"{r}\noutput {k}: grad_fn {gname}, torch: {wname}"
        if g.grad_fn is not None:
            assert g.grad_fn.name() == gname


def _upstream(name, idx, outs):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}:{idx}".encode()))
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outs]


@pytest.mark.parametrize("name,idx", _params("test_backward"))
def test_backward(name, idx):
    case, sample = BY_NAME[name], _samples(name)[idx]
    if not case.differentiable:
        pytest.skip("not differentiable")
    r = repro("test_backward", name, idx)
    want, t_leaves = run(case, sample, torch)
    got, f_leaves = run(case, sample, fusegrad)
    pairs = [(g, w) for g, w in zip(flat(got), flat(want)) if w.requires_grad]
    if not pairs:
        assert not any(g.requires_grad for g in flat(got)), f"{r}\nan output requires grad"
        pytest.skip("no output requires grad")
    ups = _upstream(name, idx, [w for _, w in pairs])
    torch.autograd.backward([w for _, w in pairs], ups)
    fusegrad.autograd.backward([g for g, _ in pairs], [fusegrad.from_torch(u) for u in ups])
    for k, (fl, tl) in enumerate(zip(f_leaves, t_leaves)):
        if tl.grad is None:
            assert fl.grad is None, f"{r}\nleaf {k}: torch leaves .grad None, fusegrad sets it"
            continue
        assert fl.grad is not None, f"{r}\nleaf {k}: .grad is None, torch computes one"
        assert_same(fl.grad, tl.grad, f"{r}\nleaf {k} .grad")


@pytest.mark.parametrize("name,idx", _params("test_gradcheck"))
def test_gradcheck(name, idx):
    case, sample = BY_NAME[name], _samples(name)[idx]
    if not (case.differentiable and case.gradcheck):
        pytest.skip("no finite-difference check for this op")
    r = repro("test_gradcheck", name, idx)
    args, kwargs, leaves = build(sample, fusegrad)
    if not leaves:
        pytest.skip("no input requires grad")

    def fn(*_):  # gradcheck perturbs the leaves in place; args hold the same objects
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = flat(case.op(fusegrad, *args, **kwargs))
        return tuple(o for o in outs if o.dtype.is_floating_point)

    try:
        assert fusegrad.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-5, rtol=1e-3)
    except fusegrad.autograd.GradcheckError as e:
        pytest.fail(f"{r}\n{e}")


# --------------------------------------------------------------------------- dtypes

# (description, expression over T): dtype promotion that must equal torch's, including
# integer and bool tensors, Python numbers and 0-d tensors.
MIXED = {
    "f32 + i64": lambda T: T.tensor([1.5, 2.5]) + T.tensor([1, 2]),
    "i64 * 2.5": lambda T: T.tensor([1, 2]) * 2.5,
    "i64 * 2": lambda T: T.tensor([1, 2]) * 2,
    "2.5 * i64": lambda T: 2.5 * T.tensor([1, 2]),
    "i64 / i64": lambda T: T.tensor([1, 2]) / T.tensor([2, 4]),
    "i64 / 2": lambda T: T.tensor([3, 5]) / 2,
    "i32 + i64": lambda T: T.tensor([1, 2], dtype=T.int32) + T.tensor([1, 2]),
    "i32 + 0-d i64": lambda T: T.tensor([1, 2], dtype=T.int32) + T.tensor(3),
    "f32 + 0-d f64": lambda T: T.tensor([1.5, 2.5]) + T.tensor(1.0, dtype=T.float64),
    "i64 + 0-d f64": lambda T: T.tensor([1, 2]) + T.tensor(1.5, dtype=T.float64),
    "f16 + f32": lambda T: T.tensor([1.5], dtype=T.float16) + T.tensor([2.0]),
    "f32 * f64": lambda T: T.tensor([1.5]) * T.tensor([2.0], dtype=T.float64),
    "bool + bool": lambda T: T.tensor([True, False]) + T.tensor([True, True]),
    "bool * 2": lambda T: T.tensor([True, False]) * 2,
    "bool * 2.5": lambda T: T.tensor([True, False]) * 2.5,
    "bool + f32": lambda T: T.tensor([True, False]) + T.tensor([0.5, 0.5]),
    "i64 > 1.5": lambda T: T.tensor([1, 2]) > 1.5,
    "f32 == f64": lambda T: T.tensor([1.0, 2.0]) == T.tensor([1.0, 3.0], dtype=T.float64),
    "i64 != 2": lambda T: T.tensor([1, 2]) != 2,
    "1 <= i64": lambda T: 1 <= T.tensor([1, 2]),
    "bool eq bool": lambda T: T.eq(T.tensor([True, False]), T.tensor([True, True])),
    "i64 ** 2": lambda T: T.tensor([1, 2, 3]) ** 2,
    "i64 ** 0.5": lambda T: T.tensor([1, 4, 9]) ** 0.5,
    "2 ** i64": lambda T: 2 ** T.tensor([1, 2, 3]),
    "2.5 ** i64": lambda T: 2.5 ** T.tensor([1, 2, 3]),
    "f32 ** i64": lambda T: T.tensor([1.5, 2.0]) ** T.tensor([2, 3]),
    "exp(i64)": lambda T: T.exp(T.tensor([0, 1])),
    "sqrt(i64)": lambda T: T.sqrt(T.tensor([4, 9])),
    "log(i32)": lambda T: T.log(T.tensor([1, 2], dtype=T.int32)),
    "sigmoid(i64)": lambda T: T.sigmoid(T.tensor([0, 1])),
    "neg(i64)": lambda T: -T.tensor([1, 2]),
    "abs(i32)": lambda T: T.abs(T.tensor([-1, 2], dtype=T.int32)),
    "relu(i64)": lambda T: T.relu(T.tensor([-1, 2])),
    "sum(i32)": lambda T: T.sum(T.tensor([1, 2], dtype=T.int32)),
    "sum(bool)": lambda T: T.tensor([True, False, True]).sum(),
    "sum(f32, dtype=f64)": lambda T: T.sum(T.tensor([1.5, 2.5]), dtype=T.float64),
    "sum(i64, dim)": lambda T: T.tensor([[1, 2], [3, 4]]).sum(0),
    "mean(i64)": lambda T: T.tensor([1, 2]).mean(),
    "mean(i64, dtype=f64)": lambda T: T.tensor([1, 2]).mean(dtype=T.float64),
    "max(i64)": lambda T: T.tensor([1, 5, 2]).max(),
    "max(i64, dim)": lambda T: T.tensor([[1, 5], [7, 2]]).max(1).values,
    "amax(i32)": lambda T: T.amax(T.tensor([[1, 5], [7, 2]], dtype=T.int32), 0),
    "argmax(f32)": lambda T: T.argmax(T.tensor([1.0, 5.0, 2.0])),
    "maximum(i64, f32)": lambda T: T.maximum(T.tensor([1, 5]), T.tensor([2.5, 2.5])),
    "where(b, i64, f32)": lambda T: T.where(T.tensor([True, False]), T.tensor([1, 2]),
                                            T.tensor([0.5, 0.5])),
    "where(b, i64, 0.5)": lambda T: T.where(T.tensor([True, False]), T.tensor([1, 2]), 0.5),
    "where(b, f32, 0)": lambda T: T.where(T.tensor([True, False]), T.tensor([1.5, 2.5]), 0),
    "clamp(i64, 0, 2)": lambda T: T.clamp(T.tensor([-1, 1, 3]), 0, 2),
    "clamp(i64, min=0.5)": lambda T: T.clamp(T.tensor([-1, 1, 3]), min=0.5),
    "cat(i64, f32)": lambda T: T.cat([T.tensor([1, 2]), T.tensor([0.5])]),
    "stack(i32, i64)": lambda T: T.stack([T.tensor([1], dtype=T.int32), T.tensor([2])]),
    "matmul(i64, i64)": lambda T: T.tensor([[1, 2], [3, 4]]) @ T.tensor([[1], [2]]),
    "i64.float()": lambda T: T.tensor([1, 2]).float(),
    "i64.to(f64)": lambda T: T.tensor([1, 2]).to(T.float64),
    "f32.long()": lambda T: T.tensor([1.7, -2.7]).long(),
    "f32.int()": lambda T: T.tensor([1.7, -2.7]).int(),
    "f32.half()": lambda T: T.tensor([1.7, -2.7]).half(),
    "f64.bool()": lambda T: T.tensor([0.0, 2.0], dtype=T.float64).bool(),
    "softmax(f32)": lambda T: T.softmax(T.tensor([1.0, 2.0]), 0),
    "softmax(i64, dtype)": lambda T: T.softmax(T.tensor([1, 2]), 0, dtype=T.float64),
    "f32 default tensor": lambda T: T.tensor([1.0, 2]),
    "i64 default tensor": lambda T: T.tensor([1, 2]),
    "bool tensor": lambda T: T.tensor([True]),
    "f32 - 0-d i64": lambda T: T.tensor([1.5]) - T.tensor(1),
    "i64 // via div floor": lambda T: T.div(T.tensor([5, -5]), 2, rounding_mode="floor"),
    "i64 div trunc": lambda T: T.div(T.tensor([5, -5]), 2, rounding_mode="trunc"),
    "i64.sum(dtype=f32)": lambda T: T.tensor([1, 2]).sum(dtype=T.float32),
    "neg(bool)": lambda T: -T.tensor([True]),
    "sub bool": lambda T: T.tensor([True]) - T.tensor([False]),
    "mean(i64) error": lambda T: T.mean(T.tensor([1, 2])),
    "i64 requires_grad": lambda T: T.tensor([1, 2], requires_grad=True),
    "i64.requires_grad_()": lambda T: T.tensor([1, 2]).requires_grad_(),
}


@pytest.mark.parametrize("desc", list(MIXED))
def test_dtype_promotion(desc):
    expr = MIXED[desc]
    r = f"repro: pytest tests/test_ops.py -k {shlex.quote('test_dtype_promotion and ' + desc)}"
    try:
        want = expr(torch)
    except Exception as e:  # torch raises: fusegrad must raise the same type
        with pytest.raises(type(e)):
            expr(fusegrad)
        return
    got = expr(fusegrad)
    assert_same(got, want, f"{r}\n{desc}")


# --------------------------------------------------------------------------- errors

# (op, expression over T, phrases the message must contain besides torch's type):
# shape errors name the op and the shapes involved.
ERRORS = {
    "add": (lambda T: T.add(T.ones(3, 4), T.ones(5)), ["add", "[3, 4]", "[5]"]),
    "op:a+b": (lambda T: T.ones(3, 4) + T.ones(2, 4), ["add", "[3, 4]", "[2, 4]"]),
    "mul": (lambda T: T.mul(T.ones(2, 3), T.ones(3, 2)), ["mul", "[2, 3]", "[3, 2]"]),
    "sub_": (lambda T: T.ones(3).sub_(T.ones(4)), ["sub", "[3]", "[4]"]),
    "where": (lambda T: T.where(T.ones(3) > 0, T.ones(4), T.ones(3)), ["where", "[3]", "[4]"]),
    "matmul 2-D": (lambda T: T.matmul(T.ones(3, 4), T.ones(5, 6)),
                   ["matmul", "3x4", "5x6"]),
    "op:a@b": (lambda T: T.ones(3, 4) @ T.ones(5, 6), ["3x4", "5x6"]),
    "mm": (lambda T: T.mm(T.ones(3, 4), T.ones(3, 4)), ["3x4"]),
    "matmul 1-D": (lambda T: T.matmul(T.ones(3), T.ones(4)), ["3", "4"]),
    "matmul 2-D @ 1-D": (lambda T: T.matmul(T.ones(2, 3), T.ones(4)), ["2x3", "4"]),
    "matmul batched": (lambda T: T.matmul(T.ones(2, 3, 4), T.ones(3, 5, 6)), ["matmul"]),
    "matmul batch broadcast": (lambda T: T.matmul(T.ones(2, 3, 4), T.ones(3, 4, 6)),
                               ["matmul"]),
    "matmul 0-d": (lambda T: T.matmul(T.ones(()), T.ones(3)), ["0D"]),
    "cat": (lambda T: T.cat([T.ones(2, 3), T.ones(2, 4)]), ["cat", "3", "4"]),
    "cat dims": (lambda T: T.cat([T.ones(2, 3), T.ones(3)]), ["cat"]),
    "cat empty": (lambda T: T.cat([]), ["cat"]),
    "stack": (lambda T: T.stack([T.ones(2, 3), T.ones(3, 2)]), ["stack", "[2, 3]", "[3, 2]"]),
    "reshape": (lambda T: T.ones(3, 4).reshape(5), ["reshape", "[5]", "12"]),
    "view": (lambda T: T.ones(3, 4).view(5, -1), ["[5, -1]", "12"]),
    "view noncontig": (lambda T: T.ones(3, 4).t().view(12), ["view"]),
    "reshape two -1": (lambda T: T.ones(3, 4).reshape(-1, -1), ["only one dimension"]),
    "expand": (lambda T: T.ones(3, 2).expand(3, 4), ["expand", "4", "2"]),
    "expand fewer dims": (lambda T: T.ones(3, 2).expand(2), ["expand"]),
    "sum dim": (lambda T: T.ones(3, 4).sum(2), ["range", "2"]),
    "softmax dim": (lambda T: T.softmax(T.ones(3, 4), 3), ["range"]),
    "unsqueeze dim": (lambda T: T.ones(3).unsqueeze(3), ["range", "3"]),
    "squeeze dim": (lambda T: T.ones(3).squeeze(2), ["range"]),
    "transpose dim": (lambda T: T.ones(3, 4).transpose(0, 2), ["range"]),
    "getitem": (lambda T: T.ones(3, 4)[3], ["3", "size 3"]),
    "getitem too many": (lambda T: T.ones(3)[0, 0], ["too many indices"]),
    "t 3-D": (lambda T: T.ones(2, 3, 4).t(), ["3D"]),
    "linear": (lambda T: T.nn.functional.linear(T.ones(2, 3), T.ones(4, 5)), ["2x3", "5x4"]),
    "mse_loss": (lambda T: T.nn.functional.mse_loss(T.ones(2, 3), T.ones(3, 2)),
                 ["[2, 3]", "[3, 2]"]),
    "cross_entropy target": (lambda T: T.nn.functional.cross_entropy(
        T.ones(2, 3), T.tensor([0, 3])), ["3", "out of bounds"]),
    "cross_entropy batch": (lambda T: T.nn.functional.cross_entropy(
        T.ones(2, 3), T.tensor([0, 1, 2])), ["batch_size", "2", "3"]),
    "bce_with_logits": (lambda T: T.nn.functional.binary_cross_entropy_with_logits(
        T.ones(2, 3), T.ones(3)), ["Target size", "must be the same as input size"]),
    "clamp no bounds": (lambda T: T.clamp(T.ones(3)), ["clamp", "min", "max"]),
    "where cond dtype": (lambda T: T.where(T.ones(3), T.ones(3), T.ones(3)), ["where"]),
    "argmax empty": (lambda T: T.argmax(T.ones(0)), ["argmax"]),
    "item": (lambda T: T.ones(3).item(), ["3 elements"]),
    "requires_grad int": (lambda T: T.ones(3, dtype=T.int64).requires_grad_(),
                          ["floating point"]),
    "neg bool": (lambda T: -T.tensor([True]), ["`-` operator", "bool"]),
}


@pytest.mark.parametrize("desc", list(ERRORS))
def test_errors(desc):
    expr, phrases = ERRORS[desc]
    r = f"repro: pytest tests/test_ops.py -k {shlex.quote('test_errors and ' + desc)}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mse_loss's broadcasting warning counts as the error
        with pytest.raises(Exception) as want:
            expr(torch)
        with pytest.raises(Exception) as got:
            expr(fusegrad)
    assert got.type is want.type, f"{r}\n{desc}: fusegrad raises {got.type.__name__}: " \
        f"{got.value}\ntorch raises {want.type.__name__}: {want.value}"
    msg = str(got.value)
    for p in phrases:
        assert p in msg, f"{r}\n{desc}: message lacks {p!r}: {msg}\n(torch: {want.value})"


def test_table_covers_design_ops():
    """Every op DESIGN.md lists has an entry (function, method or operator form)."""
    design = ("add sub mul div neg pow exp log sqrt abs sin cos tanh sigmoid relu maximum "
              "minimum clamp where matmul mm t transpose reshape view flatten squeeze "
              "unsqueeze expand cat stack sum mean max min amax argmax softmax log_softmax "
              "logsumexp norm eq ne lt le gt ge").split()
    names = set(BY_NAME)
    missing = [op for op in design if op not in names and f"Tensor.{op}" not in names]
    assert not missing, missing
    for extra in ["getitem", "clone", "detach", "to_float32", "float", "double", "F.linear",
                  "F.mse_loss", "F.cross_entropy", "F.binary_cross_entropy_with_logits",
                  "F.softmax", "F.log_softmax", "F.relu", "op:a@b", "op:-x", "op:2**x",
                  "op:a==b", "op:1<a"]:
        assert extra in names, extra
    assert sum(len(_samples(c.name)) for c in ALL_CASES) > 300
