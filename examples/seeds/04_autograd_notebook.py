import fusegrad as torch

# Seed 004: an annotated notebook of the 60-minute-blitz "Autograd: Automatic
# Differentiation" tutorial. Cells are kept in order (In [2] .. In [55]);
# `%matplotlib inline` is left out. Cell In [11] reads an undefined `zz`, and
# the NameError it raises is printed. A few extra lines check what the notes
# claim: the gradient argument of backward, gg.backward(v), leaf-only .grad.

torch.manual_seed(0)


def show_error(fn):
    """Run fn, print the error it raises; print 'no error' when it raises none."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is part of the output
        print(f"{type(e).__name__}: {e}")
    else:
        print("no error")


print("== In [3]")
x = torch.tensor([[1, 3], [2, 2]], requires_grad=True, dtype=torch.float32)
print(x)
print(x.size())
print(x.dtype, x.is_leaf, x.grad_fn)

print("== In [10]")
y = x + 2
z = 3 * (y**2)
print(y, z)

print("== In [11]")
print(y.grad_fn)
show_error(lambda: print(zz.grad_fn))  # noqa: F821 -- `zz` is never defined
print(z.grad_fn)

print("== In [12]")
z = y * y  # dot product
out = z.mean()
print(z, out)

print("== In [13]")
a = torch.tensor([2, 2], dtype=torch.float32)
a = a * 3
print(a)
print(a.requires_grad)
a.requires_grad_(True)
print(a.requires_grad)
b = (a * a).sum()
print(b)
print(b.grad_fn)
a.requires_grad_()  # the flag defaults to True
print(a.requires_grad)

print("== out.backward() is out.backward(torch.tensor(1.))")
out.backward(retain_graph=True)
print(x.grad)
x.grad = None
out.backward(torch.tensor(1.0))
print(x.grad)
print(y.grad)  # non-leaf: None (torch also warns on stderr)

print("== In [30]")
# example: y = 2 * x + 3 * (x^2)
x = torch.tensor([3], dtype=torch.float32, requires_grad=False)
x.requires_grad_(True)
y = 2 * x + x * x * 3
print(x, y)

print("== In [31]")
y.backward()  # first run y.backward(), then x.grad has the value
print(x.grad)  # only works when x is scalar
show_error(y.backward)  # the graph is freed after the first backward

print("== In [34]")
# example 1:
x = torch.tensor([3, 4, 6], dtype=torch.float32, requires_grad=True)
y = x * x * 3
v = torch.tensor([1, 1, 2], dtype=torch.float)
y.backward(v)  # here it does the derivative calulation dyi/dxi = 6 * xi * v
print(x.grad)
show_error(lambda: (x * x * 3).backward())  # a vector output needs v

print("== In [41]")
# example 2:
g = torch.tensor([[1, 1, 1], [2, 3, 4]], dtype=torch.float32)
g.add_(torch.ones_like(g))
g.requires_grad_(True)  # _ here means replace the variable with new value
print(g, g.requires_grad)
gg = g * g * g
ggg = gg + 3 * g
v = torch.tensor([[1, 1, 2], [2, 2, 2]], dtype=torch.float)
ggg.backward(v)  # here we do the derivative calculation dggg/dg = 3g^2 + 3
print(g.grad)

print("== gg.backward(v) gives 3g^2 only")
show_error(lambda: gg.backward(v))  # gg's saved tensors went with ggg.backward
g.grad = None
gg = g * g * g
gg.backward(v)
print(g.grad)
print(g.grad.eq(3 * g.detach() ** 2 * v))

print("== In [49]")
x = torch.randn(3, requires_grad=True)
print(x)
y = x * 2
count = 0
while y.data.norm() < 100:  # L2 norm / Euclidean norm
    y = y * 2
    count += 1

print(y, count)

# Now in this case ``y`` is no longer a scalar. ``torch.autograd``
# could not compute the full Jacobian directly, but if we just
# want the vector-Jacobian product, simply pass the vector to
# ``backward`` as argument:

v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float)
y.backward(v)

print(x.grad)
print(y.data.requires_grad, y.data.grad_fn)

print("== In [53]")
x = torch.randn(3, requires_grad=True)
print(x.requires_grad)
print((x**2).requires_grad)

with torch.no_grad():
    print((x**2).requires_grad)

x = torch.randn(3, requires_grad=True)
x.requires_grad_(False)
print((x**2).requires_grad)

print("== In [55]")
x.requires_grad_(True)
print(x.requires_grad)
y = x.detach()
print(y.requires_grad)
print(x.eq(y))

print("== detach shares storage with the original tensor")
y.mul_(2)  # changes x too, and bumps the version counter they share
print(x.eq(y))
print(x._version, y._version)
