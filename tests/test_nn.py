"""fusegrad.nn against torch.nn: initialisation, names, repr, layers, losses, state dicts."""

import math
import warnings
from collections import OrderedDict

import pytest
import torch

import fusegrad as fg
from fusegrad import nn

ATOL = 1e-6


def fg_of(t, requires_grad=False):
    """A fusegrad copy of the torch tensor ``t``."""
    out = fg.tensor(t.detach().clone())
    return out.requires_grad_(True) if requires_grad else out


def close(a, b, atol=ATOL):
    a = a._data if isinstance(a, fg.Tensor) else a
    b = b._data if isinstance(b, fg.Tensor) else b
    return a.shape == b.shape and torch.allclose(a, b.detach(), atol=atol, rtol=1e-5)


def error_of(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is compared with torch's
        return type(e), str(e)
    return None


def make_net(lib):
    """The same model written once against ``torch`` or ``fusegrad``."""

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = lib.nn.Linear(6, 5)
            self.act = lib.nn.Tanh()
            self.blocks = lib.nn.ModuleList([lib.nn.Linear(5, 5), lib.nn.Linear(5, 5)])
            self.head = lib.nn.Sequential(lib.nn.ReLU(), lib.nn.Linear(5, 2, bias=False))
            self.register_buffer("scale", lib.ones(2))
            self.register_buffer("tmp", lib.zeros(1), persistent=False)

        def forward(self, x):
            x = self.act(self.layer1(x))
            for b in self.blocks:
                x = b(x)
            return self.head(x) * self.scale

    return Net()


def make_pair(seed=0):
    torch.manual_seed(seed)
    t = make_net(torch)
    fg.manual_seed(seed)
    f = make_net(fg)
    return t, f


# --------------------------------------------------------------------------- initialisation


def test_linear_default_init_matches_torch():
    torch.manual_seed(0)
    t = torch.nn.Linear(5, 3)
    fg.manual_seed(0)
    f = nn.Linear(5, 3)
    assert torch.equal(f.weight._data, t.weight.data)
    assert torch.equal(f.bias._data, t.bias.data)
    assert isinstance(f.weight, nn.Parameter) and f.weight.requires_grad and f.weight.is_leaf
    assert f.weight.grad_fn is None and f.weight._version == t.weight._version


def test_sequential_mlp_init_matches_torch():
    torch.manual_seed(3)
    t = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
                            torch.nn.Linear(10, 7, bias=False))
    torch_rng_after = torch.get_rng_state()
    fg.manual_seed(3)
    f = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10),
                      nn.Linear(10, 7, bias=False))
    for (tn, tp), (fn, fp) in zip(t.named_parameters(), f.named_parameters(), strict=True):
        assert tn == fn
        assert torch.equal(fp._data, tp.data), tn
    # the (shared) generator advanced identically
    assert torch.equal(torch.get_rng_state(), torch_rng_after)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("uniform_", {"a": -0.3, "b": 0.7}, (4, 5)),
    ("normal_", {"mean": 1.0, "std": 0.5}, (4, 5)),
    ("constant_", {"val": 0.25}, (3,)),
    ("ones_", {}, (3, 2)),
    ("zeros_", {}, (3, 2)),
    ("eye_", {}, (3, 4)),
    ("xavier_uniform_", {"gain": 2.0}, (6, 4)),
    ("xavier_normal_", {}, (6, 4, 3)),
    ("kaiming_uniform_", {"a": math.sqrt(5)}, (8, 3)),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, (8, 3, 2)),
    ("kaiming_normal_", {}, (8, 3)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "tanh"}, (8, 3)),
    ("trunc_normal_", {"std": 0.8}, (50, 40)),
])
def test_init_functions_match_torch(name, kwargs, shape):
    t = torch.empty(shape)
    f = nn.Parameter(fg.empty(*shape))
    torch.manual_seed(7)
    getattr(torch.nn.init, name)(t, **kwargs)
    fg.manual_seed(7)
    v0 = f._version
    out = getattr(nn.init, name)(f, **kwargs)
    assert out is f
    assert torch.equal(f._data, t)
    assert f._version == v0 + 1 and f.grad_fn is None and f.requires_grad


def test_init_helpers_match_torch():
    for nl, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert nn.init.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)
    for shape in [(3, 4), (5, 2, 3, 3)]:
        assert nn.init._calculate_fan_in_and_fan_out(fg.zeros(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))
    assert error_of(lambda: nn.init.xavier_uniform_(fg.zeros(3))) == \
        error_of(lambda: torch.nn.init.xavier_uniform_(torch.zeros(3)))
    assert error_of(lambda: nn.init.calculate_gain("nope")) == \
        error_of(lambda: torch.nn.init.calculate_gain("nope"))
    assert error_of(lambda: nn.init.kaiming_uniform_(fg.zeros(3, 3), mode="x")) == \
        error_of(lambda: torch.nn.init.kaiming_uniform_(torch.zeros(3, 3), mode="x"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        nn.init.kaiming_uniform_(fg.zeros(0, 3))
    assert "zero-element" in str(w[0].message)


# --------------------------------------------------------------------------- names and traversal


def test_named_parameters_buffers_modules_match_torch():
    t, f = make_pair()
    assert [n for n, _ in f.named_parameters()] == [n for n, _ in t.named_parameters()]
    for (_, fp), (_, tp) in zip(f.named_parameters(), t.named_parameters()):
        assert torch.equal(fp._data, tp.data)
    assert [n for n, _ in f.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in f.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in f.named_children()] == [n for n, _ in t.named_children()]
    assert [type(m).__name__ for m in f.modules()] == [type(m).__name__ for m in t.modules()]
    assert [type(m).__name__ for m in f.children()] == [type(m).__name__ for m in t.children()]
    assert len(list(f.parameters())) == len(list(t.parameters()))
    assert [n for n, _ in f.named_parameters(prefix="m", recurse=False)] == \
        [n for n, _ in t.named_parameters(prefix="m", recurse=False)]
    assert list(f.state_dict()) == list(t.state_dict())


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(3, 3)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    tshared = torch.nn.Linear(3, 3)
    tm = torch.nn.Sequential(tshared, torch.nn.ReLU(), tshared)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert [n for n, _ in m.named_modules()] == [n for n, _ in tm.named_modules()]
    assert list(m.state_dict()) == list(tm.state_dict())
    assert len(list(m.named_parameters(remove_duplicate=False))) == 4


def test_setattr_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(fg.ones(2))
    m.sub = nn.Linear(2, 2)
    m.plain = fg.ones(2)  # a plain Tensor is just an attribute
    m.register_buffer("buf", fg.zeros(2))
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    assert [n for n, _ in m.named_buffers()] == ["buf"]
    assert "plain" not in m.state_dict()
    m.buf = fg.ones(2)  # reassigning a buffer name keeps it a buffer
    assert torch.equal(m.state_dict()["buf"]._data, torch.ones(2))
    m.w = None
    assert [n for n, _ in m.named_parameters()] == ["sub.weight", "sub.bias"]
    with pytest.raises(TypeError, match="cannot assign 'fusegrad.Tensor' as parameter 'w'"):
        m.w = fg.ones(2)
    with pytest.raises(TypeError, match="as child module 'sub'"):
        m.sub = 3
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        _ = m.nope
    del m.sub
    assert not hasattr(m, "sub")

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(fg.ones(1))

    tm = torch.nn.Module()
    for bad in ["a.b", ""]:
        for method in ["register_parameter", "register_buffer", "add_module"]:
            f_err = error_of(lambda: getattr(m, method)(bad, None))  # noqa: B023
            assert f_err == error_of(lambda: getattr(tm, method)(bad, None))  # noqa: B023
    tm.x = 1
    m.x = 1
    assert error_of(lambda: m.register_parameter("x", None)) == \
        error_of(lambda: tm.register_parameter("x", None))
    assert error_of(lambda: Early()) == (
        AttributeError, "cannot assign parameters before Module.__init__() call")
    with pytest.raises(TypeError, match=r"cannot assign 'fusegrad.Tensor' object to parameter "
                       r"'q' \(torch.nn.Parameter or None required\)"):
        m.register_parameter("q", nn.Parameter(fg.ones(2)) * 2)
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required '
                       '"forward" function'):
        m(fg.ones(2))


def test_train_eval_zero_grad_requires_grad_apply():
    t, f = make_pair()
    assert f.training
    f.eval()
    assert not any(m.training for m in f.modules())
    f.train()
    assert all(m.training for m in f.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        f.train("yes")

    x = fg.randn(4, 6)
    f(x).sum().backward()
    assert all(p.grad is not None for p in f.parameters())
    f.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad._data.any() for p in f.parameters())
    f.zero_grad()
    assert all(p.grad is None for p in f.parameters())

    f.requires_grad_(False)
    assert not any(p.requires_grad for p in f.parameters())
    f.requires_grad_()
    assert all(p.requires_grad for p in f.parameters())

    seen, tseen = [], []
    f.apply(lambda m: seen.append(type(m).__name__))
    t.apply(lambda m: tseen.append(type(m).__name__))
    assert seen == tseen


def test_to_dtype_keeps_parameter_identity():
    f = nn.Linear(3, 2)
    w = f.weight
    f.weight.grad = fg.ones(2, 3)
    out = f.to(fg.float64)
    assert out is f and f.weight is w and f.weight.dtype == fg.float64
    assert f.weight.grad.dtype == fg.float64
    assert f(fg.ones(1, 3, dtype=fg.float64)).dtype == fg.float64
    f.float()
    assert f.weight.dtype == fg.float32
    f.to("cpu")
    assert f.weight.device.type == "cpu"
    with pytest.raises(TypeError, match="only accepts floating point or complex dtypes"):
        f.to(fg.int64)


# --------------------------------------------------------------------------- repr


def test_module_repr_matches_torch():
    t, f = make_pair()
    assert repr(f) == repr(t)
    pairs = [
        (nn.Linear(5, 3), torch.nn.Linear(5, 3)),
        (nn.Linear(5, 3, bias=False), torch.nn.Linear(5, 3, bias=False)),
        (nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
        (nn.Dropout(0.2), torch.nn.Dropout(0.2)),
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Identity(), torch.nn.Identity()),
        (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
        (nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()]),
         torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.ReLU()])),
        (nn.ModuleList(), torch.nn.ModuleList()),
        (nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 2), nn.Sigmoid())),
         torch.nn.Sequential(torch.nn.Linear(4, 8),
                             torch.nn.Sequential(torch.nn.Linear(8, 2), torch.nn.Sigmoid()))),
    ]
    for fm, tm in pairs:
        assert repr(fm) == repr(tm)


def test_parameter_repr_and_type():
    torch.manual_seed(0)
    tp = torch.nn.Parameter(torch.randn(2, 3))
    fp = nn.Parameter(fg_of(tp))
    assert repr(fp) == repr(tp)
    tq = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    fq = nn.Parameter(fg.ones(2), requires_grad=False)
    assert repr(fq) == repr(tq)
    assert type(fp * 2) is fg.Tensor and isinstance(fp, fg.Tensor)
    base = fg.ones(3)
    shared = nn.Parameter(base)
    base._data[0] = 5  # a Parameter shares its data's storage
    assert shared._data[0].item() == 5
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(fg.ones(2, dtype=fg.int64))


# --------------------------------------------------------------------------- layers


def check_layer(fmod, tmod, shape, seed=0):
    """Forward value and the gradients of input and parameters agree with torch."""
    torch.manual_seed(seed)
    x = torch.randn(*shape, requires_grad=True)
    y = tmod(x)
    w = torch.randn(y.shape)
    (y * w).sum().backward()
    fx = fg_of(x, requires_grad=True)
    fy = fmod(fx)
    assert close(fy, y)
    (fy * fg_of(w)).sum().backward()
    assert close(fx.grad, x.grad)
    for (n, fp), (_, tp) in zip(fmod.named_parameters(), tmod.named_parameters(), strict=True):
        assert close(fp.grad, tp.grad), n


@pytest.mark.parametrize("make", [
    lambda lib: lib.nn.Linear(5, 3),
    lambda lib: lib.nn.Linear(5, 3, bias=False),
    lambda lib: lib.nn.ReLU(),
    lambda lib: lib.nn.Sigmoid(),
    lambda lib: lib.nn.Tanh(),
    lambda lib: lib.nn.LeakyReLU(0.2),
    lambda lib: lib.nn.SiLU(),
    lambda lib: lib.nn.Softmax(dim=1),
    lambda lib: lib.nn.LogSoftmax(dim=-1),
    lambda lib: lib.nn.Identity(),
    lambda lib: lib.nn.Sequential(lib.nn.Linear(5, 4), lib.nn.ReLU(), lib.nn.Linear(4, 2)),
], ids=["linear", "linear_nobias", "relu", "sigmoid", "tanh", "leaky_relu", "silu", "softmax",
        "log_softmax", "identity", "sequential"])
def test_layer_matches_torch(make):
    torch.manual_seed(1)
    tmod = make(torch)
    fg.manual_seed(1)
    fmod = make(fg)
    check_layer(fmod, tmod, (4, 5))


def test_linear_on_3d_input_and_flatten():
    torch.manual_seed(1)
    tmod = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    fg.manual_seed(1)
    fmod = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    check_layer(fmod, tmod, (2, 3, 4))
    torch.manual_seed(2)
    tl = torch.nn.Linear(4, 3)
    fg.manual_seed(2)
    fl = nn.Linear(4, 3)
    check_layer(fl, tl, (2, 5, 4))
    check_layer(nn.Flatten(0, 1), torch.nn.Flatten(0, 1), (2, 3, 4))


def test_relu_inplace():
    x = fg.randn(3, 4)
    y = x.clone()
    out = nn.ReLU(inplace=True)(y)
    assert out is y and torch.equal(y._data, torch.relu(x._data))


def test_dropout_honours_training():
    d = nn.Dropout(0.25)
    x = fg.ones(200, 50, requires_grad=True)
    d.eval()
    assert d(x) is x
    d.train()
    y = d(x)
    scale = torch.tensor(1 / 0.75).item()  # as float32 holds it
    assert set(torch.unique(y._data).tolist()) <= {0.0, scale}
    frac = (y._data == 0).float().mean().item()
    assert 0.2 < frac < 0.3
    y.sum().backward()
    assert torch.equal(x.grad._data, (y._data != 0).float() / 0.75)
    assert nn.Dropout(0.0)(x) is x
    assert error_of(lambda: nn.Dropout(1.5)) == error_of(lambda: torch.nn.Dropout(1.5))


# --------------------------------------------------------------------------- losses


def check_loss(fmod, tmod, input, target, atol=1e-5):
    x = input.clone().requires_grad_(True)
    loss = tmod(x, target)
    loss.backward(torch.ones_like(loss))
    fx = fg_of(input, requires_grad=True)
    floss = fmod(fx, fg_of(target))
    assert close(floss, loss, atol)
    floss.backward(fg.ones_like(floss))
    assert close(fx.grad, x.grad, atol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction):
    torch.manual_seed(0)
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    check_loss(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), x, y)
    check_loss(nn.L1Loss(reduction=reduction), torch.nn.L1Loss(reduction=reduction), x, y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_classification_losses(reduction, weighted, ignore):
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 3, 1, 1, 2, 3])
    kw = {}
    if ignore:
        y[2] = 7
        kw["ignore_index"] = 7
    w = torch.rand(4) + 0.5 if weighted else None
    fkw = dict(kw, weight=fg_of(w) if weighted else None)
    check_loss(nn.CrossEntropyLoss(reduction=reduction, **fkw),
               torch.nn.CrossEntropyLoss(weight=w, reduction=reduction, **kw), x, y)
    logp = torch.log_softmax(x, 1)
    check_loss(nn.NLLLoss(reduction=reduction, **fkw),
               torch.nn.NLLLoss(weight=w, reduction=reduction, **kw), logp, y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_losses(reduction):
    torch.manual_seed(0)
    x, y = torch.randn(5, 3) * 3, torch.rand(5, 3)
    w, pw = torch.rand(3) + 0.5, torch.rand(3) + 0.5
    check_loss(nn.BCEWithLogitsLoss(reduction=reduction),
               torch.nn.BCEWithLogitsLoss(reduction=reduction), x, y)
    check_loss(nn.BCEWithLogitsLoss(weight=fg_of(w), pos_weight=fg_of(pw), reduction=reduction),
               torch.nn.BCEWithLogitsLoss(weight=w, pos_weight=pw, reduction=reduction), x, y)
    check_loss(nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction),
               torch.sigmoid(x), y)


def test_loss_weight_is_a_buffer_and_legacy_flags():
    w = fg.ones(3)
    loss = nn.CrossEntropyLoss(weight=w)
    assert list(loss.state_dict()) == list(torch.nn.CrossEntropyLoss(
        weight=torch.ones(3)).state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.MSELoss(size_average=False).reduction == "sum"


# --------------------------------------------------------------------------- containers


def test_sequential_and_modulelist_behave_like_torch():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    assert isinstance(s[1:], nn.Sequential) and list(s[1:]) == [b, c]
    ts = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    assert [n for n, _ in s[1:].named_parameters()] == \
        [n for n, _ in ts[1:].named_parameters()]
    s.append(nn.Sigmoid())
    assert len(s) == 4 and isinstance(s[3], nn.Sigmoid)
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and s[1] is c
    with pytest.raises(IndexError, match="index 5 is out of range"):
        s[5]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    assert named.act is named[1]

    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.Linear(2, 2))
    ml.extend([nn.ReLU()])
    ml += [nn.Tanh()]
    assert len(ml) == 4 and isinstance(ml[-1], nn.Tanh)
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    ml.insert(0, nn.Identity())
    assert isinstance(ml[0], nn.Identity) and len(ml) == 5
    with pytest.raises(TypeError, match="should be called with an iterable"):
        ml.extend(3)


# --------------------------------------------------------------------------- state dict


def test_state_dict_matches_torch_and_loads_torch_tensors():
    t, f = make_pair()
    tsd, fsd = t.state_dict(), f.state_dict()
    assert list(fsd) == list(tsd)
    for k in tsd:
        assert torch.equal(fsd[k]._data, tsd[k]) and not fsd[k].requires_grad
    assert fsd["layer1.weight"]._data.data_ptr() == f.layer1.weight._data.data_ptr()
    torch.manual_seed(5)
    t2 = make_net(torch)
    result = f.load_state_dict(t2.state_dict())  # torch tensors load too
    assert repr(result) == "<All keys matched successfully>"
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(3, 6)
    assert close(f(fg_of(x)), t2(x))


def snapshot(m):
    return {k: v._data.clone() for k, v in m.state_dict().items()}


def unchanged(m, snap):
    return all(torch.equal(m.state_dict()[k]._data, v) for k, v in snap.items())


def test_load_state_dict_errors_match_torch_and_change_nothing():
    t, f = make_pair()
    good = {k: fg_of(v) for k, v in t.state_dict().items()}
    before = snapshot(f)

    def both(mutate):
        tsd = OrderedDict((k, v.clone()) for k, v in t.state_dict().items())
        fsd = OrderedDict((k, fg_of(v)) for k, v in tsd.items())
        mutate(tsd, torch)
        mutate(fsd, fg)
        t_err = error_of(lambda: t.load_state_dict(tsd))
        f_err = error_of(lambda: f.load_state_dict(fsd))
        return t_err, f_err

    cases = [
        lambda sd, lib: sd.pop("blocks.1.bias"),
        lambda sd, lib: sd.__setitem__("extra.weight", lib.zeros(1)),
        lambda sd, lib: sd.__setitem__("blocks.0.bias", lib.zeros(4)),
        lambda sd, lib: (sd.pop("layer1.bias"), sd.__setitem__("layer1.weight", lib.zeros(2)),
                         sd.__setitem__("head.9", lib.zeros(1))),
        lambda sd, lib: sd.__setitem__("scale", 3.0),
    ]
    for case in cases:
        t_err, f_err = both(case)
        assert t_err is not None
        assert f_err == t_err
        assert unchanged(f, before)

    # strict=False reports what torch reports, and loads the rest
    sd = dict(good)
    sd.pop("head.1.weight")
    sd["bogus"] = fg.zeros(1)
    tsd = {k: v._data for k, v in sd.items()}
    res = f.load_state_dict(sd, strict=False)
    tres = make_net(torch).load_state_dict(tsd, strict=False)
    assert res == tuple(tres) and repr(res) == repr(tres)
    assert torch.equal(f.layer1.weight._data, t.layer1.weight.data)


def test_linear_load_state_dict_message():
    f = nn.Linear(5, 3)
    before = f.weight._data.clone()
    with pytest.raises(RuntimeError) as e:
        f.load_state_dict({"weight": fg.zeros(3, 4)})
    assert str(e.value) == (
        "Error(s) in loading state_dict for Linear:\n\tMissing key(s) in state_dict: \"bias\". "
        "\n\tsize mismatch for weight: copying a param with shape torch.Size([3, 4]) from "
        "checkpoint, the shape in current model is torch.Size([3, 5]).")
    assert torch.equal(f.weight._data, before)
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        f.load_state_dict([1, 2])


def test_load_state_dict_copies_values_and_bumps_version():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    sd = a.state_dict()
    v = b.weight._version
    b.load_state_dict(sd)
    assert torch.equal(b.weight._data, a.weight._data)
    assert b.weight._data.data_ptr() != a.weight._data.data_ptr()
    assert b.weight._version == v + 1
    sd64 = {k: x.to(fg.float64) for k, x in sd.items()}
    b.load_state_dict(sd64)  # cast to the parameter's dtype, as torch's copy_ does
    assert b.weight.dtype == fg.float32


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch_and_compiles(norm_type):
    def grads(lib):
        lib.manual_seed(0)
        m = lib.nn.Linear(6, 4)
        (m(lib.randn(5, 6)) ** 2).sum().backward()
        return m

    mf, mt = grads(fg), grads(torch)
    total_f = fg.nn.utils.clip_grad_norm_(mf.parameters(), 0.5, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(mt.parameters(), 0.5, norm_type)
    assert torch.allclose(total_f._data, total_t, rtol=1e-5)
    for a, b in zip(mf.parameters(), mt.parameters()):
        assert torch.allclose(a.grad._data, b.grad, rtol=1e-5, atol=1e-7)

    mc = grads(fg)
    step = fg.compile(lambda: fg.nn.utils.clip_grad_norm_(mc.parameters(), 0.5, norm_type))
    assert torch.allclose(step()._data, total_t, rtol=1e-5)
    for a, b in zip(mc.parameters(), mt.parameters()):
        assert torch.allclose(a.grad._data, b.grad, rtol=1e-5, atol=1e-7)


def test_clip_grad_value_matches_torch():
    fg.manual_seed(0)
    mf = fg.nn.Linear(6, 4)
    (mf(fg.randn(5, 6)) ** 2).sum().backward()
    torch.manual_seed(0)
    mt = torch.nn.Linear(6, 4)
    (mt(torch.randn(5, 6)) ** 2).sum().backward()
    fg.nn.utils.clip_grad_value_(mf.parameters(), 0.3)
    torch.nn.utils.clip_grad_value_(mt.parameters(), 0.3)
    for a, b in zip(mf.parameters(), mt.parameters()):
        assert torch.allclose(a.grad._data, b.grad)
