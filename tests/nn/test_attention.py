"""Attention: the fused primitive against its composite reference and against PyTorch,
gradients in both modes and second order, vmap, masks, the flash kernel, memory,
multi-head attention, the KV cache and linear attention."""

import math
import tracemalloc

import numpy as np
import pytest

import wonderland as wl
from wonderland.core import vmap
from wonderland.nn import functional as F
from wonderland.ops.attention import attention, attention_reference

from conftest import check_primitive

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test-only dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _qkv(rng, b=(2, 3), L=5, S=7, E=4, Ev=6, dtype=np.float64):
    return (rng.standard_normal(b + (L, E)).astype(dtype), rng.standard_normal(b + (S, E)).astype(dtype),
            rng.standard_normal(b + (S, Ev)).astype(dtype))


# ----------------------------------------------------------------------------- kernels vs reference
@pytest.mark.parametrize("impl,block", [("plain", None), ("flash", None), ("flash", (2, 3)),
                                        ("plain", (2, None))])
@pytest.mark.parametrize("causal", [None, 0, 2, -2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernels_match_the_composite_reference(rng, impl, block, causal, with_bias):
    q, k, v = _qkv(rng)
    bias = None
    if with_bias:
        b = rng.standard_normal((3, 5, 7))
        b[0, 1, :] = -np.inf            # a row with nothing allowed
        b[1, :, 2] = -np.inf            # a key nobody may see
        bias = wl.tensor(b)
    Q, K, V = (wl.tensor(a, requires_grad=True) for a in (q, k, v))
    out = attention(Q, K, V, bias, causal, 0.5, impl, block)
    ref = attention_reference(Q, K, V, bias, causal, 0.5)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-12)
    assert np.isfinite(out.numpy()).all()
    g = wl.tensor(rng.standard_normal(out.shape))
    fast = wl.autograd.grad(out, [Q, K, V], g)
    slow = wl.autograd.grad(ref, [Q, K, V], g)
    for a, b_ in zip(fast, slow):
        np.testing.assert_allclose(a.numpy(), b_.numpy(), atol=1e-12)


def test_reference_matches_a_hand_written_softmax(rng):
    q, k, v = _qkv(rng, b=(2,))
    s = q @ k.transpose(0, 2, 1) / 2.0
    s = np.where(np.tril(np.ones((5, 7), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = attention_reference(wl.tensor(q), wl.tensor(k), wl.tensor(v), None, 0, 0.5)
    np.testing.assert_allclose(out.numpy(), p @ v, atol=1e-12)


@pytest.mark.parametrize("impl", ["plain", "flash"])
def test_gradients_both_modes_second_order(rng, impl):
    q, k, v = _qkv(rng, b=(2,), L=3, S=4, E=2, Ev=3)
    block = (2, 2) if impl == "flash" else None
    check_primitive(lambda q, k, v: attention(q, k, v, None, 1, 0.7, impl, block), q, k, v)
    b = rng.standard_normal((3, 4))
    b[1] = -np.inf
    bias = wl.tensor(b)
    check_primitive(lambda q, k, v: attention(q, k, v, bias, None, 0.7, impl, block), q, k, v)


def test_gradient_through_a_learned_bias(rng):
    q, k, v = _qkv(rng, b=(2,), L=3, S=4, E=2, Ev=3)
    bias = rng.standard_normal((3, 4))
    check_primitive(lambda q, k, v, b: attention(q, k, v, b, 0, 0.7), q, k, v, bias)


@pytest.mark.parametrize("impl", ["plain", "flash"])
def test_vmap_equals_a_loop(rng, impl):
    q, k, v = (wl.tensor(a) for a in _qkv(rng, b=(3,)))
    f = lambda q, k, v: attention(q, k, v, None, 0, 0.5, impl, (2, 2))  # noqa: E731
    np.testing.assert_allclose(vmap(f)(q, k, v).numpy(),
                               np.stack([f(q[i], k[i], v[i]).numpy() for i in range(3)]), atol=1e-12)
    shared = vmap(f, in_axes=(0, None, None))(q, k[0], v[0])
    np.testing.assert_allclose(shared.numpy(),
                               np.stack([f(q[i], k[0], v[0]).numpy() for i in range(3)]), atol=1e-12)
    loss = lambda q, k, v: f(q, k, v).sum()  # noqa: E731
    per = vmap(wl.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    for j in range(3):
        loop = np.stack([wl.grad(loss, argnums=(0, 1, 2))(q[i], k[i], v[i])[j].numpy()
                         for i in range(3)])
        np.testing.assert_allclose(per[j].numpy(), loop, atol=1e-12)


def test_fully_masked_rows_give_zeros_and_zero_gradients(rng):
    q, k, v = (wl.tensor(a, requires_grad=True) for a in _qkv(rng, b=(1,), dtype=np.float32))
    mask = np.ones((5, 7), bool)
    mask[2] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=wl.tensor(mask))
    assert np.isfinite(out.numpy()).all() and (out.numpy()[:, 2] == 0).all()
    out.sum().backward()
    assert np.isfinite(q.grad.numpy()).all() and (q.grad.numpy()[:, 2] == 0).all()
    assert np.isfinite(k.grad.numpy()).all() and np.isfinite(v.grad.numpy()).all()
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    out2 = F.scaled_dot_product_attention(q, k, v, attn_mask=wl.tensor(fmask))
    np.testing.assert_array_equal(out.numpy(), out2.numpy())


def test_flash_peak_memory_grows_linearly():
    """Peak allocation of the flash kernel's forward and backward at L and 4L: linear
    growth (×4 or less), while the plain kernel's probabilities grow ×16."""
    rng = np.random.default_rng(0)

    def peak(L, impl):
        q, k, v, g = (wl.tensor(rng.standard_normal((1, 2, L, 16)).astype(np.float32),
                                requires_grad=True) for _ in range(4))
        tracemalloc.start()
        tracemalloc.reset_peak()
        out = attention(q, k, v, None, 0, 0.25, impl, (64, 64) if impl == "flash" else None)
        out.backward(g.detach())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    flash = [peak(L, "flash") for L in (512, 2048)]
    plain = [peak(L, "plain") for L in (512, 2048)]
    assert flash[1] / flash[0] < 5.0, flash
    assert plain[1] / plain[0] > 10.0, plain
    assert flash[1] < plain[1] / 4


# ----------------------------------------------------------------------------- PyTorch parity
def _t(a):
    return torch.tensor(np.asarray(a))


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal", "bool_broadcast",
                                  "causal_rect", "scale", "gqa"])
def test_sdpa_matches_pytorch(rng, kind):
    L, S = (5, 7) if kind == "causal_rect" else (6, 6)
    q = rng.standard_normal((2, 4, L, 8)).astype(np.float32)
    hk = 2 if kind == "gqa" else 4
    k = rng.standard_normal((2, hk, S, 8)).astype(np.float32)
    v = rng.standard_normal((2, hk, S, 5)).astype(np.float32)
    kwargs, tkwargs = {}, {}
    if kind in ("bool", "bool_broadcast"):
        m = rng.random((2, 1, L, S) if kind == "bool_broadcast" else (L, S)) > 0.3
        m[..., 0] = True
        kwargs["attn_mask"], tkwargs["attn_mask"] = wl.tensor(m), _t(m)
    if kind == "float":
        m = rng.standard_normal((L, S)).astype(np.float32)
        kwargs["attn_mask"], tkwargs["attn_mask"] = wl.tensor(m), _t(m)
    if kind in ("causal", "causal_rect"):
        kwargs["is_causal"] = tkwargs["is_causal"] = True
    if kind == "scale":
        kwargs["scale"] = tkwargs["scale"] = 0.3
    if kind == "gqa":
        kwargs["enable_gqa"] = tkwargs["enable_gqa"] = True
    wq, wk, wv = (wl.tensor(a, requires_grad=True) for a in (q, k, v))
    tq, tk, tv = (_t(a).requires_grad_() for a in (q, k, v))
    out = F.scaled_dot_product_attention(wq, wk, wv, **kwargs)
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkwargs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=2e-5)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(wl.tensor(g))
    ref.backward(_t(g))
    for a, b in ((wq, tq), (wk, tk), (wv, tv)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=5e-5)


def test_sdpa_argument_errors(rng):
    q, k, v = (wl.tensor(a) for a in _qkv(rng, b=(1,), dtype=np.float32))
    with pytest.raises(ValueError, match="is_causal=True and an explicit attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=wl.ones((5, 7), dtype=wl.bool_),
                                       is_causal=True)
    with pytest.raises(ValueError, match="scaled_dot_product_attention: query and key"):
        F.scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="does not broadcast"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=wl.ones((4, 7)))
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(wl.zeros((1, 3, 2, 4)), wl.zeros((1, 2, 2, 4)),
                                       wl.zeros((1, 2, 2, 4)), enable_gqa=True)


def test_sdpa_dropout_is_reproducible_and_scaled(rng):
    q, k, v = (wl.tensor(a) for a in _qkv(rng, b=(1,), dtype=np.float64))
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=wl.random.Generator(3))
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=wl.random.Generator(3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain = F.scaled_dot_product_attention(q, k, v)
    assert not np.allclose(a.numpy(), plain.numpy())


def _copy_linear(lin, w, b):
    lin.weight.data[...] = w.detach().numpy().T
    if b is not None:
        lin.bias.data[...] = b.detach().numpy()


def copy_mha(ours, theirs):
    E = ours.embed_dim
    if theirs._qkv_same_embed_dim:
        W = theirs.in_proj_weight
        ws = [W[:E], W[E:2 * E], W[2 * E:]]
    else:
        ws = [theirs.q_proj_weight, theirs.k_proj_weight, theirs.v_proj_weight]
    bs = [None] * 3 if theirs.in_proj_bias is None else \
        [theirs.in_proj_bias[:E], theirs.in_proj_bias[E:2 * E], theirs.in_proj_bias[2 * E:]]
    for lin, w, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), ws, bs):
        _copy_linear(lin, w, b)
    _copy_linear(ours.out_proj, theirs.out_proj.weight, theirs.out_proj.bias)


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("case", ["self", "cross_kdim", "padding", "bool_mask", "float_mask",
                                  "causal_hint", "per_head", "no_bias", "seq_first"])
def test_multihead_attention_matches_pytorch(rng, case):
    torch.manual_seed(0)
    E, H, b, L, S = 8, 2, 3, 4, 5
    kdim = vdim = None
    if case == "cross_kdim":
        kdim, vdim = 6, 3
    bias = case != "no_bias"
    batch_first = case != "seq_first"
    theirs = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
    ours = wl.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
    copy_mha(ours, theirs)
    if case in ("self", "causal_hint", "per_head", "no_bias", "bool_mask", "float_mask", "seq_first"):
        S = L
    q = rng.standard_normal((b, L, E)).astype(np.float32)
    k = rng.standard_normal((b, S, kdim or E)).astype(np.float32)
    v = rng.standard_normal((b, S, vdim or E)).astype(np.float32)
    if case in ("self", "causal_hint", "per_head", "no_bias", "seq_first"):
        k = v = q
    if not batch_first:
        q, k, v = (a.transpose(1, 0, 2).copy() for a in (q, k, v))
    kw = {}
    tkw = {}
    if case == "padding":
        kpm = np.zeros((b, S), bool)
        kpm[0, -2:] = True
        kw["key_padding_mask"], tkw["key_padding_mask"] = wl.tensor(kpm), _t(kpm)
    if case == "bool_mask":
        m = np.triu(np.ones((L, S), bool), 1)
        kw["attn_mask"], tkw["attn_mask"] = wl.tensor(m), _t(m)
    if case == "float_mask":
        m = rng.standard_normal((b * H, L, S)).astype(np.float32)
        kw["attn_mask"], tkw["attn_mask"] = wl.tensor(m), _t(m)
    if case == "causal_hint":
        m = np.triu(np.ones((L, S), bool), 1)
        kw.update(attn_mask=wl.tensor(m), is_causal=True, need_weights=False)
        tkw.update(attn_mask=_t(m), is_causal=True, need_weights=False)
    if case == "per_head":
        kw["average_attn_weights"] = tkw["average_attn_weights"] = False
    wq, wk, wv = (wl.tensor(a, requires_grad=True) for a in (q, k, v))
    out, w = ours(wq, wk if case not in ("self", "causal_hint", "per_head", "no_bias", "seq_first") else wq,
                  wv if case not in ("self", "causal_hint", "per_head", "no_bias", "seq_first") else wq, **kw)
    tq = _t(q).requires_grad_()
    tk, tv = (_t(k), _t(v)) if case not in ("self", "causal_hint", "per_head", "no_bias", "seq_first") else (tq, tq)
    ref, tw = theirs(tq, tk, tv, **tkw)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=2e-5)
    if tw is None:
        assert w is None
    else:
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=2e-6)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(wq.grad.numpy(), tq.grad.numpy(), atol=5e-5)
    np.testing.assert_allclose(ours.q_proj.weight.grad.numpy(),
                               theirs.in_proj_weight.grad[:E].numpy().T if theirs._qkv_same_embed_dim
                               else theirs.q_proj_weight.grad.numpy().T, atol=5e-5)


def test_multihead_attention_errors():
    mha = wl.nn.MultiheadAttention(8, 2)
    x = wl.zeros((2, 3, 8))
    with pytest.raises(ValueError, match="is_causal=True needs attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="key_padding_mask must be"):
        mha(x, x, x, key_padding_mask=wl.zeros((2, 4), dtype=wl.bool_))
    with pytest.raises(ValueError, match="expected query/key/value features"):
        mha(wl.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        wl.nn.MultiheadAttention(10, 3)


def test_grouped_and_multi_query_attention_equal_repeated_heads(rng):
    for kv in (2, 1):
        mha = wl.nn.MultiheadAttention(8, 4, num_kv_heads=kv)
        assert mha.k_proj.weight.shape == (8, kv * 2)
        x = wl.tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
        out, _ = mha(x, need_weights=False)
        # by hand: project, repeat key/value heads, attend, project out
        q = (x.numpy() @ mha.q_proj.weight.numpy() + mha.q_proj.bias.numpy()).reshape(2, 5, 4, 2).transpose(0, 2, 1, 3)
        k = (x.numpy() @ mha.k_proj.weight.numpy() + mha.k_proj.bias.numpy()).reshape(2, 5, kv, 2).transpose(0, 2, 1, 3)
        v = (x.numpy() @ mha.v_proj.weight.numpy() + mha.v_proj.bias.numpy()).reshape(2, 5, kv, 2).transpose(0, 2, 1, 3)
        k, v = np.repeat(k, 4 // kv, axis=1), np.repeat(v, 4 // kv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(2)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = (p @ v).transpose(0, 2, 1, 3).reshape(2, 5, 8)
        expect = o @ mha.out_proj.weight.numpy() + mha.out_proj.bias.numpy()
        np.testing.assert_allclose(out.numpy(), expect, atol=1e-5)


def test_kv_cache_decoding_equals_the_full_forward(rng):
    mha = wl.nn.MultiheadAttention(16, 4, num_kv_heads=2)
    rope = wl.nn.RotaryEmbedding(4)
    x = wl.tensor(rng.standard_normal((2, 9, 16)).astype(np.float32))
    causal = wl.tensor(np.triu(np.ones((9, 9), bool), 1))
    with wl.no_grad():
        full, _ = mha(x, attn_mask=causal, need_weights=False, rope=rope)
        cache = wl.nn.KVCache()
        steps = [mha(x[:, :3], is_causal=True, cache=cache, rope=rope, need_weights=False)[0]]
        for t in range(3, 9):
            steps.append(mha(x[:, t:t + 1], is_causal=True, cache=cache, rope=rope,
                             need_weights=False)[0])
    assert len(cache) == 9
    np.testing.assert_allclose(wl.concatenate(steps, axis=1).numpy(), full.numpy(), atol=2e-6)


def test_linear_attention_causal_prefix_sums_equal_the_recurrence(rng):
    q, k, v = (wl.tensor(a) for a in _qkv(rng, b=(2,), L=6, S=6))
    par = F.linear_attention(q, k, v, causal=True)
    rec = F.linear_attention_recurrent(q, k, v)
    np.testing.assert_allclose(par.numpy(), rec.numpy(), atol=1e-12)
    # non-causal: by hand
    fq, fk = (np.where(a > 0, a + 1, np.exp(a)) for a in (q.numpy(), k.numpy()))
    num = fq @ (fk.transpose(0, 2, 1) @ v.numpy())
    den = fq @ fk.sum(1)[..., None]
    np.testing.assert_allclose(F.linear_attention(q, k, v).numpy(), num / (den + 1e-6), atol=1e-10)
    wl.testing.check_grads(lambda q, k, v: F.linear_attention(q, k, v, causal=True), (q, k, v))


@needs_torch
@pytest.mark.torch
def test_multihead_attention_unbatched_input_matches_pytorch(rng):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = wl.nn.MultiheadAttention(8, 2)
    copy_mha(ours, theirs)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    out, w = ours(wl.tensor(x), wl.tensor(x), wl.tensor(x))
    ref, tw = theirs(_t(x), _t(x), _t(x))
    assert out.shape == (5, 8) and w.shape == (5, 5)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=2e-6)


def test_kv_cache_of_another_batch_is_a_clear_error_with_and_without_grad(rng):
    mha = wl.nn.MultiheadAttention(8, 2)
    pattern = (r"KVCache.update: new keys \(3, 2, 1, 4\) do not match the cached "
               r"\(b, h, ·, d\) = \(2, 2, \d+, 4\)")
    for grad_on in (False, True):
        with wl.set_grad_enabled(grad_on):
            cache = wl.nn.KVCache()
            mha(wl.tensor(rng.standard_normal((2, 3, 8)).astype(np.float32)), cache=cache,
                need_weights=False)
            with pytest.raises(ValueError, match=pattern):
                mha(wl.tensor(rng.standard_normal((3, 1, 8)).astype(np.float32)), cache=cache,
                    need_weights=False)
    # a cache filled without grad keeps its keys when decoding goes on with grad
    x = wl.tensor(rng.standard_normal((2, 4, 8)).astype(np.float32))
    mask = wl.tensor(np.triu(np.ones((4, 4), bool), 1))
    full, _ = mha(x, attn_mask=mask, need_weights=False)
    cache = wl.nn.KVCache()
    with wl.no_grad():
        first, _ = mha(x[:, :3], is_causal=True, cache=cache, need_weights=False)
    last, _ = mha(x[:, 3:], is_causal=True, cache=cache, need_weights=False)
    assert len(cache) == 4
    np.testing.assert_allclose(last.numpy(), full.numpy()[:, 3:], atol=2e-6)


@needs_torch
@pytest.mark.torch
def test_unbatched_query_takes_a_1d_key_padding_mask_as_pytorch(rng):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = wl.nn.MultiheadAttention(8, 2)
    copy_mha(ours, theirs)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    kv = rng.standard_normal((3, 8)).astype(np.float32)
    for kpm in (np.array([False, False, True]), np.array([0.0, -1.5, 0.0], np.float32)):
        out, w = ours(wl.tensor(q), wl.tensor(kv), wl.tensor(kv), key_padding_mask=wl.tensor(kpm))
        ref, tw = theirs(_t(q), _t(kv), _t(kv), key_padding_mask=_t(kpm))
        assert out.shape == (4, 8) and w.shape == (4, 3)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=2e-5)
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=2e-6)
    # the transformer layers pass it through
    layer = wl.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    x = wl.tensor(rng.standard_normal((3, 8)).astype(np.float32))
    kpm = wl.tensor(np.array([False, False, True]))
    one = layer(x, src_key_padding_mask=kpm)
    batched = layer(x.reshape(1, 3, 8), src_key_padding_mask=kpm.reshape(1, 3))
    np.testing.assert_allclose(one.numpy(), batched.numpy()[0], atol=1e-6)
    with pytest.raises(ValueError, match=r"key_padding_mask must be \(S,\) = \(3,\) for an "
                                         r"unbatched query, or \(1, S\), got \(4,\)"):
        ours(wl.tensor(q), wl.tensor(kv), wl.tensor(kv),
             key_padding_mask=wl.zeros(4, dtype=wl.bool_))


def test_sdpa_block_size_is_passed_to_the_flash_kernel(rng, monkeypatch):
    from wonderland.nn import attention as nn_attention

    q, k, v = (wl.tensor(a) for a in _qkv(rng, b=(2,), L=9, S=11))
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True, implementation="plain")
    seen = []
    real = nn_attention.attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("block_size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(nn_attention, "attention", spy)
    for block in ((4, 3), 5):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, implementation="flash",
                                             block_size=block)
        np.testing.assert_allclose(out.numpy(), plain.numpy(), atol=1e-12)
    assert seen == [(4, 3), (5, 5)]
    for bad in ((0, 4), (2,), "big", 2.5):
        with pytest.raises((ValueError, TypeError),
                           match="scaled_dot_product_attention: block_size must be"):
            F.scaled_dot_product_attention(q, k, v, block_size=bad)
