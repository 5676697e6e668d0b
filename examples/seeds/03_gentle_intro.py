import fusegrad as torch

# Seed 003: "A gentle introduction to torch.autograd". The pretrained
# torchvision resnet18 is replaced by a small Linear-based model with the same
# interface where it matters: an image batch in, 1000 class scores out, and the
# classifier head in `model.fc` (512 features in), so the fine-tuning recipe
# (freeze everything, replace the head, optimize all parameters) is unchanged.

torch.manual_seed(0)
nn, optim = torch.nn, torch.optim  # was: from torch import nn, optim


def show_error(fn):
    """Run fn, print the error it raises; print 'no error' when it raises none."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is part of the output
        print(f"{type(e).__name__}: {e}")
    else:
        print("no error")


class TinyResNet(nn.Module):
    """Stand-in for resnet18: a feature extractor then the `fc` classifier."""

    def __init__(self, in_features=3 * 8 * 8, num_features=512, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, num_features), nn.ReLU()
        )
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x):
        return self.fc(self.features(x.flatten(1)))


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def report_changes(model, before):
    # Which parameters the optimizer step moved: only those that got a gradient.
    for name, p in model.named_parameters():
        changed = (p.detach() - before[name]).abs().max().item() > 0
        print(
            f"{name}: requires_grad={p.requires_grad} has_grad={p.grad is not None} "
            f"changed={changed}"
        )


print("== usage in PyTorch: one training step")
model = TinyResNet()  # was: torchvision.models.resnet18(pretrained=True)
data = torch.rand(1, 3, 8, 8)  # was 1x3x64x64: this model flattens the image
labels = torch.rand(1, 1000)

prediction = model(data)  # forward pass
print(prediction.shape, prediction.requires_grad)

loss = (prediction - labels).sum()
loss.backward()  # backward pass
print(loss)
print(model.fc.bias.grad[:5])
print(model.features[0].weight.grad.shape)

optim_ = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
before = snapshot(model)
optim_.step()  # gradient descent
report_changes(model, before)
print(model.fc.bias[:5])
state = optim_.state_dict()  # parameters are numbered in model.parameters() order
print(sorted(state["state"].keys()), sorted(state["state"][5].keys()))
print(state["state"][5]["momentum_buffer"][:5])
print(state["param_groups"][0]["lr"], state["param_groups"][0]["momentum"])

print("== differentiation in autograd")
a = torch.tensor([2.0, 3.0], requires_grad=True)
b = torch.tensor([6.0, 4.0], requires_grad=True)

Q = 3 * a**3 - b**2
print(Q)

external_grad = torch.tensor([1.0, 1.0])
Q.backward(gradient=external_grad)

# check if collected gradients are correct
print(9 * a**2 == a.grad)
print(-2 * b == b.grad)
print(a.grad, b.grad)

print("== equivalently: aggregate Q into a scalar")
a.grad = None
b.grad = None
Q = 3 * a**3 - b**2
Q.sum().backward()
print(a.grad, b.grad)
show_error(lambda: (3 * a**3 - b**2).backward())  # a vector needs `gradient`

print("== the graph: grad_fn of Q down to the leaves")
Q = 3 * a**3 - b**2
print(Q.grad_fn)
print(Q.grad_fn.next_functions)
print(Q.grad_fn.next_functions[0][0].next_functions)
print(Q.grad_fn.next_functions[0][0].next_functions[0][0].next_functions)
print(Q.grad_fn.next_functions[1][0].next_functions)
print(a.grad_fn, a.is_leaf, Q.is_leaf)
print(Q.grad)  # non-leaf: None (torch also warns on stderr)

print("== DAGs are dynamic: a new graph on every call")
Q.backward(gradient=external_grad)
show_error(lambda: Q.backward(gradient=external_grad))  # graph freed
a.grad = None
for power in (1, 2, 3):
    Q = (a**power).sum()  # the graph differs on each iteration
    (g,) = torch.autograd.grad(Q, a)
    print(power, g)

print("== exclusion from the DAG")
x = torch.rand(5, 5)
y = torch.rand(5, 5)
z = torch.rand((5, 5), requires_grad=True)

a = x + y
print(f"Does `a` require gradients? : {a.requires_grad}")
b = x + z
print(f"Does `b` require gradients?: {b.requires_grad}")

print("== finetuning: freeze the model, replace the classifier")
model = TinyResNet()  # was: torchvision.models.resnet18(pretrained=True)

# Freeze all the parameters in the network
for param in model.parameters():
    param.requires_grad = False

model.fc = nn.Linear(512, 10)
for name, param in model.named_parameters():
    print(name, tuple(param.shape), param.requires_grad)

# Optimize only the classifier
optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
print(len(optimizer.param_groups[0]["params"]))

data = torch.rand(4, 3, 8, 8)
labels = torch.rand(4, 10)
before = snapshot(model)
loss = (model(data) - labels).pow(2).mean()
print(loss)
optimizer.zero_grad()
loss.backward()
optimizer.step()
report_changes(model, before)
print(model.fc.bias)
print(sorted(optimizer.state_dict()["state"].keys()))  # only fc.weight and fc.bias

print("== the same exclusion with torch.no_grad()")
with torch.no_grad():
    out = model(data)
print(out.requires_grad, out.grad_fn is None)
out = model(data)
print(out.requires_grad, out.grad_fn is None)
hidden = model.features(data.flatten(1))
print(hidden.requires_grad, hidden.grad_fn is None)  # the frozen part records nothing
