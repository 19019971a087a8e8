"""Residual networks, the WaveNet-style stack and character model, the receptive-field
calculator, augmentations and sequence utilities."""

import os

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from conftest import f64


def test_resnet_and_plain_twin():
    x = wl.random.normal((2, 8, 8, 1))
    res = wl.models.ResNet(1, 10, widths=(8, 16), depths=(2, 1))
    plain = wl.models.ResNet(1, 10, widths=(8, 16), depths=(2, 1), residual=False, norm=None)
    assert res(x).shape == (2, 10) and plain(x).shape == (2, 10)
    assert res.depth == plain.depth == 2 + 3 * 2
    assert any("skip" in k for k in res.state_dict()) and not any("skip.0" in k for k in plain.state_dict())
    assert not any("running_mean" in k for k in plain.state_dict())
    bott = wl.models.ResNet(1, 5, widths=(4, 8), depths=(1, 1), block="bottleneck", norm="group")
    assert bott(x).shape == (2, 5) and bott.head.in_features == 32
    bott(x).sum().backward()
    assert all(p.grad is not None for p in bott.parameters())
    with pytest.raises(ValueError, match="block must be"):
        wl.models.ResNet(block="wide")


def test_residual_block_is_identity_plus_body():
    blk = nn.ResidualBlock(4, 4, norm=None, act="identity").double()
    x = f64(np.random.default_rng(0).standard_normal((1, 5, 5, 4)))
    np.testing.assert_allclose(blk(x).numpy(), (blk.body(x) + x).numpy())
    plain = nn.ResidualBlock(4, 4, norm=None, act="identity", residual=False).double()
    plain.load_state_dict(blk.state_dict())
    np.testing.assert_allclose(plain(x).numpy(), blk.body(x).numpy())


def test_wavenet_is_causal_and_generates():
    net = wl.models.WaveNet(2, 3, channels=8, dilations=(1, 2, 4)).double()
    assert net.receptive_field == 8
    x = f64(np.random.default_rng(1).standard_normal((1, 20, 2)))
    jac = wl.jacrev(lambda v: net(v)[0, 9])(x).numpy()     # d out[t=9] / d in
    assert np.abs(jac[:, 0, 10:]).max() == 0.0               # no future input is seen
    assert np.abs(jac[:, 0, 2:10]).max() > 0 and np.abs(jac[:, 0, :2]).max() == 0.0   # 8-step window
    model = wl.models.CharCNN(12, 4, 8, dilations=(1, 2))
    a = model.generate([1, 2, 3], 10, generator=wl.random.Generator(0))
    b = model.generate([1, 2, 3], 10, generator=wl.random.Generator(0))
    assert len(a) == 10 and (a == b).all() and a.max() < 12
    f = wl.models.forecast(wl.models.WaveNet(1, 1, channels=4, dilations=(1, 2)), np.zeros((6, 1)), 4)
    assert f.shape == (4, 1)


def test_receptive_field_calculator():
    rf = nn.receptive_field([(3, 1, 1), (2, 2, 1), (3, 1, 1), (3, 1, 2)])
    assert [r["receptive_field"][0] for r in rf] == [3, 4, 8, 16]
    assert rf[-1]["jump"] == (2,)
    stack = nn.Sequential(nn.Conv2d(1, 2, (3, 5)), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, stride=2))
    last = nn.receptive_field(stack)[-1]
    assert last["receptive_field"] == (8, 10) and last["jump"] == (4, 4)
    with pytest.raises(ValueError, match="no convolution"):
        nn.receptive_field(nn.Sequential(nn.ReLU()))


def test_augmentations():
    g = wl.random.Generator(0)
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    t = wl.data.augment.random_translate(x, 1, generator=g)
    assert t.shape == x.shape
    c = wl.data.augment.random_crop(x, 3, padding=1, generator=g)
    assert c.shape == (2, 3, 3, 1)
    f = wl.data.augment.random_flip(x, p=1.0, generator=g)
    np.testing.assert_array_equal(f, x[:, :, ::-1])
    y = np.array([0, 3])
    mx, my = wl.data.augment.mixup(x, y, 4, alpha=0.4, generator=g)
    np.testing.assert_allclose(my.sum(1), 1.0, rtol=1e-6)
    cx, cy = wl.data.augment.cutmix(x, y, 4, generator=g)
    np.testing.assert_allclose(cy.sum(1), 1.0, rtol=1e-6)
    moved = (cx != x).any(axis=(1, 2, 3))
    assert (cy.max(1) < 1.0).any() == moved.any()
    loader = wl.data.DataLoader(wl.data.TensorDataset(wl.tensor(x), wl.tensor(y)), 2,
                                transform=wl.data.Compose(wl.data.RandomFlip(1.0), wl.data.MixUp(4)))
    bx, by = next(iter(loader))
    assert bx.shape == (2, 5, 5, 1) and by.shape == (2, 4) and by.dtype == wl.float32
    # soft labels train with cross_entropy
    logits = wl.zeros((2, 4), requires_grad=True)
    nn.functional.cross_entropy(logits, by).backward()
    assert logits.grad.shape == (2, 4)
    with pytest.raises(ValueError, match="expected images"):
        wl.data.augment.random_flip(np.zeros((3, 3)))


def test_sequence_utilities():
    padded, mask = wl.data.pad_sequences([np.ones((3, 2)), np.ones((1, 2)) * 2])
    assert padded.shape == (2, 3, 2) and mask.tolist() == [[True] * 3, [True, False, False]]
    assert padded.numpy()[1, 1:].sum() == 0
    np.testing.assert_array_equal(wl.data.lengths_to_mask(np.array([2, 0]), 3),
                                  [[True, True, False], [False, False, False]])
    inp, tgt = wl.data.shift_for_next_step(np.arange(8).reshape(2, 4))
    assert inp.tolist() == [[0, 1, 2], [4, 5, 6]] and tgt.tolist() == [[1, 2, 3], [5, 6, 7]]
    assert wl.data.sliding_windows(np.arange(5), 3).tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    with pytest.raises(ValueError, match="sequence 1 has shape"):
        wl.data.pad_sequences([np.ones((2, 2)), np.ones((2, 3))])


def test_text_and_series_sources(tmp_path):
    text = wl.data.default_text(5000)
    assert len(text) == 5000 and "statement" in text
    vocab = wl.data.CharVocab(text)
    assert vocab.decode(vocab.encode(text[:100])) == text[:100]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vocab.encode("\u2603")
    s = wl.data.load_membrane_potential(4)
    assert s.shape == (3000,) and s.dtype == wl.float32
    p = tmp_path / "t.txt"
    p.write_text("hello world")
    assert wl.data.read_text(str(p)) == "hello world"
    with pytest.raises(FileNotFoundError):
        wl.data.read_text(str(tmp_path / "missing.txt"))


def test_character_model_on_a_user_text(shared_data, tmp_path):
    """Chapter 8's text experiment on a user-given file (the shared Alice text)."""
    path = os.path.join(shared_data, "alice.txt")
    if not os.path.exists(path):
        pytest.skip(f"shared data not found at {shared_data} (set WONDERLAND_DATA)")
    from wonderland.experiments.base import Context
    from wonderland.experiments.ch08_sequences import _text
    source, n_chars, vocab, unigram, bits, sample, rf = _text(
        Context(str(tmp_path), quick=True, options={"text": path}))
    assert source == "alice.txt" and n_chars > 100_000
    assert bits < unigram - 0.8
    assert sample.startswith("The ")
