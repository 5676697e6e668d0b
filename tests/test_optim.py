"""fusegrad.optim against torch.optim (single-tensor path): ten steps, state, state dicts."""

import copy

import pytest
import torch

import fusegrad as fg

TOL = 1e-5
STEPS = 10


def make_model(lib, seed=0):
    lib.manual_seed(seed)
    return lib.nn.Sequential(lib.nn.Linear(5, 8), lib.nn.Tanh(), lib.nn.Linear(8, 3))


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def closure_step(lib, model, opt, x, y):
    opt.zero_grad()
    loss = lib.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def run_pair(name, kwargs, steps=STEPS, between=None):
    """The same model, data and optimizer in torch and fusegrad, trained ``steps`` steps."""
    x, y = data()
    tm, fm = make_model(torch), make_model(fg)
    topt = getattr(torch.optim, name)(tm.parameters(), foreach=False, **kwargs)
    fopt = getattr(fg.optim, name)(fm.parameters(), **kwargs)
    fx, fy = fg.from_torch(x), fg.from_torch(y)
    for i in range(steps):
        if between is not None:
            between(i, topt)
            between(i, fopt)
        tl = closure_step(torch, tm, topt, x, y)
        fl = closure_step(fg, fm, fopt, fx, fy)
        assert abs(tl.item() - fl.item()) < TOL
    return tm, fm, topt, fopt


def assert_same(tm, fm, topt, fopt):
    for (n, tp), fp in zip(tm.named_parameters(), fm.parameters(), strict=True):
        assert torch.allclose(fp._data, tp.detach(), atol=TOL, rtol=0), n
    tsd, fsd = topt.state_dict(), fopt.state_dict()
    assert sorted(fsd["state"]) == sorted(tsd["state"])
    for i, tstate in tsd["state"].items():
        fstate = fsd["state"][i]
        assert list(fstate) == list(tstate)
        for key, tv in tstate.items():
            fv = fstate[key]
            assert isinstance(fv, fg.Tensor) and fv.dtype == tv.dtype and fv.shape == tv.shape
            assert torch.allclose(fv._data, tv, atol=TOL, rtol=0), (i, key)
    tgroups = [{k: v for k, v in g.items() if k != "foreach"} for g in tsd["param_groups"]]
    fgroups = [{k: v for k, v in g.items() if k != "foreach"} for g in fsd["param_groups"]]
    assert fgroups == tgroups


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.9, "dampening": 0.5},
    {"lr": 0.1, "weight_decay": 0.05},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "maximize": True},
    {"lr": 0.1, "momentum": 0.8, "weight_decay": 0.05, "nesterov": True, "maximize": True},
    {"lr": 0.05, "momentum": 0.7, "dampening": 0.3, "weight_decay": 0.1, "maximize": True},
]
ADAM_CASES = [
    {"lr": 0.01},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.05, "amsgrad": True},
    {"lr": 0.01, "maximize": True},
    {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(k))
def test_sgd_matches_torch(kwargs):
    assert_same(*run_pair("SGD", kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(k))
def test_adam_matches_torch(kwargs):
    assert_same(*run_pair("Adam", kwargs))


def test_adam_state_layout():
    _, fm, _, fopt = run_pair("Adam", {"lr": 0.01, "amsgrad": True}, steps=2)
    p = next(fm.parameters())
    state = fopt.state[p]
    assert list(state) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert state["step"].shape == () and state["step"].dtype == torch.float32
    assert state["step"].item() == 2.0


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                          ("Adam", {"lr": 0.01})])
def test_changing_lr_between_steps_takes_effect(name, kwargs):
    def schedule(i, opt):
        for g in opt.param_groups:
            g["lr"] = kwargs["lr"] * (0.5 ** i)

    assert_same(*run_pair(name, kwargs, between=schedule))


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_params_without_grad_are_skipped(name):
    x, y = data()
    tm, fm = make_model(torch), make_model(fg)
    # freeze the first layer: no grad, no state, no change
    for m in (tm, fm):
        for p in m[0].parameters():
            p.requires_grad_(False)
    kw = {"lr": 0.1, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    topt = getattr(torch.optim, name)(tm.parameters(), foreach=False, **kw)
    fopt = getattr(fg.optim, name)(fm.parameters(), **kw)
    before = fm[0].weight._data.clone()
    for _ in range(3):
        closure_step(torch, tm, topt, x, y)
        closure_step(fg, fm, fopt, fg.from_torch(x), fg.from_torch(y))
    assert torch.equal(fm[0].weight._data, before)
    assert fm[0].weight not in fopt.state
    assert_same(tm, fm, topt, fopt)


def test_param_groups_defaults_and_add_param_group():
    tm, fm = make_model(torch), make_model(fg)
    tp, fp = list(tm.parameters()), list(fm.parameters())
    topt = torch.optim.SGD([{"params": tp[:2]}, {"params": tp[2:], "lr": 0.5}], lr=0.1,
                           momentum=0.9)
    fopt = fg.optim.SGD([{"params": fp[:2]}, {"params": fp[2:], "lr": 0.5}], lr=0.1,
                        momentum=0.9)
    assert [{k: v for k, v in g.items() if k != "params"} for g in fopt.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in topt.param_groups]
    assert repr(fopt) == repr(topt)
    assert fopt.param_groups[1]["params"][0] is fp[2]
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter "
                       "group"):
        fopt.add_param_group({"params": fp[0]})
    extra = fg.nn.Parameter(fg.zeros(3))
    fopt.add_param_group({"params": extra, "momentum": 0.0})
    assert fopt.param_groups[2]["params"] == [extra]
    assert fopt.param_groups[2]["lr"] == 0.1 and fopt.param_groups[2]["momentum"] == 0.0
    assert fopt.state_dict()["param_groups"][2]["params"] == [4]


def test_multiple_groups_match_torch():
    x, y = data()
    tm, fm = make_model(torch), make_model(fg)
    tp, fp = list(tm.parameters()), list(fm.parameters())
    topt = torch.optim.Adam([{"params": tp[:2], "lr": 0.05}, {"params": tp[2:]}], lr=0.01,
                            foreach=False)
    fopt = fg.optim.Adam([{"params": fp[:2], "lr": 0.05}, {"params": fp[2:]}], lr=0.01)
    for _ in range(STEPS):
        closure_step(torch, tm, topt, x, y)
        closure_step(fg, fm, fopt, fg.from_torch(x), fg.from_torch(y))
    assert_same(tm, fm, topt, fopt)


def error_of(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is compared with torch's
        return type(e), str(e)
    return None


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": -1}),
    ("SGD", {"lr": 0.1, "momentum": -0.5}),
    ("SGD", {"lr": 0.1, "weight_decay": -1e-3}),
    ("SGD", {"lr": 0.1, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adam", {"lr": -0.1}),
    ("Adam", {"eps": -1.0}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"weight_decay": -1.0}),
])
def test_argument_validation_matches_torch(name, kwargs):
    tp = [torch.nn.Parameter(torch.zeros(2))]
    fp = [fg.nn.Parameter(fg.zeros(2))]
    t_err = error_of(lambda: getattr(torch.optim, name)(tp, **kwargs))
    assert t_err is not None
    assert error_of(lambda: getattr(fg.optim, name)(fp, **kwargs)) == t_err


def test_constructor_errors_match_torch():
    t_err = error_of(lambda: torch.optim.SGD([], lr=0.1))
    assert error_of(lambda: fg.optim.SGD([], lr=0.1)) == t_err
    assert error_of(lambda: fg.optim.SGD(fg.zeros(2), lr=0.1))[0] is TypeError
    assert error_of(lambda: fg.optim.SGD({fg.nn.Parameter(fg.zeros(2))}, lr=0.1)) == \
        error_of(lambda: torch.optim.SGD({torch.nn.Parameter(torch.zeros(2))}, lr=0.1))
    nonleaf = fg.nn.Parameter(fg.zeros(2)) * 2
    assert error_of(lambda: fg.optim.SGD([nonleaf], lr=0.1)) == \
        (ValueError, "can't optimize a non-leaf Tensor")


def test_zero_grad_and_closure():
    fm = make_model(fg)
    opt = fg.optim.SGD(fm.parameters(), lr=0.1)
    x, y = data()
    fx, fy = fg.from_torch(x), fg.from_torch(y)

    def closure():
        opt.zero_grad()
        loss = fg.nn.functional.cross_entropy(fm(fx), fy)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, fg.Tensor) and loss.grad_fn is not None
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad._data.any() for p in fm.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in fm.parameters())


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                          ("Adam", {"lr": 0.01, "amsgrad": True})])
def test_state_dict_round_trip_continues_identically(name, kwargs):
    x, y = data()
    fx, fy = fg.from_torch(x), fg.from_torch(y)
    ref = make_model(fg)
    ref_opt = getattr(fg.optim, name)(ref.parameters(), **kwargs)
    for _ in range(STEPS):
        closure_step(fg, ref, ref_opt, fx, fy)

    m = make_model(fg)
    opt = getattr(fg.optim, name)(m.parameters(), **kwargs)
    for _ in range(STEPS // 2):
        closure_step(fg, m, opt, fx, fy)
    msd, osd = copy.deepcopy(m.state_dict()), copy.deepcopy(opt.state_dict())

    m2 = make_model(fg, seed=9)
    opt2 = getattr(fg.optim, name)(m2.parameters(), **kwargs)
    m2.load_state_dict(msd)
    opt2.load_state_dict(osd)
    # the loaded state is a copy: changing the source afterwards does not leak in
    for s in osd["state"].values():
        for v in s.values():
            v._data.add_(100)
    for _ in range(STEPS - STEPS // 2):
        closure_step(fg, m2, opt2, fx, fy)
    for a, b in zip(ref.parameters(), m2.parameters()):
        assert torch.equal(a._data, b._data)


def test_load_torch_optimizer_state_and_continue_like_torch():
    x, y = data()
    tm, fm = make_model(torch), make_model(fg)
    topt = torch.optim.Adam(tm.parameters(), lr=0.01, foreach=False)
    fopt = fg.optim.Adam(fm.parameters(), lr=0.01)
    for _ in range(3):
        closure_step(torch, tm, topt, x, y)
    fm.load_state_dict(tm.state_dict())
    fopt.load_state_dict(copy.deepcopy(topt.state_dict()))  # torch tensors, CPU step
    for _ in range(3):
        closure_step(torch, tm, topt, x, y)
        closure_step(fg, fm, fopt, fg.from_torch(x), fg.from_torch(y))
    assert_same(tm, fm, topt, fopt)


def test_load_state_dict_validates_before_changing_anything():
    x, y = data()
    fx, fy = fg.from_torch(x), fg.from_torch(y)
    m = make_model(fg)
    opt = fg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    closure_step(fg, m, opt, fx, fy)
    good = copy.deepcopy(opt.state_dict())
    before = {i: s["momentum_buffer"]._data.clone() for i, s in opt.state_dict()["state"].items()}

    def unchanged():
        sd = opt.state_dict()
        return sd["param_groups"][0]["lr"] == 0.1 and all(
            torch.equal(sd["state"][i]["momentum_buffer"]._data, v) for i, v in before.items())

    bad_groups = copy.deepcopy(good)
    bad_groups["param_groups"].append(dict(bad_groups["param_groups"][0]))
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(bad_groups)
    assert unchanged()

    bad_size = copy.deepcopy(good)
    bad_size["param_groups"][0]["params"] = [0, 1, 2]
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(bad_size)
    assert unchanged()

    bad_shape = copy.deepcopy(good)
    bad_shape["param_groups"][0]["lr"] = 7.0
    bad_shape["state"][3]["momentum_buffer"] = fg.zeros(4)
    with pytest.raises(ValueError, match=r"state 'momentum_buffer' of parameter 3 has shape "
                       r"\[4\], but the parameter has shape \[3\]"):
        opt.load_state_dict(bad_shape)
    assert unchanged()

    with pytest.raises(ValueError, match="expected a dict with 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    assert unchanged()
