"""Guards: every check says why it failed, and the fast path re-arms after a passing slow check.

A ``Rig`` is a compiled training step that has settled on one signature. Each case in
``BREAKS`` breaks exactly one condition the trace depends on and names the reason the guard
must give, and together the cases break every kind of record guards.py adds; the other tests
run the step for real against an eager twin.
"""

import inspect

import pytest
import torch as T

import fusegrad as fg
from fusegrad.compiler import guards as G
from fusegrad.compiler.api import _flatten

nn, F = fg.nn, fg.nn.functional


def make_data(n=9):
    fg.manual_seed(1)
    return fg.randn(n, 12), fg.randint(0, 5, (n,))


class Rig:
    """Model, loss module and SGD of one training step, called three times (compiled unless
    ``compiled=False``, which makes the eager twin of the same seeds)."""

    def __init__(self, compiled=True, momentum=0.9, zero_grad=True):
        fg.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))
        self.loss_fn = nn.CrossEntropyLoss(weight=fg.ones(5))
        self.opt = fg.optim.SGD(self.model.parameters(), lr=0.1, momentum=momentum)
        self.x, self.y = make_data()
        model, loss_fn, opt = self.model, self.loss_fn, self.opt

        def step(x, y):
            if zero_grad:
                opt.zero_grad()
            loss = loss_fn(model(x), y) + F.relu(x).mean() * 0
            loss.backward()
            opt.step()
            return loss

        self.step = fg.compile(step, backend="cpu") if compiled else step
        self.run()

    @property
    def guard(self):
        return self.step._last.guard

    def signature(self, *args, **kwargs):
        """``(leaves, structure)`` of a call with these arguments (default: the same batch)."""
        leaves = []
        return leaves, _flatten((args or (self.x, self.y), kwargs), leaves)

    def run(self, n=3):
        return [self.step(self.x, self.y) for _ in range(n)]

    def why(self, *args, **kwargs):
        """What the settled guard says about a call with these arguments (default: the same
        batch); also asserts that its fast path refuses the call whenever a reason is given."""
        leaves, structure = self.signature(*args, **kwargs)
        fast = self.guard.fast(leaves, structure)
        reason = self.guard.check(leaves, structure)
        assert not (fast and reason), "the fast path is looser than the checks"
        return reason

    def set_cell(self, name, value):
        fn = self.step.fn
        fn.__closure__[fn.__code__.co_freevars.index(name)].cell_contents = value


def assert_same(a, b, what):
    a = a._data if isinstance(a, fg.Tensor) else a
    b = b._data if isinstance(b, fg.Tensor) else b
    assert T.allclose(a, b, rtol=1e-5, atol=1e-6), f"{what}: max diff {(a - b).abs().max()}"


def assert_same_training(compiled, eager):
    """Losses of three more steps, parameters and momentum buffers all equal eager's."""
    for i, (lc, le) in enumerate(zip(compiled.run(), eager.run())):
        assert_same(lc, le, f"loss of step {i}")
    for (n, pc), pe in zip(compiled.model.named_parameters(), eager.model.parameters()):
        assert_same(pc, pe, n)
        sc, se = compiled.opt.state.get(pc, {}), eager.opt.state.get(pe, {})
        assert sc.keys() == se.keys(), n
        for key in sc:
            assert_same(sc[key], se[key], f"{key} of {n}")


def twins():
    eager = Rig(compiled=False)  # first: building modules moves the module version
    return Rig(), eager


# --------------------------------------------------------------------------- re-arming


def toggle_training(r):
    r.model.eval()
    r.model.train()


def write_another_module(r):
    nn.Linear(2, 2).eval()


@pytest.mark.parametrize("write", [toggle_training, write_another_module])
def test_fast_path_rearms_after_a_write_that_changes_nothing(write):
    r, eager = twins()
    guard, sig = r.guard, r.signature()
    assert guard.fast(*sig)
    write(r), write(eager)
    assert not guard.fast(*sig)  # the module version moved: the module records must run
    misses = guard.misses
    assert_same_training(r, eager)
    assert guard.misses == misses + 1  # once; then the fast path takes every call again
    assert guard.fast(*sig)
    assert len(r.step.entries) == 2  # the first call and the one that made momentum state


def set_eval(r):
    r.model.eval()


def replace_layer(r):
    fg.manual_seed(7)
    r.model[2] = nn.Linear(16, 5)


def change_momentum(r):
    r.opt.param_groups[0]["momentum"] = 0.5


def replace_loss_weight(r):
    r.loss_fn.weight = fg.tensor([1.0, 5.0, 0.1, 2.0, 1.0])


def new_batch_size(r):
    r.x, r.y = make_data(n=4)


@pytest.mark.parametrize("change, reasons", [
    (set_eval, ["Sequential.training True -> False"]),
    # the optimizer still holds the old layer's parameters: zero_grad found their .grad set,
    # and from the next step on, with no backward to set it again, finds it None
    (replace_layer, ["the submodules of Sequential were replaced",
                     "a tensor.grad was set, now None"]),
    (change_momentum, ["SGD param_groups[0]['momentum'] 0.9 -> 0.5"]),
    (replace_loss_weight, ["the buffers of CrossEntropyLoss were replaced"]),
    (new_batch_size, ["input 0 shape (9, 12) -> (4, 12)"]),
])
def test_a_real_change_retraces_with_its_reason(change, reasons):
    r, eager = twins()
    n = len(r.step.entries)
    change(r), change(eager)
    assert_same_training(r, eager)
    assert r.step.reasons[n:] == reasons
    assert f"traced because: {reasons[0]}" in r.step.explain()
    assert r.guard.fast(*r.signature())  # the new signature's guard takes the fast path


# --------------------------------------------------------------------------- every reason

BREAKS = {}


def breaks(expected, **rig):
    """Register a case: a function that breaks one condition of a Rig(**rig) and returns the
    guard's reason, which must be ``expected``."""
    def register(fn):
        BREAKS[fn.__name__] = (fn, expected, rig)
        return fn
    return register


@breaks("non-tensor arguments or argument structure changed")
def argument_structure(r):
    return r.why(r.x, r.y, scale=2.0)


@breaks("input 0 shape (9, 12) -> (4, 12)")
def input_shape(r):
    return r.why(*make_data(n=4))


@breaks("input 0 dtype torch.float32 -> torch.float64")
def input_dtype(r):
    return r.why(r.x.double(), r.y)


@breaks("input 0 device cpu -> meta")
def input_device(r):
    return r.why(fg.from_torch(T.empty(9, 12, device="meta")), r.y)


@breaks("input 0 requires_grad False -> True")
def input_requires_grad(r):
    return r.why(r.x.clone().requires_grad_(), r.y)


@breaks("grad mode enabled True -> False")
def grad_mode(r):
    with fg.no_grad():
        return r.why()


@breaks("global 'F' now refers to another object")
def global_rebound(r):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(globals(), "F", type("functional", (), {"relu": fg.relu}))
        return r.why()


@breaks("a variable the function closes over now refers to another object")
def closure_rebound(r):
    r.set_cell("opt", fg.optim.SGD(r.model.parameters(), lr=0.1, momentum=0.9))
    return r.why()


@breaks("Sequential.training True -> False")
def module_training(r):
    r.model.eval()
    return r.why()


@breaks("Linear.training True -> False")
def submodule_training(r):
    r.model[2].eval()
    return r.why()


@breaks("the parameters of Linear were replaced")
def parameter_replaced(r):
    r.model[0].weight = nn.Parameter(r.model[0].weight.detach().clone())
    return r.why()


@breaks("the submodules of Sequential were replaced")
def submodule_replaced(r):
    r.model[2] = nn.Linear(16, 5)
    return r.why()


@breaks("the buffers of CrossEntropyLoss were replaced")
def buffer_replaced(r):
    r.loss_fn.weight = fg.full((5,), 2.0)
    return r.why()


@breaks("SGD: number of param groups changed")
def param_group_added(r):
    r.opt.add_param_group({"params": [nn.Parameter(fg.zeros(3))]})
    return r.why()


@breaks("SGD param_groups[0]['momentum'] 0.9 -> 0.5")
def hyperparameter_changed(r):
    r.opt.param_groups[0]["momentum"] = 0.5
    return r.why()


@breaks("SGD param_groups[0] parameters changed")
def group_parameters_changed(r):
    r.opt.param_groups[0]["params"] = r.opt.param_groups[0]["params"][:-1]
    return r.why()


@breaks("SGD param_groups[0] parameters changed")
def group_replaced(r):
    r.opt.param_groups[0] = dict(r.opt.param_groups[0])
    return r.why()


@breaks("SGD state changed: ['momentum_buffer'] -> []")
def optimizer_state_cleared(r):
    r.opt.state.clear()
    return r.why()


@breaks("SGD state['momentum_buffer'] tensor was replaced")
def state_tensor_replaced(r):
    state = r.opt.state[r.model[0].weight]
    state["momentum_buffer"] = state["momentum_buffer"].clone()
    return r.why()


@breaks("0.weight changed from torch.float32[16, 12] to torch.float32[16, 13]")
def captured_shape(r):
    r.model[0].weight.data = fg.zeros(16, 13)
    return r.why()


@breaks("0.weight device cpu -> meta")
def captured_device(r):
    r.model[0].weight.data = T.empty(16, 12, device="meta")  # what model.to(device) does
    return r.why()


@breaks("0.weight.requires_grad True -> False")
def captured_requires_grad(r):
    r.model[0].weight.requires_grad_(False)
    return r.why()


@breaks("['lr'] type float -> int")
def lifted_number_type(r):
    r.opt.param_groups[0]["lr"] = 1
    return r.why()


# a step without zero_grad reads .grad as it finds it: its guard watches each .grad

@breaks("0.weight.grad was set, now None", momentum=0, zero_grad=False)
def grad_set_to_none(r):
    r.model[0].weight.grad = None
    return r.why()


@breaks("0.weight.grad shape (16, 12) -> (16, 13)", momentum=0, zero_grad=False)
def grad_shape(r):
    r.model[0].weight.grad.data = fg.zeros(16, 13)
    return r.why()


@breaks("2.bias.grad was None, now set", momentum=0, zero_grad=False)
def grad_was_none(r):
    # the first signature was traced before backward had set any .grad (the first one
    # read is the last layer's)
    return r.step.entries[0].guard.check([r.x, r.y], _flatten(((r.x, r.y), {}), []))


@pytest.mark.parametrize("case", list(BREAKS))
def test_each_check_gives_its_reason(case):
    fn, expected, rig = BREAKS[case]
    r = Rig(**rig)
    assert r.why() is None
    assert fn(r) == expected


def test_the_cases_give_every_kind_of_record_its_reason(monkeypatch):
    # a record's kind is the line of guards.py that adds it; each kind must be one that
    # some case above breaks first
    kinds = {n for n, line in enumerate(inspect.getsource(G).splitlines(), 1) if "b.add(" in line}
    add, why = G._Checks.add, G.Check.why
    fired = set()

    def add_with_kind(self, *args, **kwargs):
        add(self, *args, **kwargs)
        self[-1].kind = inspect.currentframe().f_back.f_lineno

    def why_noting_kind(self, leaves, s):
        fired.add(self.kind)
        return why(self, leaves, s)

    monkeypatch.setattr(G._Checks, "add", add_with_kind)
    monkeypatch.setattr(G.Check, "why", why_noting_kind)
    for fn, _, rig in BREAKS.values():
        fn(Rig(**rig))
    assert fired == kinds


def list_insert(layers, new):
    layers.insert(1, new)


def dict_delete(layers, new):
    del layers["b"]


@pytest.mark.parametrize("container, edit, reason", [
    (nn.ModuleList, list_insert, "the submodules of ModuleList were replaced"),
    (lambda ls: nn.ModuleDict({"a": ls[0], "b": ls[1]}), dict_delete,
     "the submodules of ModuleDict were replaced"),
])
def test_containers_edited_in_place_retrace(container, edit, reason):
    # these edit _modules past __setattr__: they must still move the module version
    fg.manual_seed(0)
    layers = container([nn.Linear(4, 4), nn.Linear(4, 4)])
    new = nn.Linear(4, 4)  # built first: building a module moves the version by itself
    fn = lambda x: sum(layer(x).sum() for layer in layers.children())
    step = fg.compile(fn, backend="cpu")
    x = fg.randn(2, 4)
    step(x), step(x)
    edit(layers, new)
    assert_same(step(x), fn(x), "after the edit")
    assert step.reasons[-1] == reason
