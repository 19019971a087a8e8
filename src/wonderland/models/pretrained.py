"""Hugging Face folders in and out: GPT-2 (``GPT2LMHeadModel``) and ViT
(``ViTForImageClassification``) weights for :class:`~wonderland.models.GPT` and
:class:`~wonderland.models.ViT`.

A folder holds ``config.json`` and the weights: ``model.safetensors``, or shards listed by
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``). Nothing
is downloaded, and ``pytorch_model.bin`` (a pickle) is never read. Names and layouts are
converted here:

* GPT-2: ``Conv1D`` weights are already ``(in, out)``, like our ``Linear``; the fused
  ``attn.c_attn`` ``(e, 3e)`` is split into ``q_proj``, ``k_proj``, ``v_proj``; ``attn.c_proj``
  is ``out_proj``, ``mlp.c_fc``/``mlp.c_proj`` are ``fc``/``proj``; ``lm_head`` is tied to
  ``wte`` (an untied head is refused). Old files' attention-mask buffers
  (``attn.bias``, ``attn.masked_bias``) are skipped.
* ViT: the patch convolution ``(d, c, p, p)`` becomes ``PatchEmbed``'s linear map of a
  flattened ``(p, p, c)`` patch; ``query``/``key``/``value``/``dense`` ``(out, in)`` are
  transposed; position embeddings lose their leading 1. Images are channels last here.

Every name and shape is checked before anything is copied: an unknown or missing tensor
is refused by name, and a config that our models cannot represent (no attention scaling,
cross-attention, an untied head, ...) is a ``ValueError`` naming the field. The config
read is kept on the model as ``pretrained_config`` and written back by
``save_pretrained``, so fields we do not use (token ids, labels) survive a round trip.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil

import numpy as np

from ..interop.safetensors_files import parse_size, read_safetensors, write_safetensors
from ..io import atomic_write

__all__ = ["read_config", "read_weights", "write_folder", "load_gpt2", "save_gpt2",
           "load_vit", "save_vit"]

CONFIG, SINGLE, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


# ----------------------------------------------------------------------------- folders
def _folder(path, what):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no such folder: {path}")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{what}: {path} is a file; expected a folder holding "
                                 f"{CONFIG} and {SINGLE}")
    return path


def read_config(path, what="from_pretrained") -> dict:
    """The ``config.json`` of the folder ``path`` as a dict."""
    path = _folder(path, what)
    file = os.path.join(path, CONFIG)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{what}: {path} has no {CONFIG}")
    try:
        with open(file, encoding="utf-8") as f:
            cfg = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: {file} is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{what}: {file} holds a JSON {type(cfg).__name__}, not an object")
    return cfg


def _read_index(path, what):
    file = os.path.join(path, INDEX)
    try:
        with open(file, encoding="utf-8") as f:
            index = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: {file} is not valid JSON ({exc})") from None
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in wmap.items()):
        raise ValueError(f"{what}: {file} has no weight_map of tensor names to shard files")
    for shard in set(wmap.values()):
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise ValueError(f"{what}: {file} names the shard {shard!r}, not a file of the folder")
        if not os.path.isfile(os.path.join(path, shard)):
            raise FileNotFoundError(f"{what}: {file} lists the shard {shard}, which is missing")
    return file, wmap


def read_weights(path, what="from_pretrained") -> dict:
    """Every tensor of the folder's safetensors file(s), by name, as NumPy arrays."""
    path = _folder(path, what)
    if os.path.isfile(os.path.join(path, SINGLE)):
        return read_safetensors(os.path.join(path, SINGLE))
    if not os.path.isfile(os.path.join(path, INDEX)):
        if any(os.path.isfile(os.path.join(path, n)) for n in ("pytorch_model.bin",
                                                                "pytorch_model.bin.index.json")):
            raise FileNotFoundError(f"{what}: {path} holds pytorch_model.bin, a pickle, which is "
                                    f"never read; save it as safetensors first (transformers: "
                                    f"model.save_pretrained(folder))")
        raise FileNotFoundError(f"{what}: {path} has neither {SINGLE} nor {INDEX}")
    file, wmap = _read_index(path, what)
    arrays = {}
    for shard in dict.fromkeys(wmap.values()):
        part = read_safetensors(os.path.join(path, shard))
        stray = [k for k in part if wmap.get(k) != shard]
        if stray:
            raise ValueError(f"{what}: {shard} holds {stray[:5]}, which {file} places elsewhere")
        arrays.update(part)
    absent = [k for k in wmap if k not in arrays]
    if absent:
        raise ValueError(f"{what}: {file} lists {absent[:5]}, which its shards do not hold")
    return arrays


def _shards(arrays, limit):
    shards, size = [{}], 0
    for k, a in arrays.items():
        if shards[-1] and size + a.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][k] = a
        size += a.nbytes
    return shards


def _write_weights(folder, arrays, max_shard_size):
    """Write the weights into the (new, empty) ``folder``; returns the file names."""
    meta = {"format": "pt"}                        # what transformers expects to find
    limit = None if max_shard_size is None else parse_size(max_shard_size, "max_shard_size")
    if limit is None or sum(a.nbytes for a in arrays.values()) <= limit:
        write_safetensors(os.path.join(folder, SINGLE), arrays, meta)
        return [SINGLE]
    shards = _shards(arrays, limit)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    wmap = {}
    for name, shard in zip(names, shards):
        write_safetensors(os.path.join(folder, name), shard, meta)
        wmap.update(dict.fromkeys(shard, name))
    index = {"metadata": {"total_size": int(sum(a.nbytes for a in arrays.values()))},
             "weight_map": wmap}
    _write_json(os.path.join(folder, INDEX), index)
    return names + [INDEX]


def _write_json(file, obj):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(file, write)


def write_folder(path, config: dict, arrays: dict, max_shard_size=None) -> None:
    """Write ``config.json`` and the weights (one file, or shards of at most
    ``max_shard_size`` bytes and an index) to the folder ``path``. Everything is written
    beside it first; a new folder then appears at once (a rename), an existing one gets
    each file replaced atomically (weights first, ``config.json`` last) and loses the
    weight files of an earlier save that the new one does not have."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"save_pretrained: {path} is a file, not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(os.path.abspath(path))}-"
                                f"{secrets.token_hex(6)}")
    os.mkdir(tmp)                          # the umask's permissions, as the folder will have
    try:
        names = _write_weights(tmp, arrays, max_shard_size)
        _write_json(os.path.join(tmp, CONFIG), config)
        if not os.path.exists(path):
            os.rename(tmp, path)
            return
        for name in names + [CONFIG]:
            os.replace(os.path.join(tmp, name), os.path.join(path, name))
        for name in os.listdir(path):
            if name not in names and (name in (SINGLE, INDEX) or _SHARD.fullmatch(name)):
                os.remove(os.path.join(path, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- checking
def _listed(keys, n=8):
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _load_entries(model, arrays, entries, what, path, ignore=()):
    """Check the folder's ``arrays`` against ``entries`` (HF name, our names, to ours, to
    HF), then copy them into ``model``: all or nothing."""
    known = {e[0] for e in entries}
    unknown = [k for k in arrays if k not in known and not any(re.fullmatch(p, k) for p in ignore)]
    missing = [e[0] for e in entries if e[0] not in arrays]
    if unknown or missing:
        parts = [f"unknown tensors {_listed(unknown)}"] * bool(unknown) + \
                [f"missing tensors {_listed(missing)}"] * bool(missing)
        raise ValueError(f"{what}: the weights in {path} do not fit the config: "
                         f"{'; '.join(parts)}")
    own = model.state_dict()
    converted, problems = {}, []
    for hf, ours, to_ours, to_hf in entries:
        expected = to_hf(*(own[o].numpy() for o in ours)).shape
        if arrays[hf].shape != expected:
            problems.append(f"{hf} has shape {arrays[hf].shape}, the config implies {expected}")
        else:
            converted.update(zip(ours, to_ours(arrays[hf])))
    if problems:
        raise ValueError(f"{what}: the weights in {path} do not fit the config: "
                         f"{'; '.join(problems)}")
    model.load_state_dict(converted, strict=True)


def _field(cfg, name, what, default=None, kind="positive int"):
    v = cfg.get(name, default)
    ok = {"positive int": lambda x: isinstance(x, int) and not isinstance(x, bool) and x > 0,
          "positive number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
          and x > 0,
          "probability": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
          and 0 <= x < 1,
          "bool": lambda x: isinstance(x, bool)}[kind]
    if name not in cfg and default is None:
        raise ValueError(f"{what}: config.json has no {name} (a {kind})")
    if not ok(v):
        raise ValueError(f"{what}: config.json's {name} must be a {kind}, got {v!r}")
    return v


def _model_type(cfg, expected, what):
    kind = cfg.get("model_type", expected)
    if kind != expected:
        raise ValueError(f"{what}: config.json describes a {kind!r} model; this reads "
                         f"{expected!r} folders")


# ----------------------------------------------------------------------------- layouts
def _same(a):
    return (a,)


def _unsame(a):
    return a


def _transposed(a):
    return (a.T,)


def _untransposed(a):
    return a.T


def _split_columns(a):
    return tuple(np.split(a, 3, axis=-1))


def _join_columns(*parts):
    return np.concatenate(parts, axis=-1)


def _pair(hf, ours, to_ours=_same, to_hf=_unsame, params=("weight", "bias")):
    return [(f"{hf}.{p}", (f"{ours}.{p}",), to_ours, to_hf) for p in params]


# ----------------------------------------------------------------------------- GPT-2
# Hugging Face's activation names -> ours (gelu_new, gelu_fast and gelu_pytorch_tanh are
# the tanh form of GELU)
GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
                    "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu",
                    "silu": "silu", "swish": "silu", "quick_gelu": "quick_gelu"}
_GPT2_FIXED = {   # fields our GPT has one value of: (value, what the other value means)
    "scale_attn_weights": (True, "attention scores without the 1/sqrt(head size) scale"),
    "scale_attn_by_inverse_layer_idx": (False, "scores scaled by 1/(layer index + 1)"),
    "add_cross_attention": (False, "cross-attention to an encoder"),
    "tie_word_embeddings": (True, "an output layer separate from the token embedding"),
}


def gpt2_kwargs(cfg, what="GPT.from_pretrained") -> dict:
    """Our ``GPT(...)`` arguments for a GPT-2 ``config.json`` (a dict), checked."""
    _model_type(cfg, "gpt2", what)
    positions = {"n_positions": cfg["n_positions"] if "n_positions" in cfg else cfg["n_ctx"]} \
        if "n_positions" in cfg or "n_ctx" in cfg else {}
    kw = {"vocab_size": _field(cfg, "vocab_size", what),
          "block_size": _field(positions, "n_positions", what),
          "n_layer": _field(cfg, "n_layer", what), "n_head": _field(cfg, "n_head", what),
          "n_embd": _field(cfg, "n_embd", what)}
    if kw["n_embd"] % kw["n_head"]:
        raise ValueError(f"{what}: config.json's n_embd={kw['n_embd']} is not a multiple of "
                         f"n_head={kw['n_head']}")
    if cfg.get("n_inner") is not None:
        kw["n_inner"] = _field(cfg, "n_inner", what)
    act = cfg.get("activation_function", "gelu_new")
    if act not in GPT2_ACTIVATIONS:
        raise ValueError(f"{what}: config.json's activation_function {act!r} is not one we "
                         f"have; known: {sorted(GPT2_ACTIVATIONS)}")
    kw["activation"] = GPT2_ACTIVATIONS[act]
    kw["layer_norm_eps"] = float(_field(cfg, "layer_norm_epsilon", what, 1e-5,
                                        "positive number"))
    kw["dropout"] = float(_field(cfg, "resid_pdrop", what, 0.1, "probability"))
    for name, (value, meaning) in _GPT2_FIXED.items():
        if cfg.get(name, value) != value:
            raise ValueError(f"{what}: config.json sets {name}={cfg[name]!r}: {meaning}, which "
                             f"wonderland's GPT cannot represent (it needs {name}={value})")
    return kw


def _gpt2_entries(n_layer):
    """(HF name without ``transformer.``, our names, to ours, to HF) for every tensor."""
    entries = _pair("wte", "wte", params=("weight",)) + _pair("wpe", "wpe", params=("weight",))
    for i in range(n_layer):
        h, b = f"h.{i}", f"blocks.{i}"
        entries += _pair(f"{h}.ln_1", f"{b}.ln_1")
        entries += [(f"{h}.attn.c_attn.{p}", tuple(f"{b}.attn.{n}_proj.{p}" for n in "qkv"),
                     _split_columns, _join_columns) for p in ("weight", "bias")]
        entries += _pair(f"{h}.attn.c_proj", f"{b}.attn.out_proj")
        entries += _pair(f"{h}.ln_2", f"{b}.ln_2")
        entries += _pair(f"{h}.mlp.c_fc", f"{b}.fc") + _pair(f"{h}.mlp.c_proj", f"{b}.proj")
    return entries + _pair("ln_f", "ln_f")


def load_gpt2(cls, path):
    """``cls`` (our GPT) built from the GPT-2 folder ``path``, in eval mode."""
    what = "GPT.from_pretrained"
    cfg = read_config(path, what)
    kw = gpt2_kwargs(cfg, what)
    arrays = read_weights(path, what)
    head = arrays.pop("lm_head.weight", None)
    # GPT2LMHeadModel's names start with "transformer.", GPT2Model's (the original files) not
    arrays = {k[len("transformer."):] if k.startswith("transformer.") else k: v
              for k, v in arrays.items()}
    wte = arrays.get("wte.weight")
    if head is not None and wte is not None and not (head.shape == wte.shape
                                                     and np.array_equal(head, wte)):
        raise ValueError(f"{what}: {path} has an lm_head.weight different from the token "
                         f"embedding; wonderland's GPT ties the two and cannot represent it")
    model = cls(**kw)
    _load_entries(model, arrays, _gpt2_entries(kw["n_layer"]), what, path,
                  ignore=(r"h\.\d+\.attn\.(bias|masked_bias)",))
    model.pretrained_config = cfg
    return model.eval()


def _gpt2_config(model):
    what = "GPT.save_pretrained"
    if model.positions != "learned":
        raise ValueError(f"{what}: GPT-2's format has learned positions; this model has "
                         f"positions={model.positions!r}")
    names = {v: k for k, v in reversed(list(GPT2_ACTIVATIONS.items()))}
    cfg = dict(getattr(model, "pretrained_config", None) or {})
    if GPT2_ACTIVATIONS.get(cfg.get("activation_function")) != model.activation:
        cfg["activation_function"] = names[model.activation]
    p = float(model.drop.p)
    cfg.update({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                "vocab_size": model.vocab_size, "n_positions": model.block_size,
                "n_embd": model.n_embd, "n_layer": model.n_layer, "n_head": model.n_head,
                "n_inner": None if model.n_inner == 4 * model.n_embd else model.n_inner,
                "layer_norm_epsilon": model.layer_norm_eps, "resid_pdrop": p, "embd_pdrop": p,
                "attn_pdrop": p, "tie_word_embeddings": True, "scale_attn_weights": True,
                "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False,
                "dtype": str(model.wte.weight.dtype)})
    cfg.setdefault("initializer_range", 0.02)
    cfg.pop("n_ctx", None)
    return cfg


def save_gpt2(model, path, max_shard_size=None):
    """Write ``model`` (our GPT) as a GPT-2 folder that ``transformers`` loads."""
    cfg = _gpt2_config(model)
    own = model.state_dict()
    arrays = {f"transformer.{hf}": np.ascontiguousarray(to_hf(*(own[o].numpy() for o in ours)))
              for hf, ours, _, to_hf in _gpt2_entries(model.n_layer)}
    write_folder(path, cfg, arrays, max_shard_size)


# ----------------------------------------------------------------------------- ViT
VIT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                   "relu": "relu"}


def _image_size(cfg, what):
    size = cfg.get("image_size", 224)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return tuple(_field({"image_size": s}, "image_size", what) for s in size)
    return _field({"image_size": size}, "image_size", what)


def vit_kwargs(cfg, what="ViT.from_pretrained") -> dict:
    """Our ``ViT(...)`` arguments for a ``ViTForImageClassification`` config, checked."""
    _model_type(cfg, "vit", what)
    act = cfg.get("hidden_act", "gelu")
    if act not in VIT_ACTIVATIONS:
        raise ValueError(f"{what}: config.json's hidden_act {act!r} is not one we have; "
                         f"known: {sorted(VIT_ACTIVATIONS)}")
    labels = cfg.get("id2label")
    num_classes = len(labels) if isinstance(labels, dict) and labels else \
        _field(cfg, "num_labels", what, 2)
    kw = {"image_size": _image_size(cfg, what), "patch_size": _field(cfg, "patch_size", what, 16),
          "in_chans": _field(cfg, "num_channels", what, 3), "num_classes": num_classes,
          "dim": _field(cfg, "hidden_size", what), "depth": _field(cfg, "num_hidden_layers", what),
          "heads": _field(cfg, "num_attention_heads", what),
          "mlp_dim": _field(cfg, "intermediate_size", what),
          "dropout": float(_field(cfg, "hidden_dropout_prob", what, 0.0, "probability")),
          "layer_norm_eps": float(_field(cfg, "layer_norm_eps", what, 1e-12, "positive number")),
          "qkv_bias": _field(cfg, "qkv_bias", what, True, "bool"),
          "activation": VIT_ACTIVATIONS[act]}
    if kw["dim"] % kw["heads"]:
        raise ValueError(f"{what}: config.json's hidden_size={kw['dim']} is not a multiple of "
                         f"num_attention_heads={kw['heads']}")
    return kw


def _vit_patch(p, c):
    def to_ours(a):                      # (d, c, p, p) -> (p·p·c, d), patches as (y, x, c)
        return (np.transpose(a, (2, 3, 1, 0)).reshape(p * p * c, -1),)

    def to_hf(w):
        return np.transpose(w.reshape(p, p, c, -1), (3, 2, 0, 1))

    return to_ours, to_hf


def _vit_entries(depth, p, c, qkv_bias):
    e = "vit.embeddings"
    entries = [(f"{e}.cls_token", ("tokens.cls_token",), _same, _unsame),
               (f"{e}.position_embeddings", ("pos.weight",), lambda a: (a[0],),
                lambda w: w[None])]
    entries += _pair(f"{e}.patch_embeddings.projection", "patch.proj", *_vit_patch(p, c),
                     params=("weight",))
    entries += _pair(f"{e}.patch_embeddings.projection", "patch.proj", params=("bias",))
    qkv = ("weight", "bias") if qkv_bias else ("weight",)
    for i in range(depth):
        h, b = f"vit.encoder.layer.{i}", f"blocks.{i}"
        entries += _pair(f"{h}.layernorm_before", f"{b}.norm1")
        for hf, ours in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            entries += _pair(f"{h}.attention.attention.{hf}", f"{b}.self_attn.{ours}",
                             params=("weight",), to_ours=_transposed, to_hf=_untransposed)
            entries += _pair(f"{h}.attention.attention.{hf}", f"{b}.self_attn.{ours}",
                             params=qkv[1:])
        entries += _pair(f"{h}.attention.output.dense", f"{b}.self_attn.out_proj",
                         params=("weight",), to_ours=_transposed, to_hf=_untransposed)
        entries += _pair(f"{h}.attention.output.dense", f"{b}.self_attn.out_proj",
                         params=("bias",))
        entries += _pair(f"{h}.layernorm_after", f"{b}.norm2")
        for hf, ours in (("intermediate.dense", "linear1"), ("output.dense", "linear2")):
            entries += _pair(f"{h}.{hf}", f"{b}.{ours}", params=("weight",),
                             to_ours=_transposed, to_hf=_untransposed)
            entries += _pair(f"{h}.{hf}", f"{b}.{ours}", params=("bias",))
    entries += _pair("vit.layernorm", "norm")
    return entries + _pair("classifier", "head", params=("weight",), to_ours=_transposed,
                           to_hf=_untransposed) + _pair("classifier", "head", params=("bias",))


def load_vit(cls, path):
    """``cls`` (our ViT) built from a ``ViTForImageClassification`` folder, in eval mode."""
    what = "ViT.from_pretrained"
    cfg = read_config(path, what)
    kw = vit_kwargs(cfg, what)
    arrays = read_weights(path, what)
    if "embeddings.cls_token" in arrays:
        raise ValueError(f"{what}: {path} holds a ViTModel (no 'vit.' prefix, no classifier); "
                         f"this reads ViTForImageClassification folders")
    model = cls(**kw)
    entries = _vit_entries(kw["depth"], kw["patch_size"], kw["in_chans"], kw["qkv_bias"])
    _load_entries(model, arrays, entries, what, path)
    model.pretrained_config = cfg
    return model.eval()


def _vit_config(model):
    what = "ViT.save_pretrained"
    if model.tokens.num_registers:
        raise ValueError(f"{what}: Hugging Face's ViT has no register tokens; this model has "
                         f"{model.tokens.num_registers}")
    cfg = dict(getattr(model, "pretrained_config", None) or {})
    if VIT_ACTIVATIONS.get(cfg.get("hidden_act")) != model.activation:
        cfg["hidden_act"] = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh",
                             "relu": "relu"}[model.activation]
    labels = cfg.get("id2label")
    if not (isinstance(labels, dict) and len(labels) == model.num_classes):
        cfg["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_classes)}
        cfg["label2id"] = {f"LABEL_{i}": i for i in range(model.num_classes)}
    h, w = model.patch.img_size
    cfg.update({"model_type": "vit", "architectures": ["ViTForImageClassification"],
                "hidden_size": model.dim, "num_hidden_layers": model.depth,
                "num_attention_heads": model.heads, "intermediate_size": model.mlp_dim,
                "image_size": h if h == w else [h, w], "patch_size": model.patch.patch_size,
                "num_channels": model.patch.in_chans, "qkv_bias": model.qkv_bias,
                "layer_norm_eps": model.layer_norm_eps, "hidden_dropout_prob": model.dropout,
                "attention_probs_dropout_prob": model.dropout,
                "dtype": str(model.head.weight.dtype)})
    cfg.setdefault("initializer_range", 0.02)
    cfg.setdefault("encoder_stride", model.patch.patch_size)
    return cfg


def save_vit(model, path, max_shard_size=None):
    """Write ``model`` (our ViT) as a ``ViTForImageClassification`` folder."""
    cfg = _vit_config(model)
    own = model.state_dict()
    entries = _vit_entries(model.depth, model.patch.patch_size, model.patch.in_chans,
                           model.qkv_bias)
    arrays = {hf: np.ascontiguousarray(to_hf(*(own[o].numpy() for o in ours)))
              for hf, ours, _, to_hf in entries}
    write_folder(path, cfg, arrays, max_shard_size)
