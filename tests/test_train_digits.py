"""examples/train_digits.py: a real eager training run, its checkpoint and --resume."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fusegrad as fg

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def digits():
    spec = importlib.util.spec_from_file_location("train_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_num_threads():
    # main() sets the thread count of this (shared) test process: put it back
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(digits, tmp_path, *args, name="ckpt.pt"):
    return digits.main(["--no-progress", "--checkpoint", str(tmp_path / name), *args])


def test_reaches_95_percent_and_resume_continues_identically(digits, tmp_path, capsys):
    first = run(digits, tmp_path, "--epochs", "4")
    assert first["epoch"] == 4 and first["accuracy"] >= 0.95
    ckpt = fg.load(tmp_path / "ckpt.pt")
    assert ckpt["epoch"] == 4 and ckpt["accuracy"] == first["accuracy"]
    assert list(ckpt["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sorted(ckpt["optimizer"]["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
    assert ckpt["optimizer"]["state"][0]["step"].item() == 4 * (1347 // 64)

    resumed = run(digits, tmp_path, "--epochs", "7", "--resume")
    out = capsys.readouterr().out
    assert "resumed from" in out and "at epoch 4" in out
    assert "epoch   5" in out and "epoch   1 " not in out.split("resumed from")[1]
    assert resumed["epoch"] == 7 and resumed["accuracy"] >= 0.95

    # the interrupted run ends exactly where an uninterrupted one does
    straight = run(digits, tmp_path, "--epochs", "7", name="straight.pt")
    assert straight == resumed
    a, b = fg.load(tmp_path / "ckpt.pt"), fg.load(tmp_path / "straight.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k]._data, b["model"][k]._data), k

    # nothing left to do: the checkpoint is evaluated, not retrained
    again = run(digits, tmp_path, "--epochs", "7", "--resume")
    assert again["epoch"] == 7 and again["accuracy"] == resumed["accuracy"]


def test_sgd_option_trains(digits, tmp_path):
    result = run(digits, tmp_path, "--epochs", "3", "--optimizer", "sgd", "--lr", "0.05")
    assert result["accuracy"] >= 0.9


def test_resume_without_checkpoint_and_compile_unavailable(digits, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="--resume: no checkpoint at"):
        run(digits, tmp_path, "--resume", name="missing.pt")
    monkeypatch.delattr(fg, "compile", raising=False)
    with pytest.raises(SystemExit, match="fusegrad.compile is not available"):
        run(digits, tmp_path, "--epochs", "1", "--compile")


def test_train_step_is_one_function(digits):
    model = digits.build_model(16)
    opt = fg.optim.SGD(model.parameters(), lr=0.1)
    step = digits.make_train_step(model, fg.nn.CrossEntropyLoss(), opt)
    x, y = fg.randn(8, 64), fg.randint(0, 10, (8,))
    before = model[0].weight._data.clone()
    loss = step(x, y)
    assert isinstance(loss, fg.Tensor) and loss.dim() == 0
    assert not torch.equal(before, model[0].weight._data)


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy" in proc.stdout
    assert (tmp_path / "checkpoints" / "digits.pt").exists()  # the default --checkpoint


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_compiled_run_matches_eager_run(digits, tmp_path, capsys, optimizer):
    args = ("--epochs", "3", "--optimizer", optimizer)
    eager = run(digits, tmp_path, *args, name="eager.pt")
    compiled = run(digits, tmp_path, *args, "--compile", name="compiled.pt")
    assert compiled["epoch"] == eager["epoch"] == 3
    assert abs(compiled["loss"] - eager["loss"]) < 1e-4 * max(1.0, eager["loss"])
    assert abs(compiled["accuracy"] - eager["accuracy"]) < 0.01
    a, b = fg.load(tmp_path / "eager.pt"), fg.load(tmp_path / "compiled.pt")
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert torch.allclose(a["model"][k]._data, b["model"][k]._data, atol=1e-4), k
    out = capsys.readouterr().out
    assert "compiled 2 signature(s)" in out and "step time" in out and "n_kernels" in out
