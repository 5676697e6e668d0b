"""fusegrad.save / fusegrad.load: round trips, atomic writes, truncated and foreign files."""

import io
import math
import os
from collections import OrderedDict

import pytest
import torch

import fusegrad as fg
from fusegrad import nn, serialization


def make_model(seed=0):
    fg.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def train(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = fg.from_torch(torch.randn(8, 4, generator=g))
        y = fg.from_torch(torch.randint(0, 3, (8,), generator=g))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return g


def same_tensor(a, b):
    return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and \
        a.requires_grad == b.requires_grad and torch.equal(a._data, b._data)


def test_tensor_and_parameter_round_trip(tmp_path):
    path = tmp_path / "t.pt"
    for obj in [fg.randn(3, 4), fg.tensor(2.5), fg.zeros(0, 3), fg.arange(6),
                fg.tensor([True, False]), fg.randn(2, 2).to(fg.bfloat16),
                fg.randn(3, dtype=fg.float64), fg.ones(2, requires_grad=True),
                nn.Parameter(fg.randn(2, 3)), nn.Parameter(fg.ones(1), requires_grad=False),
                fg.randn(4, 6)[:, 1::2]]:  # a strided view is saved by value
        fg.save(obj, path)
        back = fg.load(path)
        assert same_tensor(back, obj), obj


def test_nested_containers_round_trip(tmp_path):
    t = fg.randn(2)
    obj = {"a": [1, 2.5, "x", None, True, (3, 4.0)], 0: {"nested": OrderedDict(b=t)},
           "nums": [float("inf"), -0.0, 1e-300, 2**70, complex(1, -2)], "same": [t, t],
           "meta": (fg.float16, torch.device("cpu"), torch.Size([2, 3]))}
    fg.save(obj, tmp_path / "c.pt")
    back = fg.load(tmp_path / "c.pt")
    assert back["a"] == [1, 2.5, "x", None, True, (3, 4.0)]
    assert type(back["a"][5]) is tuple and type(back["a"][0]) is int
    assert isinstance(back[0]["nested"], OrderedDict)
    assert same_tensor(back[0]["nested"]["b"], t)
    assert back["nums"][:4] == [float("inf"), -0.0, 1e-300, 2**70]
    assert math.copysign(1, back["nums"][1]) == -1 and back["nums"][4] == complex(1, -2)
    # one tensor saved twice loads as one object
    assert back["same"][0] is back["same"][1] is back[0]["nested"]["b"]
    assert back["meta"] == (fg.float16, torch.device("cpu"), torch.Size([2, 3]))
    nan = fg.load(_saved(tmp_path, float("nan")))
    assert math.isnan(nan)


def _saved(tmp_path, obj, name="x.pt"):
    fg.save(obj, tmp_path / name)
    return tmp_path / name


def test_unsupported_object_raises_and_writes_nothing(tmp_path):
    class Foo:
        pass

    with pytest.raises(TypeError, match=r"cannot save the object\['opt'\]\[1\] of type "
                       r".*Foo"):
        fg.save({"opt": [1, Foo()]}, tmp_path / "bad.pt")
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="the folder '.*nope' does not exist"):
        fg.save({"x": 1}, tmp_path / "nope" / "x.pt")


def test_module_state_dict_round_trip(tmp_path):
    model = make_model()
    fg.save(model.state_dict(), tmp_path / "m.pt")
    sd = fg.load(tmp_path / "m.pt")
    assert isinstance(sd, OrderedDict) and list(sd) == list(model.state_dict())
    other = make_model(seed=5)
    assert repr(other.load_state_dict(sd)) == "<All keys matched successfully>"
    x = fg.randn(3, 4)
    assert torch.equal(other(x)._data, model(x)._data)


def test_checkpoint_round_trip_continues_training_identically(tmp_path):
    ref = make_model()
    ref_opt = fg.optim.Adam(ref.parameters(), lr=0.01)
    train(ref, ref_opt, 10)

    model = make_model()
    opt = fg.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, 5)
    fg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 5},
            tmp_path / "ckpt.pt")

    ckpt = fg.load(tmp_path / "ckpt.pt")
    model2 = make_model(seed=3)
    opt2 = fg.optim.Adam(model2.parameters(), lr=0.01)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    assert ckpt["epoch"] == 5 and list(ckpt["optimizer"]["state"]) == [0, 1, 2, 3]
    # replay the same second half of the data stream
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    for _ in range(5):
        x = fg.from_torch(torch.randn(8, 4, generator=g))
        y = fg.from_torch(torch.randint(0, 3, (8,), generator=g))
        opt2.zero_grad()
        nn.functional.cross_entropy(model2(x), y).backward()
        opt2.step()
    for a, b in zip(ref.parameters(), model2.parameters()):
        assert torch.equal(a._data, b._data)
    for sa, sb in zip(ref_opt.state.values(), opt2.state.values()):
        for k in sa:
            assert torch.equal(sa[k]._data, sb[k]._data), k


def test_truncated_checkpoint_raises_and_leaves_model_unchanged(tmp_path):
    model = make_model()
    path = tmp_path / "ckpt.pt"
    fg.save({"model": make_model(seed=4).state_dict()}, path)
    raw = path.read_bytes()
    before = {k: v._data.clone() for k, v in model.state_dict().items()}
    for cut in [0, 5, 20, 60, len(raw) // 2, len(raw) - 1]:
        path.write_bytes(raw[:cut])
        with pytest.raises(RuntimeError, match=rf"fusegrad.load: '{path}' is truncated or "
                           r"corrupt"):
            model.load_state_dict(fg.load(path)["model"])
        assert all(torch.equal(model.state_dict()[k]._data, v) for k, v in before.items())


def test_corrupt_foreign_and_missing_files(tmp_path):
    path = _saved(tmp_path, {"w": fg.randn(10)})
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="is truncated or corrupt \\(checksum mismatch\\)"):
        fg.load(path)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello, this is not a checkpoint at all")
    with pytest.raises(RuntimeError, match=rf"'{foreign}' is not a fusegrad checkpoint"):
        fg.load(foreign)
    missing = tmp_path / "nope" / "ckpt.pt"
    with pytest.raises(FileNotFoundError, match=rf"no such file: '{missing}'"):
        fg.load(missing)
    fake_zip = tmp_path / "fake.pt"
    fake_zip.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(RuntimeError, match="looks like a torch.save file but cannot be read"):
        fg.load(fake_zip)


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    old = make_model(seed=1).state_dict()
    fg.save(old, path)
    old_bytes = path.read_bytes()

    def failing_writer(f, parts):
        f.write(parts[0])
        f.write(parts[1][:10])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(serialization, "_write_payload", failing_writer)
    with pytest.raises(OSError, match="injected"):
        fg.save(make_model(seed=2).state_dict(), path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind
    back = fg.load(path)
    assert all(torch.equal(back[k]._data, old[k]._data) for k in old)

    # an interruption (KeyboardInterrupt) is handled the same way
    def interrupted(f, parts):
        f.write(parts[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "_write_payload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fg.save({"x": 1}, path)
    assert path.read_bytes() == old_bytes and os.listdir(tmp_path) == ["ckpt.pt"]


def test_file_objects_and_map_location(tmp_path):
    buf = io.BytesIO()
    t = fg.randn(3)
    fg.save({"t": t}, buf)
    buf.seek(0)
    back = fg.load(buf, map_location="cpu")
    assert same_tensor(back["t"], t)


def test_loads_torch_save_files(tmp_path):
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    path = tmp_path / "torch.pt"
    torch.save({"model": tmodel.state_dict(), "p": torch.nn.Parameter(torch.ones(2))}, path)
    ckpt = fg.load(path)
    assert isinstance(ckpt["p"], nn.Parameter)
    model = make_model(seed=9)
    model.load_state_dict(ckpt["model"])
    x = torch.randn(2, 4)
    assert torch.allclose(model(fg.from_torch(x))._data, tmodel(x).detach())


def test_wrong_shape_from_checkpoint_raises_torch_message_and_changes_nothing(tmp_path):
    path = _saved(tmp_path, nn.Linear(4, 5).state_dict())
    model = make_model()
    before = {k: v._data.clone() for k, v in model.state_dict().items()}
    sd = fg.load(path)
    with pytest.raises(RuntimeError, match=r"Error\(s\) in loading state_dict for Sequential"):
        model.load_state_dict({"0.weight": sd["weight"], "0.bias": sd["bias"],
                               **{k: v for k, v in model.state_dict().items()
                                  if not k.startswith("0.")}})
    assert all(torch.equal(model.state_dict()[k]._data, v) for k, v in before.items())
