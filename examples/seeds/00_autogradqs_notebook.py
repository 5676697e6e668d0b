import fusegrad as torch

# Seed 000: the "Learn the Basics / Autograd" tutorial as an annotated notebook
# (with extra Chinese notes and a Jacobian-product example in a markdown cell).
# `%matplotlib inline` is left out. Run under `import torch` it is the reference
# that the fusegrad run must reproduce line for line (tests/test_seeds.py).

torch.manual_seed(0)


def show_error(fn):
    """Run fn, print the error it raises; print 'no error' when it raises none."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is part of the output
        print(f"{type(e).__name__}: {e}")
    else:
        print("no error")


print("== one-layer network")
x = torch.ones(5)  # input tensor
y = torch.zeros(3)  # expected output
w = torch.randn(5, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
z = torch.matmul(x, w) + b

# 用于 二元分类 问题的一种损失函数 (a loss for binary classification)
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
print(w)
print(b)
print(z)
print(loss)

print("== requires_grad at creation or later with requires_grad_ (note)")
t = torch.ones(2)
print(t.requires_grad, t.is_leaf, t.grad_fn)
t.requires_grad_(True)
print(t.requires_grad, t.is_leaf, t.grad_fn)
print(w.is_leaf, z.is_leaf, loss.is_leaf)

print("== grad_fn")
print(f"Gradient function for z = {z.grad_fn}")
print(f"Gradient function for loss = {loss.grad_fn}")
print(z.grad_fn.name(), loss.grad_fn.name())

print("== computing gradients")
loss.backward()
print(w.grad)
print(b.grad)

print("== only leaves get .grad; backward once per graph (note)")
print(z.grad)  # non-leaf: None (torch also warns on stderr)
# The graph's saved tensors were freed by the first backward.
show_error(loss.backward)

print("== disabling gradient tracking")
z = torch.matmul(x, w) + b
print(z.requires_grad)

with torch.no_grad():
    z = torch.matmul(x, w) + b
print(z.requires_grad)

z = torch.matmul(x, w) + b
z_det = z.detach()
print(z_det.requires_grad)
print(z_det.is_leaf, z_det.grad_fn)

print("== the graph is rebuilt at every iteration (dynamic DAG note)")
w.grad = None
for step in range(3):
    # Control flow picks different ops on each iteration.
    h = w * 2 if step % 2 == 0 else w * w
    out = (h.sum(0) + b).sum()
    print(step, out.grad_fn.name(), h.grad_fn.name(), h.grad_fn.next_functions)
    out.backward()
print(w.grad)

print("== Jacobian product (markdown example)")
# 定义输入张量，启用梯度追踪
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)

# 定义向量值函数 f(x)
y = x**2  # 输出是一个向量 y = [x_0^2, x_1^2, x_2^2]

# 定义向量 v
v = torch.tensor([1.0, 0.5, 0.1])  # 大小与输出 y 一致

# 计算 Jacobian Product: v^T * J
y.backward(v)  # 传入向量 v

# 打印 x 的梯度
print(x.grad)  # tensor([2.0000, 2.0000, 0.6000])

print("== a non-scalar output needs a gradient argument")
show_error(lambda: (x**2).backward())

print("== accumulation of gradients")
inp = torch.eye(4, 5, requires_grad=True)
out = (inp + 1).pow(2).t()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"First call\n{inp.grad}")

out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")

inp.grad.zero_()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nCall after zeroing gradients\n{inp.grad}")
print(out.grad_fn.name(), out.grad_fn.next_functions[0][0].name())

print("== backward() equals backward(torch.tensor(1.0)) for a scalar (note)")
inp.grad = None
s = (inp * inp).sum()
s.backward(retain_graph=True)
print(inp.grad)
inp.grad = None
s.backward(torch.tensor(1.0))
print(inp.grad)
