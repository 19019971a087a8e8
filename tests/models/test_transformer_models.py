"""GPT, the encoder–decoder with greedy and beam search, ViT, mixers, the audio
transformer, tokenisers and the shipped data."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.models.gpt import sample_next


def test_gpt_shapes_tying_and_cached_generation(rng):
    wl.random.seed(0)
    m = wl.models.GPT(20, 16, 2, 2, 16)
    idx = rng.integers(0, 20, (2, 5))
    logits = m(idx)
    assert logits.shape == (2, 5, 20)
    assert not any("lm_head" in n for n, _ in m.named_parameters())     # tied: no extra matrix
    m.loss(idx, idx).backward()
    assert m.wte.weight.grad is not None and np.abs(m.wte.weight.grad.numpy()).sum() > 0
    a = m.generate(idx, 14, top_k=1, use_cache=True)
    b = m.generate(idx, 14, top_k=1, use_cache=False)
    assert a.shape == (2, 19)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy()[:, :5], idx)
    # the cache must equal the full forward on the same tokens
    caches = [wl.nn.KVCache() for _ in m.blocks]
    with wl.no_grad():
        full = m(idx).numpy()
        step = np.concatenate([m(idx[:, :2], caches).numpy()] +
                              [m(idx[:, t:t + 1], caches).numpy() for t in range(2, 5)], axis=1)
    np.testing.assert_allclose(step, full, atol=2e-5)
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(rng.integers(0, 20, (1, 17)))
    for pos in ("sinusoidal", "rope", "none"):
        g = wl.models.GPT(20, 16, 1, 2, 16, positions=pos)
        x = g.generate(idx, 6, top_k=1, use_cache=True)
        np.testing.assert_array_equal(x.numpy(), g.generate(idx, 6, top_k=1, use_cache=False).numpy())


def test_sampling_filters(rng):
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 400))
    gen = wl.random.Generator(0)
    top2 = sample_next(logits, top_k=2, generator=gen)
    assert set(np.unique(top2)) <= {0, 1} and len(np.unique(top2)) == 2
    nucleus = sample_next(logits, top_p=0.7, generator=gen)     # 0.5 + 0.3 reach 0.7
    assert set(np.unique(nucleus)) == {0, 1}
    np.testing.assert_array_equal(sample_next(logits, top_k=1), np.zeros(400))
    cold = sample_next(logits, temperature=0.05, generator=gen)
    assert (cold == 0).mean() > 0.99
    free = sample_next(logits, generator=gen)
    assert abs((free == 0).mean() - 0.5) < 0.1


def test_beam_search_is_never_worse_than_greedy(rng):
    wl.random.seed(3)
    m = wl.models.Seq2SeqTransformer(12, 9, d_model=16, nhead=2, num_encoder_layers=1,
                                     num_decoder_layers=1, dim_feedforward=32)
    m.eval()
    src = rng.integers(3, 12, (6, 5))
    greedy = m.greedy_decode(src, 6)
    assert m.beam_search(src, 1, 6) == greedy

    def score(s, toks):
        ti = np.array([[1] + toks])
        to = np.array(toks + [2])
        with wl.no_grad():
            lg = m(s[None], ti).numpy()[0].astype(np.float64)
        lp = lg - lg.max(-1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
        finished = len(toks) < 6
        return lp[np.arange(len(to)), to].sum() if finished else lp[np.arange(len(toks)), to[:-1]].sum()

    beams = m.beam_search(src, 4, 6)
    for s, g, b in zip(src, greedy, beams):
        if len(g) < 6 and len(b) < 6:            # both finished with eos: compare log-probabilities
            assert score(s, b) >= score(s, g) - 1e-5


def test_seq2seq_learns_to_copy():
    wl.random.seed(0)
    m = wl.models.Seq2SeqTransformer(8, 8, d_model=32, nhead=2, num_encoder_layers=1,
                                     num_decoder_layers=1, dim_feedforward=64)
    opt = wl.optim.Adam(m.parameters(), 5e-3)
    g = np.random.default_rng(0)
    for _ in range(200):
        src = g.integers(3, 8, (32, 4))
        tin = np.concatenate([np.ones((32, 1), np.int64), src], 1)
        tout = np.concatenate([src, np.full((32, 1), 2)], 1)
        opt.zero_grad()
        m.loss(src, tin, tout).backward()
        opt.step()
    test = g.integers(3, 8, (20, 4))
    out = m.greedy_decode(test, 6)
    assert np.mean([o == list(t) for o, t in zip(out, test)]) >= 0.4     # chance: 5⁻⁴


@pytest.mark.parametrize("make", [
    lambda: wl.models.ViT(8, 2, 1, 10, 16, 1, 2, num_registers=2),
    lambda: wl.models.MLPMixer(8, 2, 1, 10, 16, 1),
    lambda: wl.models.MetaFormer(8, 2, 1, 10, 16, 1, mixer="pooling"),
    lambda: wl.models.MetaFormer(8, 2, 1, 10, 16, 1, mixer="fourier"),
    lambda: wl.models.MetaFormer(8, 2, 1, 10, 16, 1, mixer="attention"),
])
def test_vision_models_train_every_parameter(rng, make):
    wl.random.seed(0)
    model = make()
    x = wl.tensor(rng.random((4, 8, 8, 1)).astype(np.float32))
    out = model(x)
    assert out.shape == (4, 10)
    wl.nn.functional.cross_entropy(out, np.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def test_log_spectrogram_and_audio_models(rng):
    audio = rng.standard_normal((2, 1000)).astype(np.float64)
    spec = wl.models.log_spectrogram(wl.tensor(audio), frame=200, hop=80).numpy()
    frames = np.stack([audio[:, i * 80:i * 80 + 200] for i in range(11)], 1) * np.hanning(200)
    expect = 0.5 * np.log(np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-6)
    np.testing.assert_allclose(spec, expect, atol=1e-8)
    for frontend in ("spectrogram", "waveform"):
        m = wl.models.AudioTransformer(10, 16, depth=1, heads=2, frontend=frontend,
                                       conv_layers=((16, 10, 5), (16, 3, 2)))
        out = m(wl.tensor(rng.standard_normal((2, 2000)).astype(np.float32)))
        assert out.shape == (2, 10)


def test_char_and_bpe_tokenizers_round_trip():
    text = wl.data.load_alice()
    assert len(text) == 144396 and text.count("Alice") > 300
    char = wl.data.CharTokenizer(text)
    ids = char.encode(text[:5000])
    assert ids.dtype == np.int64 and char.decode(ids) == text[:5000]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char.encode("€")
    bpe = wl.data.BPETokenizer.train(text[:40000], vocab_size=400)
    assert 256 < bpe.vocab_size <= 400
    sample = text[60000:62000]
    ids = bpe.encode(sample)
    assert len(ids) < len(sample) * 0.8                 # merges shorten the text
    assert bpe.decode(ids) == sample
    odd = "naïve café — 漢字 ✓\n\ttabs"
    assert bpe.decode(bpe.encode(odd)) == odd


def test_bpe_save_and_load(tmp_path):
    bpe = wl.data.BPETokenizer.train("the cat sat on the mat " * 50, vocab_size=280)
    bpe.save(tmp_path / "tok.json")
    again = wl.data.BPETokenizer.load(tmp_path / "tok.json")
    np.testing.assert_array_equal(again.encode("the mat sat"), bpe.encode("the mat sat"))
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError):
        wl.data.BPETokenizer.load(tmp_path / "bad.json")


def test_spoken_digits_subset(monkeypatch, shared_data):
    monkeypatch.delenv("WONDERLAND_DATA", raising=False)
    d = wl.data.load_spoken_digits()
    assert d["audio"].shape == (420, 6000) and d["audio"].dtype == np.float32
    assert np.abs(d["audio"]).max() <= 1.0
    assert len(set(d["accent"])) == 7 and np.bincount(d["label"]).tolist() == [42] * 10
    full = __import__("os").path.join(shared_data, "spoken_digits.npz")
    if __import__("os").path.exists(full):
        monkeypatch.setenv("WONDERLAND_DATA", shared_data)
        assert wl.data.load_spoken_digits()["audio"].shape == (840, 6000)


def test_generate_refuses_float_prompts_and_negative_lengths(rng):
    m = wl.models.GPT(20, 16, 1, 2, 16)
    idx = rng.integers(0, 20, (2, 5))
    for bad in (idx + 0.7, wl.tensor(idx.astype(np.float32)), [[1.5, 2.0]]):
        with pytest.raises(TypeError,
                           match=r"generate: idx must hold integer token ids, got float"):
            m.generate(bad, 3, top_k=1)
    with pytest.raises(ValueError, match="generate: idx must be .*got shape \\(1, 2, 5\\)"):
        m.generate(idx[None], 3, top_k=1)
    for n in (-1, 2.5, True):
        with pytest.raises((ValueError, TypeError),
                           match=f"generate: max_new_tokens must be a non-negative int, got {n!r}"):
            m.generate(idx, n, top_k=1)
    np.testing.assert_array_equal(m.generate(idx, 0).numpy(), idx)
    out = m.generate(wl.tensor(idx.astype(np.int32)), np.int64(2), top_k=1)
    assert out.shape == (2, 7)
