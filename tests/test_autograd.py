"""fusegrad's autograd against real PyTorch: the same code runs on both libraries.

Each scenario is a function ``scenario(T, rec)`` written once against a library module
``T`` (``torch`` or ``fusegrad``).  It records what a user can observe with
``rec(label, value)`` (tensors, grads, flags, grad_fn names, node structure) and errors with
``rec.raises(label, fn, *phrases)`` (exception type plus key phrases of torch's message).
``both(scenario)`` runs it on each library and compares the two records item by item.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest
import torch

import fusegrad

# --------------------------------------------------------------------------- harness


class Recorder:
    def __init__(self, lib):
        self.lib = lib
        self.items = []

    def __call__(self, label, value):
        self.items.append((label, observe(value)))
        return value

    def raises(self, label, fn, *phrases):
        """Run ``fn``; record the exception type; every phrase must be in its message."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = fn()
        except Exception as e:  # noqa: BLE001 (the type is what gets compared)
            msg = str(e)
            missing = [p for p in phrases if p not in msg]
            assert not missing, f"{self.lib.__name__}: {label}: {missing} not in message: {msg}"
            self.items.append((label, ("raises", type(e).__name__)))
            return e
        self.items.append((label, ("no error", observe(out))))
        return None

    def warns(self, label, fn):
        """Run ``fn``; record the categories of the warnings it emits."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
        self.items.append((label, sorted({w.category.__name__ for w in caught})))


def _is_tensor(v):
    return isinstance(v, (torch.Tensor, fusegrad.Tensor))


def node_name(n):
    return None if n is None else type(n).__name__


def observe(v):
    """A library-independent description of ``v``."""
    if _is_tensor(v):
        d = v._data if isinstance(v, fusegrad.Tensor) else v.detach()
        vals = d.double().tolist() if d.dtype.is_floating_point else d.tolist()
        return ("tensor", str(d.dtype), tuple(d.shape), vals, v.requires_grad)
    if isinstance(v, (list, tuple)):
        return tuple(observe(x) for x in v)
    if isinstance(v, dict):
        return {k: observe(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (torch.dtype, torch.Size, torch.device)):
        return str(v)
    if hasattr(v, "next_functions") or type(v).__name__ == "AccumulateGrad":
        return ("node", node_name(v))
    raise TypeError(f"cannot observe {type(v).__name__}")


def close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (a != a and b != b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def both(scenario):
    want, got = Recorder(torch), Recorder(fusegrad)
    scenario(torch, want)
    scenario(fusegrad, got)
    assert want.items, "scenario recorded nothing"
    for k, ((wl, wv), (gl, gv)) in enumerate(zip(want.items, got.items)):
        assert wl == gl, f"records out of step at item {k}: {wl!r} vs {gl!r}"
        assert close(wv, gv), f"{scenario.__name__}: {wl}:\n  torch:    {wv}\n  fusegrad: {gv}"
    assert len(got.items) == len(want.items), (
        f"{scenario.__name__}: torch recorded {len(want.items)} items, fusegrad "
        f"{len(got.items)}")


def quiet(fn):
    """``fn()`` with warnings silenced (a non-leaf's ``.grad`` warns in both libraries)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def structure(node, depth=6):
    """grad_fn graph as nested (name, output_nr, children) tuples."""
    if node is None or depth == 0:
        return None
    return (node_name(node), tuple(
        (nr, structure(n, depth - 1)) for n, nr in node.next_functions))


def src(T, *rows, rg=True, dtype=None):
    return T.tensor(list(rows) if len(rows) > 1 else rows[0], requires_grad=rg,
                    dtype=dtype or T.float64)


# --------------------------------------------------------------------------- graph structure


def test_grad_fn_names_and_structure():
    def scenario(T, rec):
        x = T.ones(5)
        y = T.zeros(3)
        w = src(T, [[0.1, -0.2, 0.3]] * 5, dtype=T.float32)
        b = src(T, [0.5, -0.5, 0.1], dtype=T.float32)
        z = T.matmul(x, w) + b
        loss = T.nn.functional.binary_cross_entropy_with_logits(z, y)
        rec("z.grad_fn", z.grad_fn)
        rec("loss.grad_fn", loss.grad_fn)
        rec("loss structure", structure(loss.grad_fn))
        rec("z structure", structure(z.grad_fn))
        acc = z.grad_fn.next_functions[1][0]
        rec("AccumulateGrad type", type(acc).__name__)
        rec("AccumulateGrad.variable is b", acc.variable is b)
        rec("AccumulateGrad name()", acc.name())
        rec("grad_fn name()", z.grad_fn.name())
        rec("same AccumulateGrad for a leaf", acc is (b * 2).grad_fn.next_functions[0][0])
        rec("repr(z)", "grad_fn=<AddBackward0>" in repr(z))
        a = src(T, [1.0, 2.0])
        out = (a * 2 - 1).exp().sum() / 3 + a.pow(2).mean()
        rec("chain structure", structure(out.grad_fn))
        rec("scalar operand edge", structure((a * 3).grad_fn))
        rec("reflected", structure((3 - a).grad_fn))
        rec("tensor-scalar pow", structure((a ** 2).grad_fn))
        rec("scalar-tensor pow", structure((2 ** a).grad_fn))
        m = src(T, [[1.0, 2.0], [3.0, 4.0]])
        rec("view chain", structure(m.t().reshape(4)[1:].unsqueeze(0).grad_fn))
        rec("getitem", structure(m[0, 1].grad_fn))
        rec("no grad needed", (T.ones(2) * 2).grad_fn)
        rec("one input needs grad", structure((T.ones(2) * a).grad_fn))
        rec("where", [structure(T.where(a > 1, a, T.ones(2, dtype=T.float64)).grad_fn),
                      structure(T.where(a > 1, 0.0, a).grad_fn)])
        rec("int operand", structure((a * T.tensor([1, 2])).grad_fn))
        rec("cat/stack", [structure(T.cat([a, T.ones(2, dtype=T.float64)]).grad_fn),
                          structure(T.stack([T.ones(2, dtype=T.float64), a]).grad_fn)])
        F = T.nn.functional
        w1, b1 = src(T, [[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]), src(T, [0.1, -0.1, 0.2])
        w2 = src(T, [[0.3, -0.2, 0.1], [0.2, 0.1, -0.3]])
        xb = T.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=T.float64)
        logits = F.linear(F.relu(F.linear(xb, w1, b1)), w2)
        ce = F.cross_entropy(logits, T.tensor([0, 1]))
        rec("mlp + cross_entropy", structure(ce.grad_fn, depth=8))
        rec("mse_loss", structure(F.mse_loss(logits, T.zeros(2, 2, dtype=T.float64)).grad_fn))
        rec("softmax/logsumexp/norm", [structure(f(logits).grad_fn) for f in (
            lambda t: T.softmax(t, 1), lambda t: T.log_softmax(t, 1),
            lambda t: T.logsumexp(t, 1), lambda t: t.norm(), lambda t: t.mean(0),
            lambda t: t.max(), lambda t: t.max(1).values, lambda t: t.sum(1, keepdim=True))])

    both(scenario)


def test_is_leaf():
    def scenario(T, rec):
        a = T.ones(2)
        b = T.ones(2, requires_grad=True)
        c = b * 2
        rec("plain", (a.is_leaf, a.requires_grad))
        rec("requires_grad leaf", (b.is_leaf, b.requires_grad))
        rec("non-leaf", (c.is_leaf, c.requires_grad))
        rec("detached", (c.detach().is_leaf, c.detach().requires_grad))
        with T.no_grad():
            d = b * 2
        rec("made under no_grad", (d.is_leaf, d.requires_grad, d.grad_fn))
        e = a * 2
        rec("from non-requiring", (e.is_leaf, e.requires_grad))
        f = T.ones(2).requires_grad_()
        rec("requires_grad_", (f.is_leaf, f.requires_grad))
        rec("factory requires_grad", T.zeros(2, requires_grad=True).is_leaf)
        rec("int out of float", (b.argmax().is_leaf, b.argmax().requires_grad))
        rec("comparison", ((b > 0).is_leaf, (b > 0).requires_grad))
        rec("grad of leaf before backward", b.grad)

    both(scenario)


# --------------------------------------------------------------------------- backward


def test_backward_order_sharing_and_broadcast():
    def scenario(T, rec):
        order = []
        x = src(T, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        b = src(T, [0.5, -1.0, 2.0])
        s = src(T, 1.5)
        y = x * b  # broadcast b over rows
        y.register_hook(lambda g: order.append("y"))
        z = y + y * x + s  # y used twice, s broadcast from 0-d
        z.register_hook(lambda g: order.append("z"))
        w = z.sin() + y.exp() / 10
        w.register_hook(lambda g: order.append("w"))
        u = w.sum(0, keepdim=True) * b + x[:1]
        u.register_hook(lambda g: order.append("u"))
        u.sum().backward()
        rec("x.grad", x.grad)
        rec("b.grad", b.grad)
        rec("s.grad", s.grad)
        rec("hook order", order)
        # a diamond: x feeds two branches that meet again
        p = src(T, [1.0, 2.0])
        q = p * 3
        r = q.exp() * q.sin()
        r.sum().backward()
        rec("diamond", p.grad)
        # broadcasting of both operands and of a size-1 dim
        m = src(T, [[1.0], [2.0]])
        n = src(T, [[1.0, 2.0, 3.0]])
        (m * n + m / n).sum().backward()
        rec("m.grad", m.grad)
        rec("n.grad", n.grad)
        # gradients accumulate across backward calls
        k = src(T, [1.0, 2.0])
        (k * k).sum().backward()
        (k * 3).sum().backward()
        rec("accumulated", k.grad)

    both(scenario)


def test_saved_tensors_freed_and_retain_graph():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0, 3.0])
        y = (x.exp() * x).sum()
        y.backward()
        rec("first", x.grad)
        rec.raises("second backward", lambda: y.backward(),
                   "Trying to backward through the graph a second time",
                   "retain_graph=True")
        x2 = src(T, [1.0, 2.0])
        y2 = (x2.sin() * x2).sum()
        y2.backward(retain_graph=True)
        y2.backward()
        rec("retained twice", x2.grad)
        rec.raises("third after retain", lambda: y2.backward(), "second time")
        # ops that save no tensors can run backward again (PyTorch frees only saved tensors)
        x3 = src(T, [1.0, 2.0])
        y3 = (x3 + 1).sum()
        y3.backward()
        rec.raises("no saved tensors: second backward", lambda: y3.backward())
        rec("grad after two", x3.grad)
        x4 = src(T, [1.0, 2.0])
        y4 = x4.mean()
        y4.backward()
        rec.raises("mean: second backward", lambda: y4.backward())
        # autograd.grad frees too
        x5 = src(T, [1.0, 2.0])
        y5 = (x5 * x5).sum()
        rec("grad", T.autograd.grad(y5, x5))
        rec.raises("grad twice", lambda: T.autograd.grad(y5, x5), "second time")

    both(scenario)


def test_gradient_argument_for_non_scalar_outputs():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0, 3.0])
        y = x * x
        rec.raises("missing gradient", lambda: y.backward(),
                   "grad can be implicitly created only for scalar outputs")
        y.backward(T.tensor([1.0, 0.1, 0.01], dtype=T.float64))
        rec("with gradient", x.grad)
        z = x.exp()
        rec.raises("wrong gradient shape", lambda: z.backward(T.ones(2, dtype=T.float64)),
                   "Mismatch in shape")
        w = src(T, [[1.0, 2.0], [3.0, 4.0]])
        (w * 2).backward(gradient=T.ones(2, 2, dtype=T.float64))
        rec("2-D gradient", w.grad)
        n = src(T, 2.0)
        (n * 3).backward()
        rec("0-d implicit", n.grad)
        o = src(T, [2.0])
        (o * 3).backward()
        rec("one element implicit", o.grad)
        rec.raises("no grad_fn", lambda: T.ones(2).sum().backward(),
                   "element 0 of tensors does not require grad and does not have a grad_fn")

    both(scenario)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_higher_order_gradients():
    def scenario(T, rec):
        x = src(T, [0.5, 1.0, 2.0])
        y = (x.sin() * x.exp()).sum()
        (g1,) = T.autograd.grad(y, x, create_graph=True)
        rec("g1", g1)
        rec("g1 grad_fn", g1.grad_fn is not None)
        (g2,) = T.autograd.grad(g1.sum(), x, create_graph=True)
        rec("g2", g2)
        (g3,) = T.autograd.grad(g2.sum(), x)
        rec("g3", g3)
        p = src(T, [1.5, 2.0])
        q = (p ** 3 * p.cos() + p.pow(p)).sum()
        (d1,) = T.autograd.grad(q, p, create_graph=True)
        (d2,) = T.autograd.grad(d1.sum(), p, create_graph=True)
        (d3,) = T.autograd.grad(d2.sum(), p)
        rec("pow chain", (d1, d2, d3))
        # backward(create_graph=True) leaves a differentiable .grad
        a = src(T, [1.0, 2.0])
        (a * a * a).sum().backward(create_graph=True)
        rec("a.grad", a.grad)
        rec("a.grad requires grad", a.grad.requires_grad)
        ga = a.grad
        a.grad = None
        ga.sum().backward()
        rec("second derivative via .grad", a.grad)
        # mixed partials
        u = src(T, 2.0)
        v = src(T, 3.0)
        f = u * u * v + (u * v).exp()
        (fu,) = T.autograd.grad(f, u, create_graph=True)
        (fuv,) = T.autograd.grad(fu, v)
        rec("mixed partial", fuv)
        # tanh/sigmoid/softmax/log_softmax second derivatives
        s = src(T, [0.3, -0.2, 0.9])
        h = (s.tanh() * s.sigmoid()).sum() + T.log_softmax(s, 0)[0] + T.softmax(s, 0)[1]
        (h1,) = T.autograd.grad(h, s, create_graph=True)
        (h2,) = T.autograd.grad(h1.sum(), s)
        rec("tanh/sigmoid/softmax", (h1, h2))
        # third order through composites (losses, logsumexp, norm, stack, linear, max)
        F = T.nn.functional
        z = src(T, [[0.3, -0.2, 0.9], [0.1, 0.5, -0.4]])
        w = src(T, [[0.5, -1.0], [0.2, 0.3], [1.0, 0.1]])
        loss = (F.cross_entropy(z @ w, T.tensor([0, 1])) + F.mse_loss(z, z * z)
                + F.binary_cross_entropy_with_logits(z, T.ones(2, 3, dtype=T.float64))
                + T.logsumexp(z, 1).sum() + z.norm() + T.stack([z, z]).mean()
                + F.linear(z, w.t(), w[0]).max())
        (gz,) = T.autograd.grad(loss, z, create_graph=True)
        (gw,) = T.autograd.grad(gz.sum(), w, create_graph=True)
        (gzz,) = T.autograd.grad((gw * gw).sum(), z)
        rec("composites to third order", (gz, gw, gzz))

    both(scenario)


def test_backward_inputs():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        w = src(T, [3.0, 4.0])
        z = (x * w).sum()
        z.backward(inputs=[x], retain_graph=True)
        rec("x only", (x.grad, w.grad))
        z.backward(inputs=w)
        rec("then w", (x.grad, w.grad))
        a = src(T, [1.0, 2.0])
        y = a * 2
        out = (y * y).sum()
        out.backward(inputs=[y])
        rec.warns("non-leaf .grad still warns", lambda: y.grad)
        rec("non-leaf input", y.retains_grad or quiet(lambda: y.grad))
        rec("leaf untouched", a.grad)
        rec.raises("empty inputs", lambda: (a * 2).sum().backward(inputs=[]), "empty")
        b = src(T, [1.0, 2.0])
        c = b.exp()
        d = (c * b).sum()
        T.autograd.backward(d, inputs=[c, b])
        rec("leaf and non-leaf", (b.grad, quiet(lambda: c.grad)))

    both(scenario)


def test_autograd_backward_and_grad():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0, 3.0])
        y1 = x * 2
        y2 = x.exp()
        T.autograd.backward([y1, y2], [T.ones(3, dtype=T.float64),
                                       T.tensor([1.0, 0.0, 2.0], dtype=T.float64)])
        rec("backward two roots", x.grad)
        a = src(T, [1.0, 2.0])
        b = src(T, [3.0, 4.0])
        out = (a * b).sum()
        ga, gb = T.autograd.grad(out, [a, b], retain_graph=True)
        rec("grad", (ga, gb))
        rec("grad leaves .grad", (a.grad, b.grad))
        rec("grad_outputs", T.autograd.grad(a * b, a, grad_outputs=T.tensor(
            [1.0, -1.0], dtype=T.float64)))
        unused = src(T, [1.0])
        rec.raises("unused", lambda: T.autograd.grad((a * 2).sum(), [a, unused]),
                   "appears to not have been used in the graph", "allow_unused=True")
        rec("allow_unused", T.autograd.grad((a * 2).sum(), [a, unused], allow_unused=True))
        rec("materialize_grads", T.autograd.grad((a * 2).sum(), [a, unused],
                                                 materialize_grads=True))
        rec.raises("input without grad", lambda: T.autograd.grad((a * 2).sum(), T.ones(2)),
                   "does not require grad")
        o = (a * a).sum()
        T.autograd.grad(o, a, retain_graph=True)
        rec("retain_graph", T.autograd.grad(o, a))
        rec.raises("grad non-scalar", lambda: T.autograd.grad(a * 2, a),
                   "grad can be implicitly created only for scalar outputs")
        m = src(T, [1.0, 2.0])
        n = m * m
        rec("grad wrt non-leaf", T.autograd.grad((n * 3).sum(), n))
        rec("grad results detached", T.autograd.grad((m * m).sum(), m)[0].requires_grad)
        p = src(T, [1.0, 2.0])
        rec("two outputs", T.autograd.grad([p.sum(), (p * p).sum()], p))

    both(scenario)


def test_retain_grad():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        y = x * 3
        y.retain_grad()
        rec("retains_grad", (y.retains_grad, x.retains_grad))
        z = y * y
        z.sum().backward()
        rec("y.grad", y.grad)
        rec("x.grad", x.grad)
        x.retain_grad()  # no-op on a leaf
        rec("leaf retains_grad", x.retains_grad)
        a = src(T, [1.0, 2.0])
        b = a.exp()
        rec.warns("non-leaf .grad access warns", lambda: b.grad)
        rec.warns("retained .grad access does not", lambda: y.grad)
        rec.raises("retain_grad without grad", lambda: T.ones(2).retain_grad(),
                   "can't retain_grad on Tensor that has requires_grad=False")
        # retained gradients accumulate over backward calls; a hook runs first
        c = src(T, [1.0, 2.0])
        d = c * 2
        d.retain_grad()
        d.register_hook(lambda g: g * 10)
        (d * d).sum().backward(retain_graph=True)
        rec("hooked retained", d.grad)
        rec("through hook", c.grad)
        first = d.grad
        (d * d).sum().backward()
        rec("retained grads accumulate out of place", (d.grad, first, first is d.grad))
        e = src(T, [1.0, 2.0])
        f = e * 3
        (f * f).sum().backward(inputs=[f])
        rec("inputs=[non-leaf] retains", (f.retains_grad, f.grad))

    both(scenario)


def test_register_hook():
    def scenario(T, rec):
        seen = []
        x = src(T, [1.0, 2.0])
        h = x.register_hook(lambda g: seen.append(("leaf", g.tolist())))
        y = x * 2
        y.register_hook(lambda g: seen.append(("y", g.tolist())))
        y.register_hook(lambda g: g * 3)  # modifies what flows on
        y.register_hook(lambda g: seen.append(("y after", g.tolist())))
        (y * y).sum().backward()
        rec("seen", seen)
        rec("x.grad", x.grad)
        h.remove()
        seen.clear()
        x.grad = None
        (x * 5).sum().backward()
        rec("after remove", seen)
        a = src(T, [1.0, 2.0])
        a.register_hook(lambda g: g * 0 + 7)  # a leaf hook changes what accumulates
        (a * a).sum().backward()
        rec("leaf modified", a.grad)
        rec.raises("hook on non-requiring", lambda: T.ones(2).register_hook(lambda g: g),
                   "cannot register a hook on a tensor that doesn't require gradient")
        order = []
        b = src(T, [1.0])
        for i in range(3):
            b.register_hook(lambda g, i=i: order.append(i))
        (b * 2).sum().backward()
        rec("order", order)
        c = src(T, [1.0, 2.0])
        d = c * 2
        handle = d.register_hook(lambda g: g * 100)
        handle.remove()
        d.sum().backward()
        rec("removed non-leaf hook", c.grad)
        # Node hooks
        e = src(T, [1.0, 2.0])
        f = e * 3
        calls = []
        f.grad_fn.register_hook(lambda gi, go: calls.append((len(gi), len(go))))
        f.grad_fn.register_prehook(lambda go: calls.append("pre"))
        f.sum().backward()
        rec("node hooks", calls)

    both(scenario)


def test_post_accumulate_grad_hook():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        seen = []
        x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
        (x * 3).sum().backward()
        (x * 3).sum().backward()
        rec("seen", seen)

    both(scenario)


# --------------------------------------------------------------------------- grad modes


def test_grad_modes():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        with T.no_grad():
            rec("no_grad", ((x * 2).requires_grad, T.is_grad_enabled()))
            with T.enable_grad():
                rec("enable_grad inside", ((x * 2).requires_grad, T.is_grad_enabled()))
            rec("restored", T.is_grad_enabled())
        rec("after", T.is_grad_enabled())

        @T.no_grad()
        def f(t):
            return t * 2

        rec("decorator", (f(x).requires_grad, T.is_grad_enabled()))

        @T.enable_grad()
        def g(t):
            return t * 2

        with T.no_grad():
            rec("enable_grad decorator", g(x).requires_grad)
        T.set_grad_enabled(False)
        rec("set_grad_enabled(False) call", ((x * 2).requires_grad, T.is_grad_enabled()))
        T.set_grad_enabled(True)
        rec("set_grad_enabled(True) call", (x * 2).requires_grad)
        with T.set_grad_enabled(False):
            rec("set_grad_enabled context", (x * 2).requires_grad)
        rec("set_grad_enabled restored", T.is_grad_enabled())

        @T.set_grad_enabled(False)
        def h(t):
            return t * 2

        rec("set_grad_enabled decorator", (h(x).requires_grad, T.is_grad_enabled()))
        with T.no_grad():
            y = x * 2
            x.mul_(1)  # a leaf that requires grad may change in place under no_grad
        rec("no_grad result and in-place on a leaf", (y.requires_grad, x.is_leaf, x._version))
        try:
            with T.no_grad():
                raise KeyError("boom")
        except KeyError:
            pass
        rec("restored after exception", T.is_grad_enabled())

    both(scenario)


def test_grad_mode_is_thread_local():
    def scenario(T, rec):
        x = src(T, [1.0])
        out = {}

        def worker():
            out["worker enabled"] = T.is_grad_enabled()
            with T.no_grad():
                barrier.wait()  # main checks its mode while this thread is in no_grad
                barrier.wait()
            out["worker after"] = T.is_grad_enabled()

        barrier = threading.Barrier(2)
        t = threading.Thread(target=worker)
        t.start()
        barrier.wait()
        rec("main while worker in no_grad", ((x * 2).requires_grad, T.is_grad_enabled()))
        barrier.wait()
        t.join()
        rec("worker", out)
        with T.no_grad():
            res = {}
            t2 = threading.Thread(target=lambda: res.setdefault("e", T.is_grad_enabled()))
            t2.start()
            t2.join()
            rec("new thread under main's no_grad", res["e"])

    both(scenario)


def test_inference_mode():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        with T.inference_mode():
            y = x * 2
            rec("inside", (y.requires_grad, y.is_inference(), T.is_grad_enabled()))
            z = T.ones(2)
            rec("factory", z.is_inference())
        rec("after", (T.is_grad_enabled(), x.is_inference()))
        rec.raises("save inference tensor", lambda: (x * y).sum().backward(),
                   "Inference tensors cannot be saved for backward")
        rec.raises("in-place outside", lambda: y.add_(1),
                   "Inplace update to inference tensor outside InferenceMode is not allowed")
        rec.raises("version counter", lambda: y._version, "Inference tensors do not track")
        rec("use without saving", (x + y).requires_grad)

        @T.inference_mode()
        def f(t):
            return t * 2

        rec("decorator", (f(x).requires_grad, f(x).is_inference()))
        with T.inference_mode(False):
            rec("inference_mode(False)", (x * 2).requires_grad)

    both(scenario)


# --------------------------------------------------------------------------- detach & flags


def test_detach_and_requires_grad():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        y = x * 2
        d = y.detach()
        rec("detach", (d.requires_grad, d.is_leaf, d.grad_fn))
        d.add_(1)  # shares storage and version counter with y
        rec("y after detached add_", y)
        rec("versions", (y._version, d._version))
        y.detach_()
        rec("detach_", (y.requires_grad, y.is_leaf, y.grad_fn))
        z = x * 3
        rec.raises("requires_grad_(False) on non-leaf", lambda: z.requires_grad_(False),
                   "you can only change requires_grad flags of leaf variables")
        rec.raises("int requires_grad_", lambda: T.ones(2, dtype=T.int64).requires_grad_(),
                   "only Tensors of floating point dtype can require gradients")
        rec.raises("int requires_grad=True", lambda: T.tensor([1, 2], requires_grad=True),
                   "Only Tensors of floating point and complex dtype can require gradients")
        rec.raises("int zeros(requires_grad=True)",
                   lambda: T.zeros(2, dtype=T.int64, requires_grad=True),
                   "Only Tensors of floating point and complex dtype can require gradients")

        def set_attr():
            T.ones(2, dtype=T.int64).requires_grad = True

        rec.raises("int .requires_grad = True", set_attr,
                   "only Tensors of floating point and complex dtype can require gradients")
        w = T.ones(2)
        w.requires_grad = True
        rec("attribute set", (w.requires_grad, w.is_leaf))
        w.requires_grad_(False)
        rec("unset", w.requires_grad)
        rec.raises("numpy of requires_grad", lambda: x.numpy(),
                   "Can't call numpy() on Tensor that requires grad")
        rec("detach().numpy()", x.detach().numpy().tolist())
        rec("item", (x * 2).sum().item())
        rec("tolist", (x * 2).tolist())
        v = x[0:1]
        rec("view of leaf", (v.is_leaf, v.requires_grad))
        rec.raises("detach_ on view", lambda: v.detach_(), "Can't detach views in-place")

    both(scenario)


# --------------------------------------------------------------------------- in-place


def test_inplace_errors():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0, 3.0])
        rec.raises("leaf add_", lambda: x.add_(1),
                   "a leaf Variable that requires grad is being used in an in-place operation.")
        rec.raises("leaf mul_", lambda: x.mul_(2), "a leaf Variable that requires grad")
        rec.raises("leaf +=", lambda: x.__iadd__(1), "a leaf Variable that requires grad")
        rec.raises("leaf zero_", lambda: x.zero_(), "a leaf Variable that requires grad")
        with T.no_grad():
            x.add_(1)
        rec("no_grad in-place on leaf", (x, x._version, x.requires_grad))
        y = x.exp()
        y.add_(1)
        rec.raises("saved output modified", lambda: y.sum().backward(),
                   "one of the variables needed for gradient computation has been modified by "
                   "an inplace operation", "is at version 1; expected version 0 instead")
        a = src(T, [1.0, 2.0])
        b = a * 1
        c = b * b
        b.mul_(2)
        rec.raises("saved input modified", lambda: c.sum().backward(),
                   "modified by an inplace operation", "expected version 0 instead")
        for name, f in [("softmax", lambda t: T.softmax(t, 0)), ("logsumexp",
                        lambda t: T.logsumexp(t, 0)), ("norm", lambda t: t.norm()),
                        ("mean", lambda t: t.mean()), ("mse_loss", lambda t:
                        T.nn.functional.mse_loss(t, T.zeros(3, dtype=T.float64)))]:
            out = f(x)
            with T.no_grad():
                out.mul_(2)  # PyTorch raises where the node saved its result
            rec.raises(f"{name} result modified under no_grad", lambda: out.sum().backward())
        p = src(T, [1.0, 2.0])
        q = p.sin()
        q2 = q * 2
        q.add_(1)  # q is saved by nothing that q2 needs: fine
        q2.sum().backward()
        rec("unsaved modified is fine", p.grad)

    both(scenario)


def test_inplace_on_non_leaf_keeps_autograd_right():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0, 3.0])
        y = x * 2
        y.add_(1)
        rec("grad_fn after add_", y.grad_fn)
        y.sum().backward()
        rec("x.grad", x.grad)
        a = src(T, [0.5, 1.5])
        b = a * 1
        b.sub_(a, alpha=2)
        b.div_(3)
        b.mul_(a)  # saves b as it was before the write
        b.pow_(2)
        b.exp_()  # saves its output, which nothing modifies afterwards
        b.sum().backward()
        rec("chain", a.grad)
        c = src(T, [1.0, -2.0])
        d = c + 0
        d += c * 2
        d *= 3
        d -= 1
        d /= 2
        d.relu_()
        d.sum().backward()
        rec("operators", c.grad)
        e = src(T, [1.0, 2.0])
        f = T.zeros(2, dtype=T.float64)
        f.add_(e)  # a tensor without history picks one up
        rec("gains history", (f.requires_grad, f.grad_fn, f.is_leaf))
        (f * f).sum().backward()
        rec("e.grad", e.grad)
        g = src(T, [1.0, 2.0])
        h = g * 2
        h.copy_(g * 5)
        h.sum().backward()
        rec("copy_", g.grad)
        k = src(T, [1.0, 2.0])
        m = k * 2
        m.zero_()
        (m + k).sum().backward()
        rec("zero_", (k.grad, m))
        n = src(T, [1.0, 2.0])
        o = n * 2
        o.fill_(3.0)
        (o * n).sum().backward()
        rec("fill_", n.grad)
        u = src(T, [1.0, 2.0])
        for name, write in [("zero_", lambda t: t.zero_()), ("fill_", lambda t: t.fill_(3.0)),
                            ("copy_", lambda t: t.copy_(T.ones(2, dtype=T.float64))),
                            ("fill_ tensor", lambda t: t.fill_(u.sum())),
                            ("copy_ tracked", lambda t: t.copy_(u * 3))]:
            u.grad = None
            v = u * 2
            write(v)
            rec(f"{name}: type of grad_fn", (type(v.grad_fn).__name__, v.requires_grad,
                                             v._version))
            (v * u).sum().backward()
            rec(f"{name}: grad", u.grad)
            plain = T.zeros(2, dtype=T.float64)
            write(plain)
            rec(f"{name} into a plain tensor", (plain.requires_grad, plain))
        r = src(T, [0.2, 0.4])
        s = r * 1
        s.clamp_(min=0.3)
        s.sigmoid_()
        s.sum().backward()
        rec("unary in-place", r.grad)
        t = r * 1
        t.tanh_()
        t.relu_()  # modifies the output tanh_ saved
        rec.raises("in-place over a saved output", lambda: t.sum().backward(),
                   "modified by an inplace operation", "which is output 0 of Tanh,",
                   "is at version 2; expected version 1 instead")

    both(scenario)


def test_version_counter():
    def scenario(T, rec):
        x = T.ones(3)
        rec("new", x._version)
        x.add_(1)
        x.mul_(2)
        rec("two in-place", x._version)
        x += 1
        rec("+=", x._version)
        x.zero_()
        x.fill_(2.0)
        x.copy_(T.ones(3))
        rec("zero_ fill_ copy_", x._version)
        v = x[1:]
        w = x.view(3)
        rec("views share", (v._version, w._version))
        v.add_(1)
        rec("view in-place bumps base", (x._version, v._version, w._version))
        x[0] = 5.0
        rec("setitem", (x._version, v._version))
        d = x.detach()
        d.add_(1)
        rec("detach shares", (x._version, d._version))
        y = x * 2
        rec("out-of-place result", y._version)
        r = x.reshape(3)
        rec("reshape view shares", r._version)
        c = x.clone()
        rec("clone does not", c._version)
        dt = x.data
        dt.add_(1)
        rec(".data has its own counter", (x._version, dt._version))
        z = T.ones(2, requires_grad=True)
        with T.no_grad():
            z.sub_(0.1)
        rec("no_grad update", z._version)
        q = z * 1
        q.exp_()
        rec("tracked in-place", q._version)
        m = T.ones(2, 2)
        m.t().add_(1)
        m[0].mul_(2)
        rec("transpose/select views", m._version)

    both(scenario)


# --------------------------------------------------------------------------- Function


def _functions(T):
    class Exp(T.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y

    class MulScale(T.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, scale):
            ctx.save_for_backward(a, b)
            ctx.scale = scale
            ctx.flags = ctx.needs_input_grad
            return a * b * scale

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            ga = g * b * ctx.scale if ctx.needs_input_grad[0] else None
            gb = g * a * ctx.scale if ctx.needs_input_grad[1] else None
            return ga, gb, None

    class SplitMax(T.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            idx = x.argmax()
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(x)
            return x * 2, x * 3, idx

        @staticmethod
        def backward(ctx, g1, g2, gidx):
            return g1 * 2 + g2 * 3

    class WrongCount(T.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    class WrongGrad(T.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x  # should be 2 * g * x

    return Exp, MulScale, SplitMax, WrongCount, WrongGrad


def test_custom_function():
    def scenario(T, rec):
        Exp, MulScale, SplitMax, WrongCount, _ = _functions(T)
        x = src(T, [0.0, 1.0, 2.0])
        y = Exp.apply(x)
        rec("forward", y)
        rec("grad_fn", (type(y.grad_fn).__name__, y.requires_grad, y.is_leaf))
        rec("structure", structure(y.grad_fn))
        (y * 2).sum().backward()
        rec("x.grad", x.grad)
        rec.raises("second backward through saved tensors",
                   lambda: y.grad_fn.saved_tensors, "after they have already been freed")
        a = src(T, [1.0, 2.0])
        b = T.tensor([3.0, 4.0], dtype=T.float64)
        out = MulScale.apply(a, b, 0.5)
        rec("needs_input_grad", out.grad_fn.flags)
        out.sum().backward()
        rec("a.grad", a.grad)
        c = src(T, [1.0, 5.0, 2.0])
        p, q, idx = SplitMax.apply(c)
        rec("non-differentiable output", (idx, idx.requires_grad, p.requires_grad))
        rec("two outputs share a node", p.grad_fn is q.grad_fn)
        (p.sum() + q.sum()).backward()
        rec("multi-output grad", c.grad)
        c.grad = None
        p, q, idx = SplitMax.apply(c)
        q.sum().backward()  # p's gradient is materialized as zeros
        rec("one output used", c.grad)
        d = src(T, [1.0, 2.0])
        e = src(T, [1.0, 2.0])
        rec.raises("wrong number of grads", lambda: WrongCount.apply(d, e).sum().backward(),
                   "returned an incorrect number of gradients (expected 2, got 1)")
        with T.no_grad():
            n = Exp.apply(d)
        rec("under no_grad", (n.requires_grad, n.grad_fn))
        rec("no input requires grad", Exp.apply(T.ones(2)).grad_fn)
        f = src(T, [0.5])
        (g,) = T.autograd.grad(Exp.apply(f).sum(), f, create_graph=True)
        rec("inside create_graph", g)

    both(scenario)


def test_gradcheck():
    def scenario(T, rec):
        _, _, _, _, WrongGrad = _functions(T)
        x = T.tensor([[0.3, -0.7, 1.1], [0.4, 0.9, -1.3]], dtype=T.float64,
                     requires_grad=True)
        w = T.tensor([0.5, -1.5, 2.0], dtype=T.float64, requires_grad=True)
        rec("correct", T.autograd.gradcheck(lambda a, b: (a * b).sin().sum(1), (x, w)))
        rec("composite", T.autograd.gradcheck(
            lambda a: T.log_softmax(a, 1) * T.softmax(a, 0), (x,)))
        rec("noncontiguous input", T.autograd.gradcheck(
            lambda a: a.exp() * 2, (x.detach().t().requires_grad_(),)))
        rec.raises("wrong Function", lambda: T.autograd.gradcheck(WrongGrad.apply, (w,)),
                   "Jacobian mismatch for output 0 with respect to input 0")
        rec("raise_exception=False", T.autograd.gradcheck(WrongGrad.apply, (w,),
                                                          raise_exception=False))

    both(scenario)


# --------------------------------------------------------------------------- profiler


def test_profiler():
    def scenario(T, rec):
        x = T.ones(4, 4)
        with T.autograd.profiler.profile() as prof:
            for _ in range(7):
                y = x * 2
                z = y / 3
            x.exp()
        events = {e.key: e.count for e in prof.key_averages()}
        rec("counts", {k: events.get(k) for k in ("aten::mul", "aten::div", "aten::exp")})
        table = prof.key_averages().table(sort_by="self_cpu_time_total")
        rec("table", [s in table for s in ("Name", "Self CPU", "# of Calls", "aten::mul",
                                           "aten::div", "Self CPU time total")])
        rec("z", z)

    both(scenario)


# --------------------------------------------------------------------------- repr


REPRS = {
    "float": lambda T: T.tensor([1.0, 2.5, -3.0]),
    "float64": lambda T: T.tensor([1.0, 2.0], dtype=T.float64),
    "float16": lambda T: T.tensor([1.0, 2.0], dtype=T.float16),
    "int": lambda T: T.tensor([1, 2, 3]),
    "int32": lambda T: T.tensor([1, 2], dtype=T.int32),
    "bool": lambda T: T.tensor([True, False]),
    "0-d": lambda T: T.tensor(3.5),
    "0-d int": lambda T: T.tensor(3),
    "empty": lambda T: T.zeros(0),
    "empty 2-D": lambda T: T.zeros(2, 0),
    "2-D": lambda T: T.tensor([[1.0, 2.0], [3.0, 4.5]]),
    "3-D": lambda T: T.arange(12.0).reshape(2, 3, 2),
    "requires_grad": lambda T: T.tensor([1.0, 2.0], requires_grad=True),
    "requires_grad float64": lambda T: T.ones(2, dtype=T.float64, requires_grad=True),
    "grad_fn": lambda T: T.tensor([1.0, 2.0], requires_grad=True) * 2,
    "grad_fn float64": lambda T: T.ones(2, dtype=T.float64, requires_grad=True).sum(),
    "grad_fn 0-d": lambda T: T.tensor([1.0, 2.0], requires_grad=True).sum(),
    "grad_fn 2-D": lambda T: T.ones(3, 3, requires_grad=True).exp(),
    "long line wraps": lambda T: T.randn(10, generator=None) * T.ones(10, requires_grad=True),
    "wrapping 2-D": lambda T: T.randn(3, 9) + T.zeros(9, requires_grad=True),
    "summarized": lambda T: T.arange(2000.0),
    "summarized grad_fn": lambda T: T.arange(2000.0).requires_grad_() * 2,
    "large values": lambda T: T.tensor([1e10, 1.0]),
    "small values": lambda T: T.tensor([1e-10, 1.0]),
    "negative zero": lambda T: T.tensor([-0.0, 0.0]),
    "nan inf": lambda T: T.tensor([float("nan"), float("inf"), -float("inf")]),
    "custom Function": lambda T: _functions(T)[0].apply(T.ones(2, requires_grad=True)),
    "int from comparison": lambda T: T.ones(2, requires_grad=True) > 0,
    "detached": lambda T: (T.ones(2, requires_grad=True) * 2).detach(),
    "max with dim": lambda T: T.max(T.tensor([[1.0, 5.0], [3.0, 2.0]]), 1),
    "min keepdim": lambda T: T.tensor([[1.0, 5.0], [3.0, 2.0]], requires_grad=True).min(
        0, keepdim=True),
}


@pytest.mark.parametrize("name", list(REPRS))
def test_repr(name):
    torch.manual_seed(0)
    want = REPRS[name](torch)
    fusegrad.manual_seed(0)
    got = REPRS[name](fusegrad)
    assert repr(got) == repr(want), f"\nfusegrad: {got!r}\ntorch:    {want!r}"
    assert str(got) == str(want)


def test_print_options():
    torch.set_printoptions(precision=2)
    try:
        x = [1.23456, 2.5]
        assert repr(fusegrad.tensor(x, requires_grad=True)) == repr(
            torch.tensor(x, requires_grad=True))
    finally:
        torch.set_printoptions(profile="default")


# --------------------------------------------------------------------------- RNG & factories


def test_manual_seed_random_numbers():
    def scenario(T, rec):
        T.manual_seed(1234)
        rec("randn", T.randn(3, 2))
        rec("rand", T.rand(4))
        rec("randint", T.randint(0, 10, (5,)))
        rec("randint high only", T.randint(7, (3,)))
        rec("randn float64", T.randn(2, dtype=T.float64))
        rec("randn tuple size", T.randn((2, 2)))
        rec("rand_like", T.rand_like(T.ones(2)))
        rec("randn_like", T.randn_like(T.ones(2, dtype=T.float64)))
        rec("randperm", T.randperm(5))
        T.manual_seed(1234)
        rec("reseeded", T.randn(3, 2))
        rec("requires_grad", T.randn(2, requires_grad=True).requires_grad)

    both(scenario)


def test_factories():
    def scenario(T, rec):
        rec("tensor float list", T.tensor([1.0, 2.0]))
        rec("tensor int list", T.tensor([1, 2]))
        rec("tensor bool", T.tensor([True, False]))
        rec("tensor mixed", T.tensor([1, 2.5]))
        rec("tensor nested", T.tensor([[1, 2], [3, 4]]))
        rec("tensor scalar", T.tensor(2.5))
        rec("tensor dtype", T.tensor([1, 2], dtype=T.float64))
        rec("tensor numpy", T.tensor(np.array([1.0, 2.0])))
        rec("tensor numpy f32", T.tensor(np.array([1.0, 2.0], dtype=np.float32)))
        rec("zeros", T.zeros(2, 3))
        rec("zeros tuple", T.zeros((2, 3)))
        rec("zeros 0-d", T.zeros(()))
        rec("zeros dtype", T.zeros(2, dtype=T.int64))
        rec("ones", T.ones(3, dtype=T.float64))
        rec("ones list", T.ones([2]))
        rec("empty shape", (T.empty(2, 3).shape, T.empty(2, 3).dtype, T.empty((4,)).shape))
        rec("full float", T.full((2, 2), 1.5))
        rec("full int", T.full((2,), 7))
        rec("full bool", T.full((2,), True))
        rec("full dtype", T.full((2,), 7, dtype=T.float64))
        rec("eye", T.eye(3))
        rec("eye rect", T.eye(2, 3))
        rec("arange", T.arange(5))
        rec("arange float", T.arange(1, 4, 0.5))
        rec("arange start", T.arange(2, 7, 2))
        rec("arange float end", T.arange(3.0))
        rec("arange dtype", T.arange(3, dtype=T.float64))
        rec("linspace", T.linspace(0, 1, 5))
        rec("linspace 1", T.linspace(-1, 1, 1))
        base = T.tensor([[1, 2], [3, 4]], dtype=T.int32)
        rec("zeros_like", T.zeros_like(base))
        rec("ones_like", T.ones_like(base, dtype=T.float32))
        rec("full_like", T.full_like(base, 9))
        rec("full_like float", T.full_like(T.ones(2), 2.5))
        rec("empty_like shape", (T.empty_like(base).shape, T.empty_like(base).dtype))
        rec("rand_like shape", (T.rand_like(T.ones(2, 2)).shape))
        rec("requires_grad kw", (T.zeros(2, requires_grad=True).requires_grad,
                                 T.ones(2, requires_grad=True).is_leaf))
        rec("new_zeros", T.ones(2, dtype=T.float64).new_zeros(3))
        rec("new_ones", T.ones(2, dtype=T.int32).new_ones((2, 2)))
        arr = np.array([1.0, 2.0, 3.0])
        t = T.from_numpy(arr)
        arr[0] = 100.0
        rec("from_numpy shares memory", t)
        t[1] = -5.0
        rec("writes back to numpy", arr.tolist())
        rec("from_numpy dtype", (T.from_numpy(np.arange(3)).dtype,
                                 T.from_numpy(np.ones(2, dtype=np.float32)).dtype))
        c = T.tensor(arr)
        arr[2] = 7.0
        rec("tensor copies", c)
        rec("shape/size/dim/numel", (T.ones(2, 3).shape, T.ones(2, 3).size(), T.ones(2, 3).size(1),
                                     T.ones(2, 3).dim(), T.ones(2, 3).numel()))
        rec("default dtype", T.get_default_dtype())

    both(scenario)


def test_dtype_and_device_objects_are_torchs():
    for name in ["float32", "float64", "float16", "bfloat16", "int32", "int64", "bool", "float",
                 "double", "half", "long"]:
        assert getattr(fusegrad, name) is getattr(torch, name), name
    assert fusegrad.ones(1).device == torch.device("cpu")
    assert fusegrad.cuda.is_available() == torch.cuda.is_available()


def test_engine_edge_cases():
    def scenario(T, rec):
        # a hook on a tensor used several times sees the summed gradient once
        calls = []
        x = src(T, [1.0, 2.0])
        y = x * 2
        y.register_hook(lambda g: calls.append(g.tolist()))
        (y * y + y).sum().backward()
        rec("hook once", calls)
        # .grad accumulates into the same tensor object
        g = x.grad
        (x * 3).sum().backward()
        rec("same grad object", (g is x.grad, x.grad))
        x.grad.zero_()
        (x * 4).sum().backward()
        rec("after zero_", x.grad)
        x.grad = T.ones(2, dtype=T.float64)
        (x * 1).sum().backward()
        rec("assigned grad", x.grad)
        rec.raises("grad of wrong shape", lambda: setattr(x, "grad", T.ones(3, dtype=T.float64)),
                   "attempting to assign a gradient of size '[3]' to a tensor of size '[2]'")
        rec.raises("grad of wrong dtype", lambda: setattr(x, "grad", T.ones(2)),
                   "attempting to assign a gradient with dtype 'float' to a tensor with "
                   "grad_dtype 'Double'")
        rec.raises("grad not a tensor", lambda: setattr(x, "grad", 3),
                   "assigned grad expected to be a Tensor or None but got grad of type int")
        # backward from a leaf
        leaf = src(T, [1.0, 2.0])
        leaf.backward(T.tensor([3.0, 4.0], dtype=T.float64))
        rec("leaf root", leaf.grad)
        # mixed dtypes: each leaf's gradient has the leaf's dtype
        a = T.tensor([1.0, 2.0], requires_grad=True)
        b = T.tensor([3.0, 4.0], dtype=T.float64, requires_grad=True)
        c = T.tensor(2.0, dtype=T.float64, requires_grad=True)
        (a * b + a * c).sum().backward()
        rec("mixed dtype grads", (a.grad, b.grad, c.grad))
        h = T.tensor([1.0, 2.0], dtype=T.float16, requires_grad=True)
        (h.float() * 3).sum().backward()
        rec("through a cast", h.grad)
        i = T.tensor([1, 2])
        f = src(T, [0.5, 1.5])
        (f * i + i / f).sum().backward()
        rec("int operand", f.grad)
        # a long chain: no recursion limit in the engine
        d = src(T, [1.0])
        e = d
        for _ in range(3000):
            e = e * 1.0001 + 0.0
        e.sum().backward()
        rec("deep chain", d.grad)
        # backward in another thread
        t_in = src(T, [1.0, 2.0])
        out = (t_in.exp() * 2).sum()
        th = threading.Thread(target=out.backward)
        th.start()
        th.join()
        rec("backward in a thread", t_in.grad)
        # grad_fn of views of a leaf and of its outputs
        m = src(T, [[1.0, 2.0], [3.0, 4.0]])
        rec("view structures", [structure(v.grad_fn) for v in (m[0], m[:, 1], m.t(), m.view(4),
                                                                m.T, m[None], m[..., 0])])
        rec("detached view of leaf requires grad", (m.detach()[0].requires_grad, m[0].is_leaf))
        # gradients of functions of max/min/amax with ties split as in PyTorch
        tie = src(T, [1.0, 3.0, 3.0])
        (tie.max() + tie.amax() + tie.max(0).values).backward()
        rec("ties", tie.grad)
        mm = src(T, [2.0, 2.0])
        T.maximum(mm, T.tensor([2.0, 1.0], dtype=T.float64)).sum().backward()
        rec("maximum ties", mm.grad)
        ab = src(T, [0.0, -1.0, 2.0])
        (ab.abs() + ab.relu() + ab.clamp(0.0, 1.0)).sum().backward()
        rec("kinks at zero", ab.grad)

    both(scenario)


def test_custom_function_more():
    def scenario(T, rec):
        class BadShape(T.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return T.ones(3, dtype=T.float64)

        class NoneGrad(T.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                return x + y

            @staticmethod
            def backward(ctx, g):
                return g, None

        class Twice(T.autograd.Function):
            @staticmethod
            def forward(ctx, x, k=2):
                ctx.k = k
                return x * k

            @staticmethod
            def backward(ctx, g):
                return g * ctx.k, None

        x = src(T, [1.0, 2.0])
        rec.raises("wrong grad shape", lambda: BadShape.apply(x).sum().backward(),
                   "returned an invalid gradient at index 0")
        y = src(T, [1.0, 1.0])
        NoneGrad.apply(x, y).sum().backward()
        rec("None for a needed input", (x.grad, y.grad))
        rec("non-tensor argument", Twice.apply(x, 5))
        z = Twice.apply(Twice.apply(x, 3), 4)
        z.sum().backward()
        rec("chained", (structure(z.grad_fn), x.grad))
        rec("Function output through ops", structure((Twice.apply(x, 2) * x).grad_fn))

    both(scenario)


def test_hooks_with_autograd_grad_and_composites():
    def scenario(T, rec):
        x = src(T, [1.0, 2.0])
        x.register_hook(lambda g: g * 2)
        rec("leaf hook in autograd.grad", T.autograd.grad((x * 3).sum(), x))
        calls = []
        y = src(T, [[1.0, 2.0], [0.5, -1.0]])
        y.register_hook(lambda g: calls.append("leaf") or g * 2)
        z = y * 1
        z.register_hook(lambda g: calls.append("z") or g)
        # composites (softmax, mean, cross_entropy) between the hooked tensors and the loss
        loss = T.softmax(z, 1).mean() + T.nn.functional.cross_entropy(z, T.tensor([0, 1]))
        rec("grad through composites", T.autograd.grad(loss, [y, z], retain_graph=True))
        loss.backward()
        rec("backward through composites", y.grad)
        rec("hook calls", calls)
        p = src(T, [1.0, 2.0])
        p.register_post_accumulate_grad_hook(lambda t: t.grad)
        rec.raises("post-accumulate hook returns a value", lambda: (p * 2).sum().backward(),
                   "Tensor post accumulate grad hooks should return None.")

    both(scenario)


def test_composites_with_shared_inputs():
    """A composite node (stack, dot, addmm, mse_loss...) whose inputs share history."""

    def scenario(T, rec):
        F = T.nn.functional
        exprs = {
            "stack([x, x])": lambda x, A: T.stack([x, x]).sum(),
            "x @ x": lambda x, A: x @ x,
            "A @ x": lambda x, A: (A @ x).sum(),
            "addmm(A[0], A, A.t())": lambda x, A: T.addmm(A[0], A, A.t()).sum(),
            "linear(A, A, A[0])": lambda x, A: F.linear(A, A, A[0]).sum(),
            "mse(A, 2 A.t())": lambda x, A: F.mse_loss(A, A.t() * 2),
            "stack([B, B.t(), A])": lambda x, A: T.stack([A * 1, (A * 1).t(), A]).sum(),
            "softmax + mean of one tensor": lambda x, A: (T.softmax(A, 1) * A).mean() + A.mean(),
            "cross_entropy(A, ..) * A.sum()": lambda x, A: F.cross_entropy(
                A, T.tensor([0, 1])) * A.sum(),
        }
        for name, f in exprs.items():
            x = src(T, [1.0, -2.0])
            A = src(T, [[1.0, 2.0], [3.0, -4.0]])
            out = f(x, A)
            rec(f"{name}: autograd.grad", T.autograd.grad(out, [x, A], retain_graph=True,
                                                          allow_unused=True))
            out.backward()
            rec(f"{name}: backward", (x.grad, A.grad))
        v = src(T, [1.0, -2.0, 0.5])
        (g,) = T.autograd.grad(v @ v * (v @ v), v, create_graph=True)
        rec("second derivative of (v @ v) ** 2", (g, T.autograd.grad(g.sum(), v)))

    both(scenario)


def test_saved_tensors_are_released_after_backward():
    """fusegrad-specific: the graph stops holding saved intermediates once backward ran."""
    import gc
    import weakref

    x = fusegrad.tensor([1.0, 2.0], requires_grad=True)
    a = x * 3
    ref = weakref.ref(a)
    out = a.sin().sum()  # SinBackward0 saves its input a
    del a
    gc.collect()
    assert ref() is not None, "the saved input should live until backward"
    out.backward(retain_graph=True)
    gc.collect()
    assert ref() is not None, "retain_graph=True keeps saved tensors"
    out.backward()
    gc.collect()
    assert ref() is None, "saved tensors must be freed after backward without retain_graph"
    assert torch.allclose(x.grad._data, 2 * 3 * torch.cos(torch.tensor([3.0, 6.0])))
