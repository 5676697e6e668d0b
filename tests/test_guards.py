"""Guards: every check says why it failed, and the fast path re-arms after a passing slow check.

A ``Rig`` is a compiled training step that has settled on one signature. Each case in
``BREAKS`` breaks exactly one condition the trace depends on and names the reason the guard
must give; the other tests run the step for real against an eager twin.
"""

import pytest
import torch as T

import fusegrad as fg
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
        self.losses = [self.step(self.x, self.y) for _ in range(3)]

    @property
    def guard(self):
        return self.step._last.guard

    def why(self, *args, **kwargs):
        """What the settled guard says about a call with these arguments (default: the same
        batch); also asserts that its fast path refuses the call whenever a reason is given."""
        leaves = []
        structure = _flatten((args or (self.x, self.y), kwargs), leaves)
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
    for (n, pc), pe in zip(compiled.model.named_parameters(), eager.model.parameters()):
        assert_same(pc, pe, n)
        assert_same(compiled.opt.state[pc]["momentum_buffer"],
                    eager.opt.state[pe]["momentum_buffer"], f"momentum buffer of {n}")


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
