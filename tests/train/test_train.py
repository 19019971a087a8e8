"""The training loop, metrics and checkpoints (atomic, exact resume, clear errors)."""

import json
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


# ----------------------------------------------------------------------------- no silent results
def _params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _assert_same(before, model):
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_fit_on_a_loader_without_batches_is_an_error():
    loader = data.DataLoader(data.TensorDataset(wl.ones((5, 3)), wl.zeros(5, dtype=wl.int64)), 8,
                             drop_last=True)
    t = wl.train.Trainer(nn.Linear(3, 2), optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1),
                         nn.functional.cross_entropy, progress=False)
    with pytest.raises(ValueError, match=r"yields no batches \(its dataset has 5 samples, "
                                         r"batch_size 8 with drop_last=True\)"):
        t.fit(loader, 2)
    assert len(t.history) == 0

    class NoLength:
        def __iter__(self):
            return iter(())

    with pytest.raises(ValueError, match="yielded no samples in epoch 1"):
        t.fit(NoLength(), 1)


def test_a_nan_monitored_value_is_not_reported_as_missing():
    es = wl.train.EarlyStopping(patience=1)
    with pytest.raises(FloatingPointError, match="'val_loss' is NaN at epoch 3"):
        es.update(3, float("nan"), nn.Linear(2, 2))
    with pytest.raises(KeyError, match="was not computed"):
        es.update(3, None, nn.Linear(2, 2))


def test_resuming_at_or_past_the_saved_epoch_says_so(tmp_path):
    train, _ = _problem()
    _trainer(checkpoint_dir=str(tmp_path)).fit(train, 3)
    path = tmp_path / "last.safetensors"
    with pytest.warns(UserWarning, match="already at epoch 3 .* nothing to train"):
        h = _trainer().fit(train, 3, resume_from=path)
    assert len(h) == 3
    with pytest.raises(ValueError, match="already at epoch 3 .* past epochs=2"):
        _trainer().fit(train, 2, resume_from=path)
    again = _trainer()
    again.fit(train, 1)
    with pytest.warns(UserWarning, match="already at epoch 1 \\(from earlier calls to fit\\)"):
        again.fit(train, 1)


def test_a_failed_load_leaves_model_and_optimizer_untouched(tmp_path):
    train, _ = _problem()
    wl.random.seed(3)
    wider = nn.MLP([2, 32, 32, 3])                   # only the last layer differs
    path = tmp_path / "other.safetensors"
    wl.io.save_checkpoint(path, wider, optim.Adam(wider.parameters(), lr=0.01))
    t = _trainer()
    t.fit(train, 1)
    before, opt_before = _params(t.model), t.optimizer.state_dict()
    with pytest.raises(CheckpointError, match="does not fit the model"):
        t.load_checkpoint(path)
    _assert_same(before, t.model)

    good = tmp_path / "good.safetensors"
    _trainer(5).fit(train, 2)
    donor = _trainer(5)
    donor.fit(train, 2)
    donor.save_checkpoint(good)
    tensors, meta = wl.io.load(good, with_metadata=True)
    key = next(k for k in tensors if k.startswith("optimizer/"))
    tensors[key] = wl.zeros((7,))                        # one bad optimiser tensor
    bad = tmp_path / "bad-optimizer.safetensors"
    wl.io.save(tensors, bad, meta)
    rng_before = wl.random.get_state()
    with pytest.raises(CheckpointError, match="does not fit the optimizer"):
        t.load_checkpoint(bad)
    _assert_same(before, t.model)
    after = t.optimizer.state_dict()
    for idx, st in opt_before["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(after["state"][idx][k], v)
    assert wl.random.get_state() == rng_before and t.epoch == 1


def _crafted(tmp_path, name, change):
    train, _ = _problem()
    t = _trainer()
    t.fit(train, 1)
    path = tmp_path / "source.safetensors"
    t.save_checkpoint(path)
    tensors, meta = wl.io.load(path, with_metadata=True)
    change(tensors, meta)
    out = tmp_path / name
    wl.io.save(tensors, out, meta)
    return t, out


@pytest.mark.parametrize("name,change,message", [
    ("no-rng", lambda t, m: m.pop("rng"), "holds no random generator state"),
    ("bad-rng", lambda t, m: m.update(rng={"state": 3}), "not a valid random generator state"),
    ("no-type", lambda t, m: m["optimizer"].pop("type"), "does not name the optimizer type"),
    ("key-abc", lambda t, m: t.update({"optimizer/abc/x": wl.ones(2)}), "malformed optimizer entry"),
    ("key-short", lambda t, m: t.update({"optimizer/0": wl.ones(2)}), "malformed optimizer entry"),
    ("key-index", lambda t, m: t.update({"optimizer/99/exp_avg": wl.ones(2)}),
     "state for parameter 99, but the optimizer's parameters are numbered 0 to 5"),
    ("groups", lambda t, m: m["optimizer"].update(param_groups="x"), "optimizer state .* is damaged"),
    ("lr", lambda t, m: m["optimizer"]["param_groups"][0].update(lr="fast"), "lr must be a number"),
    ("schedule", lambda t, m: m.update(scheduler={"last_epoch": 1}), "schedule state"),
    ("epoch", lambda t, m: m["extra"].update(epoch="one"), "epoch in .* must be a non-negative"),
])
def test_crafted_checkpoint_metadata_raises_checkpoint_error(tmp_path, name, change, message):
    t, path = _crafted(tmp_path, name, change)
    before = _params(t.model)
    with pytest.raises(CheckpointError, match=message):
        t.load_checkpoint(path)
    _assert_same(before, t.model)


def test_a_flipped_byte_in_tensor_data_is_detected(tmp_path):
    path = tmp_path / "w.safetensors"
    wl.io.save({"w": wl.arange(64, dtype=wl.float32)}, path)
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    raw[8 + header + 17] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"damaged: the data of \['w'\] does not match"):
        wl.io.load(path)


def test_save_errors_name_the_users_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "w.safetensors"
    with pytest.raises(NotADirectoryError) as err:
        wl.io.save({"w": wl.ones(2)}, target)
    assert f"save: cannot write {target}: {blocker} is a file, not a folder" in str(err.value)
    with pytest.raises(IsADirectoryError, match=f"save: cannot write {tmp_path}"):
        wl.io.save({"w": wl.ones(2)}, tmp_path)


def test_save_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b):
        events.append(("rename", None))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    wl.io.save({"w": wl.ones(2)}, tmp_path / "w.safetensors")
    assert events == [("fsync", False), ("rename", None), ("fsync", True)]


# ----------------------------------------------------------------------------- Trainer features
def _regression(n=64, batch=16, seed=0):
    g = wl.random.Generator(seed)
    x = g.normal((n, 3))
    y = x @ wl.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * g.normal((n, 1))
    return x, y, data.DataLoader(data.TensorDataset(x, y), batch)


def _linear(seed=0):
    wl.random.seed(seed)
    return nn.Linear(3, 1)


def test_step_scheduler_warms_up_every_optimiser_step():
    _, _, loader = _regression()                       # 4 batches per epoch
    model = _linear()
    opt = optim.SGD(model.parameters(), lr=0.1)
    warm = optim.LinearLR(opt, start_factor=0.25, total_iters=6)
    epoch_decay = optim.StepLR(opt, 1, gamma=1.0)      # a per-epoch schedule beside it
    seen = []

    class Record(wl.train.Callback):
        def on_step_end(self, trainer, logs):
            seen.append(round(logs["lr"], 6))

    wl.train.Trainer(model, opt, nn.functional.mse_loss, scheduler=epoch_decay,
                     step_scheduler=warm, callbacks=[Record()], progress=False).fit(loader, 2)
    expected = [round(0.1 * (0.25 + 0.75 * min(s, 6) / 6), 6) for s in range(1, 9)]
    assert seen == expected


def test_compute_loss_trains_on_any_batch_structure():
    x, y, _ = _regression()
    batches = [{"features": x[i:i + 16], "target": y[i:i + 16]} for i in range(0, 64, 16)]
    model = _linear()

    def compute_loss(m, batch):
        return nn.functional.mse_loss(m(batch["features"]), batch["target"])

    t = wl.train.Trainer(model, optim.SGD(model.parameters(), lr=0.1),
                         compute_loss=compute_loss, progress=False)
    h = t.fit(batches, 10, val_loader=batches)
    assert h["train_loss"][-1] < 0.1 * h["train_loss"][0]
    assert h["val_loss"][-1] == pytest.approx(t.evaluate(batches)["loss"])
    with pytest.raises(TypeError, match="compute_loss"):
        wl.train.Trainer(model, optim.SGD(model.parameters(), lr=0.1),
                         nn.functional.mse_loss, progress=False).fit(batches, 1)


def test_callbacks_are_called_in_order():
    _, _, loader = _regression()
    calls = []

    class Record(wl.train.Callback):
        def on_train_begin(self, trainer):
            calls.append("begin")

        def on_step_end(self, trainer, logs):
            calls.append(f"step{logs['step']}")

        def on_epoch_end(self, trainer, logs):
            calls.append(f"epoch{logs['epoch']}")
            if logs["epoch"] == 2:
                trainer.stop_training = True

        def on_train_end(self, trainer):
            calls.append("end")

    model = _linear()
    h = wl.train.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.functional.mse_loss,
                         callbacks=[Record()], progress=False).fit(loader, 5)
    assert len(h) == 2
    assert calls == ["begin", "step1", "step2", "step3", "step4", "epoch1",
                     "step5", "step6", "step7", "step8", "epoch2", "end"]


@pytest.mark.parametrize("n", [64, 48])
def test_gradient_accumulation_equals_larger_batches(n):
    """Two batches of 16 accumulated make the step one batch of 32 makes (with a
    shorter last accumulation averaged over what it holds)."""
    x, y, small = _regression(n, 16)
    big = data.DataLoader(data.TensorDataset(x, y), 32)
    runs = []
    for loader, k in ((small, 2), (big, 1)):
        model = _linear()
        t = wl.train.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.functional.mse_loss,
                             accumulate_steps=k, progress=False)
        t.fit(loader, 3)
        runs.append((_params(model), t.step_count))
    (a, steps_a), (b, steps_b) = runs
    assert steps_a == steps_b == 3 * len(big)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_gradient_clipping_options():
    _, _, loader = _regression()
    model = _linear()
    before = _params(model)
    t = wl.train.Trainer(model, optim.SGD(model.parameters(), lr=1.0), nn.functional.mse_loss,
                         clip_grad_value=1e-3, progress=False)
    t.train_step(next(iter(loader)))
    for k, v in _params(model).items():
        assert np.abs(v - before[k]).max() <= 1e-3 + 1e-7
    with pytest.raises(ValueError, match="clip_grad_value must be a non-negative number"):
        wl.train.Trainer(model, t.optimizer, nn.functional.mse_loss, clip_grad_value=-1)
    with pytest.raises(ValueError, match="accumulate_steps must be a positive integer"):
        wl.train.Trainer(model, t.optimizer, nn.functional.mse_loss, accumulate_steps=0)


def test_metrics_are_written_as_json_lines(tmp_path):
    _, _, loader = _regression()
    model = _linear()
    log = tmp_path / "logs" / "metrics.jsonl"
    t = wl.train.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.functional.mse_loss,
                         callbacks=[wl.train.JSONLinesLogger(log, every_n_steps=2)],
                         progress=False)
    t.fit(loader, 2, val_loader=loader)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    steps = [r for r in rows if r["event"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert [r["train_loss"] for r in epochs] == t.history["train_loss"]
    assert [r["val_loss"] for r in epochs] == t.history["val_loss"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8]


def test_resume_with_a_per_step_schedule_is_exact(tmp_path):
    def make():
        model = _linear(1)
        opt = optim.Adam(model.parameters(), lr=0.05)
        return wl.train.Trainer(model, opt, nn.functional.mse_loss, progress=False,
                                step_scheduler=optim.LinearLR(opt, 0.1, total_iters=10),
                                scheduler=optim.StepLR(opt, 2, 0.5), checkpoint_dir=str(tmp_path))
    _, _, loader = _regression()
    full = make()
    full.fit(loader, 5)
    first = make()
    first.fit(loader, 2)
    second = make()
    second.fit(loader, 5, resume_from=tmp_path / "last.safetensors")
    _assert_same(_params(full.model), second.model)
