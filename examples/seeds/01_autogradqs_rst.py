import fusegrad as torch

# Seed 001: the sphinx-gallery (rst) copy of the "Learn the Basics / Autograd"
# tutorial (seed 000 is the notebook copy). Every code block is here, in order,
# followed by a few lines exercising what its notes describe: leaf-only .grad,
# retain_graph, frozen parameters, detach, and torch.autograd.grad/backward.

torch.manual_seed(0)


def show_error(fn):
    """Run fn, print the error it raises; print 'no error' when it raises none."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any error is part of the output
        print(f"{type(e).__name__}: {e}")
    else:
        print("no error")


print("== lines 28-39: the network")
x = torch.ones(5)  # input tensor
y = torch.zeros(3)  # expected output
w = torch.randn(5, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
z = torch.matmul(x, w) + b
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
print(z)
print(loss)

print("== lines 66-70: grad_fn")
print(f"Gradient function for z = {z.grad_fn}")
print(f"Gradient function for loss = {loss.grad_fn}")
print(loss.grad_fn.next_functions)

print("== lines 82-88: computing gradients")
loss.backward()
print(w.grad)
print(b.grad)

print("== note: only leaves with requires_grad get .grad")
print(x.grad, x.requires_grad, x.is_leaf)
print(z.grad)  # None (torch also warns on stderr)
# retain_grad() opts a non-leaf in.
z = torch.matmul(x, w) + b
z.retain_grad()
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
loss.backward(retain_graph=True)
print(z.grad)
print(w.grad)  # accumulated over two backward calls

print("== note: a second backward needs retain_graph=True")
loss.backward()  # allowed: the previous call retained the graph
print(b.grad)
show_error(loss.backward)  # the graph was freed by the call above

print("== lines 113-122: no_grad")
z = torch.matmul(x, w) + b
print(z.requires_grad)

with torch.no_grad():
    z = torch.matmul(x, w) + b
print(z.requires_grad)

print("== lines 126-131: detach")
z = torch.matmul(x, w) + b
z_det = z.detach()
print(z_det.requires_grad)

print("== frozen parameters (reason 1 to disable tracking)")
w.requires_grad_(False)
w.grad = None
b.grad = None
z = torch.matmul(x, w) + b
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
loss.backward()
print(w.grad, b.grad)
w.requires_grad_(True)

print("== torch.autograd.grad returns gradients instead of accumulating them")
b.grad = None
z = torch.matmul(x, w) + b
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
gw, gb = torch.autograd.grad(loss, [w, b], retain_graph=True)
print(gw)
print(gb)
print(w.grad, b.grad)

print("== torch.autograd.backward with inputs= accumulates into those only")
torch.autograd.backward(loss, inputs=[b])
print(w.grad, b.grad)

print("== lines 203-215: Jacobian products and accumulation")
inp = torch.eye(4, 5, requires_grad=True)
out = (inp + 1).pow(2).t()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"First call\n{inp.grad}")
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")
inp.grad.zero_()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nCall after zeroing gradients\n{inp.grad}")
print(out.shape, inp.grad.shape)

print("== the vector v must have the output's shape")
show_error(lambda: out.backward(torch.ones_like(inp), retain_graph=True))

print("== note: backward() is backward(torch.tensor(1.0)) for a scalar")
inp.grad = None
total = out.sum()
total.backward(retain_graph=True)
print(inp.grad)
total.backward(torch.tensor(1.0))
print(inp.grad)
