"""Transformer layers against PyTorch with copied weights; positional embeddings;
tokens, patches, mixers and the audio feature encoder."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.nn import functional as F

from test_attention import copy_mha

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test-only dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _lin(ours, theirs):
    ours.weight.data[...] = theirs.weight.detach().numpy().T
    if theirs.bias is not None:
        ours.bias.data[...] = theirs.bias.detach().numpy()


def _norm(ours, theirs):
    ours.weight.data[...] = theirs.weight.detach().numpy()
    if theirs.bias is not None:
        ours.bias.data[...] = theirs.bias.detach().numpy()


def copy_layer(ours, theirs):
    copy_mha(ours.self_attn, theirs.self_attn)
    if hasattr(theirs, "multihead_attn"):
        copy_mha(ours.multihead_attn, theirs.multihead_attn)
    _lin(ours.linear1, theirs.linear1)
    _lin(ours.linear2, theirs.linear2)
    for name in ("norm1", "norm2", "norm3"):
        if hasattr(theirs, name):
            _norm(getattr(ours, name), getattr(theirs, name))


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_pytorch(rng, norm_first, activation):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                              batch_first=True, norm_first=norm_first).eval()
    ours = wl.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                         norm_first=norm_first)
    copy_layer(ours, theirs)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)
    kpm = np.zeros((3, 5), bool)
    kpm[1, -2:] = True
    mask = np.triu(np.ones((5, 5), bool), 1)
    for kw in ({}, {"src_key_padding_mask": kpm}, {"src_mask": mask}):
        wx = wl.tensor(x, requires_grad=True)
        tx = torch.tensor(x, requires_grad=True)
        out = ours(wx, **{k: wl.tensor(v) for k, v in kw.items()})
        ref = theirs(tx, **{k: torch.tensor(v) for k, v in kw.items()})
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=3e-5)
        out.sum().backward()
        ref.sum().backward()
        np.testing.assert_allclose(wx.grad.numpy(), tx.grad.numpy(), atol=3e-4)


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_pytorch(rng, norm_first):
    torch.manual_seed(1)
    theirs = torch.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True,
                                              norm_first=norm_first).eval()
    ours = wl.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first)
    copy_layer(ours, theirs)
    tgt = rng.standard_normal((2, 4, 16)).astype(np.float32)
    mem = rng.standard_normal((2, 6, 16)).astype(np.float32)
    causal = np.triu(np.ones((4, 4), bool), 1)
    mkpm = np.zeros((2, 6), bool)
    mkpm[0, -3:] = True
    out = ours(wl.tensor(tgt), wl.tensor(mem), tgt_mask=wl.tensor(causal),
               memory_key_padding_mask=wl.tensor(mkpm), tgt_is_causal=True)
    ref = theirs(torch.tensor(tgt), torch.tensor(mem), tgt_mask=torch.tensor(causal),
                 memory_key_padding_mask=torch.tensor(mkpm), tgt_is_causal=True)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=3e-5)


@needs_torch
@pytest.mark.torch
def test_full_transformer_matches_pytorch(rng):
    torch.manual_seed(2)
    theirs = torch.nn.Transformer(16, 4, 2, 2, 32, dropout=0.0, batch_first=True).eval()
    ours = wl.nn.Transformer(16, 4, 2, 2, 32, dropout=0.0)
    names = [n for n, _ in ours.named_parameters()]
    assert "encoder.layers.1.self_attn.q_proj.weight" in names
    assert "decoder.layers.0.multihead_attn.out_proj.bias" in names and "decoder.norm.weight" in names
    for o, t in zip(ours.encoder.layers, theirs.encoder.layers):
        copy_layer(o, t)
    for o, t in zip(ours.decoder.layers, theirs.decoder.layers):
        copy_layer(o, t)
    _norm(ours.encoder.norm, theirs.encoder.norm)
    _norm(ours.decoder.norm, theirs.decoder.norm)
    src = rng.standard_normal((2, 7, 16)).astype(np.float32)
    tgt = rng.standard_normal((2, 5, 16)).astype(np.float32)
    tmask = wl.nn.Transformer.generate_square_subsequent_mask(5)
    tmask_t = torch.nn.Transformer.generate_square_subsequent_mask(5)
    np.testing.assert_array_equal(tmask.numpy(), tmask_t.numpy())
    skpm = np.zeros((2, 7), bool)
    skpm[1, -2:] = True
    ws, wt = wl.tensor(src, requires_grad=True), wl.tensor(tgt, requires_grad=True)
    ts, tt = torch.tensor(src, requires_grad=True), torch.tensor(tgt, requires_grad=True)
    out = ours(ws, wt, tgt_mask=tmask, src_key_padding_mask=wl.tensor(skpm),
               memory_key_padding_mask=wl.tensor(skpm))
    ref = theirs(ts, tt, tgt_mask=tmask_t, src_key_padding_mask=torch.tensor(skpm),
                 memory_key_padding_mask=torch.tensor(skpm))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=5e-5)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(wl.tensor(g))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(ws.grad.numpy(), ts.grad.numpy(), atol=5e-4)
    np.testing.assert_allclose(wt.grad.numpy(), tt.grad.numpy(), atol=5e-4)


def test_decoder_layer_cache_equals_full_causal_pass(rng):
    layer = wl.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, norm_first=True)
    layer.eval()
    tgt = wl.tensor(rng.standard_normal((2, 6, 16)).astype(np.float32))
    mem = wl.tensor(rng.standard_normal((2, 4, 16)).astype(np.float32))
    causal = wl.tensor(np.triu(np.ones((6, 6), bool), 1))
    with wl.no_grad():
        full = layer(tgt, mem, tgt_mask=causal)
        cache = wl.nn.KVCache()
        steps = [layer(tgt[:, t:t + 1], mem, cache=cache) for t in range(6)]
    np.testing.assert_allclose(wl.concatenate(steps, 1).numpy(), full.numpy(), atol=3e-6)


# ----------------------------------------------------------------------------- positions
def test_rope_scores_depend_only_on_relative_offsets(rng):
    rope = wl.nn.RotaryEmbedding(8)
    q = rng.standard_normal(8)
    k = rng.standard_normal(8)
    Q = wl.tensor(np.tile(q, (12, 1)))
    K = wl.tensor(np.tile(k, (12, 1)))
    s = (rope(Q) @ rope(K).T).numpy()
    for d in range(-5, 6):
        diag = np.diagonal(s, d)
        np.testing.assert_allclose(diag, diag[0], atol=1e-10)
    assert not np.allclose(np.diagonal(s, 0)[0], np.diagonal(s, 3)[0])
    # the offset argument continues the positions
    x = wl.tensor(rng.standard_normal((2, 10, 8)))
    np.testing.assert_allclose(rope(x[:, 4:], offset=4).numpy(), rope(x).numpy()[:, 4:], atol=1e-12)
    # rotate-half: position 1 of a unit vector on the first channel
    e = np.zeros((2, 8))
    e[:, 0] = 1.0
    r = rope(wl.tensor(e)).numpy()
    np.testing.assert_allclose(r[1, [0, 4]], [np.cos(1.0), np.sin(1.0)], atol=1e-12)


def test_sinusoidal_and_learned_embeddings(rng):
    pe = F.sinusoidal_embedding(5, 6).numpy()
    np.testing.assert_allclose(pe[3, 2], np.sin(3 / 10000 ** (2 / 6)), rtol=1e-6)
    np.testing.assert_allclose(pe[3, 3], np.cos(3 / 10000 ** (2 / 6)), rtol=1e-6)
    x = wl.zeros((2, 5, 6))
    np.testing.assert_allclose(wl.nn.SinusoidalPositionalEmbedding(6)(x, offset=2).numpy()[0],
                               F.sinusoidal_embedding(7, 6).numpy()[2:], atol=1e-7)
    learned = wl.nn.LearnedPositionalEmbedding(8, 6)
    out = learned(x, offset=1)
    np.testing.assert_allclose(out.numpy()[1], learned.weight.numpy()[1:6])
    with pytest.raises(ValueError, match="exceed max_len"):
        learned(x, offset=4)


def test_alibi_and_t5_buckets():
    slopes = wl.nn.positional.alibi_slopes(8)
    np.testing.assert_allclose(slopes, [2 ** -(i + 1) for i in range(8)])
    b = wl.nn.ALiBi(8)(4).numpy()
    assert b.shape == (8, 4, 4)
    np.testing.assert_allclose(b[0, 3], [-1.5, -1.0, -0.5, 0.0])
    from wonderland.nn.positional import relative_position_bucket
    buckets = relative_position_bucket(np.arange(-40, 41), bidirectional=True, num_buckets=32,
                                       max_distance=128)
    assert buckets[40] == 0 and buckets[41] == 17 and buckets[39] == 1
    assert (np.diff(buckets[41:]) >= 0).all() and buckets.max() <= 31
    t5 = wl.nn.T5RelativePositionBias(4, 32, 128)
    bias = t5(5)
    assert bias.shape == (4, 5, 5)
    q = wl.tensor(np.random.default_rng(0).standard_normal((1, 4, 5, 8)).astype(np.float32))
    out = F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
    out.sum().backward()
    assert t5.relative_attention_bias.weight.grad is not None
    assert np.abs(t5.relative_attention_bias.weight.grad.numpy()).sum() > 0


# ----------------------------------------------------------------------------- tokens, patches, mixers
def test_class_and_register_tokens_and_patches(rng):
    tok = wl.nn.ClassToken(6, num_registers=2)
    x = wl.tensor(rng.standard_normal((3, 4, 6)).astype(np.float32))
    y = tok(x)
    assert y.shape == (3, 7, 6)
    np.testing.assert_array_equal(y.numpy()[:, 3:], x.numpy())
    np.testing.assert_array_equal(y.numpy()[1, 0], tok.cls_token.numpy()[0, 0])
    pe = wl.nn.PatchEmbed(8, 4, 3, 5)
    img = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    out = pe(wl.tensor(img))
    assert out.shape == (2, 4, 5)
    patch = img[1, 4:8, 0:4, :].reshape(-1)           # row 1, column 0 → token 2
    np.testing.assert_allclose(out.numpy()[1, 2], patch @ pe.proj.weight.numpy() + pe.proj.bias.numpy(),
                               atol=1e-5)
    with pytest.raises(ValueError, match="channels last"):
        pe(wl.zeros((2, 3, 8, 8)))


def test_mixers_and_metaformer_blocks(rng):
    x = wl.tensor(rng.standard_normal((2, 16, 8)).astype(np.float32))
    for mixer in (wl.nn.AttentionMixer(8, 2), wl.nn.PoolingMixer((4, 4)), wl.nn.FourierMixer()):
        block = wl.nn.MetaFormerBlock(8, mixer)
        y = block(x)
        assert y.shape == x.shape
        y.sum().backward()
    f = wl.nn.FourierMixer()(x).numpy()
    np.testing.assert_allclose(f, np.fft.fft2(x.numpy(), axes=(-2, -1)).real, atol=1e-4)
    pool = wl.nn.PoolingMixer((4, 4))(x).numpy()
    grid = x.numpy().reshape(2, 4, 4, 8)
    expect = grid[:, 0:2, 0:2].mean((1, 2)) - grid[:, 0, 0]        # corner: 2×2 real neighbours
    np.testing.assert_allclose(pool[:, 0], expect, atol=1e-6)
    mixer = wl.nn.MLPMixerBlock(16, 8, 12, 20)
    assert mixer(x).shape == x.shape


def test_conv_feature_encoder_shortens_audio(rng):
    enc = wl.nn.ConvFeatureEncoder(((8, 10, 5), (8, 3, 2), (8, 3, 2)))
    audio = wl.tensor(rng.standard_normal((2, 400)).astype(np.float32))
    out = enc(audio)
    assert out.shape == (2, enc.output_length(400), 8) and enc.output_length(400) == 19
