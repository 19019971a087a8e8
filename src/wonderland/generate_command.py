"""``wonderland generate --model DIR --prompt TEXT``: continue a prompt with a GPT-2 model
from a local Hugging Face folder, printing the tokens as they come.

The folder holds ``config.json`` and ``model.safetensors`` (or shards and their index),
read by :meth:`wonderland.models.GPT.from_pretrained`, and a tokeniser
(``tokenizer.json``, or GPT-2's ``vocab.json`` and ``merges.txt``) unless ``--tokenizer``
names another. The prompt is printed, then each new piece of text as soon as its
bytes make whole characters. Sampling: ``--temperature``, ``--top-k`` (1 is greedy),
``--top-p``, ``--seed`` for a repeatable draw.
"""

from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_USAGE = 0, 2          # Ctrl-C: 130, from the cli


def _fail(message) -> int:
    print(f"wonderland generate: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_args(args):
    """Why the arguments cannot work (None when they can)."""
    if not os.path.exists(args.model):
        return f"--model: no such folder: {args.model}"
    if not os.path.isdir(args.model):
        return f"--model: {args.model} is a file; expected a folder holding config.json"
    if args.max_new_tokens < 0:
        return f"--max-new-tokens must be at least 0, got {args.max_new_tokens}"
    if args.temperature <= 0:
        return f"--temperature must be positive, got {args.temperature}"
    if args.top_k is not None and args.top_k < 1:
        return f"--top-k must be at least 1, got {args.top_k}"
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        return f"--top-p must be in (0, 1], got {args.top_p}"
    if not args.prompt:
        return "--prompt is empty; give some text to continue"
    return None


def _load(args):
    """``(model, tokenizer)``, or raise ``ValueError``/``OSError`` naming the problem."""
    import wonderland as wl

    model = wl.models.GPT.from_pretrained(args.model)
    tok = wl.data.BPETokenizer.from_pretrained(args.tokenizer or args.model)
    return model, tok


class _Printer:
    """Writes the text of a growing list of ids, holding back an incomplete character
    (byte-level tokens may split one) until its last byte arrives."""

    def __init__(self, tok, out):
        self.tok, self.out, self.ids, self.shown = tok, out, [], 0

    def add(self, token_id):
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self.out.write(text[self.shown:])
        self.out.flush()
        self.shown = len(text)

    def finish(self):
        text = self.tok.decode(self.ids)
        self.out.write(text[self.shown:] + "\n")
        self.out.flush()


def main(args, out=None) -> int:
    import wonderland as wl

    out = out or sys.stdout
    problem = _check_args(args)
    if problem:
        return _fail(problem)
    try:
        model, tok = _load(args)
    except (OSError, ValueError, KeyError) as exc:
        return _fail(str(exc))
    ids = tok.encode(args.prompt)
    if ids.size == 0:
        return _fail("--prompt encodes to no tokens")
    if ids.max() >= model.vocab_size:
        return _fail(f"the tokeniser gives id {int(ids.max())}, beyond the model's vocabulary "
                     f"of {model.vocab_size}; is it the model's own tokeniser?")
    generator = wl.random.Generator(args.seed)
    out.write(args.prompt)
    out.flush()
    printer = _Printer(tok, out)
    steps = model.stream(ids[None], args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, use_cache=not args.no_cache,
                         generator=generator)
    for nxt in steps:
        printer.add(nxt[0])
    printer.finish()
    return EXIT_OK


def add_parser(sub):
    """Register ``generate`` among the ``wonderland`` subcommands ``sub``."""
    p = sub.add_parser(
        "generate", help="continue a prompt with a GPT-2 model from a local folder",
        description="Load a Hugging Face GPT-2 folder (config.json, model.safetensors or "
                    "shards, a tokenizer) and print the prompt's continuation as it is "
                    "sampled. Nothing is downloaded.",
        epilog="exit status: 0 generated; 2 a missing folder, a bad config, weights, "
               "tokenizer or arguments; 130 interrupted.")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a folder with config.json and model.safetensors (GPT-2 format)")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=50, metavar="N",
                   help="how many tokens to add (default: 50)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="divide the logits by T before sampling (default: 1.0)")
    p.add_argument("--top-k", type=int, metavar="K",
                   help="sample among the K most likely tokens (1: greedy)")
    p.add_argument("--top-p", type=float, metavar="P",
                   help="sample among the most likely tokens whose probability reaches P")
    p.add_argument("--seed", type=int, metavar="N",
                   help="random seed for a repeatable draw (default: fresh randomness)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="tokenizer.json, or a folder with it or with vocab.json and "
                        "merges.txt (default: the model's folder)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every step instead of using a KV cache")
    return p
