"""The table of primitives is complete and every rule in it is right.

* every primitive has a meta rule, an impl, a triton rule, and either a vjp or is one of
  the kinds that have no derivative;
* every vjp passes the identity <J u, v> = <u, J^T v>, with J u from central finite
  differences of the impl in float64 (nothing here uses torch.autograd);
* meta's shape and dtype equal the impl's output, for float, integer, bool and mixed
  inputs; for bad input, meta raises the same exception type as the impl.

A prim added to the table without samples in ``SAMPLES`` fails ``test_every_prim_has_samples``.
"""

from __future__ import annotations

import re
import zlib

import pytest
import torch

import fusegrad
from fusegrad import primitives as P
from fusegrad.autograd.node import _Ctx
from fusegrad.tensor import Tensor
from opcases.common import Maker

# Linear prims: finite differences with eps = 1 are exact, which also suits float32 inputs.
LINEAR = {"neg", "cast", "copy", "add", "sub", "sum", "reshape", "permute", "expand", "slice",
          "select", "unslice", "cat"}


def _samples(m: Maker):
    """{prim name: [(args, params)]}: args are torch tensors or Python numbers."""
    t, pos = m.t, m.pos
    un = lambda f=t: [((f(3, 4),), {}), ((f(),), {}), ((f(3, 4, noncontig=True),), {})]  # noqa
    bi = lambda g=t: [  # noqa: E731
        ((t(3, 4), g(3, 4)), {}),
        ((t(3, 1), g(1, 4)), {}),
        ((t(2, 3, 4), g(4)), {}),
        ((t(), g(3)), {}),
        ((t(3, 4), 1.5), {}),
    ]
    s = {
        "neg": un(), "exp": un(), "log": un(pos), "sqrt": un(pos), "abs": un(), "sin": un(),
        "cos": un(), "tanh": un(), "sigmoid": un(), "relu": un(), "sign": un(), "copy": un(),
        "cast": [((t(3, 4),), {"dtype": torch.float32}),
                 ((t(3, 4, dtype=torch.float32),), {"dtype": torch.float64})],
        "add": bi(), "sub": bi() + [((2.5, t(3)), {})], "mul": bi(), "div": bi(pos) + [
            ((2.0, pos(3)), {})],
        "pow": [((pos(3, 4), 2.5), {}), ((pos(3, 4), t(3, 4)), {}), ((pos(3, 1), t(4)), {}),
                ((2.5, t(3)), {}), ((t(3, 4), 3), {})],
        "maximum": bi()[:4], "minimum": bi()[:4],  # torch.maximum takes no Python number
        "where": [((m.bool(3, 4), t(3, 4), t(3, 4)), {}), ((m.bool(3, 1), t(4), t(3, 4)), {}),
                  ((m.bool(3, 4), t(3, 4), 0.0), {})],
        "clamp": [((t(3, 4),), {"lo": -0.5, "hi": 0.5}), ((t(3, 4),), {"lo": 0.0}),
                  ((t(3, 4),), {"hi": 0.3})],
        "sum": [((t(3, 4),), {}), ((t(3, 4),), {"dims": (1,)}),
                ((t(2, 3, 4),), {"dims": (0, 2), "keepdim": True}), ((t(),), {})],
        "amax": [((t(3, 4),), {}), ((t(3, 4),), {"dims": (1,)}),
                 ((t(2, 3, 4),), {"dims": (0, 2), "keepdim": True})],
        "amin": [((t(3, 4),), {}), ((t(3, 4),), {"dims": (0,), "keepdim": True})],
        "argmax": [((t(3, 4),), {"dims": 1}), ((t(3, 4),), {"dims": 0, "keepdim": True})],
        "reshape": [((t(3, 4),), {"shape": (2, 6)}), ((t(),), {"shape": (1, 1)}),
                    ((t(3, 4, noncontig=True),), {"shape": (12,)})],
        "permute": [((t(2, 3, 4),), {"dims": (2, 0, 1)}), ((t(3, 4),), {"dims": (1, 0)})],
        "expand": [((t(1, 4),), {"shape": (3, 4)}), ((t(4),), {"shape": (2, 3, 4)})],
        "slice": [((t(5, 4),), {"dim": 0, "start": 1, "stop": 4, "step": 2}),
                  ((t(3, 6),), {"dim": 1, "start": 0, "stop": 6, "step": 1})],
        "select": [((t(5, 4),), {"dim": 1, "index": 2}), ((t(3),), {"dim": 0, "index": 0})],
        "unslice": [((t(2, 4),), {"shape": (5, 4), "dim": 0, "start": 1, "stop": 4, "step": 2})],
        "cat": [((t(2, 3), t(1, 3)), {"dim": 0}), ((t(2, 3), t(2, 1), t(2, 2)), {"dim": 1})],
        "log_softmax": [((t(3, 4),), {"dim": 1}), ((t(2, 3, 4),), {"dim": 0}),
                        ((t(5) * 10,), {"dim": 0}), ((t(3, 4, noncontig=True),), {"dim": 1})],
        "matmul": [((t(3, 4), t(4, 2)), {}), ((t(2, 3, 4), t(2, 4, 2)), {}),
                   ((t(2, 1, 3, 4), t(3, 4, 2)), {})],
        "full": [((), {"shape": (2, 3), "value": 1.5, "dtype": torch.float64,
                       "device": torch.device("cpu")})],
        "iota": [((), {"n": 5, "dtype": torch.int64, "device": torch.device("cpu")}),
                 ((), {"n": 0, "dtype": torch.float32, "device": torch.device("cpu")})],
    }
    for name in ["eq", "ne", "lt", "le", "gt", "ge"]:
        s[name] = bi()
    s["logical_and"] = [((m.bool(3, 4), m.bool(3, 4)), {}), ((t(3, 1), t(4)), {})]
    for name, p in P.PRIMS.items():  # a table unary op without samples of its own
        if name not in s and p.kind is P.Kind.UNARY and p.inplace:
            s[name] = un()
    return s


SAMPLES = _samples(Maker(0))


def _int(*shape, dtype=torch.int64):
    return torch.arange(1, 1 + int(torch.Size(shape).numel()), dtype=dtype).reshape(shape)


# dtype promotion and shapes for non-float and mixed inputs: meta must agree with the impl
DTYPE_SAMPLES = [
    ("add", (_int(3), 2.5), {}), ("add", (_int(3, dtype=torch.int32), _int(3)), {}),
    ("add", (_int(3, dtype=torch.int32), torch.tensor(2)), {}),
    ("add", (torch.ones(3), torch.tensor(2.0, dtype=torch.float64)), {}),
    ("add", (_int(3), torch.tensor(2.0, dtype=torch.float64)), {}),
    ("add", (torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)), {}),
    ("mul", (torch.ones(2, dtype=torch.bool), 2), {}), ("mul", (_int(2), True), {}),
    ("sub", (2, _int(3)), {}), ("div", (_int(3), _int(3)), {}), ("div", (2, _int(3)), {}),
    ("pow", (_int(3), 2), {}), ("pow", (_int(3), 0.5), {}), ("pow", (2.5, _int(3)), {}),
    ("pow", (2, _int(3)), {}), ("pow", (torch.ones(2, dtype=torch.float16), _int(2)), {}),
    ("maximum", (_int(2), torch.ones(2)), {}), ("minimum", (_int(2), _int(2)), {}),
    ("exp", (_int(3),), {}), ("log", (_int(3, dtype=torch.int32),), {}),
    ("sqrt", (torch.ones(2, dtype=torch.bool),), {}),
    ("sin", (torch.ones(2, dtype=torch.half),), {}),
    ("tanh", (_int(2),), {}), ("sigmoid", (_int(2),), {}), ("cos", (_int(2),), {}),
    ("abs", (_int(3, dtype=torch.int32),), {}), ("relu", (_int(2),), {}),
    ("neg", (_int(2),), {}), ("sign", (_int(2),), {}), ("copy", (_int(2),), {}),
    ("cast", (_int(2),), {"dtype": torch.bool}), ("cast", (torch.ones(2),), {"dtype": torch.int32}),
    ("eq", (_int(2), 2.5), {}), ("lt", (torch.ones(2), torch.ones(2, dtype=torch.float64)), {}),
    ("logical_and", (torch.ones(2), _int(2)), {}),
    ("where", (torch.ones(2, dtype=torch.bool), _int(2), torch.ones(2)), {}),
    ("where", (torch.ones(2, dtype=torch.bool), _int(2), 0.5), {}),
    ("where", (torch.ones(2, dtype=torch.bool), torch.ones(2), 0), {}),
    ("where", (torch.ones(2, dtype=torch.bool), _int(2, dtype=torch.int32), _int(2)), {}),
    ("clamp", (_int(3),), {"lo": 0, "hi": 2}),
    ("clamp", (_int(3),), {"lo": 0.5}),
    ("clamp", (torch.ones(3, dtype=torch.float16),), {"hi": 0.5}),
    ("sum", (_int(3, dtype=torch.int32),), {}), ("sum", (torch.ones(2, dtype=torch.bool),), {}),
    ("sum", (torch.ones(2, 3, dtype=torch.float16),), {"dims": (1,)}),
    ("sum", (torch.ones(0, 3),), {"dims": (0,)}),
    ("amax", (_int(2, 3, dtype=torch.int32),), {"dims": (1,), "keepdim": True}),
    ("amin", (_int(2, 3),), {}), ("argmax", (_int(2, 3),), {"dims": 1}),
    ("argmax", (torch.ones(()),), {"dims": 0}),
    ("reshape", (_int(2, 3),), {"shape": (3, 2)}),
    ("reshape", (torch.ones(0, 3),), {"shape": (3, 0)}),
    ("permute", (_int(2, 3),), {"dims": (1, 0)}), ("expand", (_int(1, 3),), {"shape": (2, 3)}),
    ("slice", (_int(5),), {"dim": 0, "start": 1, "stop": 5, "step": 3}),
    ("slice", (_int(5),), {"dim": 0, "start": 4, "stop": 4, "step": 1}),
    ("slice", (_int(5),), {"dim": 0, "start": 2, "stop": 100, "step": 2}),
    ("select", (_int(5, 2),), {"dim": 0, "index": 4}),
    ("unslice", (_int(2),), {"shape": (5,), "dim": 0, "start": 0, "stop": 4, "step": 3}),
    ("cat", (_int(2), torch.ones(3)), {"dim": 0}),
    ("cat", (_int(2, dtype=torch.int32), _int(1)), {"dim": 0}),
    ("matmul", (_int(2, 3), _int(3, 2)), {}),
    ("log_softmax", (torch.ones(2, 3, dtype=torch.float16),), {"dim": 1}),
    ("full", (), {"shape": (2,), "value": 3, "dtype": torch.int64, "device": torch.device("cpu")}),
    ("full", (), {"shape": (), "value": True, "dtype": torch.bool, "device": "cpu"}),
]

# bad input: meta must raise the impl's exception type, with a message naming the prim
BAD = [
    ("add", (torch.ones(3, 4), torch.ones(5)), {}),
    ("mul", (torch.ones(2, 3), torch.ones(3, 2)), {}),
    ("where", (torch.ones(3), torch.ones(3), torch.ones(3)), {}),
    ("where", (torch.ones(3, dtype=torch.bool), torch.ones(3), torch.ones(4)), {}),
    ("matmul", (torch.ones(3, 4), torch.ones(5, 6)), {}),
    ("matmul", (torch.ones(2, 3, 4), torch.ones(3, 4, 5)), {}),
    ("cat", (torch.ones(2, 3), torch.ones(2, 4)), {"dim": 0}),
    ("reshape", (torch.ones(3, 4),), {"shape": (5,)}),
    ("expand", (torch.ones(3, 2),), {"shape": (3, 4)}),
    ("permute", (torch.ones(3, 2),), {"dims": (0, 0)}),
    ("sum", (torch.ones(3, 2),), {"dims": (2,)}),
    ("amax", (torch.ones(0, 2),), {"dims": (0,)}),
    ("clamp", (torch.ones(3),), {}),
]


def _ids(items):
    return [f"{name}-{i}" for i, (name, *_) in enumerate(items)]


# --------------------------------------------------------------------------- completeness


ARITY = {P.Kind.UNARY: 1, P.Kind.BINARY: 2, P.Kind.COMPARE: 2, P.Kind.TERNARY: 3}


@pytest.mark.parametrize("name", list(P.PRIMS))
def test_prim_record_is_complete(name):
    """Every record fills the fields its kind needs (so every phase can handle it)."""
    p = P.PRIMS[name]
    assert p.name == name and isinstance(p.kind, P.Kind)
    assert callable(p.meta) and callable(p.impl)
    assert not P.missing_fields(p), f"{name}: record lacks {P.missing_fields(p)}"
    if p.kind.pointwise:  # an expression template over the operands {0}, {1}, ...
        for tmpl in (p.triton, p.aten):
            for k in range(ARITY[p.kind]):
                assert "{%d}" % k in tmpl, f"{name}: template {tmpl!r} lacks {{{k}}}"
            assert "{%d}" % ARITY[p.kind] not in tmpl, f"{name}: {tmpl!r} uses a missing operand"
    else:
        assert p.triton is None, f"{name}: an expression template for a {p.kind} prim"
    if p.kind is P.Kind.REDUCE:
        assert p.reduce.keeps_shape or p.reduce.tl, f"{name}: no Triton reduction"
    if p.differentiable:
        assert re.fullmatch(r"[A-Z]\w*Backward\d", p.grad_name), \
            f"{name}: grad_name {p.grad_name!r} is not a PyTorch-style node name"
    else:
        assert p.vjp is None and not p.saves
    for s in p.saves:
        assert s == "out" or isinstance(s, int), f"{name}: bad saves entry {s!r}"


def test_a_record_without_a_field_is_caught():
    incomplete = P.Primitive("incomplete", P.Kind.UNARY, P.neg.meta, P.neg.impl)
    assert set(P.missing_fields(incomplete)) >= {"aten", "triton", "vjp"}


def test_every_prim_has_samples():
    missing = sorted(set(P.PRIMS) - set(SAMPLES))
    assert not missing, f"add samples for {missing} to SAMPLES in tests/test_prims.py"
    assert len(P.PRIMS) >= 25


def test_one_table():
    """Every Primitive object is the one registered under its name (no second rule)."""
    seen = {}
    for attr in dir(P):
        obj = getattr(P, attr)
        if isinstance(obj, P.Primitive):
            assert P.PRIMS[obj.name] is obj, f"primitives.{attr} is not PRIMS[{obj.name!r}]"
            seen[obj.name] = obj
    assert len(set(map(id, P.PRIMS.values()))) == len(P.PRIMS)


# --------------------------------------------------------------------------- vjp identity


def _wrap(x):
    return Tensor._make(x) if isinstance(x, torch.Tensor) else x


def _diff_positions(args):
    return [i for i, a in enumerate(args)
            if isinstance(a, torch.Tensor) and a.dtype.is_floating_point]


def _vjp_cases():
    out = []
    for name, p in P.PRIMS.items():
        if p.vjp is None:
            continue
        for i, (args, params) in enumerate(SAMPLES.get(name, [])):
            if _diff_positions(args):
                out.append(pytest.param(name, i, id=f"{name}-{i}"))
    return out


@pytest.mark.parametrize("name,idx", _vjp_cases())
def test_vjp_identity(name, idx):
    """<J u, v> == <u, J^T v>: J u by central differences of the impl, J^T v by the vjp."""
    p = P.PRIMS[name]
    args, params = SAMPLES[name][idx]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}{idx}".encode()))
    diff = _diff_positions(args)
    out = p.impl(*args, **params)
    u = {i: torch.randn(args[i].shape, generator=gen, dtype=torch.float64).to(args[i].dtype)
         for i in diff}
    v = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)

    eps = 1.0 if name in LINEAR else 1e-6

    def shifted(sign):
        return [a + sign * eps * u[i] if i in u else a for i, a in enumerate(args)]

    ju = (p.impl(*shifted(1), **params).double() - p.impl(*shifted(-1), **params).double()) \
        / (2 * eps)
    lhs = float((ju * v.double()).sum())

    ctx = _Ctx()
    ctx.inputs = [_wrap(a) for a in args]
    ctx.out = _wrap(out)
    ctx.params = params
    ctx.avals = [P.aval_of(a) for a in args]
    ctx.needs_input_grad = tuple(i in u for i in range(len(args)))
    with fusegrad.no_grad():
        grads = p.vjp(ctx, _wrap(v))
    assert len(grads) == len(args), \
        f"{name}: vjp returned {len(grads)} grads for {len(args)} inputs"
    rhs = 0.0
    for i, g in enumerate(grads):
        if i not in u:
            assert g is None or not isinstance(args[i], torch.Tensor) \
                or not args[i].dtype.is_floating_point, f"{name}: gradient for input {i}"
            continue
        assert g is not None, f"{name}: vjp gave no gradient for input {i}"
        assert tuple(g.shape) == tuple(args[i].shape), \
            f"{name}: gradient {i} has shape {list(g.shape)}, input {list(args[i].shape)}"
        assert g.dtype == args[i].dtype, f"{name}: gradient {i} is {g.dtype}, input {args[i].dtype}"
        rhs += float((u[i].double() * g._data.double()).sum())
    tol = 1e-5 if out.dtype == torch.float64 and all(
        args[i].dtype == torch.float64 for i in u) else 1e-4
    assert abs(lhs - rhs) <= tol * max(1.0, abs(lhs)), \
        f"{name} sample {idx}: <Ju, v> = {lhs} but <u, J^T v> = {rhs}"


def test_vjp_respects_needs_input_grad():
    """A vjp computes no gradient for inputs that do not need one."""
    args = (torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64))
    for name in ["mul", "div", "sub", "maximum", "minimum"]:
        p = P.PRIMS[name]
        ctx = _Ctx()
        ctx.inputs = [_wrap(a) for a in args]
        ctx.out = _wrap(p.impl(*args))
        ctx.params, ctx.avals = {}, [P.aval_of(a) for a in args]
        ctx.needs_input_grad = (True, False)
        with fusegrad.no_grad():
            ga, gb = p.vjp(ctx, _wrap(torch.ones(3, 4, dtype=torch.float64)))
        assert ga is not None and gb is None, name


# --------------------------------------------------------------------------- meta == impl


def _meta_cases():
    out = []
    for name, samples in SAMPLES.items():
        for i, (args, params) in enumerate(samples):
            out.append(pytest.param(name, args, params, id=f"{name}-{i}"))
    for i, (name, args, params) in enumerate(DTYPE_SAMPLES):
        out.append(pytest.param(name, args, params, id=f"{name}-dtype{i}"))
    return out


@pytest.mark.parametrize("name,args,params", _meta_cases())
def test_meta_matches_impl(name, args, params):
    p = P.PRIMS[name]
    got = p.meta(*args, **params)
    want = p.impl(*args, **params)
    assert isinstance(got, P.Aval), f"{name}: meta returned {type(got).__name__}"
    assert tuple(got.shape) == tuple(want.shape), \
        f"{name}{[P.fmt_operand(a) for a in args]} {params}: meta shape {list(got.shape)}, " \
        f"impl {list(want.shape)}"
    assert got.dtype == want.dtype, \
        f"{name}{[P.fmt_operand(a) for a in args]} {params}: meta dtype {got.dtype}, " \
        f"impl {want.dtype}"
    assert torch.device(got.device) == want.device


@pytest.mark.parametrize("name,args,params", [pytest.param(*b, id=i) for b, i in
                                              zip(BAD, _ids(BAD))])
def test_meta_rejects_bad_input(name, args, params):
    p = P.PRIMS[name]
    with pytest.raises(Exception) as want:
        p.impl(*args, **params)
    with pytest.raises(Exception) as got:
        p.meta(*args, **params)
    assert got.type is want.type, \
        f"{name}: meta raises {got.type.__name__} ({got.value}), impl {want.type.__name__}"
    assert name in str(got.value), f"{name}: message does not name the op: {got.value}"
