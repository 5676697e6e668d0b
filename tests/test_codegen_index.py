"""The index-expression algebra (fusegrad/_util/index.py) and the Triton codegen's
coordinates on it (compiler/backends/triton/index.py): folding, rendering with only the
parentheses Python needs, free symbols, masks derived from the coordinates an address
uses, and rendered text that evaluates, as Python, to the expression's value."""

import itertools
import random

import pytest
import torch

from fusegrad import primitives as P
from fusegrad._util import index as I
from fusegrad._util.index import Sym, cdiv, conj, eq, evaluate, free_symbols, ge, lt, render
from fusegrad.compiler.backends.triton import index as ix

x, y, z, B = Sym("x"), Sym("y"), Sym("z"), Sym("BLOCK")


# --------------------------------------------------------------------------- folding


@pytest.mark.parametrize("expr,want", [
    (x + 3 - 3, x),
    (2 + x + 5, x + 7),
    ((x + 1) + (y + 2), I.add(x, y, 3)),
    (x * 1, x),
    (x * 0, 0),
    (x * 2 * 3, x * 6),
    ((x + 2) * 3, x * 3 + 6),  # distributes, so address constants keep folding
    (x * 6 // 3, x * 2),
    (x // 2 // 3, x // 6),
    (x // 1, x),
    (x * 6 % 3, 0),
    (x % 6 % 3, x % 3),
    (x % 1, 0),
    (I.floordiv(7, 2), 3),
    (I.mod(-7, 3), 2),  # Python's modulo
    (cdiv(10, 4), 3),
    (cdiv(x, 1), x),
    (cdiv(0, B), I.Op("cdiv", (0, B))),
    (lt(2, 3), True),
    (ge(2, 3), False),
    (eq(x % 1, 0), True),
    (conj(True, lt(x, 3), True), lt(x, 3)),
    (conj(lt(x, 3), lt(x, 3)), lt(x, 3)),
    (conj(lt(x, 3), False), False),
    (conj(), True),
    # quotient and remainder add back up: the address of a regrouped reshape
    (x // 4 * 4 + x % 4, x),
    (x // 12 * 12 + x // 4 % 3 * 4 + x % 4, x),
    ((x * 4 + y) // 6 * 12 + (x * 4 + y) % 6 * 2 + 1, x * 8 + y * 2 + 1),
    (x % 4 + x // 4 * 3, I.add(x % 4, x // 4 * 3)),  # not a split: stays
])
def test_folding(expr, want):
    assert expr == want and hash(expr) == hash(want)


@pytest.mark.parametrize("a,m,c", [(1, 4, 1), (3, 5, 7), (2, 3, -2), (6, 2, 4)])
def test_rejoined_splits_keep_their_value(a, m, c):
    split = I.add(x // a % m * c, x // (a * m) * (m * c), y)
    assert split == I.add(x // a * c, y)
    for v in range(-40, 40):
        env = {"x": v, "y": 3}
        want = (v // a) % m * c + v // (a * m) * (m * c) + 3
        assert evaluate(split, env) == eval(render(split), {}, env) == want


def test_structural_equality_and_symbols():
    assert Sym("x") == x and hash(Sym("x")) == hash(x)
    assert x * 2 + y != y + x * 2  # terms keep their order: no canonical form is promised
    with pytest.raises(AssertionError):
        Sym("(a - 1)")  # text is never a symbol


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("expr,text", [
    (x + y * 3, "x + y * 3"),
    ((x + y) // 2, "(x + y) // 2"),
    (x // 4 % 3, "x // 4 % 3"),  # left-associative: no parentheses needed
    (x // (y * 2), "x // (y * 2)"),
    (x * (y // 2), "x * (y // 2)"),
    (x - 3, "x - 3"),
    (x - y * 2, "x - y * 2"),
    (x - (y + z), "x - y - z"),
    (-x + y, "-x + y"),
    (-(x // 2), "-(x // 2)"),
    (x * -2, "x * -2"),
    (cdiv(10, B), "(10 + BLOCK - 1) // BLOCK"),
    (x % cdiv(10, B), "x % ((10 + BLOCK - 1) // BLOCK)"),
    (x - cdiv(10, B), "x - (10 + BLOCK - 1) // BLOCK"),
    (lt(x + 1, 5), "x + 1 < 5"),
    (conj(lt(x, 5), Sym("m")), "(x < 5) & m"),
    (conj(eq((x - 2) % 3, 0), ge(x, 2)), "((x - 2) % 3 == 0) & (x >= 2)"),
    (lt(lt(x, y), z), "(x < y) < z"),  # comparisons would chain
])
def test_rendering_uses_only_the_parentheses_python_needs(expr, text):
    assert render(expr) == str(expr) == text


def test_render_as_an_operand():
    assert render(x + 1, I.MUL) == "(x + 1)" and render(x * 2, I.ADD + 1) == "x * 2"
    assert render(-3, I.MUL) == "-3" and render(True) == "True"


# --------------------------------------------------------------------------- reading


def test_free_symbols():
    e = conj(lt(x * 3 + y // 2, cdiv(z, B)), True)
    assert free_symbols(e) == {x, y, z, B}
    assert free_symbols(7) == frozenset() and free_symbols(x * 0) == frozenset()
    arange = ix.Arange(B, 0)
    assert free_symbols(x + arange) == {x, B} and str(x + arange) == \
        "x + tl.arange(0, BLOCK)[:, None]"


def _random_pair(rng, env, depth):
    """A random expression built through the folding constructors, with its value
    computed on Python ints along the same steps."""
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.6:
            s = rng.choice(["x", "y", "z"])
            return Sym(s), env[s]
        k = rng.randint(-5, 9)
        return k, k
    (a, va), (b, vb) = _random_pair(rng, env, depth - 1), _random_pair(rng, env, depth - 1)
    op = rng.choice(["add", "sub", "mul", "floordiv", "mod", "cdiv", "neg"])
    if op in ("floordiv", "mod", "cdiv"):  # divisors are positive, as block sizes are
        if rng.random() < 0.5:
            b, vb = B, env["BLOCK"]
        else:
            k = rng.randint(1, 6)
            b, vb = k, k
    fold = {"add": lambda: (I.add(a, b), va + vb), "sub": lambda: (I.sub(a, b), va - vb),
            "mul": lambda: (I.mul(a, b), va * vb),
            "floordiv": lambda: (I.floordiv(a, b), va // vb),
            "mod": lambda: (I.mod(a, b), va % vb),
            "cdiv": lambda: (cdiv(a, b), (va + vb - 1) // vb),
            "neg": lambda: (I.mul(a, -1), -va)}
    return fold[op]()


def test_rendered_source_evaluates_to_the_expressions_value():
    rng = random.Random(0)
    for _ in range(3000):
        env = {"x": rng.randint(-20, 40), "y": rng.randint(0, 40), "z": rng.randint(0, 9),
               "BLOCK": rng.choice([1, 2, 16, 64])}
        e, want = _random_pair(rng, env, 4)
        assert evaluate(e, env) == want, e
        assert eval(render(e), {}, dict(env)) == want, (render(e), env)
        (c, vc), (d, vd) = _random_pair(rng, env, 2), _random_pair(rng, env, 2)
        m = conj(lt(e, c), ge(c, d), eq(d, 3))
        want_m = (want < vc) & (vc >= vd) & (vd == 3)
        assert evaluate(m, env) == want_m and eval(render(m), {}, dict(env)) == want_m


# --------------------------------------------------------------------------- coordinates


def test_masks_come_from_the_coordinates_an_address_uses():
    m0, m1 = Sym("mask0"), Sym("mask1")
    i0, i1 = ix.Coord("ix0", 0, m0), ix.Coord("ix1", 1, m1)
    ka = ix.Coord("ka", "k", lt(Sym("ka"), 256))
    batch = ix.Coord("ix2", None)  # from the program id: always in range
    assert ix.mask_of(i1 * 7 + i0) == conj(m0, m1)  # rows before columns
    assert render(ix.mask_of(i0 * 256 + ka)) == "mask0 & (ka < 256)"
    assert ix.mask_of(batch * 12 + i1) == m1
    assert ix.mask_of(i0 * 0 + 5) is True
    assert ix.mask_arg(True) == "" and ix.mask_arg(m1, other="0") == ", mask=mask1, other=0"
    assert ix.pointer("p", 0, "zero") == "p + zero" and ix.pointer("p", 3, "zero") == \
        "p + zero + 3"
    assert ix.pointer("p", i0 * 4 + i1, "zero") == "p + (ix0 * 4 + ix1)"  # one addptr
    assert ix.pointer("p", i0 * 4, "zero") == "p + ix0 * 4"


# --------------------------------------------------------------------------- view rules

VIEWS = [
    (P.permute, (2, 3, 4), {"dims": (2, 0, 1)}, lambda t, p: t.permute(p["dims"])),
    (P.expand, (3, 1), {"shape": (2, 3, 5)}, lambda t, p: t.expand(p["shape"])),
    (P.reshape, (4, 6), {"shape": (2, 12)}, lambda t, p: t.reshape(p["shape"])),
    (P.reshape, (4, 1, 6), {"shape": (4, 6, 1)}, lambda t, p: t.reshape(p["shape"])),
    (P.slice_, (5, 7), {"dim": 1, "start": 1, "stop": 6, "step": 2},
     lambda t, p: t[:, p["start"]:p["stop"]:p["step"]]),
    (P.select, (3, 4), {"dim": 0, "index": -1}, lambda t, p: t.select(0, p["index"])),
]


@pytest.mark.parametrize("prim,shape,params,torch_fn", VIEWS,
                         ids=[f"{v[0].name}-{i}" for i, v in enumerate(VIEWS)])
def test_view_rules_map_each_element_back_to_its_base(prim, shape, params, torch_fn):
    base = torch.arange(int(torch.tensor(shape).prod())).reshape(shape)
    view = torch_fn(base, params)
    syms = [Sym(f"c{j}") for j in range(view.dim())]
    offset = I.linear(prim.view.back(tuple(shape), tuple(view.shape), params, syms), shape)
    for at in itertools.product(*(range(s) for s in view.shape)):
        env = {s.name: v for s, v in zip(syms, at)}
        assert evaluate(offset, env) == eval(render(offset), {}, env) == int(view[at])
