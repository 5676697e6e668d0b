import fusegrad as torch
import math
import threading

# ruff: noqa: I001 -- line 1 must stay `import fusegrad as torch` (the test swaps it)

# Seed 002: "第四章 Pytorch自动微分", a chapter that walks through the
# torch.autograd API (backward, grad, grad modes, Function, Tensor autograd
# attributes) and then the autograd tutorials (autogradqs, autogradyt): the
# one-layer network, computational graphs, TinyModel and an SGD step, turning
# autograd on and off, and the profiler. Plotting (matplotlib) is left out.

torch.manual_seed(0)


def show_error(fn):
    """Run fn, print the error it raises; print 'no error' when it raises none."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is part of the output
        print(f"{type(e).__name__}: {e}")
    else:
        print("no error")


print("== autograd works on floating point tensors only")
show_error(lambda: torch.tensor([1, 2], requires_grad=True))
print(torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True))

print("== torch.autograd.backward(tensors, grad_tensors, retain_graph, inputs)")
a = torch.tensor([1.0, 2.0], requires_grad=True)
b = torch.tensor([3.0, 4.0], requires_grad=True)
q = a * b
# Non-scalar tensors need grad_tensors: the "vector" of the vector-Jacobian product.
torch.autograd.backward(q, grad_tensors=torch.tensor([1.0, 0.5]), retain_graph=True)
print(a.grad, b.grad)
a.grad = None
b.grad = None
# inputs= restricts accumulation to the given tensors; the others are left alone.
torch.autograd.backward([q], grad_tensors=[torch.ones(2)], inputs=[a])
print(a.grad, b.grad)
# A non-leaf passed as input gets its .grad populated.
h = a * 2
out = (h * h).sum()
torch.autograd.backward(out, inputs=[h])
print(h.grad, a.grad)
show_error(lambda: torch.autograd.backward(torch.ones(2).sum()))

print("== torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph, create_graph, ...)")
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
unused = torch.tensor([1.0], requires_grad=True)
y = x**3
(gx,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), retain_graph=True)
print(gx, x.grad)  # returned, not accumulated into x.grad
# create_graph=True builds a graph of the derivative: second derivative 6x.
(g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
print(g1.detach(), g1.requires_grad)
(g2,) = torch.autograd.grad(g1.sum(), x)
print(g2)
show_error(lambda: torch.autograd.grad(y.sum(), [x, unused], retain_graph=True))
print(torch.autograd.grad(y.sum(), [x, unused], allow_unused=True))
show_error(lambda: torch.autograd.grad(y.sum(), x))  # graph freed by the call above

print("== no_grad")
x = torch.tensor([1.0], requires_grad=True)
with torch.no_grad():
    y = x * 2
print(y.requires_grad)


@torch.no_grad()
def doubler(x):
    return x * 2


z = doubler(x)
print(z.requires_grad)
print(doubler.__name__)  # the decorator keeps the function's name

print("== enable_grad")
x = torch.tensor([1.0], requires_grad=True)
with torch.no_grad():  # noqa: SIM117 -- nested as in the tutorial
    with torch.enable_grad():
        y = x * 2
print(y.requires_grad)
y.backward()
print(x.grad)


@torch.enable_grad()
def doubler(x):
    return x * 2


with torch.no_grad():
    z = doubler(x)
print(z.requires_grad)

print("== set_grad_enabled: context manager, function, decorator")
x = torch.tensor([1.0], requires_grad=True)
is_train = False
with torch.set_grad_enabled(is_train):
    y = x * 2
print(y.requires_grad)

torch.set_grad_enabled(True)
y = x * 2
print(y.requires_grad)

torch.set_grad_enabled(False)
y = x * 2
print(y.requires_grad)
print(torch.is_grad_enabled())
torch.set_grad_enabled(True)  # restore: the call form changes the mode for good
print(torch.is_grad_enabled())


@torch.set_grad_enabled(False)
def tripler(x):
    return x * 3


print(tripler(x).requires_grad, torch.is_grad_enabled())

print("== grad mode is thread-local")
seen = []
with torch.no_grad():
    worker = threading.Thread(target=lambda: seen.append(torch.is_grad_enabled()))
    worker.start()
    worker.join()
    print(torch.is_grad_enabled(), seen)

print("== inference_mode")
x = torch.ones(1, 2, 3, requires_grad=True)
with torch.inference_mode():
    y = x * x
print(y.requires_grad)
print(x._version)
show_error(lambda: y._version)
# Inference tensors cannot enter a graph that autograd records.
show_error(lambda: (y * x).sum().backward())


@torch.inference_mode()
def func(x):
    return x * x


out = func(x)
print(out.requires_grad)
with torch.inference_mode(False):
    print((x * x).requires_grad)

print("== torch.autograd.Function")


class Exp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i):
        result = i.exp()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return grad_output * result


# 通过调用apply方法使用它 (use it by calling apply):
input = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
output = Exp.apply(input)
print(output)
print(output.grad_fn)
print(output.grad_fn.next_functions)
output.backward(torch.ones_like(output))
print(input.grad)
print(input.grad.eq(output.detach()))
double_input = torch.randn(4, dtype=torch.float64, requires_grad=True)
print(torch.autograd.gradcheck(Exp.apply, (double_input,)))


class ScaledExp(torch.autograd.Function):
    """exp(x) * scale: one tensor input, one Python number (no gradient)."""

    needs = None  # ctx.needs_input_grad seen by the last backward

    @staticmethod
    def forward(ctx, x, scale):
        result = x.exp() * scale
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        ScaledExp.needs = ctx.needs_input_grad
        (result,) = ctx.saved_tensors
        return grad_output * result, None


x = torch.tensor([0.0, 1.0], requires_grad=True)
out = ScaledExp.apply(x, 2.0)
out.sum().backward()
print(out, x.grad, ScaledExp.needs)
with torch.no_grad():
    print(ScaledExp.apply(x, 2.0).requires_grad)

print("== Tensor attributes: grad, requires_grad, is_leaf, retain_grad, register_hook")
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
h = x * 2
h.retain_grad()
h.register_hook(lambda g: print("hook on h sees", g))
x.register_hook(lambda g: g * 10)  # a returned tensor replaces the gradient
out = (h * h).sum()
out.backward()
print(h.grad)
print(x.grad)
print(x.is_leaf, h.is_leaf, out.is_leaf, x.requires_grad, h.requires_grad)

print("== detach and detach_")
d = h.detach()
print(d.requires_grad, d.is_leaf, d.grad_fn)
h2 = x * 3
print(h2.grad_fn)
h2.detach_()
print(h2.requires_grad, h2.is_leaf, h2.grad_fn)

print("== in-place ops and _version")
a = torch.ones(3, requires_grad=True)
show_error(lambda: a.add_(1))  # a leaf that requires grad
with torch.no_grad():
    a.add_(1)  # allowed here: this is how optimizers update parameters
print(a, a._version)
t = torch.ones(3)
e = a * t  # MulBackward0 saves t to compute a's gradient
print(t._version)
t.mul_(2)
print(t._version)
show_error(lambda: e.sum().backward())

print("== autograd section: the one-layer network")
x = torch.ones(5)  # 输入张量
y = torch.zeros(3)  # 预期输出
w = torch.randn(5, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
z = torch.matmul(x, w) + b
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)

print(f"Gradient function for z = {z.grad_fn}")
print(f"Gradient function for loss = {loss.grad_fn}")

loss.backward()
print(w.grad)
print(b.grad)
show_error(loss.backward)  # ③: a second pass needs retain_graph=True

z = torch.matmul(x, w) + b
print(z.requires_grad)

with torch.no_grad():
    z = torch.matmul(x, w) + b
print(z.requires_grad)

z = torch.matmul(x, w) + b
z_det = z.detach()
print(z_det.requires_grad)

print("== tensor gradients: Jacobian products")
inp = torch.eye(5, requires_grad=True)
out = (inp + 1).pow(2)
out.backward(torch.ones_like(inp), retain_graph=True)
print(f"First call\n{inp.grad}")

out.backward(torch.ones_like(inp), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")

inp.grad.zero_()
out.backward(torch.ones_like(inp), retain_graph=True)
print(f"\nCall after zeroing gradients\n{inp.grad}")

print("== practice: sin on [0, 2pi]")
a = torch.linspace(0.0, 2.0 * math.pi, steps=25, requires_grad=True)
print(a)

b = torch.sin(a)
print(b)  # plt.plot(a.detach(), b.detach()) left out

c = 2 * b
print(c)

d = c + 1
print(d)

out = d.sum()
print(out)

print("d:")
print(d.grad_fn)
print(d.grad_fn.next_functions)
print(d.grad_fn.next_functions[0][0].next_functions)
print(d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions)
print(d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0].next_functions)
print("\nc:")
print(c.grad_fn)
print("\nb:")
print(b.grad_fn)
print("\na:")
print(a.grad_fn)

out.backward()
print(a.grad)  # plt.plot(a.detach(), a.grad.detach()) left out
print(c.grad)  # only leaves get gradients: None (torch also warns on stderr)

print("== TinyModel and one SGD step")
BATCH_SIZE = 16
DIM_IN = 1000
HIDDEN_SIZE = 100
DIM_OUT = 10


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()

        self.layer1 = torch.nn.Linear(1000, 100)
        self.relu = torch.nn.ReLU()
        self.layer2 = torch.nn.Linear(100, 10)

    def forward(self, x):
        x = self.layer1(x)
        x = self.relu(x)
        x = self.layer2(x)
        return x


some_input = torch.randn(BATCH_SIZE, DIM_IN, requires_grad=False)
ideal_output = torch.randn(BATCH_SIZE, DIM_OUT, requires_grad=False)

model = TinyModel()

print(model.layer2.weight[0][0:10])  # 切片
print(model.layer2.weight.grad)

optimizer = torch.optim.SGD(model.parameters(), lr=0.001)

prediction = model(some_input)

loss = (ideal_output - prediction).pow(2).sum()
print(loss)

loss.backward()
print(model.layer2.weight[0][0:10])
print(model.layer2.weight.grad[0][0:10])

optimizer.step()
print(model.layer2.weight[0][0:10])
print(model.layer2.weight.grad[0][0:10])

print(model.layer2.weight.grad[0][0:10])

for i in range(5):
    prediction = model(some_input)
    loss = (ideal_output - prediction).pow(2).sum()
    loss.backward()

print(model.layer2.weight.grad[0][0:10])

optimizer.zero_grad()

# The tutorial printed zeros; zero_grad() now sets .grad to None by default.
print(model.layer2.weight.grad)
show_error(lambda: print(model.layer2.weight.grad[0][0:10]))
loss = (ideal_output - model(some_input)).pow(2).sum()
loss.backward()
optimizer.zero_grad(set_to_none=False)
print(model.layer2.weight.grad[0][0:10])

print("== turning autograd off and on")
a = torch.ones(2, 3, requires_grad=True)
print(a)

b1 = 2 * a
print(b1)

a.requires_grad = False
b2 = 2 * a
print(b2)

a = torch.ones(2, 3, requires_grad=True) * 2
b = torch.ones(2, 3, requires_grad=True) * 3

c1 = a + b
print(c1)

with torch.no_grad():
    c2 = a + b

print(c2)

c3 = a * b
print(c3)


def add_tensors1(x, y):
    return x + y


@torch.no_grad()
def add_tensors2(x, y):
    return x + y


a = torch.ones(2, 3, requires_grad=True) * 2
b = torch.ones(2, 3, requires_grad=True) * 3

c1 = add_tensors1(a, b)
print(c1)

c2 = add_tensors2(a, b)
print(c2)

with torch.no_grad():  # noqa: SIM117 -- nested as in the tutorial
    with torch.enable_grad():
        c3 = add_tensors1(a, b)
print(c3)

x = torch.rand(5, requires_grad=True)
y = x.detach()

print(x)
print(y)

print("== autograd profiler")
device = torch.device("cpu")
run_on_gpu = False
if torch.cuda.is_available():
    device = torch.device("cuda")
    run_on_gpu = True

x = torch.randn(2, 3, requires_grad=True)
y = torch.rand(2, 3, requires_grad=True)
z = torch.ones(2, 3, requires_grad=True)

with torch.autograd.profiler.profile(use_cuda=run_on_gpu) as prf:
    for _ in range(1000):
        z = (z / x) * y

# Timings vary from run to run: print the op names and call counts only.
for evt in sorted(prf.key_averages(), key=lambda evt: evt.key):
    print(evt.key, evt.count)
table = prf.key_averages().table(sort_by="self_cpu_time_total")
print(isinstance(table, str) and len(table) > 0)
print(z.grad_fn)
