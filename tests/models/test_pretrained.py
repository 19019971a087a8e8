"""Hugging Face folders: GPT-2 and ViT weights in and out, and tokenisers.

Small random models are built with ``transformers`` (biases and norms perturbed, so that
no layout error hides behind zeros and ones), saved to a temporary folder and loaded
here; logits, greedy generation and the way back (``save_pretrained`` then
``transformers``) must agree. Tests that need ``transformers`` or ``torch`` are skipped
without them; the file-format checks run everywhere."""

import json
import os

import numpy as np
import pytest

import wonderland as wl
from wonderland.interop import read_safetensors, write_safetensors

GPT, ViT = wl.models.GPT, wl.models.ViT
R = np.random.default_rng(5)


def needs_transformers():
    pytest.importorskip("torch", reason="torch is not installed (transformers runs on it)")
    return pytest.importorskip("transformers", reason="transformers (the reference) is not "
                                                      "installed")


def perturb(model, scale=0.1, everything=False):
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if everything or name.endswith("bias") or "ln" in name or "norm" in name:
                p.add_(scale * torch.randn_like(p))
    return model.eval()


def hf_gpt2(tmp_path, name="hf", max_shard_size=None, **kw):
    transformers = needs_transformers()
    cfg = dict(vocab_size=101, n_positions=40, n_embd=32, n_layer=3, n_head=4,
               bos_token_id=None, eos_token_id=None)
    cfg.update(kw)
    model = perturb(transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)))
    folder = tmp_path / name
    extra = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(str(folder), **extra)
    return model, folder


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


IDS = R.integers(0, 101, (2, 12))


# ----------------------------------------------------------------------------- GPT-2
@pytest.mark.parametrize("activation", ["gelu_new", "gelu", "relu"])
def test_gpt2_logits_equal_transformers(tmp_path, activation):
    theirs, folder = hf_gpt2(tmp_path, activation_function=activation, n_inner=48)
    ours = GPT.from_pretrained(folder)
    assert not ours.training and ours.n_inner == 48
    diff = np.abs(ours(IDS).numpy() - hf_logits(theirs, IDS)).max()
    assert diff <= 2e-4, diff


def test_gpt2_greedy_generation_equals_transformers(tmp_path):
    theirs, folder = hf_gpt2(tmp_path)
    import torch

    ours = GPT.from_pretrained(folder)
    ids = torch.from_numpy(IDS)
    with torch.no_grad():       # an explicit mask: otherwise prompt tokens equal to the pad id
        want = theirs.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                               max_new_tokens=20, pad_token_id=0).numpy()   # would be masked
    for cache in (True, False):
        got = ours.generate(IDS, 20, top_k=1, use_cache=cache).numpy()
        np.testing.assert_array_equal(got, want)


def test_gpt2_sharded_folders_both_ways(tmp_path):
    transformers = needs_transformers()
    theirs, folder = hf_gpt2(tmp_path, max_shard_size="30KB")
    assert os.path.exists(folder / "model.safetensors.index.json")
    ours = GPT.from_pretrained(folder)
    want = hf_logits(theirs, IDS)
    assert np.abs(ours(IDS).numpy() - want).max() <= 2e-4
    ours.save_pretrained(tmp_path / "ours", max_shard_size="40KB")
    files = os.listdir(tmp_path / "ours")
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    assert sum(f.startswith("model-") for f in files) > 1
    back = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "ours")).eval()
    assert np.abs(hf_logits(back, IDS) - want).max() <= 2e-4
    again = GPT.from_pretrained(tmp_path / "ours")
    np.testing.assert_array_equal(again(IDS).numpy(), ours(IDS).numpy())


def test_gpt2_save_pretrained_loads_in_transformers(tmp_path):
    transformers = needs_transformers()
    ours = GPT(97, 24, 2, 2, 16, positions="learned", activation="gelu_tanh")
    for p in ours.parameters():               # biases and norms away from 0 and 1
        p.data[...] += R.normal(0, 0.1, p.shape).astype(p.dtype)
    ours.eval()
    ours.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["activation_function"] == "gelu_new" and cfg["model_type"] == "gpt2"
    meta = read_safetensors(tmp_path / "m" / "model.safetensors", with_metadata=True)[1]
    assert meta == {"format": "pt"}
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "m")).eval()
    ids = R.integers(0, 97, (2, 9))
    assert np.abs(hf_logits(theirs, ids) - ours(ids).numpy()).max() <= 2e-4


def test_gpt2_config_fields_survive_a_round_trip(tmp_path):
    ours = GPT(50, 16, 1, 2, 8)
    ours.save_pretrained(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["eos_token_id"] = 7
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    loaded = GPT.from_pretrained(tmp_path / "a")
    loaded.save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["eos_token_id"] == 7
    np.testing.assert_array_equal(loaded(IDS[:, :5] % 50).numpy(), ours.eval()(IDS[:, :5] % 50)
                                  .numpy())


# ----------------------------------------------------------------------------- files we write
def gpt_folder(tmp_path, name="g", **kw):
    model = GPT(30, 8, 2, 2, 8, **kw)
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def test_original_gpt2_names_and_old_mask_buffers_load(tmp_path):
    """GPT-2's own files use GPT2Model's names (no 'transformer.') and kept the causal
    mask buffers of each layer."""
    model, folder = gpt_folder(tmp_path)
    arrays = read_safetensors(folder / "model.safetensors")
    old = {k[len("transformer."):]: np.array(v) for k, v in arrays.items()}
    old["h.0.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
    old["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    old["lm_head.weight"] = old["wte.weight"]
    os.remove(folder / "model.safetensors")
    write_safetensors(folder / "model.safetensors", old, {"format": "pt"})
    ids = R.integers(0, 30, (1, 6))
    np.testing.assert_array_equal(GPT.from_pretrained(folder)(ids).numpy(),
                                  model.eval()(ids).numpy())


def test_bfloat16_files_load(tmp_path):
    model, folder = gpt_folder(tmp_path)
    arrays = read_safetensors(folder / "model.safetensors")
    bf16 = {k: (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16)
            for k, v in arrays.items()}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for k, v in bf16.items():                 # the format by hand: length, JSON, data
        header[k] = {"dtype": "BF16", "shape": list(v.shape),
                     "data_offsets": [offset, offset + v.nbytes]}
        offset += v.nbytes
        chunks.append(v.astype("<u2").tobytes())
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (folder / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head
                                               + b"".join(chunks))
    loaded = GPT.from_pretrained(folder)
    w = model.wte.weight.numpy()
    assert loaded.wte.weight.dtype == np.float32
    assert np.abs(loaded.wte.weight.numpy() - w).max() <= np.abs(w).max() * 2 ** -7


def test_unknown_and_missing_tensors_are_refused_by_name(tmp_path):
    _, folder = gpt_folder(tmp_path)
    arrays = {k: np.array(v) for k, v in read_safetensors(folder / "model.safetensors").items()}
    arrays["transformer.h.0.attn.rotary.weight"] = np.zeros(3, np.float32)
    del arrays["transformer.h.1.mlp.c_fc.bias"]
    write_safetensors(folder / "model.safetensors", arrays, {"format": "pt"})
    with pytest.raises(ValueError, match=r"unknown tensors h\.0\.attn\.rotary\.weight; "
                                         r"missing tensors h\.1\.mlp\.c_fc\.bias"):
        GPT.from_pretrained(folder)


def test_untied_head_and_wrong_shapes_are_refused(tmp_path):
    _, folder = gpt_folder(tmp_path)
    arrays = {k: np.array(v) for k, v in read_safetensors(folder / "model.safetensors").items()}
    write_safetensors(folder / "model.safetensors",
                      dict(arrays, **{"lm_head.weight": arrays["transformer.wte.weight"] + 1}))
    with pytest.raises(ValueError, match="lm_head.weight different from the token embedding"):
        GPT.from_pretrained(folder)
    arrays["transformer.wpe.weight"] = np.zeros((9, 8), np.float32)
    write_safetensors(folder / "model.safetensors", arrays)
    with pytest.raises(ValueError, match=r"wpe.weight has shape \(9, 8\), the config implies "
                                         r"\(8, 8\)"):
        GPT.from_pretrained(folder)


@pytest.mark.parametrize("field, value, match", [
    ("scale_attn_weights", False, "without the 1/sqrt"),
    ("tie_word_embeddings", False, "separate from the token embedding"),
    ("add_cross_attention", True, "cross-attention"),
    ("activation_function", "mish", "activation_function 'mish'"),
    ("n_head", 3, "n_embd=8 is not a multiple of n_head=3"),
    ("n_layer", 0, "n_layer must be a positive int"),
    ("model_type", "llama", "describes a 'llama' model"),
])
def test_configs_we_cannot_represent(tmp_path, field, value, match):
    _, folder = gpt_folder(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=match):
        GPT.from_pretrained(folder)


def test_missing_and_unreadable_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        GPT.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        GPT.from_pretrained(tmp_path / "empty")
    _, folder = gpt_folder(tmp_path)
    os.remove(folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin, a pickle, which is never read"):
        GPT.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(wl.io.CheckpointError, match="damaged or not a safetensors file"):
        GPT.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        GPT.from_pretrained(folder)


def test_models_the_format_cannot_hold_are_refused(tmp_path):
    with pytest.raises(ValueError, match="learned positions"):
        GPT(30, 8, 1, 2, 8, positions="rope").save_pretrained(tmp_path / "x")
    with pytest.raises(ValueError, match="no register tokens"):
        ViT(8, 4, 3, 2, dim=8, depth=1, heads=2, num_registers=2).save_pretrained(tmp_path / "y")


def test_saving_over_a_folder_replaces_its_weights(tmp_path):
    model, folder = gpt_folder(tmp_path)
    (folder / "tokenizer.json").write_text("{}")            # other files are left alone
    model.save_pretrained(folder, max_shard_size=2000)
    files = set(os.listdir(folder))
    assert "model.safetensors" not in files and "model.safetensors.index.json" in files
    other = GPT(30, 8, 2, 2, 8)
    other.save_pretrained(folder)
    files = set(os.listdir(folder))
    assert files == {"config.json", "model.safetensors", "tokenizer.json"}
    ids = R.integers(0, 30, (1, 5))
    np.testing.assert_array_equal(GPT.from_pretrained(folder)(ids).numpy(),
                                  other.eval()(ids).numpy())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


# ----------------------------------------------------------------------------- ViT
def hf_vit(tmp_path, **kw):
    transformers = needs_transformers()
    cfg = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=40, image_size=12, patch_size=4, num_channels=3, num_labels=5)
    cfg.update(kw)
    model = perturb(transformers.ViTForImageClassification(transformers.ViTConfig(**cfg)),
                    everything=True)
    model.save_pretrained(str(tmp_path / "vit"))
    return model, tmp_path / "vit"


def vit_logits(model, images):
    import torch

    with torch.no_grad():   # theirs: channels first
        return model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
                     ).logits.numpy()


IMAGES = R.normal(size=(2, 12, 12, 3)).astype(np.float32)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_vit_logits_equal_transformers(tmp_path, qkv_bias):
    theirs, folder = hf_vit(tmp_path, qkv_bias=qkv_bias)
    ours = ViT.from_pretrained(folder)
    assert ours.layer_norm_eps == 1e-12 and ours.blocks[0].norm1.eps == 1e-12
    diff = np.abs(ours(IMAGES).numpy() - vit_logits(theirs, IMAGES)).max()
    assert diff <= 2e-4, diff


def test_vit_save_pretrained_loads_in_transformers(tmp_path):
    transformers = needs_transformers()
    theirs, folder = hf_vit(tmp_path, hidden_act="gelu_new")
    ours = ViT.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "back")
    back = transformers.ViTForImageClassification.from_pretrained(str(tmp_path / "back")).eval()
    assert np.abs(vit_logits(back, IMAGES) - vit_logits(theirs, IMAGES)).max() <= 2e-4
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["id2label"]["4"] == "LABEL_4" and cfg["hidden_act"] == "gelu_new"


def test_vit_without_a_classifier_is_refused(tmp_path):
    transformers = needs_transformers()
    cfg = transformers.ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, image_size=8, patch_size=4)
    transformers.ViTModel(cfg, add_pooling_layer=False).save_pretrained(str(tmp_path / "v"))
    with pytest.raises(ValueError, match="holds a ViTModel"):
        ViT.from_pretrained(tmp_path / "v")


def test_vit_round_trip_without_transformers(tmp_path):
    ours = ViT((8, 12), 4, 2, 3, dim=8, depth=2, heads=2, mlp_dim=12, layer_norm_eps=1e-6,
               qkv_bias=False, activation="gelu_tanh").eval()
    ours.save_pretrained(tmp_path / "v")
    again = ViT.from_pretrained(tmp_path / "v")
    x = R.normal(size=(2, 8, 12, 2)).astype(np.float32)
    np.testing.assert_array_equal(again(x).numpy(), ours(x).numpy())
    assert again.blocks[0].self_attn.q_proj.bias is None


# ----------------------------------------------------------------------------- tokenisers
TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and "
        "of having nothing to do: once or twice she had peeped into the book her sister "
        "was reading. ") * 8


def gpt2_style_files(tmp_path):
    """A trained tokeniser written as GPT-2's vocab.json + merges.txt."""
    from tokenizers import Tokenizer

    tok = wl.data.BPETokenizer.train(TEXT, vocab_size=300)
    tok.save_pretrained(tmp_path / "trained")
    folder = tmp_path / "gpt2-files"
    folder.mkdir()
    Tokenizer.from_file(str(tmp_path / "trained" / "tokenizer.json")).model.save(str(folder))
    return tok, folder


def test_tokenizer_json_and_gpt2_files(tmp_path):
    tok, folder = gpt2_style_files(tmp_path)
    tok.save_pretrained(tmp_path / "json")
    from_json = wl.data.BPETokenizer.from_pretrained(tmp_path / "json")
    from_file = wl.data.BPETokenizer.from_pretrained(tmp_path / "json" / "tokenizer.json")
    from_merges = wl.data.BPETokenizer.from_pretrained(folder)
    sample = "Alice was reading a book, unseen ✓ characters too"
    for t in (from_json, from_file, from_merges):
        np.testing.assert_array_equal(t.encode(sample), tok.encode(sample))
        assert t.decode(t.encode(sample)) == sample


def test_gpt2_files_match_transformers_tokenizer(tmp_path):
    transformers = needs_transformers()
    _, folder = gpt2_style_files(tmp_path)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(folder))
    ours = wl.data.BPETokenizer.from_pretrained(folder)
    for text in ("Alice was beginning", " twice she had peeped", "nothing to do: once"):
        assert ours.encode(text).tolist() == theirs(text)["input_ids"]


def test_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        wl.data.BPETokenizer.from_pretrained(tmp_path / "none")
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor vocab.json"):
        wl.data.BPETokenizer.from_pretrained(tmp_path / "d")
    (tmp_path / "d" / "tokenizer.json").write_text('{"version": "1.0"}')
    with pytest.raises(ValueError, match="not a tokenizer the tokenizers library reads"):
        wl.data.BPETokenizer.from_pretrained(tmp_path / "d")
