"""Train an MLP on scikit-learn's handwritten digits with fusegrad, eagerly or compiled.

    python examples/train_digits.py                      # 64-128-10 MLP, Adam, 15 epochs
    python examples/train_digits.py --epochs 30 --resume # continue from the checkpoint
    python examples/train_digits.py --compile            # the same step through fusegrad.compile

The data (8x8 images, 1797 samples) ships with scikit-learn, so nothing is downloaded. The
features are standardised with the training split's statistics; the split is fixed by
``--seed``. After every epoch the held-out accuracy is printed and a checkpoint (model,
optimizer, epoch) is written atomically to ``--checkpoint``; ``--resume`` continues from it
and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # run from a checkout without installing fusegrad
    sys.path.insert(0, _REPO)

import fusegrad  # noqa: E402
from fusegrad import nn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15, help="total epochs to train (default 15)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="adam, or sgd with momentum 0.9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="checkpoints/digits.pt")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--compile", action="store_true", help="compile train_step")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the model is tiny, more threads mostly wait)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def load_data(seed):
    """Standardised float32 features and int64 labels, split 75/25 (stratified)."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target.astype(np.int64), test_size=0.25,
        random_state=seed, stratify=digits.target)
    mean = x_train.mean(0)
    std = x_train.std(0) + 1e-6  # some border pixels are always 0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return [fusegrad.from_numpy(np.ascontiguousarray(a))
            for a in (x_train, y_train, x_test, y_test)]


def build_model(hidden):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def build_optimizer(model, args):
    if args.optimizer == "adam":
        return fusegrad.optim.Adam(model.parameters(), lr=args.lr)
    return fusegrad.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)


def make_train_step(model, loss_fn, optimizer):
    """One training step as one function: what ``fusegrad.compile`` traces and replays."""

    def train_step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def batches(n, batch_size, seed, epoch):
    """Shuffled full batches; the order depends only on (seed, epoch), so a resumed run sees
    the same batches as an uninterrupted one. Dropping the last partial batch keeps one input
    shape, which a compiled step traces once."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for i in range(0, n - batch_size + 1, batch_size):
        yield fusegrad.from_numpy(order[i:i + batch_size])


def evaluate(model, x, y):
    model.eval()
    with fusegrad.no_grad():
        pred = model(x).argmax(1)
    model.train()
    return (pred == y).float().mean().item()


def main(argv=None):
    """Train and return ``{'epoch', 'accuracy', 'loss'}`` of the last epoch."""
    args = parse_args(argv)
    fusegrad.set_num_threads(args.threads)
    fusegrad.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    model = build_model(args.hidden)
    optimizer = build_optimizer(model, args)
    loss_fn = nn.CrossEntropyLoss()

    start_epoch = 0
    if args.resume:
        if not os.path.exists(args.checkpoint):
            sys.exit(f"train_digits.py: --resume: no checkpoint at '{args.checkpoint}'")
        ckpt = fusegrad.load(args.checkpoint)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = ckpt["epoch"]
        print(f"resumed from {args.checkpoint} at epoch {start_epoch} "
              f"(held-out accuracy {ckpt['accuracy']:.4f})")

    train_step = make_train_step(model, loss_fn, optimizer)
    # ---- compile hook: the whole step (forward, backward, optimizer) as one program
    if args.compile:
        if not hasattr(fusegrad, "compile"):
            sys.exit("train_digits.py: --compile: fusegrad.compile is not available in this "
                     "build of fusegrad; run without --compile")
        train_step = fusegrad.compile(train_step)
    # ----

    result = {"epoch": start_epoch, "accuracy": None, "loss": None}
    if start_epoch >= args.epochs:
        result["accuracy"] = evaluate(model, x_test, y_test)
        print(f"checkpoint already has {start_epoch} epochs (--epochs {args.epochs}); "
              f"held-out accuracy {result['accuracy']:.4f}")
        return result

    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, args.epochs), desc="digits", unit="epoch",
               disable=args.no_progress, initial=start_epoch, total=args.epochs)
    for epoch in bar:
        total, count = 0.0, 0
        for idx in batches(len(x_train), args.batch_size, args.seed, epoch):
            loss = train_step(x_train[idx], y_train[idx])
            total += loss.item()
            count += 1
        accuracy = evaluate(model, x_test, y_test)
        result = {"epoch": epoch + 1, "accuracy": accuracy, "loss": total / count}
        bar.set_postfix(loss=f"{result['loss']:.4f}", acc=f"{accuracy:.4f}")
        tqdm.write(f"epoch {epoch + 1:3d}  train loss {result['loss']:.4f}  "
                   f"held-out accuracy {accuracy:.4f}")
        save_checkpoint(args.checkpoint, model, optimizer, result)
    bar.close()
    print(f"trained {args.epochs - start_epoch} epochs in {time.perf_counter() - t0:.1f} s; "
          f"held-out accuracy {result['accuracy']:.4f}; checkpoint: {args.checkpoint}")
    if args.compile:
        report_compiled(train_step, model, optimizer, loss_fn, x_train, y_train, args)
    return result


def report_compiled(train_step, model, optimizer, loss_fn, x, y, args, iters=200):
    """Compile time, the step time against eager on copies of the model, program stats."""
    import copy
    import statistics

    progs = train_step.programs
    compile_s = sum(p.compile_times["total"] for p in progs)
    print(f"compiled {len(progs)} signature(s) in {compile_s * 1e3:.1f} ms "
          f"(backend {progs[-1].backend})")
    xb, yb = x[:args.batch_size], y[:args.batch_size]
    times = {}
    for name in ("eager", "compiled"):
        m = copy.deepcopy(model)
        opt = build_optimizer(m, args)
        opt.load_state_dict(optimizer.state_dict())
        step = make_train_step(m, loss_fn, opt)
        if name == "compiled":
            step = fusegrad.compile(step)
        for _ in range(10):
            step(xb, yb)
        samples = []
        for _ in range(iters):
            t = time.perf_counter()
            step(xb, yb)
            samples.append(time.perf_counter() - t)
        times[name] = statistics.median(samples)
    print(f"step time (median of {iters}): eager {times['eager'] * 1e6:.0f} us, compiled "
          f"{times['compiled'] * 1e6:.0f} us ({times['eager'] / times['compiled']:.2f}x)")
    stats = progs[-1].stats()
    print("program: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


def save_checkpoint(path, model, optimizer, result):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fusegrad.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": result["epoch"], "accuracy": result["accuracy"],
                   "loss": result["loss"]}, path)


if __name__ == "__main__":
    main()
