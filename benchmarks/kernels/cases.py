"""The kernel benchmark cases: each builds the same computation in fusegrad and in torch.

``build(lib, size)`` returns ``(fn, make_args, state)``: ``fn(*args)`` is one call (a
function of tensors, or a whole training step that updates its own state), ``make_args()``
its inputs, ``state()`` the tensors to compare besides the outputs. ``lib`` is ``fusegrad``
or ``torch``; fusegrad's initialisation and random draws match torch's for a seed, so both
builds hold the same numbers. ``size`` is ``"gpu"`` (shapes worth timing) or ``"cpu"``
(small ragged shapes that Triton's interpreter runs in seconds).
"""

from __future__ import annotations

SHAPES = {
    "pointwise_chain": {"gpu": (4096, 4096), "cpu": (37, 53)},
    "row_softmax": {"gpu": (4096, 2048), "cpu": (13, 97)},
    "cross_entropy": {"gpu": (8192, 1000), "cpu": (13, 37)},
    "addmm_bias_relu": {"gpu": (4096, 1024, 1024), "cpu": (19, 24, 40)},
    "sgd_momentum_update": {"gpu": [(4096, 4096), (4096,), (1000, 4096)],
                            "cpu": [(33,), (5, 7), (1029,)]},
    "adam_update": {"gpu": [(4096, 4096), (4096,), (1000, 4096)],
                    "cpu": [(33,), (5, 7), (1029,)]},
    "mlp_step": {"gpu": (64, 784, 256, 10), "cpu": (64, 784, 256, 10)},
}


def pointwise_chain(lib, size):
    m, n = SHAPES["pointwise_chain"][size]

    def fn(x, y, b):
        return ((x * y + b).relu() * 0.5).sigmoid() - (y * 0.1).tanh()

    def make_args():
        lib.manual_seed(0)
        return lib.randn(m, n), lib.randn(m, n), lib.randn(n)

    return fn, make_args, dict


def row_softmax(lib, size):
    m, n = SHAPES["row_softmax"][size]

    def fn(x):
        return lib.softmax(x, -1)

    def make_args():
        lib.manual_seed(1)
        return (lib.randn(m, n),)

    return fn, make_args, dict


def cross_entropy(lib, size):
    m, n = SHAPES["cross_entropy"][size]
    lib.manual_seed(2)
    logits = lib.randn(m, n, requires_grad=True)

    def fn(y):
        logits.grad = None
        loss = lib.nn.functional.cross_entropy(logits, y)
        loss.backward()
        return loss

    def make_args():
        lib.manual_seed(3)
        return (lib.randint(0, n, (m,)),)

    return fn, make_args, lambda: {"logits.grad": logits.grad}


def addmm_bias_relu(lib, size):
    m, k, n = SHAPES["addmm_bias_relu"][size]
    lib.manual_seed(4)
    layer = lib.nn.Linear(k, n)

    def fn(x):
        with lib.no_grad():
            return lib.relu(layer(x))

    def make_args():
        lib.manual_seed(5)
        return (lib.randn(m, k),)

    return fn, make_args, dict


def _update(lib, size, name, make_opt):
    lib.manual_seed(6)
    params = [lib.randn(*s, requires_grad=True) for s in SHAPES[name][size]]
    opt = make_opt(lib, params)

    def fn(*grads):
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    def make_args():
        lib.manual_seed(7)
        return tuple(lib.randn(*p.shape) for p in params)

    def state():
        out = {}
        for i, p in enumerate(params):
            out[f"p{i}"] = p
            out.update({f"p{i}.{k}": v for k, v in opt.state.get(p, {}).items()})
        return out

    return fn, make_args, state


def sgd_momentum_update(lib, size):
    return _update(lib, size, "sgd_momentum_update",
                   lambda lib, p: lib.optim.SGD(p, lr=0.01, momentum=0.9))


def adam_update(lib, size):
    return _update(lib, size, "adam_update", lambda lib, p: lib.optim.Adam(p, lr=1e-3))


def mlp_step(lib, size):
    batch, *dims = SHAPES["mlp_step"][size]
    lib.manual_seed(8)
    model = lib.nn.Sequential(lib.nn.Linear(dims[0], dims[1]), lib.nn.ReLU(),
                              lib.nn.Linear(dims[1], dims[2]))
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def fn(x, y):
        opt.zero_grad(set_to_none=True)
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def make_args():
        lib.manual_seed(9)
        return lib.randn(batch, dims[0]), lib.randint(0, dims[-1], (batch,))

    def state():
        out = {}
        for name, p in model.named_parameters():
            out[name] = p
            out[name + ".grad"] = p.grad
            out.update({f"{name}.{k}": v for k, v in opt.state.get(p, {}).items()})
        return out

    return fn, make_args, state


CASES = {f.__name__: f for f in (pointwise_chain, row_softmax, cross_entropy, addmm_bias_relu,
                                 sgd_momentum_update, adam_update, mlp_step)}
