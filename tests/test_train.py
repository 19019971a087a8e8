"""The training loop, metrics and checkpoints (atomic, exact resume, clear errors)."""

import os

import numpy as np
import pytest

import wonderland as wl
from wonderland import data, nn, optim
from wonderland.io import CheckpointError


def _problem(seed=0):
    x, y = data.make_moons(240, noise=0.15, generator=wl.random.Generator(seed))
    train = data.DataLoader(data.TensorDataset(x[:200], y[:200]), 32, shuffle=True,
                            generator=wl.random.Generator(seed + 1))
    val = data.DataLoader(data.TensorDataset(x[200:], y[200:]), 64)
    return train, val


def _trainer(seed=0, dropout=0.0, checkpoint_dir=None):
    wl.random.seed(seed)
    model = nn.MLP([2, 32, 32, 2], dropout=dropout)
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = optim.StepLR(opt, 5, 0.5)
    return wl.train.Trainer(model, opt, nn.functional.cross_entropy, metrics=["accuracy"],
                            scheduler=sched, progress=False, checkpoint_dir=checkpoint_dir)


def test_fit_learns_and_records_history():
    train, val = _problem()
    t = _trainer()
    h = t.fit(train, 15, val_loader=val)
    assert len(h) == 15 and h["val_accuracy"][-1] >= 0.95
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["lr"][0] == 0.01 and h["lr"][-1] == pytest.approx(0.01 * 0.25)
    assert set(t.evaluate(val)) == {"loss", "accuracy"}


def test_early_stopping_restores_best():
    train, val = _problem()
    t = _trainer()
    es = wl.train.EarlyStopping(monitor="val_loss", patience=2)
    h = t.fit(train, 200, val_loader=val, early_stopping=es)
    assert len(h) < 200
    assert t.evaluate(val)["loss"] == pytest.approx(es.best)
    with pytest.raises(KeyError, match="was not computed"):
        _trainer().fit(train, 2, early_stopping=wl.train.EarlyStopping())


def test_resume_reaches_exactly_the_uninterrupted_parameters(tmp_path):
    train, _ = _problem(4)
    full = _trainer(7, dropout=0.2)
    full.fit(train, 6)
    final = {k: v.numpy().copy() for k, v in full.model.state_dict().items()}

    train, _ = _problem(4)
    first = _trainer(7, dropout=0.2, checkpoint_dir=str(tmp_path))
    first.fit(train, 3)
    path = tmp_path / "last.safetensors"
    assert path.exists()
    wl.random.seed(12345)                      # disturb every generator before resuming
    train, _ = _problem(4)
    next(iter(train))
    second = _trainer(99, dropout=0.2)
    second.fit(train, 6, resume_from=path)
    assert second.epoch == 6 and len(second.history) == 6
    for k, v in second.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), final[k], err_msg=k)


def test_damaged_or_mismatched_checkpoints_are_clear_errors(tmp_path):
    train, _ = _problem()
    t = _trainer()
    t.fit(train, 1)
    path = tmp_path / "c.safetensors"
    t.save_checkpoint(path)
    other = wl.train.Trainer(nn.MLP([2, 8, 2]), optim.Adam(nn.MLP([2, 8, 2]).parameters()),
                             nn.functional.cross_entropy, progress=False)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        other.load_checkpoint(path)
    sgd = wl.train.Trainer(t.model, optim.SGD(t.model.parameters(), lr=0.1),
                           nn.functional.cross_entropy, progress=False)
    with pytest.raises(CheckpointError, match="holds Adam state, not SGD"):
        sgd.load_checkpoint(path)
    raw = path.read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="damaged or not a safetensors file"):
        t.load_checkpoint(damaged)
    plain = tmp_path / "plain.safetensors"
    wl.io.save({"w": wl.ones(2)}, plain)
    with pytest.raises(CheckpointError, match="not a wonderland checkpoint"):
        t.load_checkpoint(plain)


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    wl.io.save({"w": wl.ones(3)}, path)
    import safetensors.numpy

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(KeyboardInterrupt):
        wl.io.save({"w": wl.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(wl.io.load(path)["w"].numpy(), 1.0)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_io_round_trip_with_metadata(tmp_path):
    path = tmp_path / "t.safetensors"
    wl.io.save({"a": wl.arange(5), "b": wl.ones((2, 2))}, path, metadata={"note": [1, 2]})
    tensors, meta = wl.io.load(path, with_metadata=True)
    assert tensors["a"].tolist() == [0, 1, 2, 3, 4] and meta == {"note": [1, 2]}


def test_metrics():
    m = wl.metrics
    logits = np.array([[2.0, 0.1], [0.2, 0.9], [3.0, -1.0]])
    y = np.array([0, 1, 1])
    assert m.accuracy(logits, y) == pytest.approx(2 / 3)
    assert m.accuracy(np.array([0, 1, 1]), y) == 1.0
    assert m.binary_accuracy(np.array([0.3, -2.0]), np.array([1, 0])) == 1.0
    assert m.mse(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == 2.0
    assert m.mae(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == 1.0
    np.testing.assert_array_equal(m.confusion_matrix(logits, y, 2), [[1, 0], [1, 1]])
    assert m.r2_score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0
    with pytest.raises(ValueError, match="predictions"):
        m.accuracy(np.zeros((3, 2, 2)), y)
