"""Tokenisers for text models (chapter 10): characters by hand, and byte-pair encoding
through the ``tokenizers`` library.

Both map a string to a 1-D int64 array of ids and back, exactly: ``decode(encode(s)) == s``.
The BPE tokeniser works on bytes (GPT-2's byte-level alphabet), so any text, including
characters never seen in training, round-trips.
"""

from __future__ import annotations

import json
import os

import numpy as np


class CharTokenizer:
    """One id per distinct character of the training text (sorted); ``unknown`` (a
    character of the training text) stands in for characters never seen."""

    def __init__(self, text: str, unknown=None):
        if not text:
            raise ValueError("CharTokenizer: the training text is empty")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        if unknown is not None and unknown not in self.index:
            raise ValueError(f"CharTokenizer: unknown={unknown!r} is not a character of the text")
        self.unknown = unknown

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            if self.unknown is None:
                raise ValueError(f"CharTokenizer.encode: character {exc.args[0]!r} is not in the "
                                 f"vocabulary ({len(self.chars)} characters)") from None
            u = self.index[self.unknown]
            return np.array([self.index.get(c, u) for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        ids = np.asarray(getattr(ids, "data", ids)).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"CharTokenizer.decode: ids must be in [0, {len(self.chars)}), got "
                             f"{int(ids.min())}..{int(ids.max())}")
        return "".join(self.chars[i] for i in ids)


class BPETokenizer:
    """Byte-level byte-pair encoding, trained with the ``tokenizers`` library.

    ``BPETokenizer.train(text, vocab_size=512)`` learns merges of frequent byte pairs;
    ``encode``/``decode`` round-trip any string exactly. ``save(path)``/``load(path)``
    use the library's JSON format (no pickle).
    """

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def train(cls, text, vocab_size=512, min_frequency=2):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        texts = [text] if isinstance(text, str) else list(text)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def __len__(self):
        return self.vocab_size

    def encode(self, text: str) -> np.ndarray:
        return np.array(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        ids = np.asarray(getattr(ids, "data", ids)).reshape(-1)
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def tokens(self, text: str) -> list:
        """The pieces ``text`` is split into (byte-level strings)."""
        return self._tok.encode(text).tokens

    def save(self, path) -> None:
        self._tok.save(str(path))

    @classmethod
    def load(cls, path):
        from tokenizers import Tokenizer

        with open(path, encoding="utf-8") as f:
            json.load(f)                     # a clear error for a file that is not JSON
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_pretrained(cls, path):
        """A tokeniser from Hugging Face's files: ``tokenizer.json`` (the file, or a folder
        holding it), or else GPT-2's ``vocab.json`` and ``merges.txt`` in the folder
        (byte-level BPE; ``<|endoftext|>`` is a special token when the vocabulary has
        it). Read by the ``tokenizers`` library; nothing is downloaded."""
        what = "BPETokenizer.from_pretrained"
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{what}: no such file or folder: {path}")
        file = path if os.path.isfile(path) else os.path.join(path, "tokenizer.json")
        if os.path.isfile(file):
            return cls(_tokenizer_json(file, what))
        vocab, merges = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
        if not (os.path.isfile(vocab) and os.path.isfile(merges)):
            raise FileNotFoundError(f"{what}: {path} holds neither tokenizer.json nor "
                                    f"vocab.json and merges.txt")
        return cls(_gpt2_files(vocab, merges, what))

    def save_pretrained(self, folder) -> None:
        """Write ``folder/tokenizer.json`` (atomically), which :meth:`from_pretrained` and
        Hugging Face's ``PreTrainedTokenizerFast(tokenizer_file=...)`` read."""
        from ..io import atomic_write

        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        atomic_write(os.path.join(folder, "tokenizer.json"), lambda tmp: self._tok.save(tmp))


def _tokenizer_json(file, what):
    from tokenizers import Tokenizer

    try:
        with open(file, encoding="utf-8") as f:
            json.load(f)
        return Tokenizer.from_file(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: {file} is not valid JSON ({exc})") from None
    except Exception as exc:  # the library's own error type
        raise ValueError(f"{what}: {file} is not a tokenizer the tokenizers library reads "
                         f"({exc})") from None


def _gpt2_files(vocab, merges, what):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    try:
        tok = Tokenizer(models.BPE.from_file(vocab, merges))
    except Exception as exc:  # the library's own error type
        raise ValueError(f"{what}: cannot read {vocab} and {merges} as a BPE vocabulary and "
                         f"merges ({exc})") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [t for t in ("<|endoftext|>",) if tok.token_to_id(t) is not None]
    if specials:
        tok.add_special_tokens(specials)
    return tok
