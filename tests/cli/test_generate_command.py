"""``wonderland generate``: a tokeniser trained here and a random GPT saved to a temporary
folder; the text streams to stdout as the tokens come, and bad input is a clear error."""

import argparse
import io
import json

import numpy as np
import pytest

import wonderland as wl
from wonderland.cli import build_parser, main
from wonderland.generate_command import main as generate_main

TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of "
        "having nothing to do. ") * 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt")
    tok = wl.data.BPETokenizer.train(TEXT, vocab_size=300)
    model = wl.models.GPT(tok.vocab_size, 64, 2, 2, 16, generator=wl.random.Generator(0))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def run(capsys, *argv):
    code = main(["generate", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_greedy_continuation_matches_generate(model_dir, capsys):
    code, out, err = run(capsys, "--model", model_dir, "--prompt", "Alice was",
                         "--max-new-tokens", 12, "--top-k", 1)
    assert code == 0, err
    tok = wl.data.BPETokenizer.from_pretrained(model_dir)
    model = wl.models.GPT.from_pretrained(model_dir)
    ids = model.generate(tok.encode("Alice was")[None], 12, top_k=1).numpy()[0]
    assert out == "Alice was" + tok.decode(ids[len(tok.encode("Alice was")):]) + "\n"


def test_seeded_sampling_repeats_and_the_flags_work(model_dir, capsys):
    args = ["--model", model_dir, "--prompt", "Alice", "--max-new-tokens", 15,
            "--temperature", 0.8, "--top-k", 20, "--top-p", 0.9, "--seed", 3]
    first = run(capsys, *args)
    assert first[0] == 0 and first[1].startswith("Alice")
    assert run(capsys, *args) == first
    assert run(capsys, *args, "--no-cache") == first


class Recorder(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, s):
        self.writes.append(s)
        return super().write(s)


def test_tokens_are_streamed_as_they_come(model_dir):
    args = build_parser().parse_args(["generate", "--model", str(model_dir), "--prompt",
                                      "Alice", "--max-new-tokens", "8", "--top-k", "1"])
    out = Recorder()
    assert generate_main(args, out=out) == 0
    assert len([w for w in out.writes if w]) >= 3       # the prompt, then piece by piece
    assert out.getvalue().startswith("Alice") and out.getvalue().endswith("\n")


def test_help_names_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--prompt", "--max-new-tokens", "--top-k", "--top-p",
                 "--temperature", "--seed", "--tokenizer"):
        assert flag in text


def test_clear_errors(model_dir, tmp_path, capsys):
    code, _, err = run(capsys, "--model", tmp_path / "missing", "--prompt", "x")
    assert code == 2 and "--model: no such folder" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    code, _, err = run(capsys, "--model", bad, "--prompt", "x")
    assert code == 2 and "config.json has no vocab_size" in err
    code, _, err = run(capsys, "--model", model_dir, "--prompt", "x", "--temperature", 0)
    assert code == 2 and "--temperature must be positive" in err
    code, _, err = run(capsys, "--model", model_dir, "--prompt", "x", "--tokenizer",
                       tmp_path / "none")
    assert code == 2 and "no such file or folder" in err
    notok = tmp_path / "notok"
    wl.models.GPT(50, 16, 1, 2, 8).save_pretrained(notok)
    code, _, err = run(capsys, "--model", notok, "--prompt", "x")
    assert code == 2 and "neither tokenizer.json nor vocab.json" in err


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(model_dir, tmp_path, capsys):
    small = tmp_path / "small"
    wl.models.GPT(5, 16, 1, 2, 8).save_pretrained(small)
    code, _, err = run(capsys, "--model", small, "--tokenizer", model_dir, "--prompt", "Alice")
    assert code == 2 and "beyond the model's vocabulary of 5" in err
