"""Ctrl-C during training: an interrupted checkpoint write leaves no temporary file
behind (and one that a hard kill left is removed at the next start), and after resuming
the metrics log holds every epoch exactly once."""

import json
import os

import pytest

import wonderland as wl
from wonderland import data, nn, optim


def _trainer(folder, log):
    wl.random.seed(0)
    model = nn.MLP([2, 16, 2])
    opt = optim.Adam(model.parameters(), lr=0.01)
    return wl.train.Trainer(model, opt, nn.functional.cross_entropy, progress=False,
                            checkpoint_dir=str(folder),
                            callbacks=[wl.train.JSONLinesLogger(log, every_n_steps=2)])


def _loader():
    x, y = data.make_moons(96, noise=0.1, generator=wl.random.Generator(0))
    return data.DataLoader(data.TensorDataset(x, y), 32, shuffle=True,
                           generator=wl.random.Generator(1))


def _temporaries(folder):
    return [f for f in os.listdir(folder) if f.startswith(".tmp-")]


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_ctrl_c_while_writing_a_checkpoint_leaves_no_temporary_file(tmp_path, monkeypatch):
    import safetensors.numpy

    real = safetensors.numpy.save_file
    calls = []

    def interrupted(arrays, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:                      # epoch 3's checkpoint: Ctrl-C mid-write
            with open(filename, "wb") as f:
                f.write(b"")
            raise KeyboardInterrupt
        return real(arrays, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted)
    log = tmp_path / "metrics.jsonl"
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, log).fit(_loader(), 5)
    assert _temporaries(tmp_path) == []
    assert all(os.path.basename(f).startswith(".tmp-") for f in calls)
    # the epoch whose checkpoint was interrupted was not logged
    assert [r["epoch"] for r in _records(log) if r["event"] == "epoch"] == [1, 2]


def test_resuming_after_an_interrupted_checkpoint_logs_every_epoch_once(tmp_path, monkeypatch):
    import safetensors.numpy

    real = safetensors.numpy.save_file
    count = [0]

    def interrupted(arrays, filename, metadata=None):
        count[0] += 1
        if count[0] == 3:
            raise KeyboardInterrupt
        return real(arrays, filename, metadata=metadata)

    log = tmp_path / "metrics.jsonl"
    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, log).fit(_loader(), 5)
    monkeypatch.undo()
    # a hard kill (no clean-up at all) would leave this behind; the next start removes it
    stale = tmp_path / ".tmp-0123456789ab-last.safetensors"
    stale.write_bytes(b"")
    old_style = tmp_path / ".tmp-x7ab_9qlast.safetensors"      # the earlier naming
    old_style.write_bytes(b"")
    resumed = _trainer(tmp_path, log)
    resumed.fit(_loader(), 5, resume_from=tmp_path / "last.safetensors")
    assert _temporaries(tmp_path) == []
    records = _records(log)
    epochs = [r["epoch"] for r in records if r["event"] == "epoch"]
    assert epochs == [1, 2, 3, 4, 5]
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))      # no step twice
    assert [r["train_loss"] for r in records if r["event"] == "epoch"] == \
        resumed.history["train_loss"]


def test_a_missing_epoch_line_is_restored_from_the_checkpoint(tmp_path):
    """Killed after the checkpoint of an epoch but before its log line: the resumed run
    writes the line from the checkpoint's history."""
    log = tmp_path / "metrics.jsonl"
    first = _trainer(tmp_path, log)
    first.fit(_loader(), 3)
    lines = log.read_text().splitlines()
    last_epoch = max(i for i, line in enumerate(lines) if '"event": "epoch"' in line)
    log.write_text("\n".join(lines[:last_epoch]) + "\n")           # epoch 3's line lost
    resumed = _trainer(tmp_path, log)
    resumed.fit(_loader(), 4, resume_from=tmp_path / "last.safetensors")
    epochs = [r["epoch"] for r in _records(log) if r["event"] == "epoch"]
    assert epochs == [1, 2, 3, 4]


def test_removing_temporary_files_touches_only_those_of_the_target(tmp_path):
    target = tmp_path / "last.safetensors"
    mine = tmp_path / ".tmp-abc-last.safetensors"
    other = tmp_path / ".tmp-abc-best.safetensors"
    unrelated = tmp_path / "notes.txt"
    for f in (mine, other, unrelated):
        f.write_text("x")
    assert wl.io.temporary_files(target) == [str(mine)]
    assert wl.io.remove_temporary_files(target) == [str(mine)]
    assert other.exists() and unrelated.exists() and not mine.exists()
