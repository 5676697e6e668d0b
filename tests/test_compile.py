"""fusegrad.compile: compiled equals eager, and the compiled-mode contract of DESIGN.md."""

import copy
import warnings

import pytest
import torch as T

import fusegrad as fg
from fusegrad.compiler.api import RecompileLimitError
from fusegrad.compiler.check import CompareError
from fusegrad.compiler.tracer import GraphBreak


def make_model(seed=0, dims=(12, 16, 5)):
    fg.manual_seed(seed)
    layers = []
    for i in range(len(dims) - 1):
        layers.append(fg.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(fg.nn.ReLU())
    return fg.nn.Sequential(*layers)


def make_data(seed=1, n=9, d=12, c=5):
    fg.manual_seed(seed)
    return fg.randn(n, d), fg.randint(0, c, (n,))


OPTIMIZERS = {
    "sgd": lambda p: fg.optim.SGD(p, lr=0.1),
    "sgd_momentum": lambda p: fg.optim.SGD(p, lr=0.1, momentum=0.9),
    "sgd_momentum_wd_nesterov": lambda p: fg.optim.SGD(p, lr=0.05, momentum=0.9,
                                                        weight_decay=0.01, nesterov=True),
    "sgd_dampening": lambda p: fg.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.3),
    "adam": lambda p: fg.optim.Adam(p, lr=0.01),
    "adam_wd": lambda p: fg.optim.Adam(p, lr=0.01, weight_decay=0.1),
    "adam_amsgrad": lambda p: fg.optim.Adam(p, lr=0.01, amsgrad=True),
}


def training_pair(opt_name, set_to_none=True):
    """The same model/optimizer twice: one to run eagerly, one compiled."""
    models = [make_model(), make_model()]
    opts = [OPTIMIZERS[opt_name](m.parameters()) for m in models]

    def make_step(m, o):
        def step(x, y):
            o.zero_grad(set_to_none=set_to_none)
            loss = fg.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            o.step()
            return loss
        return step

    return models, opts, make_step(models[0], opts[0]), make_step(models[1], opts[1])


def assert_close(a, b, what, rtol=1e-5, atol=1e-6):
    a = a._data if isinstance(a, fg.Tensor) else a
    b = b._data if isinstance(b, fg.Tensor) else b
    assert T.allclose(a, b, rtol=rtol, atol=atol), f"{what}: max diff {(a - b).abs().max()}"


def assert_same_state(models, opts):
    (me, mc), (oe, oc) = models, opts
    for (n, pe), pc in zip(me.named_parameters(), mc.parameters()):
        assert_close(pe, pc, f"parameter {n}")
        assert (pe.grad is None) == (pc.grad is None), n
        if pe.grad is not None:
            assert_close(pe.grad, pc.grad, f"{n}.grad")
    se, sc = oe.state_dict()["state"], oc.state_dict()["state"]
    assert se.keys() == sc.keys()
    for k in se:
        assert se[k].keys() == sc[k].keys()
        for key in se[k]:
            assert_close(se[k][key], sc[k][key], f"state[{k}][{key}]")


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_compiled_training_equals_eager_over_20_steps(opt_name):
    models, opts, eager, step = training_pair(opt_name)
    step = fg.compile(step, verify=True)
    x, y = make_data()
    for i in range(20):
        le, lc = eager(x, y), step(x, y)
        assert_close(le, lc, f"loss at step {i}")
        assert repr(le.grad_fn).split()[0] == repr(lc.grad_fn).split()[0]
        assert_same_state(models, opts)
    assert len(step.entries) <= 2  # the first step creates optimizer state: one retrace


def test_zero_grad_without_set_to_none_matches_eager():
    models, opts, eager, step = training_pair("sgd_momentum", set_to_none=False)
    step = fg.compile(step)
    x, y = make_data()
    for _ in range(5):
        assert_close(eager(x, y), step(x, y), "loss")
    assert_same_state(models, opts)


def test_new_batch_size_retraces_and_explain_says_why():
    _, _, _, step = training_pair("sgd_momentum")
    step = fg.compile(step)
    x, y = make_data(n=9)
    for _ in range(3):
        step(x, y)
    n = len(step.entries)
    x2, y2 = make_data(n=4)
    step(x2, y2)
    assert len(step.entries) == n + 1
    text = step.explain()
    assert "input 0 shape (9, 12) -> (4, 12)" in text
    step(x, y)  # the old signature is still cached
    assert len(step.entries) == n + 1


def test_changed_lr_takes_effect_without_retrace():
    models, opts, eager, step = training_pair("sgd_momentum")
    step = fg.compile(step)
    x, y = make_data()
    for _ in range(3):
        eager(x, y), step(x, y)
    n = len(step.entries)
    for o in opts:
        o.param_groups[0]["lr"] = 0.01
    for _ in range(3):
        assert_close(eager(x, y), step(x, y), "loss after lr change")
    assert_same_state(models, opts)
    assert len(step.entries) == n


def test_changed_momentum_retraces_with_reason():
    models, opts, eager, step = training_pair("sgd_momentum")
    step = fg.compile(step)
    x, y = make_data()
    for _ in range(3):
        eager(x, y), step(x, y)
    for o in opts:
        o.param_groups[0]["momentum"] = 0.5
    assert_close(eager(x, y), step(x, y), "loss")
    assert_same_state(models, opts)
    assert "param_groups[0]['momentum'] 0.9 -> 0.5" in step.explain()


def test_graph_break_names_the_user_line():
    m = make_model()

    def fn(x):
        y = m(x).sum()
        if y.item() > 0:  # the graph break
            return y
        return -y

    line = fn.__code__.co_firstlineno + 2
    with pytest.raises(GraphBreak) as err:
        fg.compile(fn)(make_data()[0])
    msg = str(err.value)
    assert "Tensor.item()" in msg and f"test_compile.py:{line}" in msg


@pytest.mark.parametrize("kind", ["bool", "while_norm"])
def test_other_graph_breaks(kind):
    def fn_bool(x):
        return x * 2 if (x.sum() > 0) else x

    def fn_while(x):
        y = x * 2
        while y.norm() < 100:
            y = y * 2
        return y

    fn = fn_bool if kind == "bool" else fn_while
    with pytest.raises(GraphBreak, match="bool"):
        fg.compile(fn)(fg.randn(3))


def test_fallback_eager_warns_once_and_matches():
    def fn(x):
        y = x * 2
        while y.norm() < 100:
            y = y * 2
        return y

    c = fg.compile(fn, fallback="eager")
    x = fg.randn(3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out1 = c(x)
        out2 = c(x)
    assert len([i for i in w if "eagerly" in str(i.message)]) == 1
    assert_close(out1, fn(x), "fallback result")
    assert_close(out2, fn(x), "fallback result")


def test_recompile_limit_raises_with_reasons():
    c = fg.compile(lambda x: x * 2, max_signatures=3)
    for n in range(1, 4):
        c(fg.randn(n))
    with pytest.raises(RecompileLimitError) as err:
        c(fg.randn(7))
    assert "input 0 shape (3,) -> (7,)" in str(err.value)
    assert "first call" in str(err.value)


def test_default_limit_is_8():
    c = fg.compile(lambda x: x + 1)
    for n in range(1, 9):
        c(fg.randn(n))
    with pytest.raises(RecompileLimitError):
        c(fg.randn(20))


def test_eager_env_and_backend(monkeypatch):
    c = fg.compile(lambda x: x.exp())
    monkeypatch.setenv("FUSEGRAD_EAGER", "1")
    x = fg.randn(4)
    assert_close(c(x), x.exp(), "eager env")
    assert c.program is None and not c.entries
    monkeypatch.delenv("FUSEGRAD_EAGER")
    c2 = fg.compile(lambda x: x.exp(), backend="eager")
    assert_close(c2(x), x.exp(), "eager backend")
    assert not c2.entries


def test_check_mode_passes_and_catches_a_wrong_kernel(monkeypatch):
    models, opts, eager, step = training_pair("adam")
    step = fg.compile(step, check=True)
    x, y = make_data()
    for _ in range(3):
        step(x, y)
    from fusegrad import primitives as P

    monkeypatch.setattr(P.exp, "aten", "torch.sin({0}{out})")
    bad = fg.compile(lambda a: (a.exp() * 2).sum(), check=True)
    with pytest.raises(CompareError, match="returned value 0") as err:
        bad(fg.randn(5))
    assert "test_compile.py:" in str(err.value) and "kernel aten_" in str(err.value)


def test_gradients_flow_through_compiled_outputs():
    m = make_model()
    x = fg.randn(4, 12, requires_grad=True)
    f = fg.compile(lambda x: m(x).tanh())
    out = f(x)
    assert type(out.grad_fn).__name__ == "CompiledFunctionBackward"
    (out * out).sum().backward()
    gx, gw = x.grad.clone(), m[0].weight.grad.clone()
    x.grad = None
    m.zero_grad()
    (m(x).tanh() ** 2).sum().backward()
    assert_close(gx, x.grad, "x.grad")
    assert_close(gw, m[0].weight.grad, "weight.grad")


def test_tensor_hook_returning_grad_works_and_observer_raises():
    def fn(x, w):
        h = x * w
        h.register_hook(lambda g: g * 3)
        loss = h.sum()
        loss.backward()
        return loss

    x = fg.randn(4)
    w1 = fg.randn(4, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    fn(x, w1)
    fg.compile(fn)(x, w2)
    assert_close(w1.grad, w2.grad, "hooked grad")

    def observer(x, w):
        h = x * w
        h.register_hook(lambda g: None)
        h.sum().backward()

    with pytest.raises(RuntimeError, match="only observes"):
        fg.compile(observer)(x, fg.randn(4, requires_grad=True))


def test_retain_grad_inside_compile_raises():
    def fn(x):
        h = x * 2
        h.retain_grad()
        h.sum().backward()

    with pytest.raises(RuntimeError, match="retain_grad"):
        fg.compile(fn)(fg.randn(3, requires_grad=True))


def test_custom_function_and_create_graph_inside_compile():
    class Cube(fg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x

    def fn(x):
        y = Cube.apply(x).sum()
        (g,) = fg.autograd.grad(y, x, create_graph=True)
        penalty = (g * g).sum()
        penalty.backward()
        return penalty

    x1 = fg.randn(5, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    pe = fn(x1)
    pc = fg.compile(fn)(x2)
    assert_close(pe, pc, "penalty")
    assert_close(x1.grad, x2.grad, "second-order grad")


def test_ir_has_source_lines_and_introspection():
    _, _, _, step = training_pair("sgd_momentum")
    step = fg.compile(step)
    x, y = make_data()
    step(x, y)
    step(x, y)
    prog = step.program
    text = str(prog.graph)
    assert "matmul(" in text and "test_compile.py:" in text
    assert all(e.src and e.src != "<unknown>" for e in prog.graph.eqns)
    st = prog.stats()
    assert st["n_kernels"] > 0 and st["bytes_moved"] > 0 and st["flops"] > 0
    assert len(prog.kernels) == st["n_kernels"]
    assert all(k.name and k.ops for k in prog.kernels)
    dot = prog.to_dot()
    assert dot.startswith("digraph") and "matmul" in dot


def test_debug_levels_print(monkeypatch, capsys):
    monkeypatch.setenv("FUSEGRAD_DEBUG", "4")
    fg.compile(lambda x: (x.exp() + 1).sum())(fg.randn(3))
    err = capsys.readouterr().err
    assert "compiled" in err and "compile phases" in err
    assert "IR after dce" in err and "def run(args)" in err and "torch.exp(" in err


def test_compiling_keeps_state_dict_keys_and_values():
    models, opts, eager, step = training_pair("adam")
    step = fg.compile(step)
    x, y = make_data()
    for _ in range(3):
        eager(x, y), step(x, y)
    sd_e, sd_c = models[0].state_dict(), models[1].state_dict()
    assert list(sd_e) == list(sd_c)
    ose, osc = opts[0].state_dict(), opts[1].state_dict()
    assert ose["param_groups"] == osc["param_groups"]
    assert_same_state(models, opts)


def test_tracing_leaves_real_objects_untouched_on_error():
    m = make_model()
    opt = fg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    before = copy.deepcopy(m.state_dict())

    def step(x):
        opt.zero_grad()
        m(x).sum().backward()
        opt.step()
        return m(x).sum().item()  # graph break after the update was traced

    with pytest.raises(GraphBreak):
        fg.compile(step)(make_data()[0])
    for k, v in m.state_dict().items():
        assert_close(v, before[k], k)
    assert all(p.grad is None for p in m.parameters())
    assert len(opt.state) == 0


def test_random_draws_are_fresh_on_every_replay_and_match_eager():
    m = make_model()
    drop = fg.nn.Dropout(0.5)

    def fn(x):
        return drop(m(x)).sum() + fg.rand(3).sum()

    c = fg.compile(fn)
    x = make_data()[0]
    outs = []
    for _ in range(3):
        state = T.get_rng_state()
        want = fn(x)
        T.set_rng_state(state)
        got = c(x)
        assert_close(want, got, "random draws")
        outs.append(got.item())
    assert len(set(outs)) == 3  # a new mask on every call, not a frozen constant


def test_globals_rebound_retrace():
    # a name the function reads that now refers to another object needs a new trace
    g = {"fg": fg}
    exec("w = fg.ones(3)\ndef f(x):\n    return x * w.sum()\n", g)
    c = fg.compile(g["f"])
    x = fg.ones(3)
    assert_close(c(x), x * 3, "first")
    g["w"] = fg.ones(4)
    assert_close(c(x), x * 4, "after rebinding w")


def test_grad_zeroed_in_place_without_backward():
    m = make_model()
    x, _ = make_data()
    m(x).sum().backward()

    def zero():
        for p in m.parameters():
            p.grad.zero_()

    c = fg.compile(zero)
    c()
    assert all(T.count_nonzero(p.grad._data) == 0 for p in m.parameters())
    m(x).sum().backward()  # grads are new values again
    held = m[0].weight.grad
    c()
    assert T.count_nonzero(held._data) == 0  # the replay wrote into the current .grad


def test_module_changes_retrace_with_reasons():
    m = make_model()
    c = fg.compile(lambda x: m(x).sum())
    x = make_data()[0]
    c(x)
    m.eval()
    c(x)
    assert "training True -> False" in c.explain()
    m.train()
    c(x)
    m[0] = fg.nn.Linear(12, 16)
    assert_close(c(x), m(x).sum(), "after replacing a layer")
    assert "replaced" in c.explain()


def test_gradients_through_compiled_loss_with_composites():
    m = make_model()
    x, y = make_data()
    f = fg.compile(lambda x, y: fg.nn.functional.cross_entropy(m(x), y) + m(x).softmax(1).sum())
    loss = f(x, y)
    assert type(loss.grad_fn).__name__ == "CompiledFunctionBackward"
    loss.backward()
    got = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    (fg.nn.functional.cross_entropy(m(x), y) + m(x).softmax(1).sum()).backward()
    for g, p in zip(got, m.parameters()):
        assert_close(g, p.grad, "parameter gradient")
