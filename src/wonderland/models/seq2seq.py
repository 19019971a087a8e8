"""An encoder–decoder transformer for sequence-to-sequence tasks (chapter 11), with
greedy and beam-search decoding.

Source tokens → embeddings + sinusoidal positions → a pre-norm transformer encoder →
``memory``; target tokens (shifted right, starting with ``bos``) → a decoder with causal
self-attention and cross-attention to ``memory`` → logits. Decoding runs the decoder one
token at a time with a KV cache per layer.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core.modes import no_grad
from ..core.tensor import Tensor
from ..nn import (Embedding, KVCache, LayerNorm, Linear, Module, SinusoidalPositionalEmbedding,
                  TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                  TransformerEncoderLayer)
from ..nn import functional as F


def _ids(x) -> Tensor:
    """Token ids as an int64 tensor (a conversion of a tensor is an operation)."""
    if isinstance(x, Tensor):
        return x if x.dtype == np.int64 else x.astype(np.int64)
    return Tensor(np.asarray(x, dtype=np.int64))


class Seq2SeqTransformer(Module):
    """``Seq2SeqTransformer(src_vocab, tgt_vocab, d_model=64, nhead=4,
    num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128, dropout=0.0,
    pad_id=0, bos_id=1, eos_id=2)``. ``model(src, tgt_in)`` gives logits
    ``(b, t, tgt_vocab)``; padding (``pad_id``) in the source is masked out."""

    def __init__(self, src_vocab, tgt_vocab, d_model=64, nhead=4, num_encoder_layers=2,
                 num_decoder_layers=2, dim_feedforward=128, dropout=0.0, pad_id=0, bos_id=1,
                 eos_id=2, generator=None):
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.d_model, self.tgt_vocab = d_model, tgt_vocab
        self.src_embed = Embedding(src_vocab, d_model, generator=generator)
        self.tgt_embed = Embedding(tgt_vocab, d_model, generator=generator)
        self.pos = SinusoidalPositionalEmbedding(d_model)
        enc = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, "gelu",
                                      norm_first=True, generator=generator)
        dec = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, "gelu",
                                      norm_first=True, generator=generator)
        self.encoder = TransformerEncoder(enc, num_encoder_layers, LayerNorm(d_model))
        self.decoder = TransformerDecoder(dec, num_decoder_layers, LayerNorm(d_model))
        self.head = Linear(d_model, tgt_vocab, generator=generator)

    def encode(self, src):
        ids = _ids(src)
        x = self.pos(self.src_embed(ids) * math.sqrt(self.d_model))
        pad = ops.equal(ids, self.pad_id)              # an operation: jit records it
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, tgt_in, memory, src_pad, caches=None):
        ids = _ids(tgt_in)
        offset = 0 if caches is None else len(caches[0])
        y = self.pos(self.tgt_embed(ids) * math.sqrt(self.d_model), offset=offset)
        t = ids.shape[1]
        mask = None if caches is not None else Tensor(np.triu(np.ones((t, t), bool), 1))
        h = self.decoder(y, memory, tgt_mask=mask, memory_key_padding_mask=src_pad,
                         tgt_is_causal=True, caches=caches)
        return self.head(h)

    def forward(self, src, tgt_in):
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    def loss(self, src, tgt_in, tgt_out):
        logits = self(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, self.tgt_vocab),
                               _ids(tgt_out).reshape(-1), ignore_index=self.pad_id)

    # ------------------------------------------------------------------ decoding
    def greedy_decode(self, src, max_len=32):
        """The most likely token at each step, until ``eos`` or ``max_len``; returns a
        list of token lists (without ``bos``/``eos``)."""
        was = self.training
        self.eval()
        with no_grad():
            memory, pad = self.encode(src)
            b = memory.shape[0]
            caches = [KVCache() for _ in self.decoder.layers]
            tokens = np.full((b, 1), self.bos_id, dtype=np.int64)
            done = np.zeros(b, bool)
            out = [[] for _ in range(b)]
            for _ in range(max_len):
                logits = self.decode(tokens[:, -1:], memory, pad, caches).numpy()[:, -1]
                nxt = logits.argmax(-1)
                for i in range(b):
                    if not done[i]:
                        if nxt[i] == self.eos_id:
                            done[i] = True
                        else:
                            out[i].append(int(nxt[i]))
                if done.all():
                    break
                tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        self.train(was)
        return out

    def beam_search(self, src, beam_size=4, max_len=32, length_penalty=0.0):
        """Beam search per source sequence: keep the ``beam_size`` best partial
        translations by total log-probability (divided by ``length^length_penalty``
        when finished); returns the best finished one of each (a list of token lists)."""
        was = self.training
        self.eval()
        results = []
        with no_grad():
            src_ids = _ids(src)
            for row in src_ids:
                results.append(self._beam_one(row[None], beam_size, max_len, length_penalty))
        self.train(was)
        return results

    def _beam_one(self, src, k, max_len, alpha):
        memory, pad = self.encode(src)
        caches = [KVCache() for _ in self.decoder.layers]
        beams = [[]]
        scores = np.zeros(1)
        last = np.array([self.bos_id])
        finished = []
        for step in range(max_len):
            n = len(beams)
            mem = memory if memory.shape[0] == n else memory[np.zeros(n, dtype=np.int64)]
            pd = pad if pad.shape[0] == n else pad[np.zeros(n, dtype=np.int64)]
            logits = self.decode(last[:, None], mem, pd, caches).numpy()[:, -1].astype(np.float64)
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            total = (scores[:, None] + logp).ravel()
            order = np.argsort(-total)
            new_beams, new_scores, new_last, rows = [], [], [], []
            for flat in order:
                b, tok = divmod(int(flat), logp.shape[1])
                if tok == self.eos_id:
                    length = len(beams[b]) + 1
                    finished.append((total[flat] / (length ** alpha), beams[b]))
                else:
                    new_beams.append(beams[b] + [tok])
                    new_scores.append(total[flat])
                    new_last.append(tok)
                    rows.append(b)
                if len(new_beams) == k:
                    break
            if not new_beams:
                break
            best_done = max((f[0] for f in finished), default=-np.inf)
            # log-probabilities only fall as a hypothesis grows: without a length bonus,
            # once the best finished one beats every live beam, it is the answer
            if alpha == 0 and max(new_scores) <= best_done:
                break
            if alpha > 0 and len(finished) >= k:
                break
            for c in caches:
                c.select(rows)
            beams, scores, last = new_beams, np.array(new_scores), np.array(new_last)
        if not finished:
            finished = [(s / (max(len(b), 1) ** alpha), b) for s, b in zip(scores, beams)]
        return max(finished, key=lambda f: f[0])[1]
